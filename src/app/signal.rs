//! Signal handlers are installed before anything slow (opening the camera), so that an
//! early SIGTERM stops picker cleanly and an early SIGHUP does not kill it (its default
//! action); the futures they return are what [`run`](super::run) waits on.
//!
//! SIGHUP needs more: its default action kills, and the handler needs the runtime, which
//! exists only after the config is read. The binary therefore blocks SIGHUP first of all,
//! before Rust's own runtime set-up ([`hold_hangups`], from an `.init_array` entry in
//! `main.rs`); a SIGHUP that arrives meanwhile stays pending, and once the handler is
//! in place ([`release_hangups`]) it is delivered and becomes a reload like any other
//! (`systemctl reload` right after start is not lost, and never kills).

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

/// Blocks SIGHUP in the calling thread and in every thread it starts from now on: called
/// before `main`, when the binary is loaded. A SIGHUP sent meanwhile waits, pending, for [`release_hangups`].
pub fn hold_hangups() {
    let _ = mask_hangups(nix::sys::signal::SigmaskHow::SIG_BLOCK);
}

/// Unblocks SIGHUP in the calling thread (the main thread, once [`hangups`] has installed
/// the handler, or a subcommand that is not the service): a pending SIGHUP is delivered now.
pub fn release_hangups() {
    let _ = mask_hangups(nix::sys::signal::SigmaskHow::SIG_UNBLOCK);
}

fn mask_hangups(how: nix::sys::signal::SigmaskHow) -> nix::Result<()> {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGHUP);
    nix::sys::signal::pthread_sigmask(how, Some(&set), None)
}
