//! Logging: to journald when systemd connected our stderr to the journal
//! (`JOURNAL_STREAM`), else to stderr. `RUST_LOG` overrides the default `info` level.
//!
//! libcamera logs on its own, in C++. Under systemd its lines go to syslog, which journald
//! stores with each line's own priority (`journalctl -p err` finds libcamera's errors), instead
//! of plain stderr lines the journal files all at one priority. By default libcamera logs from
//! warnings up; both are only defaults, set through libcamera's own environment variables
//! (`LIBCAMERA_LOG_LEVELS`, `LIBCAMERA_LOG_FILE`), so a user's settings win.

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

#[cfg(test)]
mod tests {
    use super::*;

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
