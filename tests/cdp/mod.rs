//! Headless Chromium driven over the DevTools protocol, for tests that click, wait for the
//! page to change and read it back. The protocol runs over a pair of pipes
//! (`--remote-debugging-pipe`: Chromium reads JSON commands on its fd 3 and writes answers and
//! events on its fd 4, each message ended by a NUL), so no WebSocket client is needed.
//! Hand-written (about a hundred lines over serde_json): the crates that drive Chromium
//! bring an async stack and a browser download each, and tests need six commands.
//! Every wait is bounded; dropping a [`Browser`] kills it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The longest any one command may take (a loaded 2-core machine starts Chromium slowly).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    child: Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    /// Events received while waiting for answers, oldest first.
    pub events: Vec<Value>,
    /// The page's session (flat mode: commands name it).
    session: String,
    /// Basic credentials given when the page asks (the browser's login dialog).
    credentials: Option<(String, String)>,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
}

impl Browser {
    /// Starts headless Chromium with `flags` (beside the tests' usual ones) and attaches to
    /// its page, `width` x `height` CSS pixels.
    pub fn launch(profile: &std::path::Path, width: u32, height: u32, flags: &[&str]) -> Browser {
        let (child_reads, we_write) = pipe();
        let (we_read, child_writes) = pipe();
        let (r, w) = (child_reads.as_raw_fd(), child_writes.as_raw_fd());
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", "180", "chromium"])
            .args(crate::support::CHROMIUM_FLAGS)
            .args(["--remote-debugging-pipe", "--hide-scrollbars"])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(flags)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only dup2 and fcntl between fork and exec, both async-signal-safe. dup2 to
        // 3 and 4 clears close-on-exec on the copies; a pipe end already at 3 or 4 has it
        // cleared in place.
        unsafe {
            cmd.pre_exec(move || {
                for (fd, want) in [(r, 3), (w, 4)] {
                    let ok = if fd == want {
                        libc::fcntl(fd, libc::F_SETFD, 0) == 0
                    } else {
                        libc::dup2(fd, want) == want
                    };
                    if !ok {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium starts");
        drop((child_reads, child_writes));
        let (tx, from) = mpsc::channel();
        let reader = std::fs::File::from(we_read);
        std::thread::spawn(move || {
            let mut r = BufReader::new(reader);
            let mut buf = Vec::new();
            while r.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                buf.clear();
            }
        });
        let mut b = Browser {
            child,
            to: std::fs::File::from(we_write),
            from,
            next_id: 0,
            events: Vec::new(),
            session: String::new(),
            credentials: None,
        };
        let targets = b.send(None, "Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .map(|t| t["targetId"].clone())
            .expect("chromium has a page");
        let attached = b.send(
            None,
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    /// Sends a command and waits for its answer, keeping the events that arrive meanwhile
    /// (and answering login and paused-request events when credentials are set).
    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.write(session, id, method, params.clone());
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("chromium: no answer to {method} {params} ({e})"));
            if msg["id"] == id {
                if let Some(e) = msg.get("error") {
                    panic!("chromium: {method} {params} failed: {e}");
                }
                return msg["result"].clone();
            }
            if msg.get("method").is_some() {
                self.on_event(msg);
            }
        }
    }

    fn write(&mut self, session: Option<&str>, id: u64, method: &str, params: Value) {
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("chromium reads its pipe");
    }

    /// Fire-and-forget: the answer is skipped when it arrives.
    fn notify(&mut self, method: &str, params: Value) {
        self.next_id += 1;
        let (id, session) = (self.next_id, self.session.clone());
        self.write(Some(&session), id, method, params);
    }

    fn on_event(&mut self, msg: Value) {
        let p = &msg["params"];
        match msg["method"].as_str() {
            Some("Fetch.requestPaused") => {
                let id = p["requestId"].clone();
                self.notify("Fetch.continueRequest", json!({"requestId": id}));
            }
            Some("Fetch.authRequired") => {
                let id = p["requestId"].clone();
                let answer = match &self.credentials {
                    Some((u, pw)) => {
                        json!({"response": "ProvideCredentials", "username": u, "password": pw})
                    }
                    None => json!({"response": "CancelAuth"}),
                };
                self.notify(
                    "Fetch.continueWithAuth",
                    json!({"requestId": id, "authChallengeResponse": answer}),
                );
            }
            _ => {}
        }
        self.events.push(msg);
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.send(Some(&s), method, params)
    }

    /// A command to the browser itself.
    pub fn browser(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params)
    }

    /// Answers the page's Basic auth challenges with these credentials, as a person would in
    /// the browser's login dialog.
    pub fn log_in_as(&mut self, user: &str, password: &str) {
        self.credentials = Some((user.to_string(), password.to_string()));
        self.call(
            "Fetch.enable",
            json!({"handleAuthRequests": true, "patterns": [{"urlPattern": "*"}]}),
        );
    }

    /// Loads `url` and waits until its DOM is parsed.
    pub fn open(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
        self.wait_for("document.readyState !== 'loading'", Duration::from_secs(20));
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` every 100 ms until it is truthy; returns its value. Panics after
    /// `timeout` with the last value.
    pub fn wait_for(&mut self, expr: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expr);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {expr}: last {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the viewport, or of the whole page with `full`.
    pub fn screenshot(&mut self, full: bool) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": full}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG")
    }

    /// Clicks the middle of the element `selector` with the mouse (a real user gesture).
    pub fn click(&mut self, selector: &str) {
        let at = self.eval(&format!(
            "(() => {{ const r = document.querySelector({selector:?}).getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// The events named `method` received so far.
    pub fn events_named(&self, method: &str) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| e["method"] == method)
            .cloned()
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
