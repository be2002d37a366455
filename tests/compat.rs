//! Compatibility with what people already point at a camera, through the real binary and
//! real clients: webcam URLs with cache busters, HEAD and 405, hostile query values, slow
//! and stalled readers, the closing boundary at shutdown.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// ffmpeg reads `frames` frames from `url`; returns (raw gray bytes, stderr).
fn ffmpeg_frames(url: &str, frames: u32) -> (Vec<u8>, String) {
    assert!(have("ffmpeg"), "ffmpeg is needed: tests/run.sh installs it");
    let out = Command::new("timeout")
        .args(["30", "ffmpeg", "-nostdin", "-v", "error", "-f", "mpjpeg"])
        .args(["-i", url])
        .args(["-frames:v", &frames.to_string()])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .unwrap();
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn request(p: &Picker, method: &str, path: &str) -> Response {
    raw_request(
        TcpStream::connect(p.addr()).unwrap(),
        format!("{method} {path} HTTP/1.1\r\nHost: picker\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn ffmpeg_decodes_the_webcam_urls_with_cache_busters() {
    let p = Picker::start(&[]);
    for path in [
        "/?action=stream&1608856928650",
        // What a proxy forwards for /webcam/?action=stream&cacheBust=1, prefix stripped or not.
        "/?action=stream&cacheBust=1",
        "/webcam/?action=stream&cacheBust=1",
        "/stream",
    ] {
        let (gray, err) = ffmpeg_frames(&p.url(path), 3);
        assert_eq!(gray.len(), 3 * 512 * 512, "{path}: {err}");
    }
    for path in [
        "/?action=snapshot",
        "/?action=snapshot&1608856928650",
        "/webcam/?action=snapshot&cacheBust=1",
        "/snapshot",
        "/snapshot.jpg?1608856928650",
    ] {
        let r = p.tcp_get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("image/jpeg"), "{path}");
        assert_eq!(decode_jpeg(&r.body).0, 512, "{path}");
    }
    // The preview page at the root only, and unknown actions are not found.
    assert!(p.tcp_get("/?1608856928650").text().contains("<img"));
    assert_eq!(p.tcp_get("/webcam/").status, 404);
    assert_eq!(p.tcp_get("/?action=static").status, 404);
    // Cache busters on picker's own routes too.
    assert_eq!(p.tcp_get("/state?cacheBust=1").status, 200);
}

/// The width ffprobe reads from the image or stream `input` (a file, or `-` for `stdin`).
fn ffprobe_width(input: &str, stdin: &[u8], format: Option<&str>) -> (u32, String) {
    assert!(
        have("ffprobe"),
        "ffprobe is needed: tests/run.sh installs it"
    );
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "ffprobe", "-v", "error"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let mut child = cmd
        .args(["-select_streams", "v:0", "-show_entries", "stream=width"])
        .args(["-of", "csv=p=0", "-i", input])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // ffprobe may stop reading before the end: a broken pipe is no failure here.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let width = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (width, err)
}

/// mjpg-streamer's multi-input URLs, the malformed `?action=stream?123` and a request line
/// without a version, each answered as the stream or the snapshot it means.
#[test]
fn mjpg_streamer_url_shapes_and_versionless_request_lines() {
    let p = Picker::start(&[]);
    for path in [
        "/?action=stream_0",
        "/?action=stream?123",
        "/?action=stream_0?1608856928650",
    ] {
        let (gray, err) = ffmpeg_frames(&p.url(path), 2);
        assert_eq!(gray.len(), 2 * 512 * 512, "{path}: {err}");
    }
    let file = p.dir.path().join("snapshot.jpg");
    for path in [
        "/?action=snapshot_0",
        "/?action=snapshot?123",
        "/webcam/?action=snapshot_0",
    ] {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "-o"])
            .arg(&file)
            .args(["-w", "%{http_code} %{content_type}"])
            .arg(p.url(path))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200 image/jpeg",
            "{path}"
        );
        let (width, err) = ffprobe_width(file.to_str().unwrap(), b"", None);
        assert_eq!(width, 512, "{path}: {err}");
    }
    // Another input than mjpg-streamer's first: there is none.
    assert_eq!(p.tcp_get("/?action=stream_1").status, 404);

    // `GET /?action=snapshot` with no version, then the headers' end: an HTTP/1.0 answer.
    let r = raw_request(
        TcpStream::connect(p.addr()).unwrap(),
        b"GET /?action=snapshot\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    let (width, err) = ffprobe_width("-", &r.body, None);
    assert_eq!(width, 512, "{err}");
    // The stream the same way: read up to the end of its first part (the head ends in CRLF,
    // so the opening boundary matches too), which ffprobe decodes.
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /?action=stream\r\nUser-Agent: old\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let boundary = b"\r\n--picker-frame\r\n";
    while got
        .windows(boundary.len())
        .filter(|w| w == boundary)
        .count()
        < 2
    {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the stream ended: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let head_end = find(&got, b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
    assert!(head.starts_with("http/1.0 200"), "{head}");
    assert!(
        head.contains("content-type: multipart/x-mixed-replace; boundary=picker-frame"),
        "{head}"
    );
    let (width, err) = ffprobe_width("-", &got[head_end + 4..], Some("mpjpeg"));
    assert_eq!(width, 512, "{err}");
}

/// The first line is held back until complete (to add a missing version): a client that
/// stalls in it, or sends a version-less line and never ends its head, is still cut off by
/// the request-head timeout (10 s), not held forever.
#[test]
fn a_stalled_first_line_is_still_cut_off() {
    let p = Picker::start(&[]);
    let mut conns: Vec<TcpStream> = [&b"GET /?act"[..], b"GET /?action=snapshot\r\n"]
        .iter()
        .map(|first| {
            let mut s = TcpStream::connect(p.addr()).unwrap();
            s.write_all(first).unwrap();
            // Generous for a loaded machine: the timeout is 10 s.
            s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
            s
        })
        .collect();
    for s in &mut conns {
        let mut buf = [0u8; 64];
        // Closed (0 bytes or reset), not timed out on our side.
        match s.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
}

/// mjpg-streamer's and ustreamer's snapshots say when their frame was taken; a dashboard
/// comparing a snapshot with the stream needs the same words for the same frame.
#[test]
fn a_snapshot_says_which_frame_it_is_as_the_stream_parts_do() {
    let p = Picker::start(&[]);
    let mut m = p.mjpeg("");
    m.read_opening();
    let mut parts = std::collections::HashMap::new();
    let stamps = |h: &dyn Fn(&str) -> Option<String>| {
        ["x-timestamp", "x-timestamp-ns"].map(|name| h(name).unwrap_or_else(|| panic!("no {name}")))
    };
    for attempt in 0..20 {
        let snap = p.tcp_get("/snapshot.jpg");
        assert_eq!(snap.status, 200);
        let sequence: u64 = snap
            .header("x-sequence")
            .expect("X-Sequence")
            .parse()
            .unwrap();
        let snap_stamps = stamps(&|n| snap.header(n).map(str::to_string));
        // The stream's parts up to that frame (a part may be skipped for a reader behind).
        loop {
            let part = m.next_part();
            let seq: u64 = part.header("x-sequence").unwrap().parse().unwrap();
            parts.insert(seq, stamps(&|n| part.header(n).map(str::to_string)));
            if seq >= sequence {
                break;
            }
        }
        if let Some(part_stamps) = parts.get(&sequence) {
            assert_eq!(
                &snap_stamps, part_stamps,
                "frame {sequence}, attempt {attempt}"
            );
            // Unix seconds and six digits of microseconds, within a minute of now.
            let (secs, micros) = snap_stamps[0].split_once('.').unwrap();
            assert_eq!(micros.len(), 6, "{}", snap_stamps[0]);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            assert!(
                secs.parse::<u64>().unwrap().abs_diff(now) < 60,
                "{}",
                snap_stamps[0]
            );
            return;
        }
    }
    panic!(
        "no snapshot's frame was among the stream's parts: {:?}",
        parts.keys()
    );
}

#[test]
fn head_answers_every_route_and_other_methods_get_405_with_allow() {
    let p = Picker::start(&[]);
    for path in [
        "/",
        "/snapshot.jpg",
        "/?action=snapshot",
        "/state",
        "/metrics",
    ] {
        let get = request(&p, "GET", path);
        let head = request(&p, "HEAD", path);
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} sent a body");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        if path == "/" || path == "/state" {
            assert_eq!(
                head.header("content-length"),
                Some(get.body.len().to_string().as_str()),
                "HEAD {path}"
            );
        }
    }
    for path in ["/stream.mjpg", "/?action=stream"] {
        // Headers only: the server ends the response, with no slot held afterwards.
        let head = request(&p, "HEAD", path);
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(
            head.header("content-type")
                .unwrap()
                .starts_with("multipart/x-mixed-replace"),
            "{:?}",
            head.headers
        );
        assert!(head.body.is_empty());
    }
    assert_eq!(metric(&p, "picker_stream_clients"), 0.0);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = request(&p, method, "/state");
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
    assert_eq!(request(&p, "POST", "/nothing-here").status, 404);
}

#[test]
fn fps_out_of_range_is_400_and_never_panics() {
    let p = Picker::start(&[]);
    for bad in [
        "1e-20", "5e-324", "1e-19", "NaN", "inf", "-inf", "-1", "0", "1e300", "1001", "x",
    ] {
        let r = p.tcp_get(&format!("/stream.mjpg?fps={bad}"));
        assert_eq!(r.status, 400, "fps={bad}: {}", r.text());
        assert!(r.text().contains("from 0.1 to 1000"), "{}", r.text());
        let r = p.tcp_get(&format!("/?action=stream&1608856928650&fps={bad}"));
        assert_eq!(r.status, 400, "fps={bad}");
    }
    // In range (the lowest and highest) still streams.
    for good in ["0.1", "1000"] {
        let mut m = p.mjpeg(&format!("?fps={good}"));
        m.read_opening();
        m.next_part();
    }
    assert_eq!(p.tcp_get("/state").status, 200);
    let log = p.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// Reads one raw HTTP response head from `s`, then returns the status.
fn status_of(s: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    parse_response(&head).status
}

#[test]
fn stalled_readers_are_dropped_after_client_timeout_and_free_their_slots() {
    let p = Picker::start(&["stream.max-clients = 3", "stream.client-timeout = 2"]);
    // Three readers that take the head and then never read again.
    let stalled: Vec<Mjpeg> = (0..3)
        .map(|_| Mjpeg::open_small_window(p.addr(), ""))
        .collect();
    assert_eq!(p.tcp_get("/stream.mjpg").status, 503, "slots are taken");
    // A new viewer gets in once the stalled ones have been dropped (generous bound).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        if status_of(&mut s) == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stalled readers were never dropped"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Dropped for the deadline, and counted as such (the log line is rate-limited).
    assert!(
        metric(&p, "picker_stream_clients_dropped_total") >= 1.0,
        "stalled stream clients are counted as dropped"
    );
    drop(stalled);
}

#[test]
fn client_timeout_is_range_checked() {
    for bad in ["0", "3601", "100000"] {
        let dir = temp_dir();
        let text = config_text(dir.path(), &[&format!("stream.client-timeout = {bad}")]);
        let path = dir.path().join("picker.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{bad}: {err}");
        assert!(err.contains("client-timeout"), "{bad}: {err}");
    }
}

fn boottime_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

#[test]
fn a_slow_reader_gets_fresh_frames_not_a_backlog() {
    let p = Picker::start(&[]);
    // A small receive window stands for the client's link: what the reader has not taken
    // then waits on picker's side, as it does for a viewer on weak Wi-Fi (what the reader's
    // own kernel buffers is out of the server's reach).
    let mut m = Mjpeg::open_small_window(p.addr(), "");
    m.read_opening();
    // Robot code that handles about 3 frames a second, for 15 s.
    let reader_period = Duration::from_millis(333);
    let frame_period = Duration::from_secs(1) / 30;
    // The target: 2 frame periods plus the time this reader's "link" needs for one frame
    // (one reader period), with a margin. The typical (median) frame must meet it; a loaded
    // test machine delays single frames (this reader's own sleeps overrun), so the worst only
    // has to stay bounded. Without a bound on the kernel's send buffer the age grows by
    // seconds every few seconds, both the median and the worst.
    let bound = frame_period * 2 + reader_period + Duration::from_millis(300);
    let worst_bound = Duration::from_secs(2);
    let mut ages = Vec::new();
    let mut last_seq = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let part = m.next_part();
        let now = boottime_ns();
        let ts: u64 = part.header("x-timestamp-ns").unwrap().parse().unwrap();
        let seq: u64 = part.header("x-sequence").unwrap().parse().unwrap();
        assert!(
            seq > last_seq,
            "sequence goes forward: {seq} after {last_seq}"
        );
        last_seq = seq;
        ages.push(Duration::from_nanos(now.saturating_sub(ts)));
        std::thread::sleep(reader_period);
    }
    assert!(ages.len() >= 30, "only {} frames in 15 s", ages.len());
    let mut sorted = ages.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let worst = sorted[sorted.len() - 1];
    assert!(
        median < bound && worst < worst_bound,
        "median frame age {median:?} (bound {bound:?}), worst {worst:?} (bound \
         {worst_bound:?}): {ages:?}"
    );
}

#[test]
fn parts_carry_sequence_and_the_stills_clock() {
    let p = Picker::start(&[]);
    let mut m = p.mjpeg("");
    m.read_opening();
    let part = m.next_part();
    let ts: u64 = part.header("x-timestamp-ns").unwrap().parse().unwrap();
    let seq: u64 = part.header("x-sequence").unwrap().parse().unwrap();
    assert!(part.header("x-timestamp").unwrap().contains('.'));
    // A still taken afterwards is stamped later on the same clock, and not ages later.
    let still = p.unix_get("/still.rgb?fresh=1");
    let still_ts: u64 = still.header("x-timestamp-ns").unwrap().parse().unwrap();
    assert!(still_ts > ts, "still {still_ts} not after frame {ts}");
    assert!(
        still_ts - ts < 10_000_000_000,
        "clocks differ: {still_ts} vs {ts}"
    );
    let next = m.next_part();
    let next_seq: u64 = next.header("x-sequence").unwrap().parse().unwrap();
    assert!(next_seq > seq);
}

#[test]
fn the_stream_ends_with_the_closing_boundary_at_shutdown() {
    let mut p = Picker::start(&[]);
    let mut m = p.mjpeg("");
    m.read_opening();
    m.next_part();
    p.terminate();
    let mut rest = Vec::new();
    let _ = m.stream.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains("\r\n--picker-frame--\r\n"),
        "no closing boundary in the last {} bytes: {:?}",
        rest.len(),
        &text[text.len().saturating_sub(200)..]
    );
    // And the HTTP body ends properly (the last chunk), not cut off.
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "{:?}",
        &text[text.len().saturating_sub(50)..]
    );
}

#[test]
fn state_names_formats_in_one_style() {
    let p = Picker::start(&[]);
    let state: serde_json::Value = serde_json::from_slice(&p.tcp_get("/state").body).unwrap();
    for side in ["stream", "still"] {
        let f = state[side]["format"].as_str().unwrap();
        assert!(
            ["i420", "nv12", "yuyv", "rgb24", "bgr24"].contains(&f),
            "{side} format {f:?}"
        );
    }
}

#[test]
fn picker_still_into_a_closed_pipe_exits_0_quietly() {
    let p = Picker::start(&[]);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {BIN} still --socket {} --format ppm | head -c4",
            p.socket.display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"P6\n5");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serves `page` at `/` on a port of its own (another origin than picker's) and collects the
/// `/result?key=value` reports the page sends back, until `keys` are all in or 60 s pass.
fn cross_origin_page(
    page: String,
    keys: &[&str],
) -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let n = keys.len();
    std::thread::spawn(move || {
        let mut got = 0;
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let n_read = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n_read]).into_owned();
            let target = req.split(' ').nth(1).unwrap_or("").to_string();
            let body = if let Some(q) = target.strip_prefix("/result?") {
                if let Some((k, v)) = q.split_once('=') {
                    let _ = tx.send((k.to_string(), v.to_string()));
                    got += 1;
                }
                String::new()
            } else {
                page.clone()
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if got >= n {
                break;
            }
        }
    });
    (url, rx)
}

/// What a page on another origin can get from picker: `/state` and stream frames, read with
/// `fetch(..., {mode: 'cors'})` as Fluidd's MJPEG worker and Mainsail's "MJPEG-Streamer" mode do.
fn cross_origin_results(p: &Picker) -> std::collections::HashMap<String, String> {
    let base = format!("http://{}", p.addr());
    let page = format!(
        r#"<!DOCTYPE html><html><body><script>
const base = {base:?};
function report(k, v) {{ fetch('/result?' + k + '=' + encodeURIComponent(v)); }}
fetch(base + '/state', {{mode: 'cors'}}).then(r => r.json())
  .then(j => report('state', j.source)).catch(e => report('state', 'error'));
fetch(base + '/?action=stream&1608856928650', {{mode: 'cors'}}).then(async r => {{
  const reader = r.body.getReader();
  let parts = 0;
  const dec = new TextDecoder();
  while (parts < 3) {{
    const {{value, done}} = await reader.read();
    if (done) break;
    parts += (dec.decode(value).match(/image\/jpeg/g) || []).length;
  }}
  reader.cancel();
  report('frames', parts);
}}).catch(e => report('frames', 'error'));
</script></body></html>"#
    );
    let (url, rx) = cross_origin_page(page, &["state", "frames"]);
    let dir = temp_dir();
    let mut browser = Command::new("chromium")
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", dir.path().display()))
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium runs");
    let mut results = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while results.len() < 2 && Instant::now() < deadline {
        if let Ok((k, v)) = rx.recv_timeout(Duration::from_millis(200)) {
            results.insert(k, v);
        }
    }
    let _ = browser.kill();
    let _ = browser.wait();
    results
}

#[test]
fn a_page_on_another_origin_reads_state_and_frames_only_with_allow_origin() {
    assert!(
        have("chromium"),
        "chromium is needed: tests/run.sh installs it"
    );
    let open = Picker::start(&["stream.allow-origin = \"*\""]);
    let r = cross_origin_results(&open);
    assert_eq!(
        r.get("state").map(String::as_str),
        Some("test-pattern"),
        "{r:?}"
    );
    let frames: u32 = r.get("frames").and_then(|f| f.parse().ok()).unwrap_or(0);
    assert!(frames >= 3, "{r:?}");

    let closed = Picker::start(&[]);
    let r = cross_origin_results(&closed);
    assert_eq!(r.get("state").map(String::as_str), Some("error"), "{r:?}");
    assert_eq!(r.get("frames").map(String::as_str), Some("error"), "{r:?}");
}

#[test]
fn cors_headers_and_preflight() {
    let p = Picker::start(&["stream.allow-origin = \"http://octopi.local\""]);
    for path in ["/state", "/snapshot.jpg", "/metrics", "/nothing"] {
        let r = p.tcp_get(path);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://octopi.local"),
            "{path}"
        );
    }
    let r = raw_request(
        TcpStream::connect(p.addr()).unwrap(),
        b"OPTIONS /?action=stream HTTP/1.1\r\nHost: x\r\nOrigin: http://octopi.local\r\n\
          Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );
    // A fixed list, not an echo of the request (tests/auth.rs sends a hostile one).
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Authorization")
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://octopi.local")
    );
    assert_eq!(metric(&p, "picker_stream_clients"), 0.0);
    // Without allow-origin: no CORS headers, and OPTIONS is not a method of the port.
    let q = Picker::start(&[]);
    assert_eq!(
        q.tcp_get("/state").header("access-control-allow-origin"),
        None
    );
    assert_eq!(request(&q, "OPTIONS", "/state").status, 405);
}

/// True if the JPEG has no colour: the offline picture is grey, the test pattern is bars.
fn is_grey(jpeg: &[u8]) -> bool {
    let (_, _, px) = decode_jpeg(jpeg);
    px.chunks(3).all(|c| {
        let (lo, hi) = (c.iter().min().unwrap(), c.iter().max().unwrap());
        hi - lo < 16
    })
}

#[test]
fn a_stalled_camera_sends_the_offline_picture_then_live_frames_on_the_same_connection() {
    // Frames stop after frame 30 (1 s) for 5 s; offline after 2 s without frames.
    let p = Picker::start_with_env(&[], &[("PICKER_TEST_STALL", "30:5000")]);
    let mut m = p.mjpeg("");
    m.read_opening();
    let first = m.next_part();
    assert!(!is_grey(&first.jpeg), "the live picture has colour");
    let mut offline = 0;
    let mut live_after = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_after < 5 {
        assert!(
            Instant::now() < deadline,
            "offline {offline}, live after {live_after}"
        );
        let part = m.next_part();
        if part.header("x-camera") == Some("offline") {
            assert_eq!(decode_jpeg(&part.jpeg).0, 512, "same size as the stream");
            assert!(is_grey(&part.jpeg));
            if offline == 0 {
                // While offline: snapshots say so, and when to come back; state and metrics too.
                let snap = p.tcp_get("/?action=snapshot");
                assert_eq!(snap.status, 503, "{}", snap.text());
                assert_eq!(snap.header("retry-after"), Some("1"));
                let state: serde_json::Value =
                    serde_json::from_slice(&p.tcp_get("/state").body).unwrap();
                assert_eq!(state["online"], false);
                assert_eq!(metric(&p, "picker_camera_online"), 0.0);
            }
            offline += 1;
        } else if offline > 0 {
            assert!(!is_grey(&part.jpeg));
            live_after += 1;
        }
    }
    // About one a second for the 3 s offline (generous bounds: a loaded machine).
    assert!((1..=6).contains(&offline), "{offline} offline pictures");
    assert_eq!(p.tcp_get("/snapshot.jpg").status, 200);
}

/// A client that connects while the camera is away is first sent the offline picture, never
/// the last live frame (seconds or hours old, without `X-Camera: offline`): a one-frame grab
/// (`ffmpeg -frames:v 1`, Home Assistant's mjpeg camera without a `still_image_url`, go2rtc's
/// `frame.jpeg`) would keep a stale picture as the current one while `/snapshot.jpg` said 503.
/// The first client after nobody watched, and one that joins a watched outage.
#[test]
fn a_client_arriving_while_the_camera_is_offline_gets_the_offline_picture_first() {
    assert!(have("ffmpeg"), "ffmpeg is needed: tests/run.sh installs it");
    // Frames stop after frame 30 (1 s), for longer than the test.
    let p = Picker::start_with_env(&[], &[("PICKER_TEST_STALL", "30:600000")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.tcp_get("/snapshot.jpg").status != 503 {
        assert!(Instant::now() < deadline, "the camera never went offline");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nobody has watched since the camera went away: the first client's first part.
    let mut first = p.mjpeg("");
    first.read_opening();
    // The offline picture: said in its part's headers.
    let offline = |m: &mut Mjpeg| {
        let part = m.next_part();
        assert_eq!(
            part.header("x-camera"),
            Some("offline"),
            "{:?}",
            part.headers
        );
        part
    };
    assert!(is_grey(&offline(&mut first).jpeg));
    // A second client while the first watches, and ffmpeg grabbing one frame as a still.
    let mut second = p.mjpeg("?action=stream");
    second.read_opening();
    offline(&mut second);
    // Nor does a viewer coming send the watchers the stale frame.
    offline(&mut first);
    drop((first, second));
    let file = p.dir.path().join("grab.jpg");
    let out = Command::new("timeout")
        .args(["30", "ffmpeg", "-nostdin", "-v", "error", "-i"])
        .arg(p.url("/stream.mjpg"))
        .args(["-frames:v", "1", "-c:v", "copy", "-y"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        is_grey(&std::fs::read(&file).unwrap()),
        "ffmpeg grabbed a live-looking frame"
    );
}

/// The offline picture comes once a second, from a first viewer's arrival on: the next one a
/// second after the one sent at once, not at a tick that was due anyway (which sent the first
/// viewer the picture twice, from a few milliseconds to a second apart). Judged by the parts'
/// own capture stamps (when picker made them), over three arrivals.
#[test]
fn a_first_viewer_during_an_outage_gets_the_offline_picture_a_second_apart() {
    let p = Picker::start_with_env(&[], &[("PICKER_TEST_STALL", "30:600000")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.tcp_get("/snapshot.jpg").status != 503 {
        assert!(Instant::now() < deadline, "the camera never went offline");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stamp = |part: &Part| -> u64 {
        assert_eq!(
            part.header("x-camera"),
            Some("offline"),
            "{:?}",
            part.headers
        );
        part.header("x-timestamp-ns").unwrap().parse().unwrap()
    };
    for arrival in 0..3 {
        let mut m = p.mjpeg("");
        m.read_opening();
        let first = stamp(&m.next_part());
        let second = stamp(&m.next_part());
        let gap = Duration::from_nanos(second - first);
        assert!(
            gap >= Duration::from_millis(990),
            "arrival {arrival}: the second picture {gap:?} after the first"
        );
        drop(m);
        // Nobody watches again before the next arrival (seen at the next picture's write).
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(&p, "picker_stream_clients") > 0.0 {
            assert!(Instant::now() < deadline, "the viewer never left");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn an_address_that_appears_later_is_logged_with_its_stream_url() {
    let p = Picker::start(&["stream.bind = \"0.0.0.0\""]);
    let mut p = p;
    let port = p.addr().port();
    let url = format!("stream at http://192.0.2.77:{port}/stream.mjpg");
    assert!(p.find_log(&url).is_none());
    let guard = TestAddress::add("192.0.2.77");
    p.wait_log(&url, Duration::from_secs(10));
    drop(guard);
    p.wait_log(
        &format!("no longer at http://192.0.2.77:{port}/stream.mjpg"),
        Duration::from_secs(10),
    );
}

fn curl_status(args: &[&str], url: &str) -> (u16, String) {
    assert!(have("curl"), "curl is needed: tests/run.sh installs it");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "/dev/null", "-D", "-"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

#[test]
fn basic_auth_with_curl_and_ffmpeg_and_an_exempt_metrics() {
    let hash = hash_password("s3cret pass");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let p = Picker::start(&[
        &format!("stream.auth-users = {{ robot = {hash:?} }}"),
        "stream.auth-exempt = [\"/metrics\"]",
    ]);
    let base = format!("http://{}", p.addr());
    for path in [
        "/",
        "/state",
        "/snapshot.jpg",
        "/?action=snapshot",
        "/stream",
    ] {
        let (status, head) = curl_status(&[], &format!("{base}{path}"));
        assert_eq!(status, 401, "{path}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: basic realm=\"picker\""),
            "{head}"
        );
        // One address has 5 attempts before it is throttled (429, see tests/auth.rs): wrong
        // ones on two routes only, so that the right one after still gets its check.
        if path == "/" || path == "/stream" {
            let (status, _) = curl_status(&["-u", "robot:wrong"], &format!("{base}{path}"));
            assert_eq!(status, 401, "{path} with a wrong password");
            let (status, _) = curl_status(&["-u", "nobody:s3cret pass"], &format!("{base}{path}"));
            assert_eq!(status, 401, "{path} with an unknown user");
        }
    }
    for path in ["/", "/state", "/snapshot.jpg", "/?action=snapshot"] {
        let (status, head) = curl_status(&["-u", "robot:s3cret pass"], &format!("{base}{path}"));
        assert_eq!(status, 200, "{path}: {head}");
    }
    // The opted-out route needs nothing.
    assert_eq!(curl_status(&[], &format!("{base}/metrics")).0, 200);
    // Every wrong user or password above is counted (2 routes, 2 wrong each).
    assert_eq!(metric(&p, "picker_auth_failed_total"), 4.0);
    // ffmpeg's user:pass@ form (the space percent-encoded).
    let (gray, err) = ffmpeg_frames(
        &format!("http://robot:s3cret%20pass@{}/?action=stream", p.addr()),
        3,
    );
    assert_eq!(gray.len(), 3 * 512 * 512, "{err}");
    // The still socket keeps its file-permission model: no password.
    assert_eq!(p.unix_get("/still.png").status, 200);
}

/// Home Assistant's mjpeg setup tries Basic, then Digest after a 401 (python `requests`, as
/// its config flow): Basic passes. A client set to Digest gets no challenge it can answer,
/// so the 401 says which scheme picker takes; it sent no password, so nothing is counted
/// against its address.
#[test]
fn a_digest_client_is_told_picker_takes_basic() {
    const CLIENT: &str = r#"
import sys, requests
from requests.auth import HTTPBasicAuth, HTTPDigestAuth
url = sys.argv[1]
for auth in (HTTPBasicAuth("robot", "s3cret"), HTTPDigestAuth("robot", "s3cret")):
    r = requests.get(url, auth=auth, timeout=20)
    body = r.headers["Content-Type"] if r.ok else repr(r.text)
    print(type(auth).__name__, r.status_code, r.headers.get("WWW-Authenticate"), body)
"#;
    let hash = hash_password("s3cret");
    let p = Picker::start(&[
        &format!("stream.auth-users = {{ robot = {hash:?} }}"),
        "stream.auth-exempt = [\"/metrics\"]",
    ]);
    let out = Command::new("/usr/bin/python3")
        .args(["-c", CLIENT])
        .arg(p.url("/?action=snapshot"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "HTTPBasicAuth 200 None image/jpeg", "{text}");
    assert!(
        lines[1].starts_with("HTTPDigestAuth 401 Basic realm=\"picker\""),
        "{text}"
    );
    assert!(
        lines[1].contains("HTTP Basic") && lines[1].contains("no Digest"),
        "the 401 names the scheme: {text}"
    );
    assert_eq!(metric(&p, "picker_auth_failed_total"), 0.0);
}

#[test]
fn auth_config_errors_name_the_key() {
    for (line, key) in [
        (
            "stream.auth-users = { robot = \"plain\" }",
            "stream.auth-users.robot",
        ),
        ("stream.auth-exempt = [\"/nope\"]", "stream.auth-exempt"),
    ] {
        let dir = temp_dir();
        let path = dir.path().join("picker.toml");
        std::fs::write(&path, config_text(dir.path(), &[line])).unwrap();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{err}");
        assert!(err.contains(key), "{err}");
    }
}

/// What `printf 'GET /?action=snapshot\r\n\r\n' | nc host 8000` sends, as mjpg-streamer-era
/// scripts do: the request, then a half-close (FIN) of the client's side, which HTTP allows.
/// Each answer must still come whole; hyper's default took the FIN for an aborted request
/// and dropped the answer in flight.
fn half_closed_request<S: Read + Write>(
    mut s: S,
    request: &str,
    shut: impl FnOnce(&S),
) -> Response {
    s.write_all(request.as_bytes()).unwrap();
    shut(&s);
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    parse_response(&buf)
}

fn assert_whole_jpeg(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    if let Some(len) = r.header("content-length") {
        assert_eq!(len.parse::<usize>().unwrap(), r.body.len(), "{what}");
    }
    assert!(
        r.body.starts_with(&[0xff, 0xd8]) && r.body.ends_with(&[0xff, 0xd9]),
        "{what}: {} bytes, not a whole JPEG",
        r.body.len()
    );
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_whole_answer() {
    let p = Picker::start(&[]);
    let tcp_shut = |s: &TcpStream| s.shutdown(std::net::Shutdown::Write).unwrap();
    for request in [
        "GET /snapshot.jpg HTTP/1.1\r\nHost: picker\r\n\r\n",
        "GET /?action=snapshot HTTP/1.0\r\n\r\n",
        "GET /?action=snapshot\r\n\r\n",
    ] {
        let s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = half_closed_request(s, request, tcp_shut);
        assert_whole_jpeg(&r, request);
    }
    // The stream goes on after the FIN, part after part.
    let mut m = Mjpeg::open_half_closed(p.addr(), "");
    for _ in 0..3 {
        let part = m.next_part();
        assert!(part.jpeg.starts_with(&[0xff, 0xd8]), "{:?}", part.headers);
    }
    // The still socket too: a whole still after a FIN, over HTTP/1.0 and 1.1.
    let unix_shut =
        |s: &std::os::unix::net::UnixStream| s.shutdown(std::net::Shutdown::Write).unwrap();
    for request in [
        "GET /still.rgb HTTP/1.0\r\n\r\n",
        "GET /still.rgb HTTP/1.1\r\nHost: picker\r\n\r\n",
    ] {
        let s = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = half_closed_request(s, request, unix_shut);
        assert_eq!(r.status, 200, "{request}: {}", r.text());
        assert_eq!(r.body.len(), 512 * 512 * 3, "{request}");
    }
    let s = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = half_closed_request(
        s,
        "GET /still.jpg HTTP/1.1\r\nHost: picker\r\n\r\n",
        unix_shut,
    );
    assert_whole_jpeg(&r, "still.jpg");
}
