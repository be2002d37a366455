//! Still latency over the Unix socket: `--requests` (1000) GETs of `/still.rgb`, each timed
//! from writing the request to reading the last body byte, for the latest frame (on one
//! keep-alive connection, and with a new connection per request as `picker still` does) and
//! for `?fresh=1`. Fresh requests are spaced by a random pause of up to one frame period,
//! so they arrive at every phase of the camera's cycle rather than always right after a
//! capture (back to back, each would wait almost a whole period).
//!
//! cargo bench --bench still -- --requests 1000 --repeat 3

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Args, median_f64, percentile};

const RGB_BYTES: usize = 512 * 512 * 3;

fn main() {
    let args = Args::parse();
    let requests: usize = args.get("--requests", 1000);
    let repeat: usize = args.get("--repeat", 3);
    println!(
        "# /still.rgb over the Unix socket: picker (release build), {requests} requests per mode, \
         {repeat} run(s)"
    );
    println!(
        "| run | mode | p50 ms | p99 ms | max ms | frame age at receipt p50 ms | p99 ms | distinct frames |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let modes = [
        ("latest (keep-alive)", false, true),
        ("latest (new connection)", false, false),
        ("fresh=1 (keep-alive)", true, true),
    ];
    let mut summary: Vec<Vec<Result>> = vec![Vec::new(); modes.len()];
    for run in 1..=repeat {
        let server = common::Server::start(256, "");
        common::wait_for_socket(&server.socket);
        std::thread::sleep(Duration::from_millis(500));
        for (i, (name, fresh, keep_alive)) in modes.iter().enumerate() {
            let r = measure(&server.socket, requests, *fresh, *keep_alive);
            r.print(&run.to_string(), name);
            summary[i].push(r);
        }
    }
    for (i, (name, _, _)) in modes.iter().enumerate() {
        let rs = &summary[i];
        let m = |f: fn(&Result) -> f64| median_f64(&rs.iter().map(f).collect::<Vec<_>>());
        Result {
            p50: m(|r| r.p50),
            p99: m(|r| r.p99),
            max: m(|r| r.max),
            age50: m(|r| r.age50),
            age99: m(|r| r.age99),
            distinct: m(|r| r.distinct as f64) as usize,
        }
        .print("median", name);
    }
}

#[derive(Clone)]
struct Result {
    p50: f64,
    p99: f64,
    max: f64,
    age50: f64,
    age99: f64,
    distinct: usize,
}

impl Result {
    fn print(&self, run: &str, mode: &str) {
        println!(
            "| {run} | {mode} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {} |",
            self.p50, self.p99, self.max, self.age50, self.age99, self.distinct
        );
    }
}

fn measure(socket: &Path, requests: usize, fresh: bool, keep_alive: bool) -> Result {
    let path = if fresh {
        "/still.rgb?fresh=1"
    } else {
        "/still.rgb"
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: picker\r\n\r\n");
    let mut buf = vec![0u8; RGB_BYTES + 4096];
    let mut conn: Option<UnixStream> = None;
    let mut lat = Vec::with_capacity(requests);
    let mut age = Vec::with_capacity(requests);
    let mut seqs = Vec::with_capacity(requests);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ common::unix_us();
    for _ in 0..requests {
        if fresh {
            // xorshift: a pause of 0..33 ms, so requests land at any phase of the frame.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            std::thread::sleep(Duration::from_micros(rng % 33_334));
        }
        let t0 = Instant::now();
        let s = match &mut conn {
            Some(s) if keep_alive => s,
            _ => conn.insert(UnixStream::connect(socket).expect("connect to the still socket")),
        };
        s.write_all(request.as_bytes()).unwrap();
        let (seq, ts_ns) = read_response(s, &mut buf);
        let now_ns = common::boottime_ns();
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
        age.push(now_ns.saturating_sub(ts_ns) as f64 / 1e6);
        seqs.push(seq);
        if !keep_alive {
            conn = None;
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    age.sort_by(|a, b| a.total_cmp(b));
    seqs.sort_unstable();
    seqs.dedup();
    Result {
        p50: percentile(&lat, 50.0).unwrap(),
        p99: percentile(&lat, 99.0).unwrap(),
        max: *lat.last().unwrap(),
        age50: percentile(&age, 50.0).unwrap(),
        age99: percentile(&age, 99.0).unwrap(),
        distinct: seqs.len(),
    }
}

/// Reads one response; returns (X-Sequence, X-Timestamp-Ns). Panics unless it is a 200
/// with exactly 512*512*3 body bytes.
fn read_response(s: &mut UnixStream, buf: &mut [u8]) -> (u64, u64) {
    let mut have = 0;
    let head_end = loop {
        let n = s.read(&mut buf[have..]).unwrap();
        assert!(n > 0, "server closed the connection");
        have += n;
        if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let header = |name: &str| -> u64 {
        head.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    };
    let len = header("content-length") as usize;
    assert_eq!(len, RGB_BYTES);
    let total = head_end + len;
    while have < total {
        let n = s.read(&mut buf[have..total]).unwrap();
        assert!(n > 0, "short body");
        have += n;
    }
    (header("x-sequence"), header("x-timestamp-ns"))
}
