//! Hostile input against the real binary (issue 18): request lines warp cannot route, idle
//! connections on the still socket, a still while the camera is stalled, a `PUT /controls`
//! loop, and SIGHUP right after start. Every test asserts behaviour (answers, counts, bytes
//! of log, exit status); the one time bound (a still under an idle flood) is generous and
//! explained where it is.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use support::*;

/// The request lines of issue 18: authority-form and asterisk-form targets.
const LINES: [&str; 4] = ["GET x:80", "CONNECT x:1", "HEAD x:1", "OPTIONS *"];

/// Sends `line` as a complete request and reads the answer until the server closes.
fn ask<S: Read + Write>(s: S, line: &str) -> Response {
    raw_request(
        s,
        format!("{line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn request_targets_warp_cannot_route_get_a_400_on_both_sockets_and_nothing_panics() {
    // RUST_BACKTRACE made each panic cost kilobytes of log: it must not matter now.
    let p = Picker::start_with_env(&[], &[("RUST_BACKTRACE", "1")]);
    for line in LINES {
        for (socket, r) in [
            (
                "stream port",
                ask(TcpStream::connect(p.addr()).unwrap(), line),
            ),
            (
                "still socket",
                ask(UnixStream::connect(&p.socket).unwrap(), line),
            ),
        ] {
            assert_eq!(r.status, 400, "{line} on the {socket}: {r:?}");
            if !line.starts_with("HEAD") {
                assert!(
                    r.text().contains("a path such as /stream.mjpg"),
                    "{line} on the {socket}: {}",
                    r.text()
                );
            }
        }
    }
    // A client repeating the line on one keep-alive connection: every one answered.
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let burst = "GET x:80 HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
    s.write_all(burst.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let count = |got: &[u8]| {
        String::from_utf8_lossy(got)
            .matches("HTTP/1.1 400 Bad Request")
            .count()
    };
    while count(&got) < 200 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(count(&got), 200);
    // The routes still work, and the log has no panic.
    assert_eq!(p.tcp_get("/state").status, 200);
    assert_eq!(p.unix_get("/still.rgb").status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = p.log_text();
    assert!(!log.contains("panic"), "{log}");
}

/// Opens still-socket connections that send nothing, replacing each one the server closes,
/// until `stop`; returns how many connects it made.
fn idle_flood(
    socket: std::path::PathBuf,
    n: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut conns: Vec<Option<UnixStream>> = (0..n).map(|_| None).collect();
        let mut connects = 0;
        let mut probe = [0u8; 1];
        while !stop.load(Ordering::Relaxed) {
            for slot in conns.iter_mut() {
                // The server sends an idle connection nothing: any read that does not block
                // is its close.
                let alive = slot.as_mut().is_some_and(|s| {
                    matches!(s.read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                if !alive {
                    *slot = UnixStream::connect(&socket)
                        .ok()
                        .inspect(|s| s.set_nonblocking(true).unwrap());
                    connects += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        connects
    })
}

#[test]
fn idle_still_connections_do_not_keep_a_still_waiting() {
    let p = Picker::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    // 400 idle connections, kept open (more than six times the socket's 64 slots).
    let flood = idle_flood(p.socket.clone(), 400, stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    let mut slowest = Duration::ZERO;
    for _ in 0..12 {
        let t = Instant::now();
        let s = UnixStream::connect(&p.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let r = http_get(s, "/still.rgb");
        assert_eq!(r.status, 200, "{}", r.text());
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let connects = flood.join().unwrap();
    // The design answers within milliseconds (idle connections give way at once); 3 s is a
    // bound for a loaded 2-core CI machine that still fails the old behaviour, where idle
    // connections held all 64 slots until their 10 s head timeout and stills waited behind
    // hundreds of them for half a minute or more.
    assert!(
        slowest < Duration::from_secs(3),
        "slowest still {slowest:?} under {connects} idle connects"
    );
    assert!(
        connects > 400,
        "the flood was replaced as it was closed: {connects}"
    );
}

#[test]
fn a_still_connection_that_sends_no_request_is_closed_within_seconds() {
    let p = Picker::start(&[]);
    let mut idle = UnixStream::connect(&p.socket).unwrap();
    let mut partial = UnixStream::connect(&p.socket).unwrap();
    partial.write_all(b"GET /still.rgb HTT").unwrap();
    let start = Instant::now();
    for s in [&mut idle, &mut partial] {
        // The head timeout is 3 s; 8 s leaves a loaded machine room and still fails the old
        // 10 s timeout.
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut buf = Vec::new();
        let r = s.read_to_end(&mut buf);
        assert!(r.is_ok(), "not closed within 8 s: {r:?}");
    }
    assert!(start.elapsed() < Duration::from_secs(8));
}

#[test]
fn a_still_while_the_camera_is_stalled_is_503_with_retry_after() {
    // The test pattern stalls for 8 s after frame 20.
    let p = Picker::start_with_env(&[], &[("PICKER_TEST_STALL", "20:8000")]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state: serde_json::Value = serde_json::from_slice(&p.tcp_get("/state").body).unwrap();
        if state["online"] == false && state["frames"]["sequence"].as_u64() >= Some(20) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "camera never went offline: {state}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for path in ["/still.rgb", "/still.png", "/still.jpg"] {
        let r = p.unix_get(path);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"), "{path}");
        assert!(r.text().contains("camera offline"), "{}", r.text());
    }
    // The same notion of offline as /snapshot.jpg.
    assert_eq!(p.tcp_get("/snapshot.jpg").status, 503);
    assert_eq!(p.unix_get("/still.rgb?fresh=1").status, 504);
}

#[test]
fn three_hundred_put_controls_grow_the_log_by_under_50_kb() {
    let p = Picker::start(&[]);
    let before = p.log_text().len();
    for i in 0..300 {
        // A new value each time, and keys this camera cannot take (one warning per key per
        // request before).
        let body = format!(
            r#"{{"lens-position": {}, "brightness": 0.{}, "exposure-time": {}}}"#,
            i % 10,
            i % 9,
            10_000 + i
        );
        let r = put_controls_raw(&p.socket, &body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = p.log_text();
    let grown = log.len() - before;
    assert!(grown < 50_000, "{grown} bytes of log:\n{}", &log[before..]);
    // The change is still said, once, with what the camera cannot take.
    let line = p
        .find_log("controls changed over the socket")
        .expect("the first change is logged");
    assert!(line.contains("unsupported"), "{line}");
}

/// The window the stress test below can only hit by chance (it did, once in CI: exit 129
/// after 2851 SIGHUPs), shown every time: the system calls picker makes, in order, as
/// `strace` sees them. SIGHUP must be blocked before Rust's runtime installs its first
/// handler (SIGPIPE ignored, then SIGSEGV for stack overflows), that is before `main` and
/// before the moment the stress test starts sending.
#[test]
fn sighup_is_blocked_before_the_runtime_sets_up_any_signal() {
    let dir = temp_dir();
    let config = dir.path().join("picker.toml");
    std::fs::write(&config, config_text(dir.path(), &[])).unwrap();
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=rt_sigprocmask,rt_sigaction",
            "-e",
            "signal=none",
        ])
        .arg(BIN)
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .stdin(Stdio::null())
        .output()
        .expect("strace (packaging/host-deps.sh --test installs it)");
    let calls = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{calls}");
    let first = |what: &str| calls.lines().position(|l| l.starts_with(what));
    let blocked = first("rt_sigprocmask(SIG_BLOCK, [HUP]")
        .unwrap_or_else(|| panic!("SIGHUP never blocked:\n{calls}"));
    let runtime =
        first("rt_sigaction(SIG").unwrap_or_else(|| panic!("no handler set up at all:\n{calls}"));
    assert!(
        blocked < runtime,
        "SIGHUP blocked only after the runtime's first handler:\n{calls}"
    );
}

/// Whether Rust's runtime has set itself up and is about to call `main`: it ignores SIGPIPE,
/// then installs its SIGSEGV handler (stack overflow reports), then calls `main` (seen in
/// SigIgn and SigCgt of /proc/PID/status).
fn entered_main(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0)
    };
    let bit = |sig: i32| 1u64 << (sig - 1);
    mask("SigIgn:") & bit(libc::SIGPIPE) != 0 && mask("SigCgt:") & bit(libc::SIGSEGV) != 0
}

#[test]
fn sighup_right_after_start_does_not_kill_and_is_not_lost() {
    for round in 0..4 {
        let dir = temp_dir();
        let config = dir.path().join("picker.toml");
        std::fs::write(&config, config_text(dir.path(), &[])).unwrap();
        let log_path = dir.path().join("log");
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "info")
            .spawn()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        // Before `main` nothing can catch a signal; from its first line on, none may kill.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !entered_main(child.id()) {
            assert!(
                Instant::now() < deadline,
                "round {round}: never reached main"
            );
            std::hint::spin_loop();
        }
        // SIGHUP all through start-up: config, runtime, camera, sockets, ready.
        let mut sent = 0;
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        while !support::is_ready_line(&log()) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "round {round}: picker died ({status}) after {sent} SIGHUPs:\n{}",
                    log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no ready:\n{}",
                log()
            );
            kill(pid, Signal::SIGHUP).unwrap();
            sent += 1;
            std::thread::sleep(Duration::from_micros(300 * round as u64));
        }
        kill(pid, Signal::SIGHUP).unwrap();
        // The SIGHUPs became reloads (at least the last one), and picker lives on.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !log().contains("config reloaded") {
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: died:\n{}",
                log()
            );
            assert!(
                Instant::now() < deadline,
                "round {round}: no reload:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}:\n{}",
            log()
        );
        kill(pid, Signal::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "round {round}: {status}\n{}", log());
    }
}
