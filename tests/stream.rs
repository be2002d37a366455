//! The MJPEG stream and the HTTP port, through real clients.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn stream_delivers_decodable_512_square_jpegs_with_part_headers() {
    let p = Picker::start(&[]);
    let mut m = p.mjpeg("");
    assert!(
        m.header("content-type")
            .unwrap()
            .starts_with("multipart/x-mixed-replace; boundary="),
        "{:?}",
        m.headers
    );
    assert!(m.header("cache-control").unwrap().contains("no-store"));
    m.read_opening();
    let mut last_ts = 0.0;
    let mut firsts = Vec::new();
    for i in 0..30 {
        let part = m.next_part();
        assert_eq!(part.header("content-type"), Some("image/jpeg"));
        let ts: f64 = part
            .header("x-timestamp")
            .expect("X-Timestamp")
            .parse()
            .unwrap();
        assert!(ts >= last_ts, "timestamps go forward");
        last_ts = ts;
        let (w, h, px) = decode_jpeg(&part.jpeg);
        assert_eq!((w, h), (512, 512), "part {i}");
        firsts.push(px[256 * 512 * 3..256 * 512 * 3 + 512 * 3].to_vec());
    }
    // The test pattern moves: frames are not all the same picture.
    assert_ne!(firsts[0], firsts[29], "the stream is frozen");
}

#[test]
fn boundary_is_sent_right_after_each_jpeg() {
    // At 2 fps the next frame is 500 ms away: the closing boundary must not wait for it.
    let p = Picker::start(&["camera.framerate = 2"]);
    let mut m = p.mjpeg("");
    m.read_opening();
    for _ in 0..3 {
        let delay = m.boundary_delay_after_next_jpeg();
        assert!(
            delay < Duration::from_millis(250),
            "boundary came {delay:?} after the JPEG"
        );
    }
}

#[test]
fn ffprobe_and_ffmpeg_decode_the_stream() {
    assert!(
        have("ffmpeg") && have("ffprobe"),
        "ffmpeg is needed: tests/run.sh installs it"
    );
    let p = Picker::start(&[]);
    let url = p.url("/stream.mjpg");
    let probe = Command::new("timeout")
        .args([
            "20",
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=width,height,codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        text.contains("mjpeg,512,512"),
        "ffprobe said {text:?} {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let out = Command::new("timeout")
        .args(["20", "ffmpeg", "-nostdin", "-v", "error", "-i"])
        .arg(&url)
        .args(["-frames:v", "5", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .unwrap();
    assert_eq!(
        out.stdout.len(),
        5 * 512 * 512,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_reader_that_stops_reading_does_not_slow_another() {
    let p = Picker::start(&[]);
    // The stalled reader reads the head, then nothing. Its tiny receive window makes the
    // server's writes to it block within a few frames; give it a second to get there.
    let stalled = Mjpeg::open_small_window(p.addr(), "");
    std::thread::sleep(Duration::from_secs(1));
    let mut m = p.mjpeg("");
    m.read_opening();
    m.next_part();
    let start = Instant::now();
    for _ in 0..60 {
        m.next_part();
    }
    let took = start.elapsed();
    // 60 frames at 30 fps take 2 s; a reader slowed by the stalled one would take far longer.
    assert!(took < Duration::from_secs(6), "60 frames took {took:?}");
    // Both are still connected and counted.
    assert_eq!(metric(&p, "picker_stream_clients"), 2.0);
    drop(stalled);
}

#[test]
fn jpeg_encoding_happens_only_while_someone_watches() {
    let p = Picker::start(&[]);
    std::thread::sleep(Duration::from_millis(300));
    let idle_before = metric(&p, "picker_frames_encoded_total");
    std::thread::sleep(Duration::from_millis(700));
    let idle_after = metric(&p, "picker_frames_encoded_total");
    assert_eq!(
        idle_before, idle_after,
        "frames were encoded with nobody watching"
    );
    assert!(metric(&p, "picker_frames_captured_total") > 10.0);
    let mut m = p.mjpeg("");
    m.read_opening();
    for _ in 0..10 {
        m.next_part();
    }
    assert!(metric(&p, "picker_frames_encoded_total") >= idle_after + 10.0);
    assert_eq!(metric(&p, "picker_stream_clients"), 1.0);
}

#[test]
fn fps_query_caps_one_clients_rate() {
    let p = Picker::start(&[]);
    let mut m = p.mjpeg("?fps=5");
    m.read_opening();
    m.next_part();
    let start = Instant::now();
    for _ in 0..5 {
        m.next_part();
    }
    // 5 frames at 5 fps take about 1 s; at the full 30 fps they would take 170 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn clients_past_max_clients_get_503_with_a_reason() {
    let mut p = Picker::start(&["stream.max-clients = 2"]);
    let _a = p.mjpeg("");
    let _b = p.mjpeg("");
    let r = p.tcp_get("/stream.mjpg");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("max-clients"), "{}", r.text());
    // A dashboard is told when to come back, and the operator sees viewers turned away.
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(p.tcp_get("/stream.mjpg").status, 503);
    assert_eq!(Metrics::read(&p).get("picker_stream_refused_total"), 2.0);
    p.wait_log(
        "1 stream client(s) refused since the last such line: stream.max-clients = 2 watching",
        Duration::from_secs(5),
    );
    drop(_a);
    // The slot is free again once a client leaves.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        use std::io::{Read, Write};
        s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        if &head == b"HTTP/1.1 200" {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn snapshot_state_and_metrics() {
    let p = Picker::start(&[]);
    let snap = p.tcp_get("/snapshot.jpg");
    assert_eq!(snap.status, 200);
    assert_eq!(snap.header("content-type"), Some("image/jpeg"));
    assert_eq!(decode_jpeg(&snap.body).0, 512);

    std::thread::sleep(Duration::from_millis(1200));
    let state: serde_json::Value = serde_json::from_slice(&p.tcp_get("/state").body).unwrap();
    assert_eq!(state["online"], true);
    assert_eq!(state["source"], "test-pattern");
    assert_eq!(state["stream"]["width"], 512);
    assert_eq!(state["still"]["height"], 512);
    assert_eq!(state["crop"], "unsupported");
    assert_eq!(state["clients"], 0);
    let fps = state["fps"].as_f64().unwrap();
    assert!((20.0..=40.0).contains(&fps), "fps {fps}");
    assert!(state["frames"]["captured"].as_u64().unwrap() > 20);
    for key in ["encoded", "dropped"] {
        assert!(state["frames"][key].is_u64(), "{key}: {state}");
    }

    let metrics = p.tcp_get("/metrics");
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text();
    for name in [
        "picker_frames_captured_total",
        "picker_frames_encoded_total",
        "picker_frames_dropped_total",
        "picker_stream_clients",
        "picker_camera_online",
        "picker_fps",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} in\n{text}"
        );
    }
    assert_eq!(metric(&p, "picker_camera_online"), 1.0);
}

#[test]
fn preview_page_embeds_the_stream() {
    let p = Picker::start(&[]);
    let page = p.tcp_get("/");
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains("<title>Live Stream (512x512 Square)</title>"),
        "{html}"
    );
    // Relative, so that the page works behind a proxy that strips its prefix.
    assert!(html.contains(r#"src="stream.mjpg""#), "{html}");
}

#[test]
fn unknown_paths_404_and_garbage_400_and_huge_heads_431() {
    let p = Picker::start(&[]);
    assert_eq!(p.tcp_get("/nope").status, 404);
    let garbage = raw_request(
        std::net::TcpStream::connect(p.addr()).unwrap(),
        b"HELLO\r\n\r\n",
    );
    assert_eq!(garbage.status, 400);
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let r = raw_request(std::net::TcpStream::connect(p.addr()).unwrap(), &big);
    assert_eq!(r.status, 431);
    // And the service is still fine.
    assert_eq!(p.tcp_get("/state").status, 200);
}

#[test]
fn stream_disabled_opens_no_tcp_port() {
    let p = Picker::start(&["stream.enabled = false"]);
    assert!(p.find_log("stream disabled").is_some(), "{}", p.log_text());
    assert!(p.addr.is_none());
    // No listening TCP socket belongs to the process: compare its socket inodes with the
    // kernel's table of listening sockets (state 0A).
    let pid = p.child.id();
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().into_owned();
            if let Some(ino) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.push(ino.to_string());
            }
        }
    }
    assert!(!inodes.is_empty(), "the still socket should be open");
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[3] == "0A" {
                assert!(
                    !inodes.contains(&cols[9].to_string()),
                    "listening TCP socket: {line}"
                );
            }
        }
    }
    // Stills still work.
    assert_eq!(p.unix_get("/still.rgb").body.len(), 512 * 512 * 3);
}
