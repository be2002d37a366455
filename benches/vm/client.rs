//! The stream client of `benches/vm-compare.sh`, run inside the test VM next to the server it
//! measures. Standard library only, built with a bare `rustc -O` (the VM image has no Python and
//! no network beyond the host), so it is not a cargo target: cargo finds benches only as
//! `benches/*.rs` and `benches/*/main.rs`.
//!
//!   client --url HOST:PORT/PATH --clients N --seconds S --pid PID [--aux-pid PID]
//!          [--frames-url HOST:PORT/PATH]
//!
//! Opens N HTTP/1.1 connections to the multipart MJPEG stream at the URL (chunked or not),
//! waits until every one has a frame, then measures for S seconds: parts received by all
//! clients, their capture-to-receipt latency, and the CPU time (utime + stime, all threads)
//! of process PID over exactly that window, read from /proc/PID/stat. --clients 0 measures the
//! server alone (idle). --aux-pid adds a second process, e.g. the kernel thread of `vivid`
//! that generates ustreamer's frames. --frames-url (picker's /metrics, ustreamer's /state) gives
//! the rate at which the camera delivered frames over the window. Prints one JSON object.
//!
//! The server's CPU is also split by thread, from `/proc/PID/task/*/stat`: for picker, its own
//! threads (named by picker: `camera-owner`, `camera`, `encoder`, `encode-N`, the tokio
//! workers, the main thread) apart from the rest, which are libcamera's (`CameraManager`,
//! `VirtualCamera`: the virtual camera's software rendering, which a real camera does in
//! hardware). libcamera 0.7 names its threads; a thread that did not would carry the name of
//! the picker thread that started it, so the per-name figures (`threads_cpu_pct`) are printed
//! too. The rest is the process's total minus picker's threads, so it also holds threads that
//! ended within the window.
//!
//! Latency = receipt (after the part's last byte) - capture time, on the clock the server's
//! headers are on:
//! - `X-Timestamp-Ns` (picker): capture time on CLOCK_BOOTTIME;
//! - `X-UStreamer-Grab-Time` (ustreamer, asked for with `?extra_headers=1`): grab time on
//!   CLOCK_MONOTONIC (`-Timestamp` in ustreamer 5.x). ustreamer's own `X-Timestamp` is the wall-clock time at which it *writes*
//!   the part (`get_now_real()` in its `_http_callback_stream_write`), not the capture time, so
//!   it would hide capture, encoding and queueing;
//! - else `X-Timestamp`, Unix seconds, against CLOCK_REALTIME.
//!
//! The age of the part's `X-Timestamp` at receipt is reported too for every server, to show the
//! difference.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

// `unsafe extern`: required by edition 2024 (tests/vm_client.rs), accepted by 2021.
unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    fn sysconf(name: i32) -> i64;
}

const CLOCK_REALTIME: i32 = 0;
const CLOCK_MONOTONIC: i32 = 1;
const CLOCK_BOOTTIME: i32 = 7;
const SC_CLK_TCK: i32 = 2;

fn now_ns(clock: i32) -> i128 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    let rc = unsafe { clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock})");
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Parses "1700000000.123456" into nanoseconds without going through f64's 53 bits.
fn seconds_to_ns(s: &str) -> Option<i128> {
    let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    let mut ns: i128 = int.parse::<i128>().ok()? * 1_000_000_000;
    let digits: String = frac.chars().take(9).collect();
    if !digits.is_empty() {
        ns += digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32);
    }
    Some(ns)
}

/// utime + stime of PID in clock ticks (all its threads, also those that ended).
fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: the fields that follow start after its ')'.
    let rest = &stat[stat
        .rfind(')')
        .ok_or_else(|| io::Error::other("bad stat"))?
        + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    Ok(f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0))
}

/// One thread of a process from its `/proc/PID/task/TID/stat` text: (tid, name, utime +
/// stime in clock ticks).
fn parse_task_stat(stat: &str) -> Option<(u32, String, u64)> {
    let open = stat.find(" (")?;
    // The name may hold spaces and parentheses: it ends at the last ')'.
    let close = stat.rfind(')')?;
    let tid = stat[..open].trim().parse().ok()?;
    let name = stat.get(open + 2..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // f[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((tid, name, ticks))
}

/// The threads of PID now (those that cannot be read, having just ended, are left out).
fn thread_ticks(pid: u32) -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter_map(|s| parse_task_stat(&s))
        .collect()
}

/// Whether a thread of the server is one picker names (see the top of this file). The main
/// thread carries the executable's name; tokio's workers `tokio-rt-worker` (older tokio:
/// `tokio-runtime-w`, its 20-byte name cut to the kernel's 15).
fn is_picker_thread(name: &str) -> bool {
    matches!(name, "picker" | "camera-owner" | "camera" | "encoder")
        || name.starts_with("encode-")
        || name.starts_with("tokio-")
}

/// CPU ticks per thread name between two samples of the same process (a thread that started
/// in between counts from zero, one that ended is missing from `after` and not counted), and
/// their sum over picker's own threads.
fn thread_cpu(
    before: &[(u32, String, u64)],
    after: &[(u32, String, u64)],
) -> (u64, std::collections::BTreeMap<String, u64>) {
    let mut by_name = std::collections::BTreeMap::new();
    let mut own = 0;
    for (tid, name, t1) in after {
        let t0 = before
            .iter()
            .find(|(b, n, _)| b == tid && n == name)
            .map_or(0, |b| b.2);
        let d = t1.saturating_sub(t0);
        *by_name.entry(name.clone()).or_insert(0) += d;
        if is_picker_thread(name) {
            own += d;
        }
    }
    (own, by_name)
}

/// (busy, total) jiffies of all CPUs of the machine, from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The response body: de-chunks `Transfer-Encoding: chunked`, passes anything else through.
struct Body<R> {
    inner: R,
    chunked: bool,
    left: usize,
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.chunked {
            return self.inner.read(buf);
        }
        if self.left == 0 {
            let mut line = String::new();
            // The CRLF ending the previous chunk, then the size line.
            while line.trim().is_empty() {
                line.clear();
                if self.inner.read_line(&mut line)? == 0 {
                    return Ok(0);
                }
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
            if self.left == 0 {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

#[derive(Default)]
struct Stats {
    frames: u64,
    bytes: u64,
    /// Capture-to-receipt, microseconds.
    latency_us: Vec<f64>,
    /// Receipt - X-Timestamp, microseconds.
    xts_age_us: Vec<f64>,
    /// Receipt - X-UStreamer-Send-Time (CLOCK_MONOTONIC), microseconds: a check of the clock
    /// that ustreamer's grab time is on (a few ms at most if it is CLOCK_MONOTONIC).
    send_age_us: Vec<f64>,
    clock: &'static str,
    error: Option<String>,
}

struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    ready: AtomicUsize,
}

fn client(
    host: &str,
    path: &str,
    shared: &Shared,
    stream: TcpStream,
    st: &mut Stats,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    write!(
        w,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: picker-vm-compare\r\n\r\n"
    )?;
    let mut r = BufReader::with_capacity(1 << 16, stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.contains(" 200") {
        return Err(io::Error::other(format!("status {:?}", line.trim())));
    }
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::other("eof in the response head"));
        }
        let l = line.trim();
        if l.is_empty() {
            break;
        }
        if l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = BufReader::with_capacity(
        1 << 16,
        Body {
            inner: r,
            chunked,
            left: 0,
        },
    );
    let mut first = true;
    let mut sink = vec![0u8; 1 << 16];
    while !shared.stop.load(Ordering::Relaxed) {
        // Skip to a part head: boundary lines and blank lines come between parts.
        line.clear();
        if body.read_line(&mut line)? == 0 {
            return Err(io::Error::other("the stream ended"));
        }
        let l = line.trim();
        if l.is_empty() || l.starts_with("--") {
            continue;
        }
        let (mut len, mut ts_ns, mut grab, mut send, mut xts) = (None, None, None, None, None);
        let mut h = l.to_string();
        loop {
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => len = v.parse::<u64>().ok(),
                    "x-timestamp-ns" => ts_ns = v.parse::<i128>().ok(),
                    // "-Timestamp" up to ustreamer 5.x (Debian's 5.4), "-Time" later.
                    "x-ustreamer-grab-time" | "x-ustreamer-grab-timestamp" => {
                        grab = seconds_to_ns(v)
                    }
                    "x-ustreamer-send-time" | "x-ustreamer-send-timestamp" => {
                        send = seconds_to_ns(v)
                    }
                    "x-timestamp" => xts = seconds_to_ns(v),
                    _ => {}
                }
            }
            line.clear();
            if body.read_line(&mut line)? == 0 {
                return Err(io::Error::other("eof in a part head"));
            }
            h = line.trim().to_string();
            if h.is_empty() {
                break;
            }
        }
        let len = len.ok_or_else(|| io::Error::other("a part without Content-Length"))?;
        let mut left = len;
        while left > 0 {
            let n = body.read(&mut sink[..left.min(1 << 16) as usize])?;
            if n == 0 {
                return Err(io::Error::other("eof in a part body"));
            }
            left -= n as u64;
        }
        let (real, mono, boot) = (
            now_ns(CLOCK_REALTIME),
            now_ns(CLOCK_MONOTONIC),
            now_ns(CLOCK_BOOTTIME),
        );
        if first {
            first = false;
            shared.ready.fetch_add(1, Ordering::SeqCst);
        }
        if !shared.measuring.load(Ordering::SeqCst) {
            continue;
        }
        st.frames += 1;
        st.bytes += len;
        let lat = if let Some(t) = ts_ns {
            st.clock = "CLOCK_BOOTTIME (X-Timestamp-Ns, capture)";
            Some(boot - t)
        } else if let Some(t) = grab {
            st.clock = "CLOCK_MONOTONIC (X-UStreamer-Grab-Time, capture)";
            Some(mono - t)
        } else if let Some(t) = xts {
            st.clock = "CLOCK_REALTIME (X-Timestamp)";
            Some(real - t)
        } else {
            None
        };
        if let Some(l) = lat {
            st.latency_us.push(l as f64 / 1000.0);
        }
        if let Some(t) = xts {
            st.xts_age_us.push((real - t) as f64 / 1000.0);
        }
        if let Some(t) = send {
            st.send_age_us.push((mono - t) as f64 / 1000.0);
        }
    }
    Ok(())
}

/// GET http://HOST:PORT/PATH (one request, connection closed), the body.
fn fetch(url: &str) -> io::Result<String> {
    let (host, path) = url.split_once('/').unwrap_or((url, ""));
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /{path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// The number after KEY in TEXT ("picker_frames_captured_total 123", "\"captured_fps\": 30").
/// A Prometheus sample line starting with KEY comes first (its "# HELP" line names it too).
fn number_after(text: &str, key: &str) -> Option<f64> {
    let at = match text.lines().find(|l| l.starts_with(key)) {
        Some(line) => line.as_ptr() as usize - text.as_ptr() as usize,
        None => text.find(key)?,
    };
    let rest = &text[at + key.len()..];
    let rest = rest.trim_start_matches(|c: char| c == '"' || c == ':' || c.is_whitespace());
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

fn main() {
    let (mut url, mut frames_url) = (String::new(), String::new());
    let (mut clients, mut seconds, mut pid, mut aux) = (1usize, 10.0f64, 0u32, 0u32);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--url" => url = v(),
            "--clients" => clients = v().parse().expect("--clients N"),
            "--seconds" => seconds = v().parse().expect("--seconds S"),
            "--pid" => pid = v().parse().expect("--pid PID"),
            "--aux-pid" => aux = v().parse().expect("--aux-pid PID"),
            "--frames-url" => frames_url = v(),
            _ => panic!("unknown argument {a}"),
        }
    }
    assert!(pid > 0, "--pid is required");
    let (host, path) = match url.split_once('/') {
        Some((h, p)) => (h.to_string(), format!("/{p}")),
        None => (url.clone(), "/".to_string()),
    };
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        ready: AtomicUsize::new(0),
    });
    let mut threads = Vec::new();
    let mut sockets = Vec::new();
    let results = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..clients {
        let s = TcpStream::connect(&host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
        sockets.push(s.try_clone().expect("clone socket"));
        let (shared, results, host, path) =
            (shared.clone(), results.clone(), host.clone(), path.clone());
        threads.push(std::thread::spawn(move || {
            let mut st = Stats::default();
            // An error after the window (the sockets are shut down to end the threads) is none.
            if let Err(e) = client(&host, &path, &shared, s, &mut st) {
                if !shared.stop.load(Ordering::SeqCst) {
                    st.error = Some(e.to_string());
                }
            }
            results.lock().unwrap().push(st);
        }));
        std::thread::sleep(Duration::from_millis(2));
    }
    // Every client has a frame (or 30 s passed), then one more second to settle.
    let t = Instant::now();
    while shared.ready.load(Ordering::SeqCst) < clients && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready = shared.ready.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(1));

    let tck = unsafe { sysconf(SC_CLK_TCK) } as f64;
    let self_pid = std::process::id();
    // The camera's rate: picker's counters in /metrics, ustreamer's captured_fps in /state.
    let f0 = if frames_url.is_empty() {
        String::new()
    } else {
        fetch(&frames_url).unwrap_or_default()
    };
    // CPU ticks of the server, its helper process (if any), this client, and the machine.
    let ticks = || {
        (
            cpu_ticks(pid).expect("server's /proc/PID/stat"),
            if aux > 0 {
                cpu_ticks(aux).unwrap_or(0)
            } else {
                0
            },
            cpu_ticks(self_pid).unwrap_or(0),
            machine_ticks(),
        )
    };
    let threads0 = thread_ticks(pid);
    let (c0, a0, s0, m0) = ticks();
    let t0 = Instant::now();
    shared.measuring.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    shared.measuring.store(false, Ordering::SeqCst);
    let window = t0.elapsed().as_secs_f64();
    let (c1, a1, s1, m1) = ticks();
    let threads1 = thread_ticks(pid);
    let f1 = if frames_url.is_empty() {
        String::new()
    } else {
        fetch(&frames_url).unwrap_or_default()
    };
    let rate = |key: &str| match (number_after(&f0, key), number_after(&f1, key)) {
        (Some(a), Some(b)) if key.ends_with("_total") => (b - a) / window,
        (Some(a), Some(b)) => (a + b) / 2.0,
        _ => f64::NAN,
    };
    let (camera_fps, encoded_fps) = if f0.contains("picker_frames_captured_total") {
        (
            rate("picker_frames_captured_total"),
            rate("picker_frames_encoded_total"),
        )
    } else {
        (rate("\"captured_fps\""), f64::NAN)
    };
    shared.stop.store(true, Ordering::SeqCst);
    for s in &sockets {
        let _ = s.shutdown(Shutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }

    let results = results.lock().unwrap();
    let cpu_s = (c1 - c0) as f64 / tck;
    let frames: u64 = results.iter().map(|s| s.frames).sum();
    let bytes: u64 = results.iter().map(|s| s.bytes).sum();
    let min_frames = results.iter().map(|s| s.frames).min().unwrap_or(0);
    let errors: Vec<String> = results.iter().filter_map(|s| s.error.clone()).collect();
    let mut lat: Vec<f64> = results
        .iter()
        .flat_map(|s| s.latency_us.iter().copied())
        .collect();
    let mut age: Vec<f64> = results
        .iter()
        .flat_map(|s| s.xts_age_us.iter().copied())
        .collect();
    let mut send_age: Vec<f64> = results
        .iter()
        .flat_map(|s| s.send_age_us.iter().copied())
        .collect();
    let clock = results
        .iter()
        .map(|s| s.clock)
        .find(|c| !c.is_empty())
        .unwrap_or("");
    let negative = lat.iter().filter(|&&l| l < 0.0).count();
    let busy = (m1.0 - m0.0) as f64 / (m1.1 - m0.1).max(1) as f64 * 100.0;
    let per_frame = if frames > 0 {
        cpu_s * 1e6 / frames as f64
    } else {
        f64::NAN
    };
    // picker's own threads apart (only when the server is picker: its main thread's name).
    let (own, by_name) = thread_cpu(&threads0, &threads1);
    let is_picker = threads1
        .iter()
        .any(|(tid, name, _)| *tid == pid && name == "picker");
    let own_s = if is_picker {
        own as f64 / tck
    } else {
        f64::NAN
    };
    let threads_json = by_name
        .iter()
        .map(|(n, t)| format!("{n:?}: {}", num(*t as f64 / tck / window * 100.0)))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "{{\"clients\": {clients}, \"ready\": {ready}, \"window_s\": {}, \"cpu_s\": {}, \
         \"cpu_pct\": {}, \"own_cpu_pct\": {}, \"own_cpu_us_per_client_frame\": {}, \
         \"threads_cpu_pct\": {{{threads_json}}}, \"aux_cpu_pct\": {}, \"client_cpu_pct\": {}, \"vm_busy_pct\": {}, \
         \"frames\": {frames}, \"min_client_frames\": {min_frames}, \"fps_per_client\": {}, \
         \"cpu_us_per_client_frame\": {}, \"jpeg_kib\": {}, \"latency_ms_p50\": {}, \
         \"latency_ms_p99\": {}, \"latency_negative\": {negative}, \"latency_clock\": \"{clock}\", \
         \"xts_age_ms_p50\": {}, \"send_age_ms_p50\": {}, \"camera_fps\": {}, \"encoded_fps\": {}, \"errors\": {:?}}}",
        num(window),
        num(cpu_s),
        num(cpu_s / window * 100.0),
        num(own_s / window * 100.0),
        num(if frames > 0 {
            own_s * 1e6 / frames as f64
        } else {
            f64::NAN
        }),
        num((a1 - a0) as f64 / tck / window * 100.0),
        num((s1 - s0) as f64 / tck / window * 100.0),
        num(busy),
        num(if clients > 0 {
            frames as f64 / clients as f64 / window
        } else {
            0.0
        }),
        num(per_frame),
        num(if frames > 0 {
            bytes as f64 / frames as f64 / 1024.0
        } else {
            f64::NAN
        }),
        num(percentile(&mut lat, 0.5) / 1000.0),
        num(percentile(&mut lat, 0.99) / 1000.0),
        num(percentile(&mut age, 0.5) / 1000.0),
        num(percentile(&mut send_age, 0.5) / 1000.0),
        num(camera_fps),
        num(encoded_fps),
        errors,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/PID/task/*/stat` of picker (debug build, test pattern) recorded twice, before
    /// and after a two-second stream: main thread, two tokio workers, the encode pool, the
    /// camera thread (the test pattern's drawing) and the stream encoder; their `starttime`
    /// and later fields cut.
    const BEFORE: &str = "\
3084 (picker) S 3080 3080 30523 0 -1 4194304 824 0 0 0 3 0 0 0 20 0 7 0 303695
3086 (tokio-rt-worker) S 3080 3080 30523 0 -1 4194368 32 0 0 0 2 0 0 0 20 0 7 0 303697
3087 (tokio-rt-worker) S 3080 3080 30523 0 -1 4194368 19 0 0 0 0 1 0 0 20 0 7 0 303697
3089 (encode-0) S 3080 3080 30523 0 -1 4194368 1 0 0 0 0 0 0 0 20 0 7 0 303698
3090 (encode-1) S 3080 3080 30523 0 -1 4194368 4 0 0 0 0 0 0 0 20 0 7 0 303698
3093 (camera) R 3080 3080 30523 0 -1 4194368 583 0 0 0 14 0 0 0 20 0 7 0 303703
3094 (encoder) S 3080 3080 30523 0 -1 4194368 211 0 0 0 4 0 0 0 20 0 7 0 303703";
    const AFTER: &str = "\
3084 (picker) S 3080 3080 30523 0 -1 4194304 824 0 0 0 3 0 0 0 20 0 7 0 303695
3086 (tokio-rt-worker) S 3080 3080 30523 0 -1 4194368 32 0 0 0 3 0 0 0 20 0 7 0 303697
3087 (tokio-rt-worker) S 3080 3080 30523 0 -1 4194368 19 0 0 0 1 1 0 0 20 0 7 0 303697
3089 (encode-0) S 3080 3080 30523 0 -1 4194368 1 0 0 0 0 0 0 0 20 0 7 0 303698
3090 (encode-1) S 3080 3080 30523 0 -1 4194368 4 0 0 0 0 0 0 0 20 0 7 0 303698
3093 (camera) S 3080 3080 30523 0 -1 4194368 583 0 0 0 19 0 0 0 20 0 7 0 303703
3094 (encoder) S 3080 3080 30523 0 -1 4194368 215 0 0 0 7 0 0 0 20 0 7 0 303703";

    /// libcamera's threads as its 0.7 names them (`Thread("CameraManager")`,
    /// `Thread("VirtualCamera")` in its source), in the same format; not recorded here (the
    /// virtual camera runs in the VM only).
    const LIBCAMERA_BEFORE: &str = "\
3101 (CameraManager) S 3080 3080 30523 0 -1 4194368 10 0 0 0 5 1 0 0 20 0 7 0 303700
3102 (VirtualCamera) S 3080 3080 30523 0 -1 4194368 10 0 0 0 40 2 0 0 20 0 7 0 303700";
    const LIBCAMERA_AFTER: &str = "\
3101 (CameraManager) S 3080 3080 30523 0 -1 4194368 10 0 0 0 6 1 0 0 20 0 7 0 303700
3102 (VirtualCamera) S 3080 3080 30523 0 -1 4194368 10 0 0 0 90 4 0 0 20 0 7 0 303700
3103 (camera-owner) S 3080 3080 30523 0 -1 4194368 10 0 0 0 2 0 0 0 20 0 7 0 303700";

    fn sample(text: &str) -> Vec<(u32, String, u64)> {
        text.lines().map(|l| parse_task_stat(l).unwrap()).collect()
    }

    #[test]
    fn parses_a_task_stat_line() {
        assert_eq!(
            parse_task_stat(BEFORE.lines().nth(2).unwrap()),
            Some((3087, "tokio-rt-worker".into(), 1))
        );
        // A name with spaces and parentheses ends at the last ')'.
        let odd = "7 (a) b (c)) S 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1";
        assert_eq!(parse_task_stat(odd), Some((7, "a) b (c)".into(), 11)));
        assert_eq!(parse_task_stat("7 (short) S 1"), None);
        assert_eq!(parse_task_stat(""), None);
    }

    #[test]
    fn splits_picker_threads_from_the_rest_by_name() {
        // The recorded test-pattern run: every thread is picker's.
        let (own, by_name) = thread_cpu(&sample(BEFORE), &sample(AFTER));
        assert_eq!(own, 10);
        assert_eq!(by_name["tokio-rt-worker"], 2);
        assert_eq!(by_name["camera"], 5);
        assert_eq!(by_name["encoder"], 3);
        assert_eq!(by_name["picker"], 0);
        assert_eq!(by_name.values().sum::<u64>(), own);
        // With libcamera's threads beside them (and a camera-owner that started in between).
        let before = [sample(BEFORE), sample(LIBCAMERA_BEFORE)].concat();
        let after = [sample(AFTER), sample(LIBCAMERA_AFTER)].concat();
        let (own, by_name) = thread_cpu(&before, &after);
        assert_eq!(own, 10 + 2);
        assert_eq!(by_name["CameraManager"], 1);
        assert_eq!(by_name["VirtualCamera"], 52);
        assert_eq!(by_name.values().sum::<u64>() - own, 53);
        for n in [
            "CameraManager",
            "VirtualCamera",
            "libcamera-main",
            "ustreamer",
        ] {
            assert!(!is_picker_thread(n), "{n}");
        }
        for n in ["tokio-runtime-w", "encode-1", "camera-owner"] {
            assert!(is_picker_thread(n), "{n}");
        }
    }
}
