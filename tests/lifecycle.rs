//! The service's life: readiness and watchdog over a real NOTIFY_SOCKET, signals, the socket
//! file, stalls, and every way a bad config or a busy port is reported.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

fn count(msgs: &[String], needle: &str) -> usize {
    msgs.iter()
        .filter(|m| m.lines().any(|l| l == needle))
        .count()
}

#[test]
fn sd_notify_ready_status_watchdog_and_stopping() {
    let notify = NotifySocket::new();
    let path = notify.path.to_str().unwrap().to_string();
    let mut p = Picker::start_with_env(
        &[],
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "400000")],
    );
    let msgs = notify.collect(Duration::from_millis(1200));
    assert_eq!(count(&msgs, "READY=1"), 1, "{msgs:?}");
    let ready = msgs.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(
        ready.contains(&format!(
            "STATUS=streaming at http://{}/stream.mjpg",
            p.addr()
        )),
        "{ready}"
    );
    // Fed every 100 ms while frames flow: about 12 in 1.2 s.
    assert!(count(&msgs, "WATCHDOG=1") >= 5, "{msgs:?}");
    // STATUS follows the number of stream clients.
    let m = p.mjpeg("");
    let msgs = notify.collect(Duration::from_millis(1200));
    assert!(
        msgs.iter()
            .any(|m| m.contains("STATUS=") && m.contains("1 client")),
        "{msgs:?}"
    );
    drop(m);
    let (status, _) = p.terminate();
    assert!(status.success());
    let msgs = notify.collect(Duration::from_millis(200));
    assert_eq!(count(&msgs, "STOPPING=1"), 1, "{msgs:?}");
}

#[test]
fn ready_comes_after_the_first_frame_and_the_sockets() {
    let notify = NotifySocket::new();
    let path = notify.path.to_str().unwrap().to_string();
    let p = Picker::start_with_env(&[], &[("NOTIFY_SOCKET", &path)]);
    let msgs = notify.collect(Duration::from_millis(300));
    assert_eq!(count(&msgs, "READY=1"), 1, "{msgs:?}");
    // Without WATCHDOG_USEC there is no watchdog to feed.
    assert_eq!(count(&msgs, "WATCHDOG=1"), 0, "{msgs:?}");
    // By READY both sockets answer and a frame exists.
    assert_eq!(p.unix_get("/still.rgb").status, 200);
    assert_eq!(p.tcp_get("/state").status, 200);
}

#[test]
fn a_stalled_camera_goes_offline_stops_the_watchdog_and_clients_resume() {
    let notify = NotifySocket::new();
    let path = notify.path.to_str().unwrap().to_string();
    // Frames stop after frame 45 (1.5 s) for 4 s.
    let p = Picker::start_with_env(
        &[],
        &[
            ("NOTIFY_SOCKET", &path),
            ("WATCHDOG_USEC", "400000"),
            ("PICKER_TEST_STALL", "45:4000"),
        ],
    );
    let mut m = p.mjpeg("");
    m.read_opening();
    let mut last = 0.0f64;
    loop {
        let part = m.next_part();
        last = part.header("x-timestamp").unwrap().parse().unwrap_or(last);
        let state: serde_json::Value = serde_json::from_slice(&p.tcp_get("/state").body).unwrap();
        if state["frames"]["sequence"] == 45 {
            break;
        }
    }
    notify.collect(Duration::from_millis(100));
    // During the stall: no watchdog pings after the first few hundred ms, and offline state.
    std::thread::sleep(Duration::from_millis(2600));
    let msgs = notify.collect(Duration::from_millis(800));
    assert_eq!(
        count(&msgs, "WATCHDOG=1"),
        0,
        "watchdog fed while stalled: {msgs:?}"
    );
    let state: serde_json::Value = serde_json::from_slice(&p.tcp_get("/state").body).unwrap();
    assert_eq!(state["online"], false, "{state}");
    assert!(p.find_log("camera offline").is_some(), "{}", p.log_text());
    // The stream client is still connected and gets frames again after the stall (the
    // "camera offline" pictures sent meanwhile are tested in tests/compat.rs).
    let part = loop {
        let part = m.next_part();
        if part.header("x-camera") != Some("offline") {
            break part;
        }
    };
    let ts: f64 = part.header("x-timestamp").unwrap().parse().unwrap();
    assert!(
        ts > last + 3.0,
        "a frame from after the stall: {ts} vs {last}"
    );
    let msgs = notify.collect(Duration::from_millis(600));
    assert!(count(&msgs, "WATCHDOG=1") >= 1, "{msgs:?}");
    let state: serde_json::Value = serde_json::from_slice(&p.tcp_get("/state").body).unwrap();
    assert_eq!(state["online"], true);
}

#[test]
fn sigterm_and_sigint_exit_0_quickly_and_remove_the_socket() {
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let mut p = Picker::start(&[]);
        let _client = p.mjpeg("");
        assert!(p.socket.exists());
        let start = Instant::now();
        nix::sys::signal::kill(p.pid(), signal).unwrap();
        let status = loop {
            if let Some(s) = p.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = start.elapsed();
        assert!(status.success(), "{signal}: {status}\n{}", p.log_text());
        // Behaviour, not speed: no step of the drain ran into its timeout (the camera join's
        // is 3 s, and it says so in the log). A bound on a shared 2-core machine would flake.
        assert!(
            took < Duration::from_secs(3),
            "{signal}: exit took {took:?}, past the drain's own timeouts"
        );
        assert!(
            !p.log_text().contains("did not stop"),
            "{signal}: a drain step timed out\n{}",
            p.log_text()
        );
        assert!(!p.socket.exists(), "socket file left behind");
    }
}

#[test]
fn sigterm_ends_every_stream_body_properly() {
    let mut p = Picker::start(&[]);
    // A full-rate client waits on the frame channel alone; a paced one may be asleep between
    // frames. Both must see the body end with the last chunk, not a cut connection.
    let mut clients = [p.mjpeg(""), p.mjpeg("?fps=1")];
    for m in &mut clients {
        m.read_opening();
        m.next_part();
    }
    let start = Instant::now();
    nix::sys::signal::kill(p.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    for (m, what) in clients.iter_mut().zip(["full rate", "?fps=1"]) {
        assert!(m.read_to_close(), "{what}: stream cut off instead of ended");
    }
    // Ended, not cut (read_to_close above), and before the drain's 3 s camera timeout: the
    // streams did not wait for anything to time out. Not a speed target (shared machine).
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "streams took {:?} to end",
        start.elapsed()
    );
    let (status, _) = p.terminate();
    assert!(status.success(), "{status}\n{}", p.log_text());
}

#[test]
fn socket_is_0660_parent_is_created_and_stale_files_are_replaced() {
    let dir = temp_dir();
    let socket = dir.path().join("run/picker/still.sock");
    // A stale socket file from a crashed run, in an existing directory.
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let text = config_text(
        dir.path(),
        &[&format!("still.socket = \"{}\"", socket.display())],
    );
    let p = Picker::start_config(dir, &text, &[]);
    let mode = std::fs::metadata(&p.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    assert_eq!(p.unix_get("/still.rgb").status, 200);

    // A directory that does not exist yet is created.
    let dir = temp_dir();
    let socket = dir.path().join("a/b/still.sock");
    let text = config_text(
        dir.path(),
        &[&format!("still.socket = \"{}\"", socket.display())],
    );
    let p2 = Picker::start_config(dir, &text, &[]);
    assert_eq!(p2.unix_get("/still.rgb").status, 200);
}

/// Under the unit's `UMask=0077`, the directories picker makes for its socket are 0750, so a
/// member of the socket's group reaches it (`picker still` as an unprivileged user in that
/// group) and nobody else does; a directory that was there already keeps its mode. They were
/// 0700 (`mkdir` under the umask), and only root could take a still.
#[test]
fn directories_made_for_the_socket_let_its_group_through_under_umask_0077() {
    let dir = temp_dir();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    set(dir.path(), 0o755);
    // An existing directory with a mode of its owner's choosing, which picker must not touch.
    let kept = dir.path().join("kept");
    std::fs::create_dir(&kept).unwrap();
    set(&kept, 0o711);
    let socket = kept.join("made/robot/still.sock");
    let binary = dir.path().join("picker");
    std::fs::copy(BIN, &binary).unwrap();
    let text = config_text(
        dir.path(),
        &[&format!("still.socket = \"{}\"", socket.display())],
    );
    let p = Picker::start_with_umask(dir, &text, 0o077);
    assert_eq!(mode(&kept.join("made")), 0o750);
    assert_eq!(mode(&kept.join("made/robot")), 0o750);
    assert_eq!(mode(&kept), 0o711);
    assert_eq!(mode(&p.socket), 0o660);
    // The socket's group is picker's (here root's, 0): a member of it takes a still, a user
    // outside it is refused.
    let gid = nix::unistd::getegid().as_raw().to_string();
    let still = |groups: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", groups, "--inh-caps=-all"])
            .arg(&binary)
            .args([
                "still",
                "--timeout",
                "10",
                "--format",
                "jpg",
                "-o",
                "-",
                "--socket",
            ])
            .arg(&p.socket)
            .output()
            .unwrap()
    };
    let out = still(&format!("--groups={gid}"));
    assert!(
        out.status.success() && out.stdout.starts_with(&[0xff, 0xd8]),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = still("--clear-groups");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ermission denied"), "{err}");
}

#[test]
fn a_second_instance_on_the_same_socket_is_refused() {
    let p = Picker::start(&[]);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&p.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("still.socket") && err.contains(&p.socket.display().to_string()),
        "{err}"
    );
    // The first instance is unharmed.
    assert_eq!(p.unix_get("/still.rgb").status, 200);
}

/// `picker COMMAND --config PATH`, bounded at 10 s, its log on stderr (not the journal).
fn run_command(command: &[&str], path: &std::path::Path) -> std::process::Output {
    Command::new("timeout")
        .arg("10")
        .arg(BIN)
        .args(command)
        .arg("--config")
        .arg(path)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

fn run_with_config(text: &str) -> (std::process::Output, String) {
    let dir = temp_dir();
    let path = dir.path().join("picker.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new("timeout")
        .arg("10")
        .arg(BIN)
        .arg("--config")
        .arg(&path)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    (out, path.display().to_string())
}

#[test]
fn invalid_toml_exits_78_naming_file_line_and_column() {
    let (out, path) = run_with_config("[stream]\nport = 8000\nwidth = 51 2\n");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{path}:3:")), "{err}");
}

#[test]
fn unknown_key_exits_78_naming_the_key() {
    let (out, path) = run_with_config("[camera]\nsource = \"test-pattern\"\nframe_rate = 30\n");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("camera.frame_rate") && err.contains(&format!("{path}:3:")),
        "{err}"
    );
}

#[test]
fn bad_values_exit_78_naming_each_key() {
    let (out, _) =
        run_with_config("[stream]\nquality = 0\nport = 8000\n[camera]\nsource = \"usb\"\n");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stream.quality") && err.contains("camera.source"),
        "{err}"
    );
}

/// The parser's errors that named no key (a key or a table written twice, a wrong name or
/// type for a control, a value for a whole table) name it, with file, line and column, from
/// `check-config` and the service alike, exit 78.
#[test]
fn errors_of_the_parser_name_the_key_or_table() {
    let still = "[still]\nsocket = \"/run/picker/still.sock\"\n";
    let table = [
        (
            "[stream]\nquality = 80\nquality = 90\n".to_string(),
            ":3:1: duplicate key `stream.quality`",
        ),
        (
            format!("[stream]\nport = 8000\n{still}[stream]\nquality = 50\n"),
            ":5:2: duplicate table `[stream]`",
        ),
        (
            "[controls]\naf-mode = \"bogus\"\n".to_string(),
            ":2:11: controls.af-mode: unknown variant `bogus`, expected one of `manual`, \
             `auto`, `continuous`",
        ),
        (
            "[controls]\naf-mode = 1\n".to_string(),
            ":2:11: controls.af-mode: invalid type: integer `1`, expected one of `manual`, \
             `auto`, `continuous`",
        ),
        (
            "camera = 5\n".to_string(),
            ":1:10: camera: invalid type: integer `5`, expected a table (`[camera]` on a line \
             of its own, its keys below it)",
        ),
        // A byte order mark (some Windows editors write one) before the first header.
        (
            "\u{feff}[stream]\nport = \"x\"\n".to_string(),
            ":2:8: stream.port: invalid type: string \"x\", expected a whole number",
        ),
        // A table made by a dotted key, then given its header.
        (
            format!("stream.quality = 5\n{still}[stream]\nquality = 6\n"),
            ":4:2: duplicate table `[stream]`: line 1 made it already, with the dotted key \
             `stream.quality`, and a table made by dotted keys takes no `[stream]` header \
             after; move that key under `[stream]` as `quality`",
        ),
        // A key's value, then a table of that name.
        (
            "[stream]\nquality = 5\n[stream.quality]\nx = 1\n".to_string(),
            ":3:9: `[stream.quality]` cannot be a table: line 2 sets `stream.quality` to a \
             value already, and a name is either a key with a value or a table; remove this \
             header or that key",
        ),
    ];
    let dir = temp_dir();
    let path = dir.path().join("picker.toml");
    for (text, want) in table {
        std::fs::write(&path, &text).unwrap();
        for command in [&["check-config"][..], &[]] {
            let out = run_command(command, &path);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{command:?} {text}: {err}");
            assert!(
                err.contains(&format!("{}{want}", path.display())),
                "{command:?} {text}: {err}"
            );
        }
    }
}

#[test]
fn port_in_use_names_the_port_and_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = temp_dir();
    let text = config_text(dir.path(), &[&format!("stream.port = {port}")]);
    let (out, _) = run_with_config(&text);
    assert!(!out.status.success());
    assert_ne!(out.status.code(), Some(124), "it should fail, not run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("stream.port"),
        "{err}"
    );
}

/// `stream.bind` set to an address the machine does not have yet (a Pi whose Wi-Fi or DHCP
/// comes up after picker, which does not wait for the network): `check-config` passes it, and
/// the service exits with status 1, which systemd restarts (`Restart=on-failure`), not 78,
/// which it never restarts (`RestartPreventExitStatus=78`); the error names the key, the
/// address and the port. Once the address is there, the next start serves on it.
#[test]
fn an_address_the_machine_does_not_have_yet_is_retried_not_a_config_error() {
    let dir = temp_dir();
    let ip = "192.0.2.85";
    let text = config_text(dir.path(), &[&format!("stream.bind = \"{ip}\"")]);
    let path = dir.path().join("picker.toml");
    std::fs::write(&path, &text).unwrap();
    let run = |command: &[&str]| run_command(command, &path);
    let check = run(&["check-config"]);
    assert!(check.status.success(), "{check:?}");
    // ... with a warning naming the key, the address and the file (not an error: the address
    // may come yet).
    let warned = String::from_utf8_lossy(&check.stderr);
    assert_eq!(String::from_utf8_lossy(&check.stdout), "ok\n");
    assert!(
        warned.ends_with(&format!(
            "picker: warning: {}: stream.bind = {ip} is not an address of this machine (not \
             yet, perhaps: Wi-Fi or DHCP may bring it after picker starts); until it is, \
             picker exits with status 1 at start, and systemd starts it again\n",
            path.display()
        )),
        "{warned}"
    );
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let path = path.display();
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("port = "))
        .unwrap();
    assert!(
        err.contains(&format!(
            "cannot listen on {ip}:{port}: stream.bind = {ip} in {path} is not an address of \
             this machine (not yet, perhaps"
        )) && err.contains("systemd starts picker again until the address is there"),
        "{err}"
    );
    // Wi-Fi is up: nothing to warn of, and systemd's next start serves on the address.
    let _address = TestAddress::add(ip);
    let check = run(&["check-config"]);
    let warned = String::from_utf8_lossy(&check.stderr);
    assert!(
        check.status.success() && !warned.contains("stream.bind"),
        "{warned}"
    );
    let p = Picker::start_config(dir, &text, &[]);
    assert_eq!(p.addr().ip().to_string(), ip);
    assert_eq!(p.tcp_get("/state").status, 200);
}

/// The test harness's own guard: a port taken between finding and binding it ("Address
/// already in use") is tried again on another port, never taken for readiness. CI once
/// failed on exactly this: "already" holds "ready", and a test went on without a port.
#[test]
fn a_port_taken_meanwhile_is_retried_not_taken_for_ready() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    assert!(!is_ready_line(
        "ERROR cannot listen on 127.0.0.1:1 (stream.port = 1 in x): Address already in use"
    ));
    let p = Picker::start(&[&format!("stream.port = {port}")]);
    assert_ne!(p.addr().port(), port);
    assert_eq!(p.tcp_get("/state").status, 200);
    drop(taken);
}

/// `check-config` run as a user without `CAP_NET_BIND_SERVICE` (as `systemctl reload` runs it,
/// as the service's user) refuses a port below 1024, naming the key and the way out, instead
/// of passing a config picker then cannot start on; a port from 1024 up passes.
#[test]
fn check_config_refuses_a_privileged_port_the_user_cannot_bind() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("picker");
    std::fs::copy(BIN, &binary).unwrap();
    // Missing below /tmp (world-writable): a socket path the unprivileged user may create.
    let socket = format!("/tmp/pk-nobody-{}/still.sock", std::process::id());
    let check = |port: u16| {
        let path = dir.path().join(format!("p{port}.toml"));
        std::fs::write(
            &path,
            format!("[stream]\nport = {port}\n[still]\nsocket = \"{socket}\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(&binary)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = check(80);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("stream.port = 80: ports below 1024 need CAP_NET_BIND_SERVICE")
            && err.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"),
        "{err}"
    );
    let out = check(8000);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn check_config_prints_ok_or_the_errors() {
    let dir = temp_dir();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, config_text(dir.path(), &[])).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/picker.toml");
    let out = Command::new(BIN)
        .args(["check-config", "--config", shipped])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[still]\nwidth = -3\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    // The key and its own range (serde's for a u32 had said "from 0 to 4294967295"), once:
    // no second error comparing the wrong size with the stream's.
    assert!(
        err.contains(&format!(
            "{}: still.width = -3: must be an even number of pixels from 2 to 8192",
            bad.display()
        )),
        "{err}"
    );
    assert!(!err.contains("larger than still size"), "{err}");
    std::fs::write(&bad, "[still]\nwidth = \"wide\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    // The line, the key, and what to write instead of serde's Rust type ("expected i64").
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
    assert!(
        err.contains("still.width: invalid type: string \"wide\", expected a whole number"),
        "{err}"
    );

    let missing = dir.path().join("missing.toml");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

/// A still and a stream of different shapes: only the camera can judge them (a Raspberry Pi
/// camera refuses them at start, the test pattern takes them), so `check-config` passes them
/// with a warning naming the file and both sizes, and only for a camera source.
#[test]
fn check_config_warns_of_shapes_a_pi_camera_refuses() {
    let dir = temp_dir();
    // Not under /tmp, which has a warning of its own (below).
    let socket = "still.socket = \"/run/picker-lifecycle-test/still.sock\"";
    let check = |name: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let extra = [&[socket], extra].concat();
        std::fs::write(&path, config_text(dir.path(), &extra)).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
        (path, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let shapes = ["still.width = 1024", "still.height = 768"];
    let (path, err) = check(
        "pi.toml",
        &[&["camera.source = \"libcamera\""], &shapes[..]].concat(),
    );
    assert!(
        err.starts_with(&format!(
            "picker: warning: {}: still 1024x768 and stream 512x512 have different aspect ratios",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("refuses this at start"), "{err}");
    let (_, err) = check("pattern.toml", &shapes);
    assert_eq!(err, "");
    let (_, err) = check("square.toml", &["camera.source = \"libcamera\""]);
    assert_eq!(err, "");
    // A socket under /tmp: the packaged unit's PrivateTmp would hide it from the robot.
    let (path, err) = check(
        "tmp.toml",
        &["still.socket = \"/tmp/picker-lifecycle-test/still.sock\""],
    );
    assert_eq!(
        err.lines().count(),
        1,
        "one warning, naming the file and the key: {err}"
    );
    assert!(
        err.starts_with(&format!(
            "picker: warning: {}: still.socket = \"/tmp/picker-lifecycle-test/still.sock\" lies under /tmp",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("PrivateTmp=yes"), "{err}");
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("picker {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["check-config", "still", "--config"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn the_log_says_loudly_that_it_serves_a_test_pattern_and_where() {
    let p = Picker::start(&["stream.bind = \"0.0.0.0\""]);
    assert!(
        p.find_log("NO CAMERA")
            .is_some_and(|l| l.contains("TEST PATTERN")),
        "{}",
        p.log_text()
    );
    let port = p.addr().port();
    assert!(
        p.find_log(&format!(":{port}/stream.mjpg"))
            .is_some_and(|l| l.contains("stream at http://")),
        "{}",
        p.log_text()
    );
}

#[test]
fn a_huge_test_stall_is_refused_not_a_panic() {
    let p = Picker::start_with_env(&[], &[("PICKER_TEST_STALL", "2:18446744073709551615")]);
    // Frames keep coming past frame 2 (where the stall would start) and nothing panicked.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&p, "picker_frames_captured_total") < 10.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = p.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("PICKER_TEST_STALL"), "{log}");
    assert!(metric(&p, "picker_frames_captured_total") >= 10.0, "{log}");
}

/// `picker hash-password` at a terminal asks for the password and does not echo it (it would
/// stay on screen and in the scrollback); piped in, it reads it as it comes (the README's
/// `echo ... | picker hash-password`, which `tests/auth.rs` relies on).
#[test]
fn hash_password_at_a_terminal_asks_without_echoing() {
    use nix::pty::openpty;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let pty = openpty(None, None).unwrap();
    let slave = || std::process::Stdio::from(pty.slave.as_fd().try_clone_to_owned().unwrap());
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(slave())
        .stdout(slave())
        .stderr(slave())
        .spawn()
        .unwrap();
    drop(pty.slave);
    // Bounded: a picker that never prompts is killed, which ends the reads below (EIO).
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guard = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        if !guard.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    });
    let mut master = std::fs::File::from(pty.master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    // The prompt comes once echo is off: only then is the password typed.
    while !String::from_utf8_lossy(&seen).contains("Password (not shown): ") {
        let n = master.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "no prompt: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    master.write_all(b"horse battery\n").unwrap();
    // Everything the terminal shows until picker exits (EIO once the slave side is closed).
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(status.success());
    let shown = String::from_utf8_lossy(&seen);
    assert!(
        !shown.contains("horse"),
        "the password was shown: {shown:?}"
    );
    let hash = shown
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash in {shown:?}"));
    // The hash is of what was typed, the line end left out.
    use argon2::{PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(hash).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(b"horse battery", &parsed)
            .is_ok(),
        "{hash}"
    );
}
