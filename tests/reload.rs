//! SIGHUP through the real binary: the keys that apply at once without a restart
//! (`[controls]`, `stream.client-timeout`, `stream.max-clients`, `stream.port` and
//! `stream.bind`), seen over the still socket, the stream port, the log and sd-notify. The
//! test pattern advertises a Pi camera's controls with `PICKER_TEST_CONTROLS`. The listener
//! tests add TEST-NET-1 addresses (RFC 5737) to lo, which needs root (as CI runs them).

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
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

/// The config of `p` with the stream on `bind`:`port`.
fn stream_on(p: &Picker, bind: &str, port: u16) -> String {
    config_text(
        p.dir.path(),
        &[
            &format!("stream.bind = \"{bind}\""),
            &format!("stream.port = {port}"),
        ],
    )
}

/// Waits (bounded) until `n` log lines contain `needle`; returns the `n`th.
fn wait_nth_log(p: &Picker, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<String> = p
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect();
        if found.len() >= n {
            return found[n - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "not {n} lines with {needle:?} in the log:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn snapshot(addr: SocketAddr) -> u16 {
    http_get(TcpStream::connect(addr).unwrap(), "/snapshot.jpg").status
}

#[test]
fn after_a_new_port_the_logged_urls_and_status_name_it_not_the_old_one() {
    let notify = NotifySocket::new();
    let mut p = Picker::start_with_env(
        &["stream.bind = \"0.0.0.0\""],
        &[("NOTIFY_SOCKET", notify.path.to_str().unwrap())],
    );
    let old = p.addr().port();
    let new = free_port();
    let text = stream_on(&p, "0.0.0.0", new);
    let line = reload(&mut p, &text);
    assert!(
        line.contains(&format!("applied stream.port = {new}")),
        "{line}"
    );
    assert_eq!(snapshot(SocketAddr::from(([127, 0, 0, 1], new))), 200);

    // STATUS= follows the port at once (the monitor looks twice a second), not only when an
    // address comes or goes.
    let want = format!(":{new}/stream.mjpg");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    while !said
        .iter()
        .any(|m: &String| m.contains("STATUS=streaming at http://") && m.contains(&want))
    {
        assert!(
            Instant::now() < deadline,
            "no STATUS= naming port {new} (old {old}): {said:?}"
        );
        if let Ok(n) = notify.sock.recv(&mut buf) {
            said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    // An address that appears after the reload is logged with the port that answers.
    let _address = TestAddress::add("192.0.2.81");
    p.wait_log(
        &format!("stream at http://192.0.2.81:{new}/stream.mjpg"),
        Duration::from_secs(10),
    );
    assert!(
        p.find_log(&format!("192.0.2.81:{old}")).is_none(),
        "{}",
        p.log_text()
    );
    let (status, _) = p.terminate();
    assert!(status.success(), "{status}");
}

/// `0.0.0.0` to `127.0.0.1` on the same port, as the README advises to restrict access: the
/// two cannot hold the port together, so the old listener is closed first.
#[test]
fn a_reload_that_narrows_the_bind_on_the_same_port_serves_there_alone() {
    let _address = TestAddress::add("192.0.2.82");
    let mut p = Picker::start(&["stream.bind = \"0.0.0.0\""]);
    let port = p.addr().port();
    let elsewhere = SocketAddr::from(([192, 0, 2, 82], port));
    // Reachable on another of the machine's addresses before...
    assert_eq!(snapshot(elsewhere), 200);
    let text = stream_on(&p, "127.0.0.1", port);
    let line = reload(&mut p, &text);
    assert!(line.contains("applied stream.bind = 127.0.0.1"), "{line}");
    assert!(!line.contains("NOT applied"), "{line}");
    assert!(
        p.find_log(&format!("listening on http://127.0.0.1:{port}"))
            .is_some(),
        "{}",
        p.log_text()
    );
    // ...only on loopback after.
    assert_eq!(snapshot(SocketAddr::from(([127, 0, 0, 1], port))), 200);
    let refused = TcpStream::connect(elsewhere).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let (status, _) = p.terminate();
    assert!(status.success(), "{status}");
}

/// A listener that cannot move keeps serving where it was, and the log says why (the OS's
/// reason) and what was not applied.
#[test]
fn a_listener_that_cannot_move_stays_and_the_log_says_why() {
    let _address = TestAddress::add("192.0.2.83");
    let mut p = Picker::start(&[]);
    let here = p.addr();
    let port = here.port();
    // Somebody else holds the port on another address: `0.0.0.0` needs it everywhere. Picker
    // closes its own listener first (same port), fails again, and binds the old one again.
    let _other = TcpListener::bind(("192.0.2.83", port)).unwrap();
    let text = stream_on(&p, "0.0.0.0", port);
    let line = reload(&mut p, &text);
    assert!(
        line.contains("nothing applied; NOT applied (see the error above): stream.bind = 0.0.0.0"),
        "{line}"
    );
    let error = p.wait_log("ERROR reload:", Duration::from_secs(10));
    assert!(
        error.contains(&format!(
            "cannot listen on 0.0.0.0:{port} (stream.port = {port} in {}): Address already \
             in use (os error 98); back on http://{here}",
            p.config.display()
        )),
        "{error}"
    );
    assert_eq!(snapshot(here), 200);

    // An address this machine does not have: refused at once, the old listener untouched.
    let line = {
        std::fs::write(&p.config, stream_on(&p, "192.0.2.84", port)).unwrap();
        kill(p.pid(), Signal::SIGHUP).unwrap();
        wait_nth_log(&p, "config reloaded", 2)
    };
    assert!(
        line.contains("NOT applied (see the error above): stream.bind = 192.0.2.84"),
        "{line}"
    );
    let error = wait_nth_log(&p, "ERROR reload:", 2);
    assert!(
        error.contains("Cannot assign requested address (os error 99); still serving on"),
        "{error}"
    );
    assert_eq!(snapshot(here), 200);
    assert_eq!(p.unix_get("/still.rgb").status, 200);
    let (status, _) = p.terminate();
    assert!(status.success(), "{status}");
}
