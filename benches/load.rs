//! Load generator for `/stream.mjpg`: N concurrent clients in one process (a single-threaded
//! tokio runtime, so it takes at most one of the machine's cores), each parsing the chunked
//! multipart stream and counting frames, bytes and per-frame latency (`X-Timestamp` to
//! receipt) for T seconds, while the server's CPU time (utime + stime) and peak RSS (VmHWM)
//! are read from /proc. Prints one table row per N.
//!
//! `--floor` runs the same clients against a minimal blocking server (this program with
//! `--floor-server`) that writes the same JPEG bytes, framed the same way, to every socket in
//! a plain loop: the physical cost of fan-out that the service is compared against.
//! `--idle T` measures the service's CPU with no client at all.
//!
//! `--paired` runs the floor right after each run of the service, under the same machine load,
//! and prints the ratio of their CPU per client-frame pair by pair.
//!
//! cargo bench --bench load -- --clients 1,50,100,200 --seconds 20 --repeat 3 [--floor|--paired]
//! cargo bench --bench load -- --idle 30 --repeat 3

#[path = "common/mod.rs"]
mod common;

use std::cell::Cell;
use std::io::{BufRead, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{Args, CpuMeter, median_f64, percentile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FPS: u32 = 30;
/// picker's threads that make frames (test pattern or camera, JPEG encoding): set apart for
/// the fan-out figure, which the floor (frames made once, written in a loop) stands for.
const FRAME_MAKERS: &[&str] = &["camera", "encoder", "encode"];
const BOUNDARY: &[u8] = b"picker-frame";

fn main() {
    let args = Args::parse();
    if args.flag("--floor-server") {
        return floor_server(args.get("--fps", FPS), args.value("--jpeg-bytes"));
    }
    let repeat: usize = args.get("--repeat", 3);
    if let Some(secs) = args.value("--idle") {
        let secs: f64 = secs.parse().expect("--idle SECONDS");
        return idle(secs, repeat);
    }
    let floor = args.flag("--floor");
    let paired = args.flag("--paired");
    let seconds: f64 = args.get("--seconds", 20.0);
    let clients: Vec<usize> = args
        .value("--clients")
        .unwrap_or("1,50,100,200")
        .split(',')
        .map(|n| n.trim().parse().expect("--clients N,N,..."))
        .collect();
    let what = if paired {
        "picker (release build), each run followed by the raw write floor"
    } else if floor {
        "raw write floor (minimal blocking fan-out loop)"
    } else {
        "picker (release build)"
    };
    println!(
        "# /stream.mjpg load: {what}, {seconds} s per run, {repeat} run(s) per row, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    header();
    let mut summary = Vec::new();
    let mut ratios = Vec::new();
    for &n in &clients {
        let (mut rows, mut floors, mut pair_ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeat {
            let against = if floor && !paired {
                Against::Floor { jpeg_bytes: None }
            } else {
                Against::Picker
            };
            let row = run_once(n, seconds, against);
            row.print(if paired { "picker" } else { "run" });
            if paired {
                // Right after, under the same machine load: the ratio of the two is what
                // the 2x target is about, and it drifts far less than either figure alone.
                // The same JPEG size as the service's frames had (their labels make them
                // vary), so both move the same bytes.
                let bytes = (row.jpeg_kb * 1024.0).round() as usize;
                let f = run_once(
                    n,
                    seconds,
                    Against::Floor {
                        jpeg_bytes: Some(bytes),
                    },
                );
                f.print("floor");
                pair_ratios.push((
                    row.cpu_us_per_frame / f.cpu_us_per_frame,
                    row.fanout_us_per_frame / f.fanout_us_per_frame,
                ));
                floors.push(f);
            }
            rows.push(row);
        }
        if paired {
            summary.push(("picker median", Row::median(&rows)));
            summary.push(("floor median", Row::median(&floors)));
            ratios.push((n, pair_ratios));
        } else {
            summary.push(("median", Row::median(&rows)));
        }
    }
    println!();
    println!("# medians over {repeat} run(s)");
    header();
    for (label, row) in &summary {
        row.print(label);
    }
    if paired {
        println!();
        println!("# CPU per client-frame, picker / floor, run by run (each pair run back to back)");
        println!("# (fan-out: picker's threads that hand frames out, without camera and encoder)");
        println!("| clients | what | ratio median | ratio min | ratio max | ratios |");
        println!("|---|---|---|---|---|---|");
        for (n, pairs) in ratios {
            let (all, fanout): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
            for (what, mut r) in [("all threads", all), ("fan-out", fanout)] {
                r.sort_by(|a, b| a.total_cmp(b));
                let listed: Vec<String> = r.iter().map(|x| format!("{x:.2}")).collect();
                println!(
                    "| {n} | {what} | {:.2} | {:.2} | {:.2} | {} |",
                    median_f64(&r),
                    r[0],
                    r[r.len() - 1],
                    listed.join(" ")
                );
            }
        }
    }
}

fn header() {
    println!(
        "| | clients | fps/client min | fps/client median | delivered min % | delivered all % | \
         server CPU % | CPU us per client-frame | fan-out us per client-frame | RSS peak MB | latency p50 ms | latency p99 ms | \
         camera fps | encoder skipped | loadgen CPU % | JPEG KiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

#[derive(Clone, Debug, Default)]
struct Row {
    clients: usize,
    fps_min: f64,
    fps_median: f64,
    delivered_min: f64,
    delivered_all: f64,
    cpu_pct: f64,
    cpu_us_per_frame: f64,
    /// The same for the threads that hand frames to clients only (picker's tokio workers:
    /// not `camera`, `encoder`, `encode-N`), the part the floor stands for.
    fanout_us_per_frame: f64,
    rss_mb: f64,
    p50_ms: f64,
    p99_ms: f64,
    camera_fps: f64,
    skipped: f64,
    loadgen_pct: f64,
    jpeg_kb: f64,
}

impl Row {
    fn print(&self, label: &str) {
        println!(
            "| {label} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {:.0} | {:.0} | {:.1} |",
            self.clients,
            self.fps_min,
            self.fps_median,
            self.delivered_min,
            self.delivered_all,
            self.cpu_pct,
            self.cpu_us_per_frame,
            self.fanout_us_per_frame,
            self.rss_mb,
            self.p50_ms,
            self.p99_ms,
            self.camera_fps,
            self.skipped,
            self.loadgen_pct,
            self.jpeg_kb,
        );
    }

    /// Field-wise median of several runs.
    fn median(rows: &[Row]) -> Row {
        let m = |f: fn(&Row) -> f64| median_f64(&rows.iter().map(f).collect::<Vec<_>>());
        Row {
            clients: rows[0].clients,
            fps_min: m(|r| r.fps_min),
            fps_median: m(|r| r.fps_median),
            delivered_min: m(|r| r.delivered_min),
            delivered_all: m(|r| r.delivered_all),
            cpu_pct: m(|r| r.cpu_pct),
            cpu_us_per_frame: m(|r| r.cpu_us_per_frame),
            fanout_us_per_frame: m(|r| r.fanout_us_per_frame),
            rss_mb: m(|r| r.rss_mb),
            p50_ms: m(|r| r.p50_ms),
            p99_ms: m(|r| r.p99_ms),
            camera_fps: m(|r| r.camera_fps),
            skipped: m(|r| r.skipped),
            loadgen_pct: m(|r| r.loadgen_pct),
            jpeg_kb: m(|r| r.jpeg_kb),
        }
    }
}

/// The server being loaded: picker itself, or the floor loop.
enum Target {
    Picker(common::Server),
    Floor(std::process::Child, u16),
}

impl Target {
    fn port(&self) -> u16 {
        match self {
            Target::Picker(s) => s.port,
            Target::Floor(_, p) => *p,
        }
    }
    fn pid(&self) -> u32 {
        match self {
            Target::Picker(s) => s.pid(),
            Target::Floor(c, _) => c.id(),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Target::Floor(child, _) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_floor(jpeg_bytes: Option<usize>) -> Target {
    let mut args = vec![
        "--floor-server".to_string(),
        "--fps".into(),
        FPS.to_string(),
    ];
    if let Some(b) = jpeg_bytes {
        args.extend(["--jpeg-bytes".into(), b.to_string()]);
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start floor server");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .expect("floor server prints its port");
    Target::Floor(child, port)
}

/// What one client saw.
#[derive(Default)]
struct ClientStats {
    /// Frames whose X-Timestamp lies in the measuring window.
    frames: u64,
    bytes: u64,
    latencies_us: Vec<u32>,
    /// X-Timestamp of each of those frames.
    stamps: Vec<u64>,
    /// When each of those arrived (Unix us).
    received: Vec<u64>,
    error: Option<String>,
}

/// The measuring window in Unix microseconds of capture time (`X-Timestamp`).
struct Window {
    start: Cell<u64>,
    end: Cell<u64>,
}

/// What a run loads.
#[derive(Clone, Copy)]
enum Against {
    Picker,
    /// The floor server, its JPEG padded to `jpeg_bytes` if given.
    Floor {
        jpeg_bytes: Option<usize>,
    },
}

fn run_once(n: usize, seconds: f64, against: Against) -> Row {
    let target = match against {
        Against::Floor { jpeg_bytes } => start_floor(jpeg_bytes),
        Against::Picker => Target::Picker(common::Server::start(n.max(256), "")),
    };
    let port = target.port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let window = Rc::new(Window {
            start: Cell::new(u64::MAX),
            end: Cell::new(u64::MAX),
        });
        let started = Rc::new(Cell::new(0usize));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for i in 0..n {
            tasks.push(tokio::task::spawn_local(client(
                port,
                common::loopback_source(i),
                window.clone(),
                started.clone(),
                stop_rx.clone(),
            )));
            // Don't hit the accept queue with all of them at once.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while started.get() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if started.get() < n {
            eprintln!("warning: only {}/{n} clients got frames", started.get());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;

        let pid = target.pid();
        let counters = |t: &Target| {
            // Blocking HTTP call: keep it off the clients' thread.
            let port = t.port();
            let is_picker = matches!(t, Target::Picker(_));
            tokio::task::spawn_blocking(move || {
                is_picker.then(|| {
                    let m = common::http_get(port, "/metrics");
                    (
                        common::metric(&m, "picker_frames_captured_total"),
                        common::metric(&m, "picker_frames_dropped_total"),
                    )
                })
            })
        };
        let c0 = counters(&target).await.unwrap();
        let server_cpu = CpuMeter::start(pid);
        let own_cpu = CpuMeter::start(std::process::id());
        let fanout_ticks = common::thread_ticks_except(pid, FRAME_MAKERS);
        window.start.set(common::unix_us());
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        window.end.set(common::unix_us());
        let (cpu_s, wall_s) = server_cpu.read();
        let fanout_s = (common::thread_ticks_except(pid, FRAME_MAKERS) - fanout_ticks) as f64
            / common::clk_tck() as f64;
        let (own_s, _) = own_cpu.read();
        let rss_kb = common::vm_kb(pid, "VmHWM");
        let c1 = counters(&target).await.unwrap();
        // Frames captured before the window closed may still be on their way.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let _ = stop_tx.send(true);
        let mut stats = Vec::new();
        for t in tasks {
            stats.push(t.await.unwrap());
        }
        drop(target);

        for s in stats.iter().filter_map(|s| s.error.as_ref()).take(3) {
            eprintln!("client error: {s}");
        }
        if std::env::var_os("LOAD_DIAG").is_some() {
            diagnose(&stats);
        }
        let window_s = (window.end.get() - window.start.get()) as f64 / 1e6;
        let (captured, skipped) = match (c0, c1) {
            (Some(a), Some(b)) => (b.0 - a.0, (b.1 - a.1) as f64),
            // The floor writes every frame it makes to every client: the frames it made in
            // the window are those any client saw.
            _ => {
                let mut all: Vec<u64> = stats
                    .iter()
                    .flat_map(|s| s.stamps.iter().copied())
                    .collect();
                all.sort_unstable();
                all.dedup();
                (all.len() as u64, 0.0)
            }
        };
        let mut fps: Vec<f64> = stats.iter().map(|s| s.frames as f64 / window_s).collect();
        fps.sort_by(|a, b| a.total_cmp(b));
        let delivered: u64 = stats.iter().map(|s| s.frames).sum();
        let min_frames = stats.iter().map(|s| s.frames).min().unwrap_or(0);
        let mut lat: Vec<u32> = stats
            .iter()
            .flat_map(|s| s.latencies_us.iter().copied())
            .collect();
        lat.sort_unstable();
        let pct = |frames: f64| 100.0 * frames / captured.max(1) as f64;
        let bytes: u64 = stats.iter().map(|s| s.bytes).sum();
        Row {
            clients: n,
            fps_min: fps.first().copied().unwrap_or(0.0),
            fps_median: median_f64(&fps),
            delivered_min: pct(min_frames as f64),
            delivered_all: pct(delivered as f64 / n.max(1) as f64),
            cpu_pct: 100.0 * cpu_s / wall_s,
            cpu_us_per_frame: cpu_s * 1e6 / delivered.max(1) as f64,
            fanout_us_per_frame: fanout_s * 1e6 / delivered.max(1) as f64,
            rss_mb: rss_kb as f64 / 1024.0,
            p50_ms: percentile(&lat, 50.0).unwrap_or(0) as f64 / 1000.0,
            p99_ms: percentile(&lat, 99.0).unwrap_or(0) as f64 / 1000.0,
            camera_fps: captured as f64 / window_s,
            skipped,
            loadgen_pct: 100.0 * own_s / wall_s,
            jpeg_kb: bytes as f64 / delivered.max(1) as f64 / 1024.0,
        }
    })
}

/// One `/stream.mjpg` client from `from`. Counts frames whose capture time falls in the window.
async fn client(
    port: u16,
    from: std::net::SocketAddr,
    window: Rc<Window>,
    started: Rc<Cell<usize>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> ClientStats {
    let mut stats = ClientStats::default();
    let result: Result<(), String> = async {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        socket.bind(from).map_err(|e| format!("bind {from}: {e}"))?;
        let mut s = socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(|e| format!("connect from {from}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: bench\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut parser = Parser::default();
        let mut seen = 0u64;
        loop {
            let n = tokio::select! {
                r = s.read(&mut buf) => r.map_err(|e| format!("read: {e}"))?,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            if n == 0 {
                return Err("server closed the stream".into());
            }
            let now = common::unix_us();
            let (start, end) = (window.start.get(), window.end.get());
            parser.feed(&buf[..n], &mut |ts, len| {
                seen += 1;
                if seen == 2 {
                    started.set(started.get() + 1);
                }
                if ts >= start && ts <= end {
                    stats.frames += 1;
                    stats.bytes += len as u64;
                    stats.stamps.push(ts);
                    stats.received.push(now);
                    stats
                        .latencies_us
                        .push(now.saturating_sub(ts).min(u32::MAX as u64) as u32);
                }
            })?;
        }
    }
    .await;
    stats.error = result.err();
    stats
}

/// Incremental parser of an HTTP/1.1 response carrying `multipart/x-mixed-replace`, chunked
/// or not. Skips JPEG bytes by `Content-Length` instead of scanning them.
#[derive(Default)]
struct Parser {
    head_done: bool,
    chunked: bool,
    text: Vec<u8>,
    chunk: Chunk,
    part: Part,
}

#[derive(Default)]
enum Chunk {
    #[default]
    Size,
    Data(usize),
    Crlf(usize),
}

#[derive(Default)]
enum Part {
    /// The opening `--boundary\r\n`.
    #[default]
    Opening,
    Head,
    Body {
        left: usize,
        ts: u64,
        len: usize,
    },
    /// `\r\n--boundary\r\n` after the JPEG.
    Closing {
        ts: u64,
        len: usize,
    },
}

impl Parser {
    fn feed(
        &mut self,
        mut data: &[u8],
        on_frame: &mut dyn FnMut(u64, usize),
    ) -> Result<(), String> {
        if !self.head_done {
            let before = self.text.len();
            self.text.extend_from_slice(data);
            let Some(i) = find(&self.text, b"\r\n\r\n") else {
                return Ok(());
            };
            let head = String::from_utf8_lossy(&self.text[..i]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(format!(
                    "bad response: {}",
                    head.lines().next().unwrap_or("")
                ));
            }
            self.chunked = head.contains("transfer-encoding: chunked");
            self.head_done = true;
            data = &data[i + 4 - before..];
            self.text.clear();
        }
        if !self.chunked {
            return self.part(data, on_frame);
        }
        while !data.is_empty() {
            match &mut self.chunk {
                Chunk::Size => {
                    let Some(i) = data.iter().position(|&b| b == b'\n') else {
                        self.text.extend_from_slice(data);
                        return Ok(());
                    };
                    self.text.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    let line = std::str::from_utf8(&self.text).map_err(|e| e.to_string())?;
                    let hex = line.trim().split(';').next().unwrap_or("");
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk size {line:?}"))?;
                    self.text.clear();
                    if size == 0 {
                        return Err("stream ended".into());
                    }
                    self.chunk = Chunk::Data(size);
                }
                Chunk::Data(left) => {
                    let k = (*left).min(data.len());
                    *left -= k;
                    if *left == 0 {
                        self.chunk = Chunk::Crlf(2);
                    }
                    let (now, rest) = data.split_at(k);
                    data = rest;
                    self.part(now, on_frame)?;
                }
                Chunk::Crlf(left) => {
                    let k = (*left).min(data.len());
                    *left -= k;
                    data = &data[k..];
                    if *left == 0 {
                        self.chunk = Chunk::Size;
                    }
                }
            }
        }
        Ok(())
    }

    /// Multipart level.
    fn part(
        &mut self,
        mut data: &[u8],
        on_frame: &mut dyn FnMut(u64, usize),
    ) -> Result<(), String> {
        while !data.is_empty() {
            match self.part {
                Part::Opening | Part::Closing { .. } => {
                    let want: Vec<u8> = if matches!(self.part, Part::Opening) {
                        [b"--", BOUNDARY, b"\r\n"].concat()
                    } else {
                        [b"\r\n--", BOUNDARY, b"\r\n"].concat()
                    };
                    let k = (want.len() - self.text.len()).min(data.len());
                    self.text.extend_from_slice(&data[..k]);
                    data = &data[k..];
                    if self.text.len() == want.len() {
                        if self.text != want {
                            return Err(format!(
                                "expected boundary, got {:?}",
                                String::from_utf8_lossy(&self.text)
                            ));
                        }
                        if let Part::Closing { ts, len } = self.part {
                            on_frame(ts, len);
                        }
                        self.text.clear();
                        self.part = Part::Head;
                    }
                }
                Part::Head => {
                    let before = self.text.len();
                    self.text.extend_from_slice(data);
                    let from = before.saturating_sub(3);
                    let Some(i) = find(&self.text[from..], b"\r\n\r\n").map(|i| i + from) else {
                        if self.text.len() > 4096 {
                            return Err("part head too long".into());
                        }
                        return Ok(());
                    };
                    let (len, ts) = part_head(&self.text[..i])?;
                    data = &data[i + 4 - before..];
                    self.text.clear();
                    self.part = Part::Body { left: len, ts, len };
                }
                Part::Body { left, ts, len } => {
                    let k = left.min(data.len());
                    data = &data[k..];
                    self.part = if left == k {
                        Part::Closing { ts, len }
                    } else {
                        Part::Body {
                            left: left - k,
                            ts,
                            len,
                        }
                    };
                }
            }
        }
        Ok(())
    }
}

/// (Content-Length, X-Timestamp in Unix microseconds) of a part head.
fn part_head(head: &[u8]) -> Result<(usize, u64), String> {
    let head = std::str::from_utf8(head).map_err(|e| e.to_string())?;
    let mut len = None;
    let mut ts = None;
    for line in head.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            len = v.parse().ok();
        } else if k.eq_ignore_ascii_case("x-timestamp") {
            let (s, us) = v.split_once('.').unwrap_or((v, "0"));
            ts = Some(s.parse::<u64>().unwrap_or(0) * 1_000_000 + us.parse::<u64>().unwrap_or(0));
        }
    }
    match (len, ts) {
        (Some(l), Some(t)) => Ok((l, t)),
        _ => Err(format!(
            "part head without Content-Length or X-Timestamp: {head:?}"
        )),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// CPU of the service with nobody connected.
fn idle(seconds: f64, repeat: usize) {
    println!("# idle: picker (release build), no clients, {seconds} s per run");
    println!("| run | server CPU % of one core | RSS peak MB |");
    println!("|---|---|---|");
    let mut cpu = Vec::new();
    for i in 0..repeat {
        let server = common::Server::start(256, "");
        // Let start-up work (first frames, page faults) pass.
        std::thread::sleep(Duration::from_secs(2));
        let meter = CpuMeter::start(server.pid());
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let (cpu_s, wall_s) = meter.read();
        let pct = 100.0 * cpu_s / wall_s;
        let rss = common::vm_kb(server.pid(), "VmHWM") as f64 / 1024.0;
        println!("| {} | {pct:.2} | {rss:.1} |", i + 1);
        cpu.push(pct);
    }
    println!("| median | {:.2} | |", median_f64(&cpu));
}

/// The floor: accept connections, answer each with the stream's response head, then at
/// `fps` write each frame's bytes (chunk header, part head, the JPEG, boundary) to every
/// socket with one blocking `write_all`. No runtime, no channels, no per-client tasks.
fn floor_server(fps: u32, jpeg_bytes: Option<&str>) {
    let frame = common::test_frame();
    let mut jpeg = picker::jpeg::Compressor::new()
        .unwrap()
        .compress(&frame.video, 80)
        .unwrap()
        .to_vec();
    if let Some(want) = jpeg_bytes {
        let want: usize = want.parse().expect("--jpeg-bytes N");
        pad_jpeg(&mut jpeg, want);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("port {}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    // Exit when the parent goes away (it holds our stdin).
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let clients = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::net::TcpStream>::new()));
    {
        let clients = clients.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                let _ = s.set_nodelay(true);
                if !common::read_request_head(&mut s) {
                    continue;
                }
                let opening = format!("--{}\r\n", std::str::from_utf8(BOUNDARY).unwrap());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: multipart/x-mixed-replace; boundary=picker-frame\r\n\
                     cache-control: no-store\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{opening}\r\n",
                    opening.len()
                );
                if s.write_all(resp.as_bytes()).is_ok() {
                    clients.lock().unwrap().push(s);
                }
            }
        });
    }
    let period = Duration::from_secs(1) / fps;
    let mut next = Instant::now();
    let mut out = Vec::with_capacity(jpeg.len() + 256);
    let mut sequence = 0;
    loop {
        sequence += 1;
        let stamp = picker::encoder::PartStamp {
            sequence,
            timestamp_ns: picker::frames::now_timestamps().0,
            unix_us: common::unix_us(),
            offline: false,
        };
        let (part, _) = picker::encoder::part(&jpeg, stamp);
        out.clear();
        write!(out, "{:x}\r\n", part.len()).unwrap();
        out.extend_from_slice(&part);
        out.extend_from_slice(b"\r\n");
        clients
            .lock()
            .unwrap()
            .retain_mut(|s| s.write_all(&out).is_ok());
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Grows a JPEG to `want` bytes with comment (COM) segments right after SOI, which decoders
/// skip: the floor then moves as many bytes per frame as the service did.
fn pad_jpeg(jpeg: &mut Vec<u8>, want: usize) {
    let mut pad = Vec::new();
    let mut missing = want.saturating_sub(jpeg.len());
    // A segment is at least 4 bytes (marker + length) and at most 65537.
    while missing >= 4 {
        let len = (missing - 2).min(65535);
        pad.extend_from_slice(&[0xff, 0xfe]);
        pad.extend_from_slice(&(len as u16).to_be_bytes());
        pad.resize(pad.len() + len - 2, b' ');
        missing -= len + 2;
    }
    jpeg.splice(2..2, pad);
}

/// `LOAD_DIAG=1`: where frames were lost. A frame no client got was never encoded (the
/// encoder or camera skipped it); a frame some clients missed was lost in the fan-out. For
/// the latter, how long the frame was the newest one: from its first receipt by any client
/// to the first receipt of the next frame.
fn diagnose(stats: &[ClientStats]) {
    use std::collections::BTreeMap;
    let mut first: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    for s in stats {
        for (&ts, &at) in s.stamps.iter().zip(&s.received) {
            let e = first.entry(ts).or_insert((at, 0));
            e.0 = e.0.min(at);
            e.1 += 1;
        }
    }
    let frames: Vec<(u64, u64, usize)> = first.iter().map(|(&ts, &(at, n))| (ts, at, n)).collect();
    let n = stats.len();
    let partial: Vec<_> = frames
        .windows(2)
        .filter(|w| w[0].2 < n)
        .map(|w| (w[0].2, (w[1].1 as i64 - w[0].1 as i64) as f64 / 1000.0))
        .collect();
    let gaps = frames
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 > 50_000)
        .count();
    eprintln!(
        "diag: {} frames seen, {} capture gaps > 50 ms (frames nobody got), {} frames missed by some clients",
        frames.len(),
        gaps,
        partial.len()
    );
    for (got, newest_ms) in partial.iter().take(20) {
        eprintln!("diag:   frame got by {got}/{n} clients, newest for {newest_ms:.1} ms");
    }
}
