//! Shared by the benchmark programs: starting the release server under test, reading its
//! CPU time and memory from /proc, argument parsing and percentiles.
//!
//! Benchmarks are plain programs (`harness = false`), never timed tests: they print
//! figures for BENCHMARKS.md and assert nothing about speed.

#![allow(dead_code)] // each bench uses a different part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `picker` binary under test: `PICKER_BIN` if set, else the one cargo built beside
/// this bench (the bench profile inherits `release`, so it is an optimised build).
pub fn picker_bin() -> PathBuf {
    std::env::var_os("PICKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_picker")))
}

/// A running `picker --config ...` with the test pattern, on port 0 and a temp-dir socket.
pub struct Server {
    child: Child,
    pub port: u16,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(max_clients: usize, extra_stream: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("still.sock");
        let config = dir.path().join("picker.toml");
        std::fs::write(
            &config,
            format!(
                "[camera]\nsource = \"test-pattern\"\n[stream]\nbind = \"127.0.0.1\"\nport = {}\n\
                 max-clients = {max_clients}\n{extra_stream}\n[still]\nsocket = \"{}\"\n",
                // picker refuses port 0: take one that is free now.
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .expect("a free port"),
                socket.display()
            ),
        )
        .expect("write config");
        let mut child = Command::new(picker_bin())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", picker_bin().display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep draining stderr for the whole run so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut port_sent = false;
            let mut ready_sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !port_sent {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let digits: String = rest
                            .rsplit_once(':')
                            .map(|(_, p)| p.chars().take_while(char::is_ascii_digit).collect())
                            .unwrap_or_default();
                        let port: u16 = digits.parse().expect("port in the listening line");
                        let _ = tx.send(Some(port));
                        port_sent = true;
                    }
                }
                if !ready_sent && line.contains(" ready") {
                    let _ = tx.send(None);
                    ready_sent = true;
                }
                if std::env::var_os("BENCH_SERVER_LOG").is_some() {
                    eprintln!("server: {line}");
                }
            }
        });
        let mut port = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Some(p)) => port = Some(p),
                Ok(None) if port.is_some() => break,
                Ok(None) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!("server did not become ready within 30 s");
                }
            }
        }
        Server {
            child,
            port: port.expect("port"),
            socket,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second for /proc/PID/stat (`getconf CLK_TCK`; 100 on Linux).
pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of `pid` (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    stat_ticks(&stat).expect("utime and stime in /proc/PID/stat")
}

/// utime + stime in the text of a `/proc/.../stat` file (a process's or one thread's).
fn stat_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces; fields after the closing parenthesis are fixed.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let utime = fields.nth(11)?.parse::<u64>().ok()?;
    let stime = fields.next()?.parse::<u64>().ok()?;
    Some(utime + stime)
}

/// CPU ticks of a process's threads whose name (`comm`) is not in `apart`: what is left when
/// the threads that make frames (picker's `camera`, `encoder`, `encode-N`) are set apart. A
/// thread that ended before the reading is not counted, which is why the fan-out figure is
/// taken over threads that live for the whole run (tokio's workers).
pub fn thread_ticks_except(pid: u32, apart: &[&str]) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut ticks = 0;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        let making = apart
            .iter()
            .any(|a| comm == *a || comm.strip_prefix(a).is_some_and(|n| n.starts_with('-')));
        if making {
            continue;
        }
        // A thread that ended meanwhile counts nothing.
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        ticks += stat_ticks(&stat).unwrap_or(0);
    }
    ticks
}

/// A `Vm*` line of /proc/PID/status, in kB.
pub fn vm_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU use of a process over a stretch of wall time.
pub struct CpuMeter {
    pid: u32,
    ticks: u64,
    at: Instant,
}

impl CpuMeter {
    pub fn start(pid: u32) -> Self {
        CpuMeter {
            pid,
            ticks: cpu_ticks(pid),
            at: Instant::now(),
        }
    }

    /// (CPU seconds used, wall seconds) since `start`.
    pub fn read(&self) -> (f64, f64) {
        let ticks = cpu_ticks(self.pid) - self.ticks;
        (
            ticks as f64 / clk_tck() as f64,
            self.at.elapsed().as_secs_f64(),
        )
    }
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn median_f64(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

/// `--key value` arguments (cargo bench appends `--bench`, which is ignored).
pub struct Args(Vec<String>);

impl Args {
    pub fn parse() -> Args {
        Args(
            std::env::args()
                .skip(1)
                .filter(|a| a != "--bench")
                .collect(),
        )
    }

    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        let i = self.0.iter().position(|a| a == name)?;
        Some(self.0.get(i + 1).map(String::as_str).unwrap_or_else(|| {
            panic!("{name} needs a value");
        }))
    }

    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("{name}: cannot parse {v:?}")),
        }
    }
}

/// One HTTP/1.0 GET over TCP, returning the body (for `/metrics`).
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// A metric's value from the Prometheus text of `/metrics`.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Current time as Unix microseconds.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// CLOCK_BOOTTIME in nanoseconds (the clock of `X-Timestamp-Ns`).
pub fn boottime_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Reads from `r` until the end of a request head (a blank line); false if the peer closed
/// or failed first. For the benchmarks' floor servers, which answer any request alike.
pub fn read_request_head(r: &mut impl std::io::Read) -> bool {
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match r.read(&mut b) {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    true
}

/// Whether `path` exists and is a socket (the server may take a moment to create it).
pub fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A frame from the real test pattern at the default sizes (512x512 video as I420, still as
/// RGB), the same input the service encodes.
pub fn test_frame() -> std::sync::Arc<picker::frames::Frame> {
    use picker::camera::{Camera, CropState, StopFlag};
    use picker::frames::{FrameSink, Stats};
    let config = picker::config::Config::defaults();
    let sink = FrameSink::new(std::sync::Arc::new(Stats::default()), CropState::Disabled);
    let rx = sink.subscribe();
    let stop = StopFlag::new();
    let mut pattern = picker::camera::test_pattern::TestPattern::new(&config);
    std::thread::scope(|s| {
        s.spawn(|| pattern.run(&sink, &stop).expect("test pattern runs"));
        // Frame 2 or later: a typical frame, label included.
        let frame = loop {
            if let Some(f) = rx.borrow().clone().filter(|f| f.sequence >= 2) {
                break f;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        stop.stop();
        frame
    })
}

/// The loopback address stream client `i` connects from: each its own (127.0.1.0 and up), as
/// each viewer of a real service comes from its own host. From one address, picker's
/// per-address cap (`stream.max-clients-per-address`, a quarter of `max-clients` by default;
/// picker keys each loopback address apart) would refuse all but 64 of 200 clients, and the
/// CPU per delivered client-frame would count the refusals. Any 127/8 address is this host's.
pub fn loopback_source(i: usize) -> std::net::SocketAddr {
    let [_, _, hi, lo] = u32::try_from(i).unwrap_or(0).to_be_bytes();
    std::net::SocketAddr::from(([127, 0, 1u8.wrapping_add(hi), lo], 0))
}
