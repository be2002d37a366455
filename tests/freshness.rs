//! Issue 19: frames reach slow readers and slow links fresh, through the real binary with real
//! clients (Debian's python3-requests and python3-opencv, a link shaped with `tc tbf` between
//! two network namespaces), and a client that reads nothing is cut off in time.
//!
//! The age bounds here are generous on purpose (the machine running them is a loaded 2-core
//! one, shared with builds): each is well above the target, which `benches/freshness`
//! measures, and far below what the code before this change gave (seconds of backlog).

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Mjpeg, Picker, metric};

const PYTHON: &str = "/usr/bin/python3";

/// The ages (ms) of the parts `fresh_reader.py` took, run with `args`, optionally inside a
/// network namespace.
fn reader(netns: Option<&str>, url: &str, client: &str, rate: f64, seconds: u32) -> Vec<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fresh_reader.py");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, PYTHON]);
            c
        }
        None => Command::new(PYTHON),
    };
    let rate = rate.to_string();
    let seconds = seconds.to_string();
    cmd.args([script, "--url", url, "--client", client]).args([
        "--rate",
        &rate,
        "--seconds",
        &seconds,
    ]);
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "{client} reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the reader's JSON");
    v["ages_ms"]
        .as_array()
        .expect("ages")
        .iter()
        .map(|a| a.as_f64().expect("a number"))
        .collect()
}

/// (median, worst) of `ages`.
fn median_max(ages: &[f64]) -> (f64, f64) {
    let mut a = ages.to_vec();
    a.sort_by(f64::total_cmp);
    (a[a.len() / 2], a[a.len() - 1])
}

#[test]
fn a_requests_reader_at_one_part_a_second_gets_fresh_frames() {
    let p = Picker::start(&[]);
    let ages = reader(None, &p.url("/stream.mjpg"), "requests", 1.0, 25);
    let (p50, max) = median_max(&ages);
    eprintln!(
        "requests, 1 part/s: {} parts, p50 {p50:.0} ms, max {max:.0} ms",
        ages.len()
    );
    assert!(ages.len() >= 18, "only {} parts in 25 s", ages.len());
    // Target: p50 <= 1067 ms (two frame periods + its own second), max twice that; the
    // benchmark measures it. Here a bound that holds on a saturated 2-core machine (p50 1.6 s
    // seen with a QEMU VM beside the tests) yet fails the code before the drain by far (p50
    // 5.8 s, max 10.6 s).
    assert!(p50 <= 2_500.0, "median age {p50:.0} ms: {ages:?}");
    assert!(max <= 4_000.0, "worst age {max:.0} ms: {ages:?}");
    // How often it is made to hold two parts (a part older than the target) tells the drain's
    // rule from stop 24's, but only statistically, so it is the benchmark's and the unit
    // simulation's (`drain::tests::readers_at_their_own_pace_are_sent_fresh_parts`, which
    // the old rule fails), not a line here. Measured past the first 5 parts: this rule left
    // 3-7 of 16-20 (up to 35%) in 25 s on an idle machine and 11 of 32 in 40 s with a second
    // run beside it; its pace is held where about three parts in eight come early, and each
    // trial of whether it reads faster costs a part or two. Stop 24's left 9-13 of 20
    // (45-65%). A line of a quarter, here before, failed this rule 3 runs of 4.
}

#[test]
fn an_opencv_reader_at_two_parts_a_second_gets_fresh_frames() {
    let p = Picker::start(&[]);
    let ages = reader(None, &p.url("/stream.mjpg"), "opencv", 2.0, 15);
    let (p50, max) = median_max(&ages);
    eprintln!(
        "OpenCV, 2 parts/s: {} parts, p50 {p50:.0} ms, max {max:.0} ms",
        ages.len()
    );
    assert!(ages.len() >= 10, "only {} frames in 15 s", ages.len());
    // Target: p50 <= 567 ms, max twice that.
    assert!(p50 <= 1_000.0, "median age {p50:.0} ms: {ages:?}");
    assert!(max <= 2_500.0, "worst age {max:.0} ms: {ages:?}");
}

#[test]
fn a_viewer_on_loopback_still_gets_every_frame() {
    let p = Picker::start(&[]);
    let mut m = p.mjpeg("");
    m.read_opening();
    m.next_part();
    let (parts, captured) = parts_in(&p, &mut m, Duration::from_secs(5));
    eprintln!("loopback viewer: {parts} parts of {captured} frames captured in 5 s");
    // A reader that keeps up is sent every frame (the camera's 30 a second): allow some to
    // be lost to a loaded machine (88% seen with three builds running beside it), not the
    // halving a wrong drain decision would cause.
    assert!(
        f64::from(parts) >= 0.75 * captured && captured >= 100.0,
        "{parts} parts of {captured} frames"
    );
}

/// A reader of every frame (a viewer, a robot taking each frame) that pauses for `pause`
/// after `before` of reading: the parts it gets in the two seconds that start `settle` after
/// it reads again, and the frames captured meanwhile.
fn parts_after_a_pause(before: Duration, pause: Duration, settle: Duration) -> (u32, f64) {
    let p = Picker::start(&[]);
    let mut m = p.mjpeg("");
    m.read_opening();
    let start = Instant::now();
    while start.elapsed() < before {
        m.next_part();
    }
    std::thread::sleep(pause);
    // What it was sent while it paused, held in its buffers, is taken at once; then the
    // drain may need `settle` to see the reader fast again.
    let resumed = Instant::now();
    while resumed.elapsed() < settle {
        m.next_part();
    }
    parts_in(&p, &mut m, Duration::from_secs(2))
}

/// The parts `m` takes over `span`, and the frames `p` captured meanwhile.
fn parts_in(p: &Picker, m: &mut Mjpeg, span: Duration) -> (u32, f64) {
    let captured = metric(p, "picker_frames_captured_total");
    let start = Instant::now();
    let mut parts = 0;
    while start.elapsed() < span {
        m.next_part();
        parts += 1;
    }
    (parts, metric(p, "picker_frames_captured_total") - captured)
}

/// Every part sent while a reader pauses comes early, and so makes its pace (the time it
/// takes per part) longer; once it reads again, it must be sent every frame again at once,
/// not at the pace its pause taught. Before: a reader pausing 1 s after 8 s of reading got
/// 1-6 parts a second for 6-7 s after the pause (its reading rate, measured over the last
/// 4 s, had read as nothing for a reader of every frame, and the pause made its pace 2 s).
#[test]
fn a_reader_of_every_frame_gets_every_frame_again_after_a_short_pause() {
    // Its reading rate over the last 4 s still says it is fast: every frame at once (300 ms
    // for what it holds).
    let (parts, captured) = parts_after_a_pause(
        Duration::from_secs(6),
        Duration::from_secs(1),
        Duration::from_millis(300),
    );
    eprintln!("after a 1 s pause: {parts} parts of {captured} frames in 2 s");
    assert!(
        f64::from(parts) >= 0.75 * captured && captured >= 40.0,
        "{parts} parts of {captured} frames"
    );
}

/// The same after a pause longer than the 4 s over which its reading rate is measured. Here
/// its rate does say it is slow, and only the drain's trials (two parts a quarter of the pace
/// apart, three times: about 500, 125 and 31 ms) bring it back, 0.70-0.79 s after it reads
/// again (6 runs on an idle machine). Counted from 300 ms, as above, that left 46-49 parts of
/// 60 frames, and a CI run failed with 45 of 61; so the two seconds counted here start 1.5 s
/// after it reads again (60-61 of 60-61 in the same runs). With the trials switched off it
/// gets a part every two seconds or so (2 parts, 3 runs of 3); stop 24's rule, on main
/// before, sometimes came back by itself and failed 1 run of 3.
#[test]
fn a_reader_of_every_frame_gets_every_frame_again_after_a_long_pause() {
    let (parts, captured) = parts_after_a_pause(
        Duration::from_secs(3),
        Duration::from_secs(7),
        Duration::from_millis(1_500),
    );
    eprintln!("after a 7 s pause, from 1.5 s on: {parts} parts of {captured} frames in 2 s");
    assert!(
        f64::from(parts) >= 0.75 * captured && captured >= 40.0,
        "{parts} parts of {captured} frames"
    );
}

/// The number of stream clients `/state` reports.
fn clients(p: &Picker) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&p.tcp_get("/state").body).unwrap();
    v["clients"].as_u64().expect("clients")
}

/// Connects, asks for the stream, and never reads; `rcvbuf` sets its receive buffer.
fn never_reading(p: &Picker, rcvbuf: Option<usize>) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n).unwrap();
    }
    s.connect(&p.addr().into()).unwrap();
    let mut s: TcpStream = s.into();
    s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: picker\r\n\r\n")
        .unwrap();
    s
}

/// A client with receive buffer `rcvbuf` that asks for the stream and never reads must be
/// gone from `/state` within client-timeout (3 s) + 2 s, the bound.
fn never_reading_client_is_gone(rcvbuf: Option<usize>) {
    let p = Picker::start(&["stream.client-timeout = 3"]);
    let _s = never_reading(&p, rcvbuf);
    let start = Instant::now();
    while clients(&p) == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    while clients(&p) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still connected after {:?} (receive buffer {rcvbuf:?})",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "never-reading client ({rcvbuf:?}) gone after {:?}",
        start.elapsed()
    );
    assert_eq!(metric(&p, "picker_stream_clients"), 0.0);
}

#[test]
fn a_client_that_never_reads_is_gone_within_the_timeout() {
    // Before this change it was still connected after 12 s.
    never_reading_client_is_gone(None);
}

#[test]
fn a_client_that_never_reads_into_a_4_mib_buffer_is_gone_within_the_timeout() {
    never_reading_client_is_gone(Some(4 << 20));
}

/// A robot that reads as fast as frames come, then works for most of `client-timeout` without
/// reading, then reads on. Linux's receiver does not say that it has read what it held (it
/// advertises a reopened window only once the window would double), so picker must not take
/// the silence for a stall: it sends a part first, whose acknowledgement carries the truth.
#[test]
fn a_reader_that_pauses_for_less_than_the_timeout_is_kept() {
    let p = Picker::start(&["stream.client-timeout = 3"]);
    let mut m = p.mjpeg("");
    m.read_opening();
    for pause in 0..4 {
        for _ in 0..30 {
            m.next_part();
        }
        std::thread::sleep(Duration::from_millis(2_600));
        // The connection must still be there, its parts coming.
        let part = m.next_part();
        assert!(part.header("x-sequence").is_some(), "after pause {pause}");
        assert_eq!(clients(&p), 1, "after pause {pause}");
    }
    assert_eq!(metric(&p, "picker_stream_clients"), 1.0);
}

/// Two network namespaces joined by a veth pair, the server's side shaped by `tc tbf`;
/// removed on drop.
struct Link {
    server: String,
    client: String,
}

const SERVER_IP: &str = "10.231.19.1";

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("ip runs")
}

impl Link {
    fn new(rate: &str) -> Link {
        let id = std::process::id();
        let link = Link {
            server: format!("pkfs{id}"),
            client: format!("pkfc{id}"),
        };
        let (vs, vc) = (format!("pkvs{id}"), format!("pkvc{id}"));
        for args in [
            vec!["netns", "add", &link.server],
            vec!["netns", "add", &link.client],
            vec!["link", "add", &vs, "type", "veth", "peer", "name", &vc],
            vec!["link", "set", &vs, "netns", &link.server],
            vec!["link", "set", &vc, "netns", &link.client],
            vec![
                "-n",
                &link.server,
                "addr",
                "add",
                "10.231.19.1/30",
                "dev",
                &vs,
            ],
            vec![
                "-n",
                &link.client,
                "addr",
                "add",
                "10.231.19.2/30",
                "dev",
                &vc,
            ],
            vec!["-n", &link.server, "link", "set", &vs, "up"],
            vec!["-n", &link.client, "link", "set", &vc, "up"],
            vec!["-n", &link.server, "link", "set", "lo", "up"],
            vec!["-n", &link.client, "link", "set", "lo", "up"],
        ] {
            let out = ip(&args);
            assert!(
                out.status.success(),
                "ip {}: {} (these tests need root and network namespaces)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = Command::new("tc")
            .args([
                "-n",
                &link.server,
                "qdisc",
                "add",
                "dev",
                &vs,
                "root",
                "tbf",
            ])
            .args(["rate", rate, "burst", "32kbit", "latency", "400ms"])
            .output()
            .expect("tc runs");
        assert!(
            out.status.success(),
            "THIS KERNEL LACKS tc tbf (sch_tbf), which the slow-link tests need and CI must \
             have: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        link
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pair with it.
        for ns in [&self.server, &self.client] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

#[test]
fn a_viewer_behind_a_2_mbit_link_gets_fresh_frames() {
    let link = Link::new("2mbit");
    let port = support::free_port();
    let p = Picker::start_in_netns(
        &link.server,
        &[
            &format!("stream.bind = \"{SERVER_IP}\""),
            &format!("stream.port = {port}"),
        ],
    );
    let url = format!("http://{SERVER_IP}:{port}/stream.mjpg");
    let ages = reader(Some(&link.client), &url, "requests", 0.0, 12);
    let (p50, max) = median_max(&ages);
    eprintln!(
        "2 Mbit/s viewer: {} parts, p50 {p50:.0} ms, max {max:.0} ms",
        ages.len()
    );
    drop(p);
    // Target: p50 <= 2 frame periods + one part's time on the link (about 45 ms for
    // 11 KB), about 110 ms; max twice that.
    assert!(ages.len() >= 60, "only {} parts in 12 s", ages.len());
    assert!(p50 <= 200.0, "median age {p50:.0} ms");
    assert!(max <= 600.0, "worst age {max:.0} ms");
}
