//! Rate-limited warnings: an event that a hostile client can repeat at will (a refused
//! connection, an accept error, a dropped client) is counted every time, for `/metrics`, but
//! logged at most once per kind and [`PERIOD`], as one line that says how many happened.
//!
//! One WARN line per refused connection let a flood write 650,000 lines in 40 s; the journal
//! (and the SD card under it) must not be the thing an attacker fills.
//!
//! [`Throttle`] is the pure decision (given the time, is a line due and for how many
//! events?); [`Counted`] adds the shared counter and the lock; [`Events`] holds one
//! [`Counted`] per kind of connection event, shared by the accept loops that count them,
//! the ticker that flushes them and `/metrics`. [`Repeated`] is the same for a line whose
//! text changes each time (a panic message, a control change): the latest text is kept
//! for the line that reports the count.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one log line per kind in this period.
pub const PERIOD: Duration = Duration::from_secs(10);

/// Decides when a summary line is due.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last_line: Option<Instant>,
    /// Events since the last line.
    pending: u64,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Throttle {
            period,
            last_line: None,
            pending: 0,
        }
    }

    /// Records one event at `now`. Returns the number of events to report when a line is
    /// due (the first event ever, or the first after `period` has passed since the last
    /// line), `None` while the line would come too soon.
    pub fn event(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        self.due(now)
    }

    /// Reports events still pending once `period` has passed: call now and then, so the
    /// tail of a burst is not left unsaid.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        if self.pending == 0 {
            return None;
        }
        self.due(now)
    }

    fn due(&mut self, now: Instant) -> Option<u64> {
        match self.last_line {
            Some(t) if now.saturating_duration_since(t) < self.period => None,
            _ => {
                self.last_line = Some(now);
                Some(std::mem::take(&mut self.pending))
            }
        }
    }
}

/// A counted, throttled kind of event.
#[derive(Debug)]
pub struct Counted {
    total: AtomicU64,
    throttle: Mutex<Throttle>,
}

impl Default for Counted {
    fn default() -> Self {
        Counted {
            total: AtomicU64::new(0),
            throttle: Mutex::new(Throttle::new(PERIOD)),
        }
    }
}

impl Counted {
    /// Counts one event; `Some(n)` when the caller should log one line for `n` events.
    pub fn hit(&self) -> Option<u64> {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .event(Instant::now())
    }

    /// Events not yet logged, if a line is due now.
    pub fn flush(&self) -> Option<u64> {
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush(Instant::now())
    }

    /// Every event ever counted.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Connection events a client can cause at will: counted for `/metrics`, logged at most
/// once per kind and 10 s (see [`Counted`]).
#[derive(Debug, Default)]
pub struct Events {
    /// TCP connections closed at once because the connection cap was reached.
    pub refused: Counted,
    /// TCP connections closed at once because their address held its connection cap.
    pub refused_per_address: Counted,
    /// Stream-port connections closed because no complete request head came in time (not
    /// those that had sent a request before: idle keep-alive).
    pub head_timeouts: Counted,
    /// `accept` failures (EMFILE and friends).
    pub accept_errors: Counted,
    /// Still-socket clients cut off at their progress deadline.
    pub still_dropped: Counted,
    /// Stream clients dropped (for the stream's own deadline: call [`Events::stream_dropped`]).
    pub stream_dropped: Counted,
    /// Stream requests answered 503 because `stream.max-clients` were watching.
    pub stream_full: Counted,
}

impl Events {
    pub(crate) fn refused(&self, cap: usize) {
        if let Some(n) = self.refused.hit() {
            tracing::warn!(
                "{n} TCP connection(s) refused since the last such line: \
                 {cap} open, the cap (at most one such line per 10 s)"
            );
        }
    }

    pub(crate) fn refused_per_address(&self, peer: std::net::IpAddr, cap: usize) {
        if let Some(n) = self.refused_per_address.hit() {
            tracing::warn!(
                "{n} TCP connection(s) refused since the last such line, latest from {peer}: \
                 its address held {cap} connections, its cap (stream.max-clients-per-address \
                 + {}; at most one such line per 10 s)",
                crate::peers::CONNECTIONS_BEYOND_STREAMS
            );
        }
    }

    pub(crate) fn head_timeout(&self, timeout: Duration) {
        if let Some(n) = self.head_timeouts.hit() {
            tracing::warn!(
                "{n} stream-port connection(s) closed since the last such line: no complete \
                 request head in {timeout:?} (at most one such line per 10 s)"
            );
        }
    }

    pub(crate) fn accept_error(&self, e: &std::io::Error, backoff: Duration) {
        if let Some(n) = self.accept_errors.hit() {
            tracing::warn!(
                "{n} accept error(s) since the last such line, latest: {e}; \
                 retrying in {backoff:?} (at most one such line per 10 s)"
            );
        }
    }

    pub(crate) fn still_dropped(&self, e: &dyn std::fmt::Display) {
        if let Some(n) = self.still_dropped.hit() {
            tracing::warn!(
                "{n} still-socket client(s) dropped since the last such line, latest: {e} \
                 (at most one such line per 10 s)"
            );
        }
    }

    /// Counts a stream client dropped for `why` and logs at most one line per 10 s.
    pub fn stream_dropped(&self, why: &dyn std::fmt::Display) {
        if let Some(n) = self.stream_dropped.hit() {
            tracing::warn!(
                "{n} stream client(s) dropped since the last such line, latest: {why} \
                 (at most one such line per 10 s)"
            );
        }
    }

    /// Counts a stream request refused at `stream.max-clients` (`cap`) and logs at most one
    /// line per 10 s: viewers turned away are what an operator raises the cap for.
    pub(crate) fn stream_full(&self, cap: usize) {
        if let Some(n) = self.stream_full.hit() {
            tracing::warn!(
                "{n} stream client(s) refused since the last such line: stream.max-clients = \
                 {cap} watching (at most one such line per 10 s)"
            );
        }
    }

    /// Logs the counts not yet logged, one line per kind; call every 10 s or so.
    pub fn flush(&self) {
        let kinds: [(&Counted, &str); 7] = [
            (
                &self.refused,
                "TCP connection(s) refused (connection cap reached)",
            ),
            (
                &self.refused_per_address,
                "TCP connection(s) refused (their address's connection cap reached)",
            ),
            (
                &self.head_timeouts,
                "stream-port connection(s) closed (no complete request head in time)",
            ),
            (&self.accept_errors, "accept error(s)"),
            (&self.still_dropped, "still-socket client(s) dropped"),
            (&self.stream_dropped, "stream client(s) dropped"),
            (
                &self.stream_full,
                "stream client(s) refused (stream.max-clients watching)",
            ),
        ];
        for (c, what) in kinds {
            if let Some(n) = c.flush() {
                tracing::warn!("{n} {what} since the last such line");
            }
        }
    }

    /// The counters in Prometheus text format, for `/metrics`.
    pub fn write_metrics(&self, out: &mut String) {
        let kinds: [(&Counted, &str, &str); 7] = [
            (
                &self.refused,
                "picker_connections_refused_total",
                "TCP connections closed at once: connection cap reached.",
            ),
            (
                &self.refused_per_address,
                "picker_connections_refused_per_address_total",
                "TCP connections closed at once: their address held its connection cap.",
            ),
            (
                &self.head_timeouts,
                "picker_connections_head_timeout_total",
                "Stream-port connections closed for sending no complete request head in time (idle keep-alive ones are not counted).",
            ),
            (
                &self.accept_errors,
                "picker_accept_errors_total",
                "Failed accept calls on either socket.",
            ),
            (
                &self.still_dropped,
                "picker_still_clients_dropped_total",
                "Still-socket clients cut off for not reading their response.",
            ),
            (
                &self.stream_dropped,
                "picker_stream_clients_dropped_total",
                "Stream clients dropped by the server.",
            ),
            (
                &self.stream_full,
                "picker_stream_refused_total",
                "Stream requests refused (503): stream.max-clients were watching.",
            ),
        ];
        for (c, name, help) in kinds {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                c.total()
            );
        }
    }
}

/// A log line a client can cause again and again with different text each time: the first
/// is logged, then at most one per [`PERIOD`] with the latest text and how many there were.
#[derive(Debug)]
pub struct Repeated {
    counted: Counted,
    latest: Mutex<Option<String>>,
}

impl Default for Repeated {
    fn default() -> Self {
        Repeated {
            counted: Counted::default(),
            latest: Mutex::new(None),
        }
    }
}

impl Repeated {
    /// Counts one occurrence of `line`; `Some((n, line))` when the caller should log it now
    /// as the latest of `n` occurrences since the last line.
    pub fn hit(&self, line: String) -> Option<(u64, String)> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        match self.counted.hit() {
            Some(n) => {
                *latest = None;
                Some((n, line))
            }
            None => {
                *latest = Some(line);
                None
            }
        }
    }

    /// The occurrences not yet logged and the latest text, once a line is due.
    pub fn flush(&self) -> Option<(u64, String)> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.counted.flush()?;
        Some((n, latest.take().unwrap_or_default()))
    }

    /// Every occurrence ever counted.
    pub fn total(&self) -> u64 {
        self.counted.total()
    }
}

/// `line`, with how many occurrences it stands for when more than one (for [`Repeated`]).
pub fn summary(n: u64, line: &str) -> String {
    if n > 1 {
        format!("{line} ({n} such since the last such line, at most one line per 10 s)")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_millis(n);
        let mut t = Throttle::new(Duration::from_secs(10));
        // (time in ms, what `event` returns)
        let table = [
            (0, Some(1)),
            (1, None),
            (5_000, None),
            (9_999, None),
            (10_000, Some(4)),
            (10_001, None),
            (25_000, Some(2)),
        ];
        for (ms, want) in table {
            assert_eq!(t.event(s(ms)), want, "at {ms} ms");
        }
    }

    #[test]
    fn flush_reports_the_tail_once_the_period_is_over() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.flush(t0), None, "nothing happened");
        assert_eq!(t.event(t0), Some(1));
        assert_eq!(t.event(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.event(t0 + Duration::from_secs(2)), None);
        assert_eq!(t.flush(t0 + Duration::from_secs(5)), None, "too soon");
        assert_eq!(t.flush(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(t.flush(t0 + Duration::from_secs(30)), None, "all reported");
    }

    #[test]
    fn a_million_events_make_at_most_one_line_per_period() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(10));
        let mut lines = 0;
        let mut reported = 0;
        // One event every 40 us for 40 s.
        for i in 0..1_000_000u64 {
            if let Some(n) = t.event(t0 + Duration::from_micros(i * 40)) {
                lines += 1;
                reported += n;
            }
        }
        reported += t.flush(t0 + Duration::from_secs(60)).unwrap_or(0);
        assert!(lines <= 5, "{lines} lines");
        assert_eq!(reported, 1_000_000, "every event is counted in some line");
    }

    #[test]
    fn repeated_logs_the_first_then_counts_and_keeps_the_latest() {
        let r = Repeated::default();
        assert_eq!(r.hit("a".into()), Some((1, "a".to_string())));
        assert_eq!(r.hit("b".into()), None);
        assert_eq!(r.hit("c".into()), None);
        assert_eq!(r.flush(), None, "the period has not passed");
        assert_eq!(r.total(), 3);
        assert_eq!(summary(1, "x"), "x");
        assert!(summary(2, "c").starts_with("c (2 such since"));
    }

    #[test]
    fn repeated_flush_gives_the_pending_count_with_the_latest_text_once_due() {
        // A period short enough to pass within the test (the real one is 10 s).
        let r = Repeated {
            counted: Counted {
                total: AtomicU64::new(0),
                throttle: Mutex::new(Throttle::new(Duration::from_millis(20))),
            },
            latest: Mutex::new(None),
        };
        assert_eq!(r.hit("a".into()), Some((1, "a".to_string())));
        assert_eq!(r.hit("b".into()), None);
        assert_eq!(r.hit("c".into()), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(
            r.flush(),
            Some((2, "c".to_string())),
            "two since the line, the latest text"
        );
        assert_eq!(r.flush(), None, "nothing pending once flushed");
    }

    #[test]
    fn counted_keeps_the_total() {
        let c = Counted::default();
        assert_eq!(c.hit(), Some(1));
        assert_eq!(c.hit(), None);
        assert_eq!(c.total(), 2);
    }

    /// The log lines `f` writes, through a subscriber for this thread only.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl tracing_subscriber::fmt::MakeWriter<'_> for Buf {
            type Writer = Buf;
            fn make_writer(&self) -> Buf {
                self.clone()
            }
        }
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    /// `log` has `n` lines, and each of `want` in exactly one of them.
    fn assert_lines(log: &str, want: &[&str], n: usize) {
        for l in want {
            assert_eq!(log.matches(l).count(), 1, "{l:?} in:\n{log}");
        }
        assert_eq!(log.lines().count(), n, "{log}");
    }

    #[test]
    fn each_kind_of_event_logs_its_own_line_and_counts_in_metrics() {
        let e = Events::default();
        let err = std::io::Error::from_raw_os_error(libc::EMFILE);
        let log = logged(|| {
            e.refused(7);
            e.refused(7);
            e.refused_per_address("192.0.2.9".parse().unwrap(), 48);
            e.refused_per_address("192.0.2.9".parse().unwrap(), 48);
            e.head_timeout(Duration::from_secs(5));
            e.accept_error(&err, Duration::from_millis(100));
            e.still_dropped(&"no progress for 5 s");
            e.stream_dropped(&"too slow");
            e.stream_dropped(&"too slow");
            e.stream_dropped(&"too slow");
            e.stream_full(64);
            e.stream_full(64);
        });
        // (a line that must be there, once): the first event of each kind; the rest wait.
        let lines = [
            "1 TCP connection(s) refused since the last such line: 7 open, the cap",
            "1 TCP connection(s) refused since the last such line, latest from 192.0.2.9: its \
             address held 48 connections, its cap (stream.max-clients-per-address + 32;",
            "1 stream-port connection(s) closed since the last such line: no complete request \
             head in 5s",
            "1 accept error(s) since the last such line, latest: ",
            "retrying in 100ms",
            "1 still-socket client(s) dropped since the last such line, latest: no progress for 5 s",
            "1 stream client(s) dropped since the last such line, latest: too slow",
            "1 stream client(s) refused since the last such line: stream.max-clients = 64 \
             watching",
        ];
        assert_lines(&log, &lines, 7);
        let mut m = String::new();
        e.write_metrics(&mut m);
        // (metric, total)
        let table = [
            ("picker_connections_refused_total", 2),
            ("picker_connections_refused_per_address_total", 2),
            ("picker_connections_head_timeout_total", 1),
            ("picker_accept_errors_total", 1),
            ("picker_still_clients_dropped_total", 1),
            ("picker_stream_clients_dropped_total", 3),
            ("picker_stream_refused_total", 2),
        ];
        for (name, n) in table {
            assert!(
                m.contains(&format!("\n{name} {n}\n")),
                "{name} {n} in:\n{m}"
            );
            assert!(m.contains(&format!("# TYPE {name} counter\n")), "{m}");
        }
        assert_eq!(m.lines().count(), 21, "{m}");
    }

    #[test]
    fn flush_logs_one_line_per_kind_with_events_pending() {
        // Pending events whose line is due (none logged yet): as after a quiet period.
        let pending = |n| Counted {
            total: AtomicU64::new(n),
            throttle: Mutex::new(Throttle {
                period: PERIOD,
                last_line: None,
                pending: n,
            }),
        };
        let e = Events {
            refused: pending(3),
            refused_per_address: pending(4),
            head_timeouts: pending(6),
            accept_errors: pending(0),
            still_dropped: pending(2),
            stream_dropped: pending(5),
            stream_full: pending(7),
        };
        let log = logged(|| e.flush());
        let lines = [
            "3 TCP connection(s) refused (connection cap reached) since the last such line",
            "4 TCP connection(s) refused (their address's connection cap reached) since the \
             last such line",
            "6 stream-port connection(s) closed (no complete request head in time) since the \
             last such line",
            "2 still-socket client(s) dropped since the last such line",
            "5 stream client(s) dropped since the last such line",
            "7 stream client(s) refused (stream.max-clients watching) since the last such line",
        ];
        assert_lines(&log, &lines, 6);
        // Said once: a second flush has nothing left to say.
        assert_eq!(logged(|| e.flush()), "");
        assert_eq!(e.stream_dropped.flush(), None);
    }
}
