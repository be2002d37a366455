//! Signal handlers are installed before anything slow (opening the camera), so that an
//! early SIGTERM stops picker cleanly and an early SIGHUP does not kill it (its default
//! action); the futures they return are what [`run`](super::run) waits on.

use std::future::Future;

/// Installs SIGTERM and SIGINT handlers now; the future resolves when either arrives.
pub fn signals() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// Installs the SIGHUP handler now (the default action would kill picker); each SIGHUP
/// then asks [`run`](super::run) to reload the config.
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}
