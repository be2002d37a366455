//! Camera controls through the real binary: the `[controls]` table reported per key in
//! `/state`, `/controls` over the still socket with curl (GET, PUT, DELETE, errors, size cap)
//! and never on the TCP port. The test pattern has no controls unless
//! `PICKER_TEST_CONTROLS` gives it those of a recorded Pi camera.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

fn config(dir: &std::path::Path, controls: &str) -> String {
    format!("{}[controls]\n{controls}\n", config_text(dir, &[]))
}

fn start(controls: &str, camera: Option<&str>) -> Picker {
    let dir = temp_dir();
    let text = config(dir.path(), controls);
    let env: Vec<(&str, &str)> = camera
        .map(|c| ("PICKER_TEST_CONTROLS", c))
        .into_iter()
        .collect();
    Picker::start_config(dir, &text, &env)
}

/// curl over the still socket: (status, body).
fn curl(p: &Picker, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-m",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ])
    .arg("--unix-socket")
    .arg(&p.socket)
    .arg(format!("http://picker{path}"));
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.output().expect("curl runs");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

fn json_of(p: &Picker, method: &str, path: &str, body: Option<&str>) -> Value {
    let (code, text) = curl(p, method, path, body);
    assert_eq!(code, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn state(p: &Picker) -> Value {
    serde_json::from_str(&p.tcp_get("/state").text()).unwrap()
}

/// Waits until the camera thread has taken `n` changes (bounded, so a broken build fails).
fn wait_changes(p: &Picker, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = json_of(p, "GET", "/controls", None);
        if s["changes_applied"] == json!(n) && s["pending"] == json!(false) {
            return s;
        }
        assert!(Instant::now() < deadline, "camera took no change: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn controls_on_a_camera_without_them_are_reported_unsupported_not_an_error() {
    let p = start(
        "lens-position = 4\nexposure-time = 10000\nawb-mode = \"daylight\"\ndenoise = \"off\"",
        None,
    );
    let s = state(&p);
    assert_eq!(s["online"], json!(true), "{s}");
    for key in ["lens-position", "exposure-time", "awb-mode", "denoise"] {
        assert_eq!(
            s["controls"][key]["status"],
            json!("unsupported"),
            "{key}: {s}"
        );
        assert!(s["controls"][key].get("value").is_none(), "{key}: {s}");
    }
    assert!(
        p.find_log("controls.lens-position = 4.0: unsupported")
            .is_some(),
        "{}",
        p.log_text()
    );
    // Still answered over the socket, and a change is accepted (and reported unsupported).
    let c = json_of(&p, "PUT", "/controls", Some(r#"{"brightness": 0.25}"#));
    assert_eq!(
        c["in_force"]["brightness"]["status"],
        json!("unsupported"),
        "{c}"
    );
}

#[test]
fn pi_camera_values_are_clamped_and_autofocus_defaults_to_continuous() {
    let p = start("lens-position = 20\nanalogue-gain = 2.5", Some("imx708"));
    let c = &state(&p)["controls"];
    assert_eq!(c["lens-position"]["status"], json!("adjusted"), "{c}");
    assert_eq!(c["lens-position"]["value"], json!(15.0), "{c}");
    assert_eq!(c["analogue-gain"]["status"], json!("applied"), "{c}");
    assert!(
        c.get("af-mode").is_none(),
        "lens-position means manual focus: {c}"
    );
    drop(p);

    let p = start("", Some("imx708"));
    let c = &state(&p)["controls"];
    assert_eq!(c["af-mode"]["value"], json!("continuous"), "{c}");
    drop(p);
    // Camera Module 2 has no autofocus: nothing to default, focus keys unsupported.
    let p = start("af-mode = \"auto\"", Some("imx219"));
    let c = &state(&p)["controls"];
    assert_eq!(c["af-mode"]["status"], json!("unsupported"), "{c}");
}

/// A robot asking for a long fixed exposure at the default 30 fps: a Pi's IPA would cap it
/// to the frame without a word; picker says so in `/state` and the log, and asks for the
/// exposure the camera will use. At 10 fps the same exposure fits.
#[test]
fn an_exposure_longer_than_a_frame_is_reported_capped_naming_the_frame_rate() {
    let p = start("exposure-time = 50000", Some("imx708"));
    let c = &state(&p)["controls"]["exposure-time"];
    assert_eq!(c["status"], json!("adjusted"), "{c}");
    assert_eq!(c["asked"], json!(50000), "{c}");
    assert_eq!(c["value"], json!(33333), "{c}");
    assert!(
        c["note"]
            .as_str()
            .unwrap_or("")
            .contains("camera.framerate"),
        "{c}"
    );
    assert!(
        p.find_log("controls.exposure-time = 50000: adjusted")
            .is_some(),
        "{}",
        p.log_text()
    );
    drop(p);

    let dir = temp_dir();
    let text = format!(
        "{}[controls]\nexposure-time = 50000\n",
        config_text(dir.path(), &["camera.framerate = 10"])
    );
    let p = Picker::start_config(dir, &text, &[("PICKER_TEST_CONTROLS", "imx708")]);
    let c = &state(&p)["controls"]["exposure-time"];
    assert_eq!(c["status"], json!("applied"), "{c}");
    assert_eq!(c["value"], json!(50000), "{c}");
}

#[test]
fn put_merges_until_delete_and_the_camera_takes_each_change() {
    let p = start("exposure-time = 20000\nbrightness = 0.1", Some("imx708"));
    let c = json_of(&p, "GET", "/controls", None);
    assert_eq!(
        c["config"],
        json!({"exposure-time": 20000, "brightness": 0.1}),
        "{c}"
    );
    assert_eq!(c["runtime"], json!({}), "{c}");
    assert_eq!(c["camera"]["LensPosition"]["max"], json!(15.0), "{c}");

    // Fix focus and exposure for a pick.
    let c = json_of(
        &p,
        "PUT",
        "/controls",
        Some(r#"{"lens-position": 5, "exposure-time": 8000}"#),
    );
    assert_eq!(c["asked"]["exposure-time"], json!(8000), "{c}");
    wait_changes(&p, 1);
    let s = state(&p);
    assert_eq!(s["controls"]["lens-position"]["value"], json!(5.0), "{s}");
    assert_eq!(s["controls"]["exposure-time"]["value"], json!(8000), "{s}");
    assert_eq!(s["controls"]["brightness"]["value"], json!(0.1), "{s}");

    // A second PUT merges; null goes back to the config value.
    json_of(
        &p,
        "PUT",
        "/controls",
        Some(r#"{"exposure-time": null, "ev": -1}"#),
    );
    let c = wait_changes(&p, 2);
    assert_eq!(
        c["runtime"],
        json!({"lens-position": 5.0, "ev": -1.0}),
        "{c}"
    );
    assert_eq!(c["in_force"]["exposure-time"]["value"], json!(20000), "{c}");

    // Continuous autofocus replaces the fixed lens position.
    json_of(&p, "PUT", "/controls", Some(r#"{"af-mode": "continuous"}"#));
    let c = wait_changes(&p, 3);
    assert!(c["in_force"].get("lens-position").is_none(), "{c}");
    assert_eq!(
        c["in_force"]["af-mode"]["value"],
        json!("continuous"),
        "{c}"
    );

    // DELETE: back to the TOML.
    let c = json_of(&p, "DELETE", "/controls", None);
    assert_eq!(c["runtime"], json!({}), "{c}");
    let c = wait_changes(&p, 4);
    assert_eq!(c["asked"], c["config"], "{c}");
    assert!(c["in_force"].get("ev").is_none(), "{c}");
    // Unchanged values are no change for the camera.
    json_of(&p, "DELETE", "/controls", None);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        json_of(&p, "GET", "/controls", None)["changes_applied"],
        json!(4)
    );
}

#[test]
fn bad_requests_are_refused_naming_the_key_and_change_nothing() {
    let mut p = start("", Some("imx708"));
    for (body, code, want) in [
        (
            r#"{"lens-positon": 3}"#,
            400,
            "unknown key \"lens-positon\"",
        ),
        (
            r#"{"exposure-time": "long"}"#,
            400,
            "exposure-time = \"long\"",
        ),
        (r#"{"exposure-time": 0}"#, 400, "exposure-time = 0"),
        (r#"{"brightness": 7}"#, 400, "brightness = 7"),
        // What to write, not serde's Rust type ("expected f32").
        (
            r#"{"ev": "x"}"#,
            400,
            "ev = \"x\": invalid type: string \"x\", expected a number",
        ),
        (
            r#"{"af-mode": "auto", "lens-position": 2}"#,
            400,
            "needs af-mode",
        ),
        (r#"{"af-mode": "sideways"}"#, 400, "af-mode = \"sideways\""),
        (
            r#"{"colour-gains": [1, 2, 3]}"#,
            400,
            "colour-gains = [1,2,3]: invalid length 3, expected an array of length 2",
        ),
        ("lens-position=3", 400, "not JSON"),
        ("[1]", 400, "JSON object"),
    ] {
        let (got, text) = curl(&p, "PUT", "/controls", Some(body));
        assert_eq!(got, code, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text}");
    }
    let big = format!(r#"{{"ev": 1, "pad": "{}"}}"#, "x".repeat(20_000));
    let (got, text) = curl(&p, "PUT", "/controls", Some(&big));
    assert_eq!(got, 413, "{text}");
    let (got, _) = curl(&p, "POST", "/controls", Some("{}"));
    assert_eq!(got, 405);
    let c = json_of(&p, "GET", "/controls", None);
    assert_eq!(c["runtime"], json!({}), "{c}");
    assert_eq!(c["changes_applied"], json!(0), "{c}");
    assert!(p.child.try_wait().unwrap().is_none(), "{}", p.log_text());
}

#[test]
fn controls_are_not_served_on_the_network_port() {
    let p = start("", Some("imx708"));
    let code = |method: &str, path: &str| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-m",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                method,
            ])
            .args(["--data-binary", r#"{"lens-position": 1}"#, &p.url(path)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(code("GET", "/controls"), "404");
    // Whatever the port answers for a path it does not have (404, or 405 for a method it
    // never takes), /controls gets the same.
    for method in ["PUT", "DELETE"] {
        let got = code(method, "/controls");
        assert!(!got.starts_with('2'), "{method}: {got}");
        assert_eq!(got, code(method, "/no-such-path"), "{method}");
    }
    let c = json_of(&p, "GET", "/controls", None);
    assert_eq!(
        c["runtime"],
        json!({}),
        "the TCP requests changed nothing: {c}"
    );
    assert_eq!(c["changes_applied"], json!(0), "{c}");
}

#[test]
fn bad_controls_in_the_config_exit_78_naming_file_and_key() {
    let dir = temp_dir();
    for (controls, want) in [
        ("lens-position = -2", "controls.lens-position = -2"),
        (
            "awb-mode = \"sunny\"",
            ":10:12: controls.awb-mode: unknown variant `sunny`",
        ),
        ("exposure = 100", "unknown key `controls.exposure`"),
        (
            "af-mode = \"continuous\"\nlens-position = 3",
            "needs af-mode = \"manual\"",
        ),
        // Elements past the two gains were once dropped without a word (the log showed
        // [1.0,2.0]), whatever they were.
        (
            "colour-gains = [1.0, 2.0, 3.0]",
            ":10:16: controls.colour-gains: invalid length 3, expected an array of length 2",
        ),
        (
            "colour-gains = [1.0, 2.0, \"x\", {a=1}]",
            ":10:16: controls.colour-gains: invalid length 4, expected an array of length 2",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, config(dir.path(), controls)).unwrap();
        // `check-config` (ExecStartPre, `systemctl reload`) and the service itself.
        for command in [&["check-config"][..], &[]] {
            let out = Command::new(BIN)
                .args(command)
                .arg("--config")
                .arg(&path)
                .env("RUST_LOG", "info")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{command:?} {controls}: {err}");
            assert!(err.contains(want), "{command:?} {controls}: {err}");
            assert!(
                err.contains(&path.display().to_string()),
                "{command:?} {controls}: {err}"
            );
        }
    }
}

#[test]
fn a_put_whose_body_never_comes_is_answered_408_not_held_for_ever() {
    use std::io::{Read, Write};
    let p = start("", None);
    let mut s = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
    s.write_all(
        b"PUT /controls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
    )
    .unwrap();
    // A bound against hanging, not a timing assertion: the body deadline is 3 s.
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if find(&got, b"\r\n\r\n").is_some() {
                    break;
                }
            }
            // A signal's interruption is no answer (std's `read` does not retry it).
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("no answer and no close within 40 s ({e}): the slot is held"),
        }
    }
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 408"), "{head:?}");
}

/// The settings headers of a still, in the order [`SETTINGS`] names them (absent: `None`).
fn settings_of(p: &Picker, path: &str) -> Vec<Option<String>> {
    let r = p.unix_get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    SETTINGS
        .iter()
        .map(|h| r.header(h).map(str::to_string))
        .collect()
}

const SETTINGS: [&str; 6] = [
    "x-exposure-time",
    "x-analogue-gain",
    "x-digital-gain",
    "x-lens-position",
    "x-colour-gains",
    "x-colour-temperature",
];

/// A robot fixes focus and exposure for its picks, then needs to know which stills show
/// them: each still says what it was taken with. The test pattern reports the manual values
/// in force from the frame after the camera thread took the change (a Pi's IPA reports every
/// frame's own, a few frames later: see `controls::Echo`), and nothing automatic.
#[test]
fn stills_say_which_fixed_settings_they_were_taken_with() {
    let some = |v: &[&str]| -> Vec<Option<String>> {
        v.iter()
            .map(|s| (!s.is_empty()).then(|| s.to_string()))
            .collect()
    };
    let p = start("exposure-time = 20000", Some("imx708"));
    // Exposure fixed by the file; gain, focus and white balance automatic.
    assert_eq!(
        settings_of(&p, "/still.rgb?fresh=1"),
        some(&["20000", "", "", "", "", ""])
    );
    json_of(
        &p,
        "PUT",
        "/controls",
        Some(
            r#"{"lens-position": 5, "exposure-time": 8000, "analogue-gain": 2.5,
                "colour-gains": [1.5, 2.25]}"#,
        ),
    );
    wait_changes(&p, 1);
    // The first frame captured after the change was taken shows it, in every format.
    for path in ["/still.rgb?fresh=1", "/still.png?fresh=1", "/still.jpg"] {
        assert_eq!(
            settings_of(&p, path),
            some(&["8000", "2.5", "", "5", "1.5,2.25", ""]),
            "{path}"
        );
    }
    // HEAD says the same without the pixels.
    let out = Command::new("curl")
        .args(["-sS", "-m", "10", "-I", "--unix-socket"])
        .arg(&p.socket)
        .arg("http://picker/still.bgr")
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("x-exposure-time: 8000\r\n"), "{head}");
    assert!(head.contains("x-colour-gains: 1.5,2.25\r\n"), "{head}");

    // Back to the file: automatic gain, focus and white balance say nothing again.
    json_of(&p, "DELETE", "/controls", None);
    wait_changes(&p, 2);
    assert_eq!(
        settings_of(&p, "/still.rgb?fresh=1"),
        some(&["20000", "", "", "", "", ""])
    );
    drop(p);

    // A camera that reports nothing (the test pattern without controls): no headers at all,
    // whatever the file asks.
    let p = start("exposure-time = 20000\nlens-position = 2", None);
    assert_eq!(
        settings_of(&p, "/still.rgb?fresh=1"),
        some(&["", "", "", "", "", ""])
    );
}
