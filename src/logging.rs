//! Logging: to journald when systemd connected our stderr to the journal
//! (`JOURNAL_STREAM`), else to stderr. `RUST_LOG` overrides the default `info` level.
//!
//! libcamera logs on its own, in C++. Under systemd its lines go to syslog, which journald
//! stores with each line's own priority (`journalctl -p err` finds libcamera's errors), instead
//! of plain stderr lines the journal files all at one priority. By default libcamera logs from
//! warnings up; both are only defaults, set through libcamera's own environment variables
//! (`LIBCAMERA_LOG_LEVELS`, `LIBCAMERA_LOG_FILE`), so a user's settings win.
//!
//! Panics go to the same log through [`install_panic_hook`], rate-limited like every line a
//! client can repeat: Rust's default hook writes each panic to stderr, unthrottled, with a
//! backtrace per panic under `RUST_BACKTRACE`, so one request line that panicked a task
//! (issue 18: 670,000 panics, 113 MB in 30 s) filled the journal. A backtrace is written for
//! the first panic only.

use std::sync::LazyLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// libcamera's log defaults for `journal` (are we under systemd's journal?): the variables to
/// set, those the user has not set already.
pub fn libcamera_log_defaults(
    journal: bool,
    is_set: impl Fn(&str) -> bool,
) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if !is_set("LIBCAMERA_LOG_LEVELS") {
        out.push(("LIBCAMERA_LOG_LEVELS", "*:WARN"));
    }
    if journal && !is_set("LIBCAMERA_LOG_FILE") {
        out.push(("LIBCAMERA_LOG_FILE", "syslog"));
    }
    out
}

/// Sets up logging. Call first in `main`, before any thread exists: it sets libcamera's
/// environment defaults, which only a single-threaded process may do safely.
pub fn init() {
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    for (key, value) in libcamera_log_defaults(journal, |k| std::env::var_os(k).is_some()) {
        // SAFETY: called at the start of `main`, before any other thread is started, so no
        // one reads the environment concurrently.
        unsafe { std::env::set_var(key, value) };
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if journal {
        match tracing_journald::layer() {
            Ok(journald) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journald.with_syslog_identifier("picker".into()))
                    .init();
                return;
            }
            Err(e) => eprintln!("picker: journald unavailable ({e}); logging to stderr"),
        }
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Every panic in the service, counted and rate-limited.
static PANICS: LazyLock<crate::throttle::Repeated> = LazyLock::new(Default::default);

/// Replaces Rust's panic hook: a panic becomes an ERROR line in the log (the first with a
/// backtrace if `RUST_BACKTRACE` asks for one), then at most one line per 10 s saying how
/// many panics there were and the latest; [`flush_panics`] reports the tail of a burst.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let line = panic_line(
            thread.name(),
            info.location().map(|l| l.to_string()),
            info.payload(),
        );
        let first = PANICS.total() == 0;
        if let Some((n, line)) = PANICS.hit(line) {
            let trace = first.then(std::backtrace::Backtrace::capture);
            match trace.filter(|t| t.status() == std::backtrace::BacktraceStatus::Captured) {
                Some(t) => tracing::error!("{line}\nbacktrace (first panic only):\n{t}"),
                None => tracing::error!("{}", crate::throttle::summary(n, &line)),
            }
        }
    }));
}

/// Logs the panics not logged yet, if a line is due; call every 10 s or so.
pub fn flush_panics() {
    if let Some((n, line)) = PANICS.flush() {
        tracing::error!("{}", crate::throttle::summary(n, &line));
    }
}

/// Every panic counted since start (by the hook of [`install_panic_hook`]).
pub fn panics() -> u64 {
    PANICS.total()
}

/// The log line for a panic: where, in which thread, and its message.
fn panic_line(
    thread: Option<&str>,
    location: Option<String>,
    payload: &(dyn std::any::Any + Send),
) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!(
        // Rust's own wording, which tests and people grep for.
        "thread {} panicked at {}: {message}",
        thread.unwrap_or("(unnamed)"),
        location.as_deref().unwrap_or("(unknown location)")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (thread name, location, payload, the line).
    type Case = (
        Option<&'static str>,
        Option<&'static str>,
        Box<dyn std::any::Any + Send>,
        &'static str,
    );

    #[test]
    fn a_panic_line_names_the_thread_the_place_and_the_message() {
        let table: [Case; 3] = [
            (
                Some("tokio-runtime-worker"),
                Some("src/x.rs:1:2"),
                Box::new("boom"),
                "thread tokio-runtime-worker panicked at src/x.rs:1:2: boom",
            ),
            (
                None,
                None,
                Box::new(String::from("formatted 7")),
                "thread (unnamed) panicked at (unknown location): formatted 7",
            ),
            (
                Some("camera"),
                Some("a.rs:3:4"),
                Box::new(42u8),
                "thread camera panicked at a.rs:3:4: (no message)",
            ),
        ];
        for (thread, location, payload, want) in table {
            assert_eq!(
                panic_line(thread, location.map(String::from), payload.as_ref()),
                want
            );
        }
    }

    #[test]
    fn libcamera_logs_warnings_up_and_to_syslog_under_the_journal_unless_the_user_chose() {
        assert_eq!(
            libcamera_log_defaults(true, |_| false),
            [
                ("LIBCAMERA_LOG_LEVELS", "*:WARN"),
                ("LIBCAMERA_LOG_FILE", "syslog")
            ]
        );
        // On a terminal libcamera keeps writing to stderr.
        assert_eq!(
            libcamera_log_defaults(false, |_| false),
            [("LIBCAMERA_LOG_LEVELS", "*:WARN")]
        );
        assert!(libcamera_log_defaults(true, |_| true).is_empty());
    }
}
