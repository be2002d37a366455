//! Drives the real `picker` binary: writes a config into a temp dir, starts the service with
//! the test-pattern camera, waits for its log to say where it listens, and talks to it over
//! real sockets. Dropping a [`Picker`] stops it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_picker");

thread_local! {
    /// The network namespace the next picker starts in ([`Picker::start_in_netns`]).
    static NETNS: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// The `cgroup.procs` file of the cgroup the next picker starts in
    /// ([`Picker::start_in_cgroup`]).
    static CGROUP: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
    /// The umask the next picker starts with ([`Picker::start_with_umask`]).
    static UMASK: std::cell::Cell<Option<libc::mode_t>> = const { std::cell::Cell::new(None) };
}

pub struct Picker {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub addr: Option<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// A TCP port that was free a moment ago (picker refuses `port = 0`). [`Picker::start_config`]
/// retries with another one if somebody took it meanwhile.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The line picker logs when it is ready (`INFO ready source=... camera=...`). Not just
/// "ready": "Address already in use", the error of a port taken meanwhile, contains it too,
/// and was once taken for readiness, which skipped the retry on another port below.
pub const READY: &str = " ready source=";

/// Whether `line` is picker's ready line (see [`READY`]).
pub fn is_ready_line(line: &str) -> bool {
    line.contains(READY)
}

/// A config for tests: test pattern, loopback, a free port, socket in `dir`, plus `extra` lines
/// appended to the matching tables (`[camera]`, `[stream]`, `[still]` given as "camera.x = y").
pub fn config_text(dir: &Path, extra: &[&str]) -> String {
    let mut camera = vec!["source = \"test-pattern\"".to_string()];
    let mut stream = vec![
        "bind = \"127.0.0.1\"".to_string(),
        format!("port = {}", free_port()),
        // Every test client comes from 127.0.0.1, standing for many hosts: no cap per
        // address unless a test sets one (tests/auth.rs does).
        "max-clients-per-address = 0".to_string(),
    ];
    let mut still = vec![format!("socket = \"{}\"", dir.join("still.sock").display())];
    for line in extra {
        let (key, value) = line.split_once('=').expect("key = value");
        let (table, key) = key.trim().split_once('.').expect("table.key");
        let entry = format!("{key} = {}", value.trim());
        let list = match table {
            "camera" => &mut camera,
            "stream" => &mut stream,
            "still" => &mut still,
            other => panic!("no table {other}"),
        };
        list.retain(|l| !l.starts_with(&format!("{key} ")));
        list.push(entry);
    }
    format!(
        "[camera]\n{}\n[stream]\n{}\n[still]\n{}\n",
        camera.join("\n"),
        stream.join("\n"),
        still.join("\n")
    )
}

/// A password hash from `picker hash-password`, as a user would make one.
pub fn hash_password(password: &str) -> String {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Headless Chromium as root on a machine with no internet: without the background-networking
/// flags it keeps trying (and failing) to reach Google's hosts.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

pub fn temp_dir() -> tempfile::TempDir {
    // Short paths: a Unix socket path may have at most 107 bytes.
    tempfile::Builder::new()
        .prefix("pk")
        .tempdir_in("/tmp")
        .unwrap()
}

impl Picker {
    pub fn start(extra: &[&str]) -> Picker {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Picker {
        let dir = temp_dir();
        let text = config_text(dir.path(), extra);
        Self::start_config(dir, &text, env)
    }

    pub fn start_config(dir: tempfile::TempDir, text: &str, env: &[(&str, &str)]) -> Picker {
        Self::start_limited(dir, text, env, None)
    }

    /// Starts picker inside the network namespace `netns` (`ip netns exec`).
    pub fn start_in_netns(netns: &str, extra: &[&str]) -> Picker {
        let dir = temp_dir();
        let text = config_text(dir.path(), extra);
        NETNS.with(|n| *n.borrow_mut() = Some(netns.to_string()));
        let p = Self::start_config(dir, &text, &[]);
        NETNS.with(|n| *n.borrow_mut() = None);
        p
    }

    /// Starts picker inside the cgroup whose `cgroup.procs` file is `procs` (v1 or v2): the
    /// child moves itself there before exec, so picker reads that cgroup's limits from its
    /// first instruction on (a failed move fails the start). Its open-file limit is
    /// `nofile`, as [`Picker::start_limited`] sets it.
    pub fn start_in_cgroup(procs: &Path, extra: &[&str], nofile: u64) -> Picker {
        let dir = temp_dir();
        let text = config_text(dir.path(), extra);
        CGROUP.with(|c| *c.borrow_mut() = Some(procs.to_path_buf()));
        let p = Self::start_limited(dir, &text, &[], Some(nofile));
        CGROUP.with(|c| *c.borrow_mut() = None);
        p
    }

    /// Starts picker with the file-mode creation mask `umask` (the unit's is 0077), set in the
    /// child before exec: the test process's own is shared by every test thread.
    pub fn start_with_umask(dir: tempfile::TempDir, text: &str, umask: libc::mode_t) -> Picker {
        UMASK.with(|u| u.set(Some(umask)));
        let p = Self::start_config(dir, text, &[]);
        UMASK.with(|u| u.set(None));
        p
    }

    /// Starts picker with its open-file limit (soft and hard) set to `nofile`, if given.
    pub fn start_limited(
        dir: tempfile::TempDir,
        text: &str,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Picker {
        let mut text = text.to_string();
        let mut dir = dir;
        // The free port may have been taken between finding and binding it: try others.
        for _ in 0..4 {
            match Self::try_start(dir, &text, env, nofile) {
                Ok(p) => return p,
                Err((d, log)) if log.contains("cannot listen on") => {
                    dir = d;
                    text = text
                        .lines()
                        .map(|l| {
                            if l.starts_with("port = ") {
                                format!("port = {}", free_port())
                            } else {
                                l.to_string()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                }
                Err((_, log)) => panic!("picker exited before it was ready:\n{log}"),
            }
        }
        panic!("no free port found in four tries");
    }

    /// Starts picker; on an exit before "ready", gives back the dir and the log.
    fn try_start(
        dir: tempfile::TempDir,
        text: &str,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Result<Picker, (tempfile::TempDir, String)> {
        let config = dir.path().join("picker.toml");
        std::fs::write(&config, text).unwrap();
        let socket = text
            .lines()
            .find_map(|l| l.strip_prefix("socket = \""))
            .map(|s| PathBuf::from(s.trim_end_matches('"')))
            .unwrap_or_else(|| dir.path().join("still.sock"));
        let mut cmd = match NETNS.with(|n| n.borrow().clone()) {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env("RUST_LOG", "info");
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        if let Some(mask) = UMASK.with(|u| u.get()) {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask is async-signal-safe and cannot fail; it runs in the child before
            // exec.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask);
                    Ok(())
                });
            }
        }
        if let Some(procs) = CGROUP.with(|c| c.borrow().clone()) {
            use std::os::unix::ffi::OsStrExt;
            use std::os::unix::process::CommandExt;
            let path = std::ffi::CString::new(procs.as_os_str().as_bytes()).unwrap();
            // SAFETY: open, write and close are async-signal-safe; the path was made before
            // the fork. Writing "0" to cgroup.procs moves the writer (v1 and v2 alike).
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                    let err = std::io::Error::last_os_error();
                    libc::close(fd);
                    if ok { Ok(()) } else { Err(err) }
                });
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("picker starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut picker = Picker {
            child,
            dir,
            config,
            socket,
            addr: None,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while picker.find_log(READY).is_none() {
            if let Ok(Some(_)) = picker.child.try_wait() {
                // The log reader may be behind the exit: a picker that was ready and has
                // already ended (a camera that dies at once) is not one that never started.
                std::thread::sleep(Duration::from_millis(100));
                if picker.find_log(READY).is_some() {
                    break;
                }
                let log = picker.log_text();
                return Err((std::mem::replace(&mut picker.dir, temp_dir()), log));
            }
            assert!(
                Instant::now() < deadline,
                "no \"ready\" in log:\n{}",
                picker.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        picker.addr = picker.find_log("listening on http://").map(|l| {
            l.split("listening on http://")
                .nth(1)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        });
        Ok(picker)
    }

    pub fn find_log(&self, needle: &str) -> Option<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`; panics with the log on timeout or exit.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.find_log(needle) {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "picker exited ({status}) before logging {needle:?}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("stream enabled")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// SIGTERM, then the exit status and how long it took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = start + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "picker ignored SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn tcp_get(&self, path: &str) -> Response {
        http_get(TcpStream::connect(self.addr()).unwrap(), path)
    }

    pub fn unix_get(&self, path: &str) -> Response {
        http_get(UnixStream::connect(&self.socket).unwrap(), path)
    }

    /// Opens `/stream.mjpg` (with `query`) and reads the response head.
    pub fn mjpeg(&self, query: &str) -> Mjpeg {
        Mjpeg::open(self.addr(), query)
    }
}

impl Drop for Picker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A finite HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends a raw request and reads the response until the server closes (Connection: close).
pub fn raw_request<S: Read + Write>(mut s: S, request: &[u8]) -> Response {
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

/// `PUT /controls` with a JSON `body` over the still socket at `socket`.
pub fn put_controls_raw(socket: &Path, body: &str) -> Response {
    let request = format!(
        "PUT /controls HTTP/1.1\r\nHost: picker\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_request(UnixStream::connect(socket).unwrap(), request.as_bytes())
}

pub fn http_get<S: Read + Write>(s: S, path: &str) -> Response {
    raw_request(
        s,
        format!("GET {path} HTTP/1.1\r\nHost: picker\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn parse_response(buf: &[u8]) -> Response {
    let end = find(buf, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let (status_line, rest) = head.split_once("\r\n").unwrap_or((&head, ""));
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = parse_headers(rest);
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(data, b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

/// `Name: value` lines (any other line, such as a status line, is skipped).
fn parse_headers(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The first header called `name`, case-insensitively.
fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An open `/stream.mjpg` connection, parsed part by part (the body is chunked by hyper).
pub struct Mjpeg {
    pub stream: TcpStream,
    pub headers: Vec<(String, String)>,
    pub boundary: String,
    /// Dechunked body bytes not yet consumed.
    body: Vec<u8>,
    /// Raw bytes not yet dechunked.
    raw: Vec<u8>,
    /// The last chunk (size 0) arrived: the server ended the body properly.
    ended: bool,
}

/// One multipart part.
#[derive(Debug)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub jpeg: Vec<u8>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

impl Mjpeg {
    pub fn open(addr: SocketAddr, query: &str) -> Mjpeg {
        Self::open_on(TcpStream::connect(addr).unwrap(), query)
    }

    /// Like `open`, with a tiny receive buffer: a reader that stops reading backs up into
    /// the server at once instead of after megabytes of kernel buffering.
    pub fn open_small_window(addr: SocketAddr, query: &str) -> Mjpeg {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, connect, setsockopt, socket, sockopt,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        setsockopt(&fd, sockopt::RcvBuf, &2048).unwrap();
        let SocketAddr::V4(v4) = addr else {
            panic!("IPv4 only")
        };
        connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4)).unwrap();
        Self::open_on(TcpStream::from(fd), query)
    }

    /// As [`Mjpeg::open`], by a client that half-closes its side once the request is sent
    /// (`printf 'GET ...' | nc host port` does).
    pub fn open_half_closed(addr: SocketAddr, query: &str) -> Mjpeg {
        let stream = TcpStream::connect(addr).unwrap();
        Self::open_with(stream, query, true)
    }

    fn open_on(stream: TcpStream, query: &str) -> Mjpeg {
        Self::open_with(stream, query, false)
    }

    fn open_with(mut stream: TcpStream, query: &str, half_close: bool) -> Mjpeg {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /stream.mjpg{query} HTTP/1.1\r\nHost: picker\r\n\r\n"
        )
        .unwrap();
        if half_close {
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        let end = loop {
            if let Some(end) = find(&raw, b"\r\n\r\n") {
                break end;
            }
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed before the response head");
            raw.extend_from_slice(&chunk[..n]);
        };
        let head = parse_response(&raw[..end + 4]);
        let boundary = head
            .header("content-type")
            .and_then(|ct| ct.split("boundary=").nth(1))
            .map(|b| b.trim_matches('"').to_string())
            .unwrap_or_default();
        let raw = raw[end + 4..].to_vec();
        let m = Mjpeg {
            stream,
            headers: head.headers,
            boundary,
            body: Vec::new(),
            raw,
            ended: false,
        };
        m.status_check(head.status);
        m
    }

    fn status_check(&self, status: u16) {
        assert_eq!(status, 200, "stream refused: {:?}", self.headers);
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// Moves complete chunks from `raw` to `body`.
    fn dechunk_available(&mut self) {
        loop {
            let Some(eol) = find(&self.raw, b"\r\n") else {
                return;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.raw[..eol]).unwrap().trim(), 16)
                    .expect("chunk size");
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            self.ended |= size == 0;
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).expect("stream read");
        assert!(n > 0, "stream closed");
        self.raw.extend_from_slice(&chunk[..n]);
        self.dechunk_available();
    }

    /// Reads until the connection closes; true if the body was ended properly (the last,
    /// empty chunk) rather than cut off.
    pub fn read_to_close(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        while let Ok(n) = self.stream.read(&mut chunk) {
            if n == 0 {
                break;
            }
            self.raw.extend_from_slice(&chunk[..n]);
            self.dechunk_available();
        }
        self.ended
    }

    /// Ensures at least `n` dechunked body bytes are buffered.
    fn need(&mut self, n: usize) {
        self.dechunk_available();
        while self.body.len() < n {
            self.fill();
        }
    }

    /// Reads the opening boundary line (once, before the first part).
    pub fn read_opening(&mut self) {
        let line = format!("--{}\r\n", self.boundary);
        self.need(line.len());
        assert_eq!(String::from_utf8_lossy(&self.body[..line.len()]), line);
        self.body.drain(..line.len());
    }

    /// Reads a part's headers; returns them with the JPEG's length.
    fn read_part_head(&mut self) -> (Vec<(String, String)>, usize) {
        let end = loop {
            if let Some(end) = find(&self.body, b"\r\n\r\n") {
                break end;
            }
            self.fill();
        };
        let headers = parse_headers(&String::from_utf8_lossy(&self.body[..end]));
        self.body.drain(..end + 4);
        let len = header_value(&headers, "content-length")
            .expect("part has Content-Length")
            .parse()
            .unwrap();
        (headers, len)
    }

    /// Reads one part and the boundary that must follow its JPEG.
    pub fn next_part(&mut self) -> Part {
        let (headers, len) = self.read_part_head();
        let trailer = format!("\r\n--{}\r\n", self.boundary);
        self.need(len + trailer.len());
        let jpeg = self.body[..len].to_vec();
        assert_eq!(
            String::from_utf8_lossy(&self.body[len..len + trailer.len()]),
            trailer,
            "boundary must follow the JPEG"
        );
        self.body.drain(..len + trailer.len());
        Part { headers, jpeg }
    }

    /// Reads the part's JPEG bytes only, then returns how long the closing boundary took to
    /// arrive after them (it must come with the JPEG, not with the next frame).
    pub fn boundary_delay_after_next_jpeg(&mut self) -> Duration {
        let (_, len) = self.read_part_head();
        self.need(len);
        let got_jpeg = Instant::now();
        let trailer = format!("\r\n--{}\r\n", self.boundary);
        self.need(len + trailer.len());
        let delay = got_jpeg.elapsed();
        self.body.drain(..len + trailer.len());
        delay
    }
}

/// Decodes a JPEG, returning (width, height, RGB pixels).
pub fn decode_jpeg(jpeg: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut d = jpeg_decoder::Decoder::new(jpeg);
    let pixels = d.decode().expect("a valid JPEG");
    let info = d.info().unwrap();
    (u32::from(info.width), u32::from(info.height), pixels)
}

/// Decodes a PNG, returning (width, height, RGB pixels).
pub fn decode_png(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a valid PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// Counters from `/metrics`.
pub fn metric(p: &Picker, name: &str) -> f64 {
    Metrics::read(p).get(name)
}

/// One reading of `/metrics`: counters that must add up are compared within one reading.
pub struct Metrics(String);

impl Metrics {
    pub fn read(p: &Picker) -> Metrics {
        Metrics(p.tcp_get("/metrics").text())
    }

    /// `/metrics` asked from the loopback address `from` (another host; see
    /// [`connect_from`]).
    #[allow(dead_code)]
    pub fn read_from(p: &Picker, from: &str) -> Metrics {
        let s = connect_from(from, p.addr()).unwrap();
        Metrics(http_get(s, "/metrics").text())
    }

    /// The `/metrics` text `text`, read some other way (another port, a raw request).
    pub fn of(text: String) -> Metrics {
        Metrics(text)
    }

    pub fn get(&self, name: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{}", self.0))
            .trim()
            .parse()
            .unwrap()
    }
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What [`idle_tcp_flood`] holds: `placed`, connections in place after each pass (the
/// server may have closed some since); `alive`, those seen still open at the pass's start.
#[derive(Default)]
pub struct FloodCounts {
    pub placed: std::sync::atomic::AtomicUsize,
    pub alive: std::sync::atomic::AtomicUsize,
}

/// Keeps `n` idle TCP connections made by `connect` open (replacing each one the server
/// closes, every 50 ms) until `stop` is set.
#[allow(dead_code)]
pub fn idle_tcp_flood(
    connect: impl Fn() -> std::io::Result<TcpStream> + Send + 'static,
    n: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    counts: Arc<FloodCounts>,
) -> std::thread::JoinHandle<()> {
    use std::sync::atomic::Ordering::Relaxed;
    std::thread::spawn(move || {
        let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let mut probe = [0u8; 1];
        while !stop.load(Relaxed) {
            let mut alive = 0;
            for slot in conns.iter_mut() {
                // A closed connection reads 0 bytes (or fails): replace it.
                let open = slot.as_ref().is_some_and(|s| {
                    matches!(s.peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                if open {
                    alive += 1;
                } else {
                    *slot = connect().ok().inspect(|s| s.set_nonblocking(true).unwrap());
                }
            }
            counts.alive.store(alive, Relaxed);
            let placed = conns.iter().filter(|c| c.is_some()).count();
            counts.placed.store(placed, Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// A TCP connection to `to` from the loopback address `from`: other hosts are stood for by
/// other loopback addresses (127.0.0.2...), as the whole of 127/8 reaches a server bound on
/// 127.0.0.1. Reads time out after 20 s.
#[allow(dead_code)]
pub fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let src: std::net::IpAddr = from.parse().unwrap();
    s.bind(&SocketAddr::new(src, 0).into())?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.connect(&to.into())?;
    Ok(s.into())
}

/// A TEST-NET-1 address (RFC 5737: never a real one) on lo for the length of a test, removed
/// again whatever happens. Each test has its own: compat.rs 192.0.2.77, reload.rs
/// 192.0.2.81-84, lifecycle.rs 192.0.2.85; config.rs's unit tests count on 192.0.2.86 being
/// on no machine. Adding one needs root, as CI has.
pub struct TestAddress(&'static str);

impl TestAddress {
    pub fn add(ip: &'static str) -> TestAddress {
        let guard = TestAddress(ip);
        let out = Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .output()
            .expect("ip (iproute2) runs");
        assert!(
            out.status.success(),
            "ip addr add {ip}/32 dev lo: {} (this test needs root)",
            String::from_utf8_lossy(&out.stderr)
        );
        guard
    }
}

impl Drop for TestAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .output();
    }
}

/// Collects sd-notify datagrams sent to a socket the test owns.
pub struct NotifySocket {
    pub sock: std::os::unix::net::UnixDatagram,
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn new() -> Self {
        let dir = temp_dir();
        let path = dir.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket {
            sock,
            path,
            _dir: dir,
        }
    }

    /// Messages received within `d`.
    pub fn collect(&self, d: Duration) -> Vec<String> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        out
    }
}
