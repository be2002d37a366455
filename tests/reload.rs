//! SIGHUP through the real binary: the keys that apply at once without a restart
//! (`[controls]`, `stream.client-timeout`, `stream.max-clients`), seen over the still socket
//! and the stream port. The test pattern advertises a Pi camera's controls with
//! `PICKER_TEST_CONTROLS`.

mod support;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use serde_json::{Value, json};
use support::*;

fn controls(p: &Picker) -> Value {
    let r = http_get(UnixStream::connect(&p.socket).unwrap(), "/controls");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn put_controls(p: &Picker, body: &str) {
    let r = put_controls_raw(&p.socket, body);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Waits (bounded) until the camera thread has taken `n` changes.
fn wait_changes(p: &Picker, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = controls(p);
        if c["changes_applied"] == json!(n) && c["pending"] == json!(false) {
            return c;
        }
        assert!(Instant::now() < deadline, "camera took no change: {c}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rewrites the config file and sends SIGHUP; returns the "config reloaded" line.
fn reload(p: &mut Picker, text: &str) -> String {
    std::fs::write(&p.config, text).unwrap();
    kill(p.pid(), Signal::SIGHUP).unwrap();
    p.wait_log("config reloaded", Duration::from_secs(10))
}

#[test]
fn sighup_applies_the_controls_table_under_the_socket_s_changes() {
    let dir = temp_dir();
    let base = config_text(dir.path(), &[]);
    let text = format!("{base}[controls]\nexposure-time = 20000\nbrightness = 0.1\n");
    let mut p = Picker::start_config(dir, &text, &[("PICKER_TEST_CONTROLS", "imx708")]);
    // The robot fixes brightness over the socket.
    put_controls(&p, r#"{"brightness": 0.3}"#);
    wait_changes(&p, 1);

    let line = reload(
        &mut p,
        &format!("{base}[controls]\nexposure-time = 12000\nbrightness = 0.2\n"),
    );
    assert!(line.contains("[controls]"), "{line}");
    let c = wait_changes(&p, 2);
    assert_eq!(
        c["config"],
        json!({"exposure-time": 12000, "brightness": 0.2}),
        "{c}"
    );
    // The file's new exposure reaches the camera; the socket's brightness stays on top.
    assert_eq!(c["in_force"]["exposure-time"]["value"], json!(12000), "{c}");
    assert_eq!(c["in_force"]["brightness"]["value"], json!(0.3), "{c}");
    assert!(
        p.find_log("brightness changed in the file but set over the socket")
            .is_some(),
        "{}",
        p.log_text()
    );
    // DELETE /controls: the reloaded file's values.
    let r = raw_request(
        UnixStream::connect(&p.socket).unwrap(),
        b"DELETE /controls HTTP/1.1\r\nHost: picker\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let c = wait_changes(&p, 3);
    assert_eq!(c["in_force"]["brightness"]["value"], json!(0.2), "{c}");
}

#[test]
fn sighup_applies_client_timeout_and_max_clients_at_once() {
    let dir = temp_dir();
    // A client timeout no test would outlast: only the reloaded value can drop anybody.
    let text = config_text(
        dir.path(),
        &["stream.client-timeout = 3600", "stream.max-clients = 2"],
    );
    let mut p = Picker::start_config(dir, &text, &[]);
    let reloaded = config_text(
        p.dir.path(),
        &["stream.client-timeout = 1", "stream.max-clients = 1"],
    );
    // Same port as the running one.
    let port = format!("port = {}", p.addr().port());
    let reloaded = reloaded
        .lines()
        .map(|l| {
            if l.starts_with("port = ") {
                port.as_str()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let line = reload(&mut p, &reloaded);
    assert!(line.contains("stream.client-timeout = 1"), "{line}");
    assert!(line.contains("stream.max-clients = 1"), "{line}");

    // The 503 names the cap in force.
    let stalled = Mjpeg::open_small_window(p.addr(), "");
    let r = p.tcp_get("/stream.mjpg");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("max-clients = 1 reached"), "{}", r.text());

    // The stalled reader is dropped by the reloaded timeout (bound far below 3600 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&p, "picker_stream_clients_dropped_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled reader was not dropped: the reloaded client-timeout is not in force"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stalled);
    let (status, _) = p.terminate();
    assert!(status.success(), "{status}");
}
