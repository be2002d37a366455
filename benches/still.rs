//! Still latency over the Unix socket: `--requests` (1000) GETs of `/still.rgb`, each timed
//! from writing the request to reading the last body byte, for the latest frame (on one
//! keep-alive connection, and with a new connection per request as `picker still` does) and
//! for `?fresh=1`. Fresh requests are spaced by a random pause of up to one frame period,
//! so they arrive at every phase of the camera's cycle rather than always right after a
//! capture (back to back, each would wait almost a whole period).
//!
//! Every request to the service is followed by one, over the same kind of connection, to a
//! floor: a minimal server in this program that answers with the same number of bytes over a
//! bare Unix socket. Both see the same machine weather, request by request, so a slow spell
//! of the (shared) machine shows in the floor's columns too.
//!
//! cargo bench --bench still -- --requests 1000 --repeat 3 [--samples FILE]
//!
//! `--samples FILE` also writes every request's time as CSV (`run,mode,server,ms`; server is
//! `picker` or `floor`), from which `benches/plot.py still` draws the latency distribution.
//!
//! `--stream-clients N` keeps N `/stream.mjpg` clients reading the same service's stream port
//! (each from its own loopback address, as in `benches/load`) throughout: the still path's
//! latency while the runtime also hands every frame to N stream clients.

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
    let stream_clients: usize = args.get("--stream-clients", 0);
    println!(
        "# /still.rgb over the Unix socket: picker (release build), {requests} requests per mode, \
         {repeat} run(s), {stream_clients} stream client(s) reading beside"
    );
    println!(
        "| run | mode | p50 ms | p99 ms | max ms | frame age at receipt p50 ms | p99 ms | distinct frames | floor p50 ms | floor p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let floor_dir = tempfile::tempdir().unwrap();
    let floor = floor_server(floor_dir.path());
    let modes = [
        ("latest (keep-alive)", false, true),
        ("latest (new connection)", false, false),
        ("fresh=1 (keep-alive)", true, true),
    ];
    let mut summary: Vec<Vec<Result>> = vec![Vec::new(); modes.len()];
    let mut samples = args
        .value("--samples")
        .map(|path| std::io::BufWriter::new(std::fs::File::create(path).expect("--samples file")));
    if let Some(out) = &mut samples {
        writeln!(out, "run,mode,server,ms").unwrap();
    }
    for run in 1..=repeat {
        let server = common::Server::start(stream_clients.max(256), "");
        common::wait_for_socket(&server.socket);
        // Dropped (and its clients stopped) at the end of the run, before the server.
        let _stream = (stream_clients > 0).then(|| StreamLoad::start(server.port, stream_clients));
        std::thread::sleep(Duration::from_millis(500));
        for (i, (name, fresh, keep_alive)) in modes.iter().enumerate() {
            let r = measure(&server.socket, &floor, requests, *fresh, *keep_alive);
            r.print(&run.to_string(), name);
            if let Some(out) = &mut samples {
                for (server, times) in [("picker", &r.samples), ("floor", &r.floor_samples)] {
                    for ms in times {
                        writeln!(out, "{run},{name},{server},{ms:.4}").unwrap();
                    }
                }
            }
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
            floor50: m(|r| r.floor50),
            floor99: m(|r| r.floor99),
            samples: Vec::new(),
            floor_samples: Vec::new(),
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
    floor50: f64,
    floor99: f64,
    /// Every request's time in ms, sorted (for `--samples`).
    samples: Vec<f64>,
    floor_samples: Vec<f64>,
}

impl Result {
    fn print(&self, run: &str, mode: &str) {
        println!(
            "| {run} | {mode} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {} | {:.3} | {:.3} |",
            self.p50,
            self.p99,
            self.max,
            self.age50,
            self.age99,
            self.distinct,
            self.floor50,
            self.floor99
        );
    }
}

/// `n` stream clients on a thread of their own (one current-thread runtime: at most one
/// core), reading and discarding the stream until dropped.
struct StreamLoad {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StreamLoad {
    fn start(port: u16, n: usize) -> StreamLoad {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let receiving = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = receiving.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for i in 0..n {
                    tokio::spawn(stream_client(port, i, counted.clone()));
                    // Don't hit the accept queue with all of them at once.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let _ = stopped.await;
            });
        });
        // Measure only once every client has had a good part of a frame.
        let deadline = Instant::now() + Duration::from_secs(20);
        while receiving.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let got = receiving.load(Ordering::Relaxed);
        if got < n {
            eprintln!("warning: only {got}/{n} stream clients receive");
        }
        StreamLoad {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for StreamLoad {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One stream client: from its own loopback address ([`common::loopback_source`]), reading
/// whatever comes as fast as it comes.
async fn stream_client(
    port: u16,
    i: usize,
    receiving: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let from = common::loopback_source(i);
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
        return;
    };
    if socket.bind(from).is_err() {
        return;
    }
    let Ok(mut s) = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
    else {
        return;
    };
    let _ = s.set_nodelay(true);
    if s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: bench\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    let mut counted = false;
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
        total += n;
        // Past the head and into the first JPEG: this client is being served.
        if !counted && total > 4096 {
            counted = true;
            receiving.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// One side of the comparison: a socket, and the connection kept to it when keep-alive.
struct Target<'a> {
    socket: &'a Path,
    conn: Option<UnixStream>,
    keep_alive: bool,
}

impl Target<'_> {
    /// One request: (ms from sending to the last body byte, X-Sequence, X-Timestamp-Ns).
    fn get(&mut self, request: &str, buf: &mut [u8]) -> (f64, u64, u64) {
        let t0 = Instant::now();
        let s = match &mut self.conn {
            Some(s) if self.keep_alive => s,
            _ => self
                .conn
                .insert(UnixStream::connect(self.socket).expect("connect to the still socket")),
        };
        s.write_all(request.as_bytes()).unwrap();
        let (seq, ts_ns) = read_response(s, buf);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if !self.keep_alive {
            self.conn = None;
        }
        (ms, seq, ts_ns)
    }
}

fn measure(socket: &Path, floor: &Path, requests: usize, fresh: bool, keep_alive: bool) -> Result {
    let path = if fresh {
        "/still.rgb?fresh=1"
    } else {
        "/still.rgb"
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: picker\r\n\r\n");
    let mut buf = vec![0u8; RGB_BYTES + 4096];
    let mut picker = Target {
        socket,
        conn: None,
        keep_alive,
    };
    let mut floor = Target {
        socket: floor,
        conn: None,
        keep_alive,
    };
    let mut lat = Vec::with_capacity(requests);
    let mut floor_lat = Vec::with_capacity(requests);
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
        let (ms, seq, ts_ns) = picker.get(&request, &mut buf);
        let now_ns = common::boottime_ns();
        lat.push(ms);
        age.push(now_ns.saturating_sub(ts_ns) as f64 / 1e6);
        seqs.push(seq);
        floor_lat.push(floor.get(&request, &mut buf).0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    floor_lat.sort_by(|a, b| a.total_cmp(b));
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
        floor50: percentile(&floor_lat, 50.0).unwrap(),
        floor99: percentile(&floor_lat, 99.0).unwrap(),
        samples: lat,
        floor_samples: floor_lat,
    }
}

/// The floor: a minimal server on a Unix socket in `dir`, a thread per connection that reads
/// a request head and answers with a fixed 786432-byte body in two plain writes. No HTTP
/// parsing, no runtime, no frame: what moving the bytes costs.
fn floor_server(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("floor.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let head: std::sync::Arc<str> = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {RGB_BYTES}\r\nx-sequence: 0\r\n\
             x-timestamp-ns: 0\r\n\r\n"
        )
        .into();
        let body = std::sync::Arc::new(vec![0x80u8; RGB_BYTES]);
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (head, body) = (head.clone(), body.clone());
            std::thread::spawn(move || {
                while common::read_request_head(&mut conn) {
                    if conn.write_all(head.as_bytes()).is_err() || conn.write_all(&body).is_err() {
                        return;
                    }
                }
            });
        }
    });
    path
}

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
