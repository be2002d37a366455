//! A property test over the whole request path as bytes: request lines, targets (paths,
//! authority and asterisk forms, absolute URIs, junk), queries, headers (Authorization,
//! Content-Length, Transfer-Encoding, CORS...) and bodies, sent over real sockets to the real
//! service (hyper, the front service, warp, the routes, Basic auth) running in this process
//! on the test pattern. Every input must get an HTTP answer or a clean close, never a panic:
//! a panic hook counts panics in every thread, so a panicking connection task (which only
//! looks like a closed connection from outside) fails the case.
//!
//! It runs in `cargo test` (proptest, stable Rust) with a modest number of cases; set
//! `PROPTEST_CASES` for a longer search.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;

static PANICS: AtomicU64 = AtomicU64::new(0);

/// The service, started once for every case: its stream address and still socket.
struct Service {
    addr: SocketAddr,
    socket: PathBuf,
}

fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
        let dir = tempfile::Builder::new()
            .prefix("pkfz")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let socket = dir.join("still.sock");
        let hash = picker::http::auth::hash_password("secret").unwrap();
        let text = format!(
            "[camera]\nsource = \"test-pattern\"\n[stream]\nbind = \"127.0.0.1\"\nport = 1\n\
             allow-origin = \"http://dashboard.example\"\nauth-users = {{ robot = {hash:?} }}\n\
             auth-exempt = [\"/snapshot.jpg\", \"/state\", \"/metrics\", \"/stream.mjpg\"]\n\
             [still]\nsocket = {:?}\n",
            socket.display().to_string()
        );
        let mut config =
            picker::config::Config::parse(&text, &dir.join("picker.toml")).expect("config");
        config.stream.port = 0;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let camera = picker::app::open_camera(&config).unwrap();
                let listeners = picker::app::bind(&config).await.unwrap();
                let addr = listeners.tcp.as_ref().unwrap().local_addr().unwrap();
                tx.send(addr).unwrap();
                let never = std::future::pending::<()>();
                let r = picker::app::run(config, camera, listeners, never, None).await;
                panic!("the service stopped: {r:?}");
            });
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("service up");
        // Ready once a still is answered.
        let mut ready = false;
        for _ in 0..400 {
            if let Ok(mut s) = UnixStream::connect(&socket) {
                let _ =
                    s.write_all(b"GET /still.rgb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                if buf.starts_with(b"HTTP/1.1 200") {
                    ready = true;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(ready, "no still within 20 s");
        Service { addr, socket }
    })
}

/// What the harness needs of a socket.
trait Conn: Read + Write {
    fn half_close(&self);
    fn read_timeout(&self, t: Duration);
}

impl Conn for TcpStream {
    fn half_close(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
    fn read_timeout(&self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}

impl Conn for UnixStream {
    fn half_close(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
    fn read_timeout(&self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}

/// Sends `bytes` and reads until the head of an answer or the close. A client that sends an
/// incomplete request and waits would wait for the head timeout; to keep cases fast, the
/// sending side is closed once nothing came back for a moment (hyper then ends the
/// connection, with or without an answer). `Err` only when neither came within the bound.
fn exchange<S: Conn>(mut s: S, bytes: &[u8]) -> Result<Vec<u8>, String> {
    // The server may close before reading it all (a head it refused): not a failure.
    let _ = s.write_all(bytes);
    s.read_timeout(Duration::from_millis(200));
    let mut closed_ours = false;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                // An endless body (the stream) needs only its head.
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    return Ok(got);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(got),
            Err(e)
                if !closed_ours
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                s.half_close();
                s.read_timeout(Duration::from_secs(15));
                closed_ours = true;
            }
            Err(e) => {
                return Err(format!(
                    "no answer and no close: {e}; got {:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    }
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "TRACE", "PATCH", "get",
        ])
        .prop_map(String::from),
        "[A-Z!#$%&'*+.^_`|~-]{1,8}",
        ".{0,6}",
    ]
}

fn target() -> impl Strategy<Value = String> {
    let paths = prop::sample::select(vec![
        "/",
        "/stream.mjpg",
        "/stream",
        "/snapshot.jpg",
        "/snapshot",
        "/state",
        "/metrics",
        "/still.rgb",
        "/still.png",
        "/still.jpg",
        "/still.ppm",
        "/still.bgr",
        "/controls",
        "/webcam/",
        "/a/b/snapshot.jpg",
        "//",
        "/%00",
        "/still.",
    ]);
    let query = prop_oneof![
        Just(String::new()),
        "\\?(action=(stream|snapshot|x)|fps=[-0-9.e]{0,8}|fresh=[01a-z]{0,3}|[a-z=&%0-9]{0,16}){0,3}",
        "\\?[ -~]{0,24}",
    ];
    prop_oneof![
        4 => (paths, query).prop_map(|(p, q)| format!("{p}{q}")),
        1 => "[a-z0-9.-]{1,12}:[0-9]{1,5}",
        1 => Just("*".to_string()),
        1 => "(http|https|ftp)://[a-z0-9.:@-]{0,16}(/[a-z.]{0,12})?(\\?[a-z=&]{0,8})?",
        1 => "[!-~]{0,40}",
    ]
}

fn header() -> impl Strategy<Value = String> {
    let b64 = "[A-Za-z0-9+/=]{0,40}";
    prop_oneof![
        b64.prop_map(|v| format!("Authorization: Basic {v}")),
        Just("Authorization: Basic cm9ib3Q6c2VjcmV0".to_string()),
        "[ -~]{0,30}".prop_map(|v| format!("Authorization: {v}")),
        "[0-9]{0,4}".prop_map(|v| format!("Content-Length: {v}")),
        "[ -~]{0,8}".prop_map(|v| format!("Content-Length: {v}")),
        prop::sample::select(vec!["chunked", "gzip, chunked", "identity", "x"])
            .prop_map(|v| format!("Transfer-Encoding: {v}")),
        "[ -~]{0,20}".prop_map(|v| format!("Host: {v}")),
        "[ -~]{0,20}".prop_map(|v| format!("Origin: {v}")),
        "[ -~]{0,20}".prop_map(|v| format!("Access-Control-Request-Headers: {v}")),
        prop::sample::select(vec!["close", "keep-alive", "upgrade", ""])
            .prop_map(|v| format!("Connection: {v}")),
        Just("Expect: 100-continue".to_string()),
        "[!-~]{1,12}: [ -~]{0,20}",
        "[ -~]{0,30}",
    ]
}

/// A request as bytes: mostly well-formed, sometimes cut short or with bytes replaced.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", ""]);
    let body = prop::collection::vec(any::<u8>(), 0..40);
    (
        method(),
        target(),
        version,
        prop::collection::vec(header(), 0..6),
        body,
        prop::option::weighted(0.2, (any::<prop::sample::Index>(), any::<u8>())),
        prop::option::weighted(0.1, any::<prop::sample::Index>()),
    )
        .prop_map(|(m, t, v, headers, body, poke, cut)| {
            let mut bytes = format!("{m} {t} {v}\r\n").into_bytes();
            for h in headers {
                bytes.extend_from_slice(h.as_bytes());
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&body);
            if let Some((at, byte)) = poke {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if let Some(at) = cut {
                bytes.truncate(at.index(bytes.len() + 1));
            }
            bytes
        })
}

fn check(answer: &[u8]) -> Result<(), TestCaseError> {
    if answer.is_empty() {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]);
    prop_assert!(
        head.starts_with("HTTP/1.")
            && head.len() >= 12
            && head[9..12].bytes().all(|b| b.is_ascii_digit()),
        "not an HTTP answer: {:?}",
        String::from_utf8_lossy(answer)
    );
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Any request on either socket: an HTTP answer or a clean close, and no panic anywhere.
    #[test]
    fn any_request_gets_an_answer_or_a_close_and_nothing_panics(bytes in request(), unix in any::<bool>()) {
        let s = service();
        let before = PANICS.load(Ordering::SeqCst);
        let answer = if unix {
            exchange(UnixStream::connect(&s.socket).unwrap(), &bytes)
        } else {
            exchange(TcpStream::connect(s.addr).unwrap(), &bytes)
        };
        let answer = answer.map_err(TestCaseError::fail)?;
        check(&answer)?;
        // A panicking task closes its connection like a clean close: only the hook tells.
        std::thread::sleep(Duration::from_millis(2));
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), before, "panicked on {:?}", String::from_utf8_lossy(&bytes));
    }
}

/// The inputs of issue 18 through the same harness (and a check that the harness sees a
/// panic at all: it counts the hook's calls).
#[test]
fn the_issue_s_request_lines_are_answered_without_a_panic() {
    let s = service();
    for line in ["GET x:80", "CONNECT x:1", "HEAD x:1", "OPTIONS *"] {
        let bytes = format!("{line} HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = exchange(TcpStream::connect(s.addr).unwrap(), bytes.as_bytes()).unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 400"),
            "{line}: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}
