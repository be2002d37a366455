//! The preview page in a real browser (headless Chromium over the DevTools protocol) and
//! over plain HTTP: the moving stream, the embed snippet with the address the browser used,
//! the commands for this machine (run as shown), the live status and its offline flip, the
//! copy button, auth, JavaScript off, the Content-Security-Policy and hostile Host headers.
//!
//! `PICKER_SCREENSHOTS=DIR` makes the browser tests also write the README's screenshots
//! (`preview.png`, `offline.png`) into DIR: `tests/screenshots.sh` does that into `docs/`.

mod cdp;
mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;

/// True if Chromium is there; else the test is skipped, except where the browser is required.
fn chromium_present() -> bool {
    if have("chromium") {
        return true;
    }
    // A package build (dpkg-buildpackage runs the tests) has no browser; tests/run.sh and CI
    // install it and set PICKER_REQUIRE_BROWSER so the tests can't be skipped there.
    assert!(
        std::env::var_os("PICKER_REQUIRE_BROWSER").is_none(),
        "chromium is required (PICKER_REQUIRE_BROWSER is set) but not installed"
    );
    eprintln!("SKIPPED: chromium is not installed; the preview page was not checked in a browser");
    false
}

/// The seed's snippet for `address` and a `w` x `h` stream.
fn snippet(address: &str, w: u32, h: u32) -> String {
    let shape = if w == h { " Square" } else { "" };
    format!(
        "<div class=\"camera-preview\">\n    <h3>Live Stream ({w}x{h}{shape})</h3>\n    \
         <img src=\"http://{address}/stream.mjpg\" width=\"{w}\" height=\"{h}\">\n</div>"
    )
}

fn text_of(b: &mut cdp::Browser, id: &str) -> String {
    b.eval(&format!("document.getElementById({id:?}).textContent"))
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The stream element's pixels in a viewport screenshot, as (distinct coarse colours along
/// its middle row, that row).
fn stream_row(b: &mut cdp::Browser) -> (usize, Vec<[u8; 3]>) {
    let rect = b.eval(
        "(() => { const r = document.getElementById('stream').getBoundingClientRect(); \
         return [r.x, r.y, r.width, r.height]; })()",
    );
    let r: Vec<f64> = rect
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let (w, h, px) = decode_png(&b.screenshot(false));
    // Screenshots may carry alpha.
    let channels = px.len() / (w as usize * h as usize);
    let stride = w as usize * channels;
    let y = (r[1] + r[3] / 2.0) as usize;
    let (x0, x1) = (r[0] as usize + 2, (r[0] + r[2]) as usize - 2);
    let row: Vec<[u8; 3]> = (x0..x1)
        .map(|x| {
            let i = y * stride + x * channels;
            [px[i], px[i + 1], px[i + 2]]
        })
        .collect();
    let mut distinct: Vec<[u8; 3]> = row.iter().map(|c| c.map(|v| v / 32)).collect();
    distinct.sort();
    distinct.dedup();
    (distinct.len(), row)
}

/// The stream element shows the colour bars, and they move within 6 s.
fn assert_stream_moves(b: &mut cdp::Browser) {
    let (distinct, first) = stream_row(b);
    assert!(
        distinct >= 7,
        "the stream is not rendered: {distinct} colours"
    );
    let moved = (0..30).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        stream_row(b).1 != first
    });
    assert!(moved, "the picture did not change in 6 s");
}

/// Writes a README screenshot when `PICKER_SCREENSHOTS` names a directory.
fn keep_screenshot(b: &mut cdp::Browser, name: &str) {
    if let Some(dir) = std::env::var_os("PICKER_SCREENSHOTS") {
        let path = std::path::Path::new(&dir).join(name);
        std::fs::write(&path, b.screenshot(true)).unwrap();
        eprintln!("wrote {}", path.display());
    }
}

fn launch(dir: &std::path::Path, name: &str, height: u32) -> cdp::Browser {
    cdp::Browser::launch(&dir.join(format!("profile-{name}")), 700, height, &[])
}

fn sh(cmd: &str, cwd: &std::path::Path) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("timeout 20 {cmd}"))
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn chromium_shows_the_stream_the_snippet_the_commands_and_the_live_status() {
    if !chromium_present() {
        return;
    }
    let p = Picker::start(&[]);
    let dir = temp_dir();
    let mut b = launch(dir.path(), "live", 1100);
    b.call("Network.enable", json!({}));
    b.call("Log.enable", json!({}));
    // By name, not by the address picker logged: the snippet must hold what the browser used.
    let origin = format!("http://localhost:{}", p.addr().port());
    b.open(&format!("{origin}/"));

    assert_eq!(
        b.eval("document.title"),
        json!("Live Stream (512x512 Square)")
    );
    let want = snippet(&format!("localhost:{}", p.addr().port()), 512, 512);
    assert_eq!(text_of(&mut b, "snippet"), want);

    // The status, from /state: live, at the camera's rate, this page among the viewers.
    b.wait_for(
        "document.getElementById('st-badge').textContent === 'LIVE'",
        Duration::from_secs(20),
    );
    let fps_text = b.wait_for(
        "(t => t.endsWith(' fps') && parseFloat(t) > 0 && t)(document.getElementById('st-fps').textContent)",
        Duration::from_secs(10),
    );
    let fps: f64 = fps_text
        .as_str()
        .unwrap()
        .trim_end_matches(" fps")
        .parse()
        .unwrap();
    // The test pattern runs at 30 fps; a debug build on a loaded 2-core machine makes fewer,
    // so the bound is loose: a live rate, never above the configured one.
    assert!((5.0..=31.0).contains(&fps), "{fps_text}");
    assert!(text_of(&mut b, "st-clients").starts_with(|c: char| c.is_ascii_digit() && c != '0'));
    assert_eq!(text_of(&mut b, "st-stream"), "512x512 I420, sent as JPEG");
    assert_eq!(text_of(&mut b, "st-still"), "512x512 RGB24");
    assert!(text_of(&mut b, "st-crop").starts_with("not applied"));
    assert!(text_of(&mut b, "st-controls").starts_with("none set"));

    // The stream is drawn (the colour bars) and moving.
    assert_stream_moves(&mut b);

    // The copy button puts the snippet on the clipboard (headless Chromium has one; the
    // page is on localhost, a secure context, so it uses the Clipboard API).
    b.browser(
        "Browser.grantPermissions",
        json!({"origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}),
    );
    b.call(
        "Emulation.setFocusEmulationEnabled",
        json!({"enabled": true}),
    );
    b.click("#copy");
    b.wait_for(
        "document.getElementById('copied').textContent === 'Copied.'",
        Duration::from_secs(10),
    );
    assert_eq!(b.eval("navigator.clipboard.readText()"), json!(want));

    // The commands, run as shown, give a JPEG and a PNG of the stream's size.
    let snap = text_of(&mut b, "cmd-snapshot");
    assert_eq!(snap, format!("curl -o snapshot.jpg {origin}/snapshot.jpg"));
    let still = text_of(&mut b, "cmd-still");
    assert_eq!(
        still,
        format!(
            "curl --unix-socket {} http://picker/still.png -o still.png",
            p.socket.display()
        )
    );
    for cmd in [&snap, &still] {
        let out = sh(&format!("{cmd} -sS"), dir.path());
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        decode_jpeg(&std::fs::read(dir.path().join("snapshot.jpg")).unwrap()).0,
        512
    );
    assert_eq!(
        decode_png(&std::fs::read(dir.path().join("still.png")).unwrap()).0,
        512
    );

    // Nothing but picker's own URLs was loaded, and nothing was refused by the CSP (a
    // refused inline script or style would be logged).
    let urls: Vec<String> = b
        .events_named("Network.requestWillBeSent")
        .iter()
        .map(|e| e["params"]["request"]["url"].as_str().unwrap().to_string())
        .collect();
    for u in &urls {
        assert!(
            u.starts_with(&format!("{origin}/")),
            "external request: {u}"
        );
    }
    for path in ["/", "/preview.css", "/preview.js", "/stream.mjpg", "/state"] {
        assert!(
            urls.iter().any(|u| u == &format!("{origin}{path}")),
            "{path} not loaded: {urls:?}"
        );
    }
    let log: Vec<String> = b
        .events_named("Log.entryAdded")
        .iter()
        .map(|e| e["params"]["entry"]["text"].to_string())
        .collect();
    assert!(
        !log.iter().any(|t| t.contains("Content Security Policy")),
        "{log:?}"
    );
    keep_screenshot(&mut b, "preview.png");
}

#[test]
fn chromium_status_goes_offline_with_its_reason_during_a_stall_and_back() {
    if !chromium_present() {
        return;
    }
    // The stall starts 4 s in (120 frames at 30 fps; later on a slow machine) and lasts 8 s;
    // offline is declared after 2 s without a frame.
    let p = Picker::start_with_env(&[], &[("PICKER_TEST_STALL", "120:8000")]);
    let dir = temp_dir();
    let mut b = launch(dir.path(), "stall", 1000);
    b.open(&p.url("/"));
    let badge = "document.getElementById('st-badge').textContent";
    b.wait_for(&format!("{badge} === 'OFFLINE'"), Duration::from_secs(30));
    let reason = text_of(&mut b, "st-reason");
    assert!(reason.starts_with("no frame for "), "{reason}");
    assert_eq!(text_of(&mut b, "st-fps"), "0 fps");
    // The stream shows the offline picture (grey: no colour bars) before the screenshot.
    let grey = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        stream_row(&mut b).0 <= 3
    });
    assert!(grey, "the offline picture never showed");
    keep_screenshot(&mut b, "offline.png");
    b.wait_for(&format!("{badge} === 'LIVE'"), Duration::from_secs(30));
    assert_eq!(text_of(&mut b, "st-reason"), "");
}

#[test]
fn chromium_page_with_auth_and_a_configured_size() {
    if !chromium_present() {
        return;
    }
    let hash = hash_password("s3cret");
    let p = Picker::start(&[
        "stream.width = 640",
        "stream.height = 480",
        "still.width = 640",
        "still.height = 480",
        &format!("stream.auth-users = {{ robot = {hash:?} }}"),
    ]);
    let dir = temp_dir();
    let mut b = launch(dir.path(), "auth", 1100);
    // As a person would type them into the browser's login dialog; the page's own requests
    // (/state, the stream) then go with the browser's credentials.
    b.log_in_as("robot", "s3cret");
    b.open(&p.url("/"));
    assert_eq!(b.eval("document.title"), json!("Live Stream (640x480)"));
    assert_eq!(
        text_of(&mut b, "snippet"),
        snippet(&p.addr().to_string(), 640, 480)
    );
    b.wait_for(
        "document.getElementById('st-badge').textContent === 'LIVE'",
        Duration::from_secs(20),
    );
    assert_eq!(text_of(&mut b, "st-stream"), "640x480 I420, sent as JPEG");
    let (distinct, _) = stream_row(&mut b);
    assert!(
        distinct >= 7,
        "the stream is not rendered: {distinct} colours"
    );
    // The snapshot command names the user who logged in (curl asks for the password).
    assert_eq!(
        text_of(&mut b, "cmd-snapshot"),
        format!("curl -u robot -o snapshot.jpg {}", p.url("/snapshot.jpg"))
    );
}

#[test]
fn chromium_without_javascript_still_shows_the_stream_and_the_snippet() {
    if !chromium_present() {
        return;
    }
    let p = Picker::start(&[]);
    let dir = temp_dir();
    let mut b = launch(dir.path(), "nojs", 1000);
    b.call(
        "Emulation.setScriptExecutionDisabled",
        json!({"value": true}),
    );
    b.open(&p.url("/"));
    // Filled by the server from the Host header the browser sent.
    assert_eq!(
        text_of(&mut b, "snippet"),
        snippet(&p.addr().to_string(), 512, 512)
    );
    // The status needs the script: hidden, and the note pointing at /state is shown.
    assert_eq!(
        b.eval("document.getElementById('status').hidden"),
        json!(true)
    );
    assert_eq!(
        b.eval("document.getElementById('copy').hidden"),
        json!(true)
    );
    assert!(
        b.eval("document.querySelector('noscript') !== null")
            .as_bool()
            .unwrap()
    );
    assert_stream_moves(&mut b);
}

#[test]
fn page_and_its_files_carry_the_csp_and_name_nothing_external() {
    let p = Picker::start(&[]);
    let csp = "default-src 'none'; img-src 'self'; script-src 'self'; style-src 'self'; \
               connect-src 'self'; base-uri 'none'; form-action 'none'";
    for (path, kind) in [
        ("/", "text/html"),
        ("/preview.js", "text/javascript"),
        ("/preview.css", "text/css"),
    ] {
        let r = p.tcp_get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-security-policy"), Some(csp), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        let body = r.text();
        if path == "/" {
            // Every src and href is relative: no scheme, no host, not even a rooted path
            // (a proxy's prefix must stay).
            for attr in ["src=\"", "href=\""] {
                for value in body.split(attr).skip(1) {
                    let value = &value[..value.find('"').unwrap()];
                    assert!(
                        !value.contains(':') && !value.starts_with('/'),
                        "{attr}{value}"
                    );
                }
            }
            assert!(
                !body.contains("<script>") && !body.contains("<style"),
                "inline code"
            );
            assert!(!body.contains(" style="), "inline style");
        } else {
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path}"
            );
            assert!(
                !body.contains("@import") && !body.contains("url("),
                "{path}"
            );
        }
    }
}

#[test]
fn a_hostile_host_header_cannot_put_html_into_the_page() {
    let p = Picker::start(&[]);
    let port = p.addr().port();
    for host in [
        "\"><script>alert(1)</script>",
        "x\"><img src=x onerror=alert(1)>",
        "a b",
        "robot:pw@evil.example",
        "$(reboot):80",
    ] {
        let r = raw_request(
            std::net::TcpStream::connect(p.addr()).unwrap(),
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let body = r.text();
        if r.status != 200 {
            // hyper may refuse a Host it cannot parse: then nothing of it is shown either.
            assert_eq!(r.status, 400, "{host}");
            continue;
        }
        assert!(
            !body.contains("<script>alert") && !body.contains("onerror"),
            "{host}: {body}"
        );
        assert!(
            !body.contains("reboot") && !body.contains("evil"),
            "{host}: {body}"
        );
        // The seed's placeholder instead, with the configured port.
        assert!(
            body.contains(&format!("http://&lt;IP_ADDRESS&gt;:{port}/stream.mjpg")),
            "{host}: {body}"
        );
    }
    // A name a browser would send is shown as sent, a missing Host gives the placeholder.
    let r = raw_request(
        std::net::TcpStream::connect(p.addr()).unwrap(),
        b"GET / HTTP/1.1\r\nHost: camera.local:8080\r\nConnection: close\r\n\r\n",
    );
    assert!(r.text().contains("http://camera.local:8080/stream.mjpg"));
    let r = raw_request(
        std::net::TcpStream::connect(p.addr()).unwrap(),
        b"GET / HTTP/1.0\r\n\r\n",
    );
    assert!(
        r.text()
            .contains(&format!("http://&lt;IP_ADDRESS&gt;:{port}/stream.mjpg"))
    );
}
