//! Stills over the Unix socket: every format, fresh frames, real clients (curl, `picker still`).

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

fn seq(r: &Response) -> u64 {
    r.header("x-sequence").expect("X-Sequence").parse().unwrap()
}

#[test]
fn raw_stills_are_exactly_width_height_3_with_headers() {
    let p = Picker::start(&[]);
    let rgb = p.unix_get("/still.rgb");
    assert_eq!(rgb.status, 200);
    assert_eq!(rgb.body.len(), 512 * 512 * 3);
    assert_eq!(rgb.header("x-width"), Some("512"));
    assert_eq!(rgb.header("x-height"), Some("512"));
    assert!(seq(&rgb) >= 1);
    let ts: u64 = rgb.header("x-timestamp-ns").unwrap().parse().unwrap();
    assert!(ts > 0);

    let bgr = p.unix_get("/still.bgr");
    assert_eq!(bgr.body.len(), 512 * 512 * 3);
    // Bottom-left pixel is inside the first colour bar, which changes as bars scroll, so
    // compare the two images' colour sets instead: BGR is RGB with channels swapped.
    let colours = |px: &[u8], swap: bool| {
        let mut set: Vec<[u8; 3]> = px
            .chunks(3)
            .map(|c| {
                if swap {
                    [c[2], c[1], c[0]]
                } else {
                    [c[0], c[1], c[2]]
                }
            })
            .collect();
        set.sort();
        set.dedup();
        set
    };
    let row = 500 * 512 * 3..501 * 512 * 3;
    assert_eq!(
        colours(&rgb.body[row.clone()], false),
        colours(&bgr.body[row], true)
    );
}

#[test]
fn still_rgb_is_a_plausible_picture_of_the_pattern() {
    let p = Picker::start(&[]);
    let rgb = p.unix_get("/still.rgb").body;
    // A row below the frame-number label crosses all eight 75% colour bars.
    let row = &rgb[400 * 512 * 3..401 * 512 * 3];
    let mut colours: Vec<&[u8]> = row.chunks(3).collect();
    colours.sort();
    colours.dedup();
    assert_eq!(colours.len(), 8, "{colours:?}");
    assert!(
        colours.contains(&&[191u8, 191, 0][..]),
        "yellow bar: {colours:?}"
    );
}

#[test]
fn ppm_png_and_jpg_stills_decode() {
    let p = Picker::start(&[]);
    let ppm = p.unix_get("/still.ppm");
    assert_eq!(ppm.header("content-type"), Some("image/x-portable-pixmap"));
    let header = b"P6\n512 512\n255\n";
    assert_eq!(&ppm.body[..header.len()], header);
    assert_eq!(ppm.body.len(), header.len() + 512 * 512 * 3);

    let png = p.unix_get("/still.png");
    assert_eq!(png.header("content-type"), Some("image/png"));
    let (w, h, px) = decode_png(&png.body);
    assert_eq!((w, h, px.len()), (512, 512, 512 * 512 * 3));

    let jpg = p.unix_get("/still.jpg");
    assert_eq!(jpg.header("content-type"), Some("image/jpeg"));
    assert_eq!(decode_jpeg(&jpg.body).0, 512);
}

#[test]
fn still_size_follows_the_config() {
    let p = Picker::start(&["still.width = 640", "still.height = 512"]);
    let rgb = p.unix_get("/still.rgb");
    assert_eq!(rgb.body.len(), 640 * 512 * 3);
    assert_eq!(rgb.header("x-width"), Some("640"));
    let (w, h, _) = decode_png(&p.unix_get("/still.png").body);
    assert_eq!((w, h), (640, 512));
}

#[test]
fn fresh_waits_for_a_newer_frame_and_latest_does_not() {
    let p = Picker::start(&["camera.framerate = 5"]);
    let first = p.unix_get("/still.rgb");
    let again = p.unix_get("/still.rgb");
    // Latest: no waiting, so two quick requests at 5 fps mostly see the same frame.
    assert!(seq(&again) <= seq(&first) + 1);
    let fresh = p.unix_get("/still.rgb?fresh=1");
    assert!(
        seq(&fresh) > seq(&again),
        "fresh {} vs {}",
        seq(&fresh),
        seq(&again)
    );
    let ts = |r: &Response| r.header("x-timestamp-ns").unwrap().parse::<u64>().unwrap();
    assert!(ts(&fresh) > ts(&again));
}

#[test]
fn fresh_times_out_with_504_when_the_camera_stalls_and_latest_is_503() {
    // The test pattern stalls for 6 s after frame 20 (fault injection).
    let p = Picker::start_with_env(&[], &[("PICKER_TEST_STALL", "20:6000")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seq(&p.unix_get("/still.rgb")) < 20 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = p.unix_get("/still.rgb?fresh=1");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("no new frame"), "{}", r.text());
    // By now the camera is offline (no frame for the stall limit, as for /snapshot.jpg): the
    // latest frame is stale, so a still says so and when to come back.
    let latest = p.unix_get("/still.rgb");
    assert_eq!(latest.status, 503, "{}", latest.text());
    assert_eq!(latest.header("retry-after"), Some("1"));
    assert_eq!(p.unix_get("/still.rgb?fresh=maybe").status, 400);
}

#[test]
fn curl_over_the_unix_socket() {
    assert!(have("curl"), "curl is needed: tests/run.sh installs it");
    let p = Picker::start(&[]);
    let out_file = p.dir.path().join("still.png");
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "--unix-socket"])
        .arg(&p.socket)
        .arg("http://picker/still.png")
        .arg("-o")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (w, h, _) = decode_png(&std::fs::read(&out_file).unwrap());
    assert_eq!((w, h), (512, 512));
}

#[test]
fn picker_still_client_writes_files_and_stdout() {
    let p = Picker::start(&[]);
    let out_file = p.dir.path().join("s.png");
    let st = Command::new(BIN)
        .args(["still", "--format", "png", "--socket"])
        .arg(&p.socket)
        .arg("-o")
        .arg(&out_file)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(decode_png(&std::fs::read(&out_file).unwrap()).0, 512);
    let out = Command::new(BIN)
        .args(["still", "--format", "rgb", "--fresh", "--socket"])
        .arg(&p.socket)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 512 * 512 * 3);
    // Through the config's socket path, as a user on the machine would call it.
    let out = Command::new(BIN)
        .args(["still", "--format", "ppm", "--config"])
        .arg(&p.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.starts_with(b"P6\n512 512\n255\n"));
    // `-o -` is standard output, as for curl and wget, not a file named "-".
    let out = Command::new(BIN)
        .args(["still", "--format", "rgb", "-o", "-", "--socket"])
        .arg(&p.socket)
        .current_dir(p.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 512 * 512 * 3);
    assert!(!p.dir.path().join("-").exists());
}

#[test]
fn picker_still_names_the_socket_when_nothing_listens() {
    let dir = temp_dir();
    let missing = dir.path().join("none.sock");
    let out = Command::new(BIN)
        .args(["still", "--socket"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

/// A socket that takes the connection and never answers (a picker stopped with SIGSTOP, or
/// stuck): `picker still` gives up after `--timeout`, naming the socket, instead of hanging
/// the robot's script for ever (it had no limit).
#[test]
fn picker_still_gives_up_on_a_socket_that_never_answers() {
    let dir = temp_dir();
    let path = dir.path().join("mute.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let held = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(60));
        drop(conn);
    });
    let mut child = Command::new(BIN)
        .args(["still", "--timeout", "0.5", "--socket"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: far beyond the half second asked; the old client never ended.
    let status = (0..300).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        child.try_wait().unwrap()
    });
    let Some(status) = status else {
        child.kill().unwrap();
        panic!("picker still was still waiting after 30 s");
    };
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("no answer from picker at"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    drop(held);
    // Numbers that cannot be a wait are refused by name, before any connection.
    for bad in ["-1", "nan", "1e30", "0", "x"] {
        let out = Command::new(BIN)
            .args(["still", &format!("--timeout={bad}"), "--socket"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("expected seconds from 0.1 to 3600"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn unknown_still_paths_404_and_garbage_400() {
    let p = Picker::start(&[]);
    assert_eq!(p.unix_get("/still.gif").status, 404);
    assert_eq!(p.unix_get("/").status, 404);
    let r = raw_request(
        std::os::unix::net::UnixStream::connect(&p.socket).unwrap(),
        b"NONSENSE\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(p.unix_get("/still.rgb").status, 200);
}

#[test]
fn stills_never_pause_the_stream() {
    let p = Picker::start(&[]);
    let mut m = p.mjpeg("");
    m.read_opening();
    m.next_part();
    let before = metric(&p, "picker_frames_captured_total");
    for _ in 0..20 {
        assert_eq!(p.unix_get("/still.png").status, 200);
        m.next_part();
    }
    // The camera kept running at its rate while stills were taken: same sequence source.
    assert!(metric(&p, "picker_frames_captured_total") >= before + 19.0);
}

#[test]
fn head_answers_with_the_get_head_and_other_methods_405_with_allow() {
    let p = Picker::start(&[]);
    let request = |method: &str, path: &str| {
        raw_request(
            std::os::unix::net::UnixStream::connect(&p.socket).unwrap(),
            format!("{method} {path} HTTP/1.1\r\nHost: picker\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    // Headers only, with the length a GET's body has.
    let head = request("HEAD", "/still.ppm");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "{} body bytes", head.body.len());
    let ppm_len = "P6\n512 512\n255\n".len() + 512 * 512 * 3;
    assert_eq!(
        head.header("content-length"),
        Some(ppm_len.to_string().as_str())
    );
    assert_eq!(head.header("content-type"), Some("image/x-portable-pixmap"));
    assert!(head.header("x-sequence").is_some());
    // Same status as GET: a bad query is 400 either way, an unknown path 404.
    assert_eq!(request("HEAD", "/still.rgb?fresh=maybe").status, 400);
    assert_eq!(request("HEAD", "/still.gif").status, 404);
    let controls = request("HEAD", "/controls");
    assert_eq!(controls.status, 200);
    assert!(controls.body.is_empty());
    assert_eq!(controls.header("content-type"), Some("application/json"));

    for (method, path, allow) in [
        ("POST", "/still.jpg", "GET, HEAD"),
        ("DELETE", "/still.rgb", "GET, HEAD"),
        ("POST", "/controls", "GET, HEAD, PUT, DELETE"),
    ] {
        let r = request(method, path);
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    // Unknown paths stay 404 whatever the method.
    assert_eq!(request("POST", "/nothing").status, 404);
}

/// A Raspberry Pi camera delivers the still as B,G,R (libcamera's `RGB888`): `/still.bgr` is
/// then the frame's own bytes, with no encode (the pool's count stays), and `/still.rgb` the
/// converted picture; on the pattern's RGB still it is the other way round. (Only RGB stills
/// had been served as they are, so on a Pi both went through the encode pool.)
#[test]
fn the_cameras_own_byte_order_is_served_as_is_and_the_other_converted() {
    let encodes = |p: &Picker| metric(p, "picker_still_encodes_total");
    // The colour bars of row 400 (below the label) from the left, in RGB: the pattern's
    // order (white, yellow, cyan, green, magenta, red, blue, black) turned by its scroll.
    let bars = |body: &[u8], bgr: bool| {
        let mut seen: Vec<[u8; 3]> = Vec::new();
        for p in body[400 * 512 * 3..401 * 512 * 3].chunks(3) {
            let c = if bgr {
                [p[2], p[1], p[0]]
            } else {
                [p[0], p[1], p[2]]
            };
            if seen.last() != Some(&c) {
                seen.push(c);
            }
        }
        if seen.len() > 1 && seen.first() == seen.last() {
            seen.pop(); // one bar cut by the wrap
        }
        let white = seen.iter().position(|c| *c == [191, 191, 191]).unwrap();
        seen.rotate_left(white);
        seen
    };
    let smpte: Vec<[u8; 3]> = vec![
        [191, 191, 191],
        [191, 191, 0],
        [0, 191, 191],
        [0, 191, 0],
        [191, 0, 191],
        [191, 0, 0],
        [0, 0, 191],
        [0, 0, 0],
    ];
    for (env, native, converted) in [
        (
            &[("PICKER_TEST_STILL_FORMAT", "bgr24")][..],
            "/still.bgr",
            "/still.rgb",
        ),
        (&[][..], "/still.rgb", "/still.bgr"),
    ] {
        let p = Picker::start_with_env(&[], env);
        let before = encodes(&p);
        for _ in 0..3 {
            let r = p.unix_get(&format!("{native}?fresh=1"));
            assert_eq!(r.status, 200, "{env:?} {native}");
            assert_eq!(r.body.len(), 512 * 512 * 3);
        }
        assert_eq!(
            encodes(&p),
            before,
            "{env:?}: {native} is the frame's own bytes"
        );
        let rgb = p.unix_get("/still.rgb?fresh=1");
        let bgr = p.unix_get("/still.bgr?fresh=1");
        assert_eq!(
            encodes(&p),
            before + 1.0,
            "{env:?}: {converted} encoded once"
        );
        // Each in its own order: the same picture.
        assert_eq!(bars(&rgb.body, false), smpte, "{env:?} rgb");
        assert_eq!(bars(&bgr.body, true), smpte, "{env:?} bgr");
    }
}
