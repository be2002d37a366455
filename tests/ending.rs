//! The end of the stream at SIGTERM as the players people point at a camera see it: ffmpeg,
//! mpv, Python's aiohttp and GStreamer, each on the real binary, must end cleanly (exit
//! status 0, no error line, GStreamer at end of stream) after the frames they were shown.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Runs `client` (`{url}` in an argument stands for the stream's URL) against a fresh picker,
/// waits until picker counts it as a stream client and has encoded a few frames since,
/// SIGTERMs picker and returns what the client printed and how it exited.
fn end_at_sigterm(tool: &str, client: &[&str]) -> (Output, String) {
    assert!(have(tool), "{tool} is needed: tests/run.sh installs it");
    let mut p = Picker::start(&[]);
    let url = p.url("/stream.mjpg");
    // `timeout`: a client that never sees the end fails the test instead of hanging it.
    let child = Command::new("timeout")
        .arg("60")
        .args(client.iter().map(|a| a.replace("{url}", &url)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Generous for a loaded machine: a Python or GStreamer start-up can take seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&p, "picker_stream_clients") < 1.0 {
        assert!(Instant::now() < deadline, "{tool} never connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = metric(&p, "picker_frames_encoded_total");
    while metric(&p, "picker_frames_encoded_total") < start + 5.0 {
        assert!(Instant::now() < deadline, "no frames encoded for {tool}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = p.terminate();
    assert!(status.success(), "picker: {status}");
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// The lines of `text` that report a problem.
fn complaints(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            ["invalid data", "corrupt", "error", "exception", "warning"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect()
}

#[test]
fn ffmpeg_ends_cleanly_at_sigterm() {
    // framecrc: one line per decoded frame on stdout; warnings and errors on stderr.
    let (out, text) = end_at_sigterm(
        "ffmpeg",
        &[
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "warning",
            "-f",
            "mpjpeg",
            "-i",
            "{url}",
            "-f",
            "framecrc",
            "-",
        ],
    );
    assert!(out.status.success(), "ffmpeg: {}\n{text}", out.status);
    assert!(complaints(&text).is_empty(), "{text}");
    // Every frame ffmpeg decoded is one line "0, pts, dts, duration, size, crc".
    let frames = text.lines().filter(|l| l.starts_with("0,")).count();
    assert!(frames >= 2, "{frames} frames:\n{text}");
}

#[test]
fn mpv_ends_cleanly_at_sigterm() {
    let (out, text) = end_at_sigterm(
        "mpv",
        &["mpv", "--vo=null", "--ao=null", "--no-config", "{url}"],
    );
    assert!(out.status.success(), "mpv: {}\n{text}", out.status);
    assert!(text.contains("(mjpeg"), "mpv saw no MJPEG video:\n{text}");
    assert!(text.contains("Exiting... (End of file)"), "{text}");
    assert!(complaints(&text).is_empty(), "{text}");
}

/// Reads the stream as a multipart body part by part, as aiohttp's users do; prints the
/// number of parts once the body has closed.
const AIOHTTP_READER: &str = r#"
import asyncio, sys, aiohttp
async def main(url):
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            reader = aiohttp.MultipartReader.from_response(resp)
            parts = 0
            while True:
                part = await reader.next()
                if part is None:
                    break
                await part.read()
                parts += 1
            print("parts", parts)
asyncio.run(main(sys.argv[1]))
"#;

#[test]
fn aiohttp_ends_cleanly_at_sigterm() {
    let (out, text) = end_at_sigterm(
        "/usr/bin/python3",
        &["/usr/bin/python3", "-c", AIOHTTP_READER, "{url}"],
    );
    assert!(out.status.success(), "aiohttp: {}\n{text}", out.status);
    let parts: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("parts "))
        .unwrap_or_else(|| panic!("no part count:\n{text}"))
        .parse()
        .unwrap();
    assert!(parts >= 2, "{parts} parts:\n{text}");
    assert!(complaints(&text).is_empty(), "{text}");
}

#[test]
fn gstreamer_reaches_end_of_stream_at_sigterm() {
    let (out, text) = end_at_sigterm(
        "gst-launch-1.0",
        &[
            "gst-launch-1.0",
            "souphttpsrc",
            "location={url}",
            "is-live=true",
            "!",
            "multipartdemux",
            "!",
            "jpegdec",
            "!",
            "fakesink",
        ],
    );
    assert!(
        out.status.success(),
        "gst-launch-1.0: {}\n{text}",
        out.status
    );
    assert!(text.contains("Got EOS from element"), "no EOS:\n{text}");
    assert!(!text.contains("ERROR"), "{text}");
}

/// Reads the stream with `requests` the way robot code does, a chunk then a pause (about one
/// part a second), so that picker paces it (`http/drain.rs`); prints the part count and the
/// body's last bytes once it has ended. A body cut off mid-part raises instead.
const SLOW_READER: &str = r#"
import sys, time, requests
r = requests.get(sys.argv[1], stream=True, timeout=30)
tail = b""
for chunk in r.iter_content(12 * 1024):
    tail = (tail + chunk)[-200:]
    time.sleep(1)
print("tail", repr(tail))
"#;

/// A reader that picker holds back (it reads a part a second) still gets the stream's whole
/// ending at SIGTERM: picker's wait for it to catch up ends at shutdown, and the ending goes
/// at once.
#[test]
fn a_slow_reader_gets_the_whole_ending_at_sigterm() {
    let (out, text) = end_at_sigterm(
        "/usr/bin/python3",
        &["/usr/bin/python3", "-c", SLOW_READER, "{url}"],
    );
    assert!(out.status.success(), "requests: {}\n{text}", out.status);
    let tail = text
        .lines()
        .find_map(|l| l.strip_prefix("tail "))
        .unwrap_or_else(|| panic!("no tail:\n{text}"));
    // The closing boundary, then the epilogue libavformat wants (`encoder::closing`).
    assert!(
        tail.contains(r"\r\n--picker-frame--\r\nContent-Type: image/jpeg\r\n\r\n"),
        "{tail}"
    );
    assert!(complaints(&text).is_empty(), "{text}");
}
