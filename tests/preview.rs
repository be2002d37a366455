//! The preview page in a real browser: headless Chromium renders the live stream.

mod support;

use std::process::Command;

use support::*;

/// Headless Chromium as a test client: no sandbox (root), no background traffic (the network
/// here is closed), a fresh profile per call, at most 60 s.
fn chromium(dir: &std::path::Path, name: &str) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg("60")
        .arg("chromium")
        .args(CHROMIUM_FLAGS)
        .args(["--hide-scrollbars", "--window-size=600,650"]);
    cmd.arg(format!(
        "--user-data-dir={}",
        dir.join(format!("profile-{name}")).display()
    ));
    cmd
}

/// Screenshot of `url` by headless Chromium, decoded to (width, height, RGB).
fn screenshot(url: &str, dir: &std::path::Path, name: &str) -> (u32, u32, Vec<u8>) {
    let shot = dir.join(format!("{name}.png"));
    let out = chromium(dir, name)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    let png = std::fs::read(&shot)
        .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    let (w, h, px) = decode_png(&png);
    // Screenshots may carry alpha; keep RGB.
    let channels = px.len() / (w * h) as usize;
    let rgb = px
        .chunks(channels)
        .flat_map(|c| [c[0], c[1], c[2]])
        .collect();
    (w, h, rgb)
}

fn row_colours(w: u32, rgb: &[u8], y: u32) -> Vec<[u8; 3]> {
    let row = &rgb[(y * w * 3) as usize..((y + 1) * w * 3) as usize];
    row.chunks(3).map(|c| [c[0], c[1], c[2]]).collect()
}

#[test]
fn chromium_shows_the_live_stream_on_the_preview_page() {
    if !have("chromium") {
        // A package build (dpkg-buildpackage runs the tests) has no browser; tests/run.sh
        // and CI install it and set PICKER_REQUIRE_BROWSER so the test can't be skipped there.
        assert!(
            std::env::var_os("PICKER_REQUIRE_BROWSER").is_none(),
            "chromium is required (PICKER_REQUIRE_BROWSER is set) but not installed"
        );
        eprintln!(
            "SKIPPED: chromium is not installed; the preview page was not checked in a browser"
        );
        return;
    }
    let p = Picker::start(&[]);
    let dir = temp_dir();
    let url = p.url("/");

    let dom = chromium(dir.path(), "dom")
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("<title>Live Stream (512x512 Square)</title>"),
        "{dom}"
    );

    let (w, h, first) = screenshot(&url, dir.path(), "a");
    assert!(w >= 560 && h >= 600, "{w}x{h}");
    // Through the middle of the picture: the colour bars, i.e. many saturated colours.
    let mid = row_colours(w, &first, 300);
    let mut distinct: Vec<[u8; 3]> = mid.iter().map(|c| c.map(|v| v / 32)).collect();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() >= 7,
        "the stream is not rendered: {distinct:?}"
    );
    // It is moving: a later screenshot shows the bars elsewhere.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (_, _, second) = screenshot(&url, dir.path(), "b");
    assert_ne!(
        row_colours(w, &second, 300),
        mid,
        "the picture did not change"
    );
}
