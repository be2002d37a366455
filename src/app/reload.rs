//! SIGHUP applies what can change while the service runs, without dropping a client, and
//! names what cannot (a restart is the user's call, not ours); a file that does not load
//! changes nothing. Kept apart from the wiring because it is the one place that changes
//! running state after start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::Sender;

use super::sockets::bind_tcp;
use super::{AppError, Swap};
use crate::config::{CameraConfig, Config, StillConfig, StreamConfig};
use crate::state::Shared;

/// SIGHUP: re-reads the config file the service started with. A file that does not load or
/// check is logged (with file and line) and changes nothing. Otherwise the keys that can
/// change while running are applied at once: `stream.quality` (next frame),
/// `stream.max-clients` and `stream.max-clients-per-address` (new clients; a lower cap
/// takes effect as clients leave),
/// `stream.client-timeout` (connections accepted from then on), the `[controls]` table (the
/// camera takes it before its next request; values set with `PUT /controls` stay on top, see
/// [`ControlsHandle::set_config`](crate::camera::controls::ControlsHandle::set_config)),
/// `stream.port`/`stream.bind` (the new address is bound first, then the old listener
/// closed; open connections stay; an address that needs the very port the old listener
/// holds, such as `0.0.0.0` to `127.0.0.1`, is bound after closing the old one, which is bound
/// again if that fails). Keys that shape the camera or the still socket need a restart:
/// they are named in the log and keep their running values.
pub async fn reload_config(running: &mut Config, shared: &Shared, swap: &Sender<Swap>) {
    let (path, explicit) = match &running.path {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(crate::config::DEFAULT_PATH), false),
    };
    tracing::info!("SIGHUP: reloading {}", path.display());
    let new = match Config::load(&path, explicit).and_then(|c| c.check_on_disk().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload failed, the running config stays: {e}");
            return;
        }
    };
    let (applied, not_applied) = apply_live_keys(running, &new, shared, swap).await;
    let restart = restart_keys(running, &new);
    tracing::info!("{}", reloaded_line(&path, &applied, &not_applied));
    if !restart.is_empty() {
        tracing::warn!(
            "config keys changed that need a restart (systemctl restart picker): {}; \
             running with their old values",
            restart.join(", ")
        );
    }
}

/// The line that sums a reload up: what was applied, and what could not be (its error is
/// logged above it).
fn reloaded_line(path: &Path, applied: &[String], not_applied: &[String]) -> String {
    let mut line = format!("config reloaded from {}: ", path.display());
    match (applied.is_empty(), not_applied.is_empty()) {
        (true, true) => line.push_str("nothing to apply"),
        (false, _) => line.push_str(&format!("applied {}", applied.join(", "))),
        (true, false) => line.push_str("nothing applied"),
    }
    if !not_applied.is_empty() {
        line.push_str(&format!(
            "; NOT applied (see the error above): {}",
            not_applied.join(", ")
        ));
    }
    line
}

/// Applies the keys of `new` that can change while running and differ from `running`, and
/// records them in `running`; returns them as `key = value` for the log, applied and not
/// (a listener that could not move).
async fn apply_live_keys(
    running: &mut Config,
    new: &Config,
    shared: &Shared,
    swap: &Sender<Swap>,
) -> (Vec<String>, Vec<String>) {
    let mut applied = Vec::new();
    if new.stream.quality != running.stream.quality {
        shared.quality.store(new.stream.quality, Ordering::Relaxed);
        running.stream.quality = new.stream.quality;
        applied.push(format!("stream.quality = {}", new.stream.quality));
    }
    let (old_max, new_max) = (running.stream.max_clients, new.stream.max_clients);
    if new_max != old_max {
        resize_slots(shared.stream_slots.clone(), old_max, new_max);
        shared.max_clients.store(new_max, Ordering::Relaxed);
        running.stream.max_clients = new_max;
        applied.push(format!("stream.max-clients = {new_max}"));
    }
    let per_address = new.stream.max_clients_per_address;
    if per_address != running.stream.max_clients_per_address {
        shared.per_address.set_cap(per_address);
        shared
            .connections_per_address
            .set_cap(crate::peers::connections_per_address(per_address));
        running.stream.max_clients_per_address = per_address;
        applied.push(format!("stream.max-clients-per-address = {per_address}"));
    }
    if new.stream.client_timeout != running.stream.client_timeout {
        let secs = new.stream.client_timeout.as_secs();
        shared.client_timeout_secs.store(secs, Ordering::Relaxed);
        running.stream.client_timeout = new.stream.client_timeout;
        applied.push(format!("stream.client-timeout = {secs}"));
    }
    if new.controls != running.controls {
        shared.controls.set_config(&new.controls);
        running.controls = new.controls.clone();
        applied.push("[controls]".to_string());
    }
    let mut not_applied = Vec::new();
    let moves = listener_moves(running, new);
    if !moves.is_empty() && running.stream.enabled && new.stream.enabled {
        if move_listener(running, new, swap).await {
            running.stream.bind = new.stream.bind;
            running.stream.port = new.stream.port;
            applied.extend(moves);
        } else {
            not_applied.extend(moves);
        }
    }
    (applied, not_applied)
}

/// `stream.bind = ...` and `stream.port = ...`, those of the two that differ between
/// `running` and `new`.
fn listener_moves(running: &Config, new: &Config) -> Vec<String> {
    let mut moves = Vec::new();
    if new.stream.bind != running.stream.bind {
        moves.push(format!("stream.bind = {}", new.stream.bind));
    }
    if new.stream.port != running.stream.port {
        moves.push(format!("stream.port = {}", new.stream.port));
    }
    moves
}

/// Whether a new address that could not be bound should be tried again with the old
/// listener closed: only when the port is in use and it is the old listener's own port
/// (`0.0.0.0` and `127.0.0.1` cannot both hold one port, and narrowing the bind is what the
/// README advises). Any other error would only fail again, with no listener left.
fn close_first(error: std::io::ErrorKind, old: SocketAddr, new: SocketAddr) -> bool {
    error == std::io::ErrorKind::AddrInUse && old.port() == new.port()
}

/// The error of a bind, with the OS's reason ("Address already in use (os error 98)").
fn reason(e: AppError) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

/// How long the old listener may take to close (its accept loop may sit in a 1 s backoff,
/// then drops the socket before a 300 ms grace for open connections).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Moves the stream's listener from `running`'s address to `new`'s: binds the new one and
/// hands it to the front, which closes the old. If the new address wants the old listener's
/// own port ([`close_first`]), the old listener is closed first, and bound again if the new
/// one still cannot be; if neither can, the service stops (systemd starts it again). Returns
/// whether `new`'s address is served; every outcome is logged.
async fn move_listener(running: &Config, new: &Config, swap: &Sender<Swap>) -> bool {
    let old = SocketAddr::new(running.stream.bind, running.stream.port);
    let to = SocketAddr::new(new.stream.bind, new.stream.port);
    let e = match bind_tcp(new).await {
        Ok(l) => return serve(l, swap).await,
        Err(e) => e,
    };
    let kind = match &e {
        AppError::BindTcp { source, .. } | AppError::AddressAbsent { source, .. } => source.kind(),
        _ => std::io::ErrorKind::Other,
    };
    if !close_first(kind, old, to) {
        // The running config keeps the old address, so the next reload tries the new one again.
        let again = if kind == std::io::ErrorKind::AddrNotAvailable {
            " (`systemctl reload picker` again once the address is there)"
        } else {
            ""
        };
        tracing::error!(
            "reload: {}; still serving on http://{old}{again}",
            reason(e)
        );
        return false;
    }
    tracing::info!(
        "reload: {to} needs port {} that {old} holds: closing {old} first \
         (connections already open stay)",
        to.port()
    );
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    if swap.send(Swap::Close(closed_tx)).await.is_err()
        || tokio::time::timeout(CLOSE_WAIT, closed_rx).await.is_err()
    {
        tracing::warn!("reload: {old} did not close within {CLOSE_WAIT:?}; binding {to} anyway");
    }
    let e = match bind_tcp(new).await {
        Ok(l) => return serve(l, swap).await,
        Err(e) => reason(e),
    };
    match bind_tcp(running).await {
        Ok(l) => {
            tracing::error!("reload: {e}; back on http://{old}");
            serve(l, swap).await;
        }
        Err(again) => {
            tracing::error!(
                "reload: {e}; and {old} cannot be bound again: {}; no stream port left: \
                 stopping (systemd starts picker again)",
                reason(again)
            );
            let _ = swap.send(Swap::GiveUp).await;
        }
    }
    false
}

/// Hands `listener` to the stream's front; whether it took it.
async fn serve(listener: TcpListener, swap: &Sender<Swap>) -> bool {
    let addr = listener.local_addr().ok();
    if swap.send(Swap::Serve(listener)).await.is_err() {
        return false;
    }
    if let Some(addr) = addr {
        tracing::info!("listening on http://{addr}");
    }
    true
}

/// Grows the stream's client slots from `old_max` to `new_max` at once, or shrinks them as
/// clients leave.
fn resize_slots(slots: Arc<Semaphore>, old_max: usize, new_max: usize) {
    if new_max > old_max {
        slots.add_permits(new_max - old_max);
    } else {
        // Take the surplus slots as clients leave; nobody is cut off.
        let surplus = u32::try_from(old_max - new_max).unwrap_or(u32::MAX);
        tokio::spawn(async move {
            if let Ok(p) = slots.acquire_many_owned(surplus).await {
                p.forget();
            }
        });
    }
}

/// The keys that differ between `a` and `b` and cannot change while running.
///
/// Every field of the camera, stream and still tables is named here, each sorted into "needs
/// a restart" or "applied live" (`_`), so that a key added to the config does not build until
/// it is sorted: a list of the restart keys alone once left six `[camera]` keys (model,
/// index, sensor-mode, rotation, hflip, vflip) out, and a reload changing them said "nothing
/// to apply". `[controls]` is applied live as a whole.
fn restart_keys(a: &Config, b: &Config) -> Vec<&'static str> {
    let CameraConfig {
        source,
        id,
        model,
        index,
        framerate,
        crop,
        buffers,
        sensor_mode,
        rotation,
        hflip,
        vflip,
    } = &a.camera;
    let StreamConfig {
        enabled,
        // Applied live by `apply_live_keys`: a new listener, new limits.
        bind: _,
        port: _,
        width,
        height,
        quality: _,
        max_clients: _,
        max_clients_per_address: _,
        client_timeout: _,
        // Read when the stream routes are built, once per listener.
        allow_origin,
        auth_users,
        auth_exempt,
    } = &a.stream;
    let StillConfig {
        socket,
        width: still_width,
        height: still_height,
    } = &a.still;
    let (camera, stream, still) = (&b.camera, &b.stream, &b.still);
    let pairs = [
        (*source != camera.source, "camera.source"),
        (*id != camera.id, "camera.id"),
        (*model != camera.model, "camera.model"),
        (*index != camera.index, "camera.index"),
        (*framerate != camera.framerate, "camera.framerate"),
        (*crop != camera.crop, "camera.crop"),
        (*buffers != camera.buffers, "camera.buffers"),
        (*sensor_mode != camera.sensor_mode, "camera.sensor-mode"),
        (*rotation != camera.rotation, "camera.rotation"),
        (*hflip != camera.hflip, "camera.hflip"),
        (*vflip != camera.vflip, "camera.vflip"),
        (*enabled != stream.enabled, "stream.enabled"),
        (*width != stream.width, "stream.width"),
        (*height != stream.height, "stream.height"),
        (*allow_origin != stream.allow_origin, "stream.allow-origin"),
        (*auth_users != stream.auth_users, "stream.auth-users"),
        (*auth_exempt != stream.auth_exempt, "stream.auth-exempt"),
        (*socket != still.socket, "still.socket"),
        (*still_width != still.width, "still.width"),
        (*still_height != still.height, "still.height"),
    ];
    pairs.iter().filter(|(d, _)| *d).map(|(_, k)| *k).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The summary line says what was not applied, never "nothing to apply" when a listener
    /// could not move.
    #[test]
    fn the_reload_line_names_what_was_applied_and_what_was_not() {
        let path = Path::new("/etc/picker.toml");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // (applied, not applied, line)
        let table: [(&[&str], &[&str], &str); 4] = [
            (
                &[],
                &[],
                "config reloaded from /etc/picker.toml: nothing to apply",
            ),
            (
                &["stream.quality = 42", "[controls]"],
                &[],
                "config reloaded from /etc/picker.toml: applied stream.quality = 42, [controls]",
            ),
            (
                &[],
                &["stream.bind = 127.0.0.1", "stream.port = 9000"],
                "config reloaded from /etc/picker.toml: nothing applied; NOT applied (see the \
                 error above): stream.bind = 127.0.0.1, stream.port = 9000",
            ),
            (
                &["stream.quality = 42"],
                &["stream.port = 9000"],
                "config reloaded from /etc/picker.toml: applied stream.quality = 42; NOT applied \
                 (see the error above): stream.port = 9000",
            ),
        ];
        for (applied, not_applied, want) in table {
            assert_eq!(reloaded_line(path, &s(applied), &s(not_applied)), want);
        }
    }

    #[test]
    fn a_moved_listener_names_the_keys_that_moved_it() {
        let p = |t: &str| Config::parse(t, Path::new("/p.toml")).unwrap();
        let base = p("[stream]\nbind = \"0.0.0.0\"\nport = 8000\n");
        // (new [stream] keys, moves named)
        let table: [(&str, &[&str]); 4] = [
            ("bind = \"0.0.0.0\"\nport = 8000\nquality = 42\n", &[]),
            (
                "bind = \"127.0.0.1\"\nport = 8000\n",
                &["stream.bind = 127.0.0.1"],
            ),
            ("bind = \"0.0.0.0\"\nport = 9000\n", &["stream.port = 9000"]),
            (
                "bind = \"::\"\nport = 9000\n",
                &["stream.bind = ::", "stream.port = 9000"],
            ),
        ];
        for (stream, want) in table {
            let new = p(&format!("[stream]\n{stream}"));
            assert_eq!(listener_moves(&base, &new), want.to_vec(), "{stream}");
        }
    }

    #[test]
    fn only_the_old_listener_s_own_port_in_use_closes_it_first() {
        use std::io::ErrorKind::{AddrInUse, AddrNotAvailable, PermissionDenied};
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        // (error, old, new, close first)
        let table = [
            (AddrInUse, "0.0.0.0:8000", "127.0.0.1:8000", true),
            (AddrInUse, "127.0.0.1:8000", "0.0.0.0:8000", true),
            // Another process holds the new port: closing ours would not help.
            (AddrInUse, "0.0.0.0:8000", "127.0.0.1:9000", false),
            // The address is not this machine's, or the port is privileged: no retry.
            (AddrNotAvailable, "0.0.0.0:8000", "192.0.2.1:8000", false),
            (PermissionDenied, "0.0.0.0:8000", "127.0.0.1:8000", false),
        ];
        for (error, old, new, want) in table {
            assert_eq!(
                close_first(error, a(old), a(new)),
                want,
                "{error:?} {old} {new}"
            );
        }
    }

    #[test]
    fn a_bind_error_carries_the_os_reason() {
        let e = AppError::BindTcp {
            addr: "127.0.0.1:8000".parse().unwrap(),
            port: 8000,
            origin: "/p.toml".into(),
            source: std::io::Error::from_raw_os_error(libc::EADDRINUSE),
        };
        assert_eq!(
            reason(e),
            "cannot listen on 127.0.0.1:8000 (stream.port = 8000 in /p.toml): Address already \
             in use (os error 98)"
        );
    }

    #[test]
    fn a_reload_names_exactly_the_changed_keys_that_need_a_restart() {
        let base = Config::parse("", Path::new("/p.toml")).unwrap();
        // (TOML, keys that need a restart)
        let table: [(&str, &[&str]); 6] = [
            (
                "[stream]\nquality = 50\nmax-clients = 3\nmax-clients-per-address = 2\nport = 9000\n",
                &[],
            ),
            ("[camera]\nframerate = 15\n", &["camera.framerate"]),
            ("[still]\nsocket = \"/run/x.sock\"\n", &["still.socket"]),
            (
                "[stream]\nallow-origin = \"*\"\nclient-timeout = 3\n[controls]\nev = 1\n",
                &["stream.allow-origin"],
            ),
            (
                "[stream]\nenabled = false\nwidth = 256\n[camera]\ncrop = \"none\"\n",
                &["camera.crop", "stream.enabled", "stream.width"],
            ),
            ("", &[]),
        ];
        for (text, want) in table {
            let new = Config::parse(text, Path::new("/p.toml")).unwrap();
            assert_eq!(restart_keys(&base, &new), want.to_vec(), "{text}");
        }
    }

    /// Each restart key changed alone from the defaults is named, alone: a comparison that
    /// looked at the wrong key, or never differed, would leave a change silently unapplied.
    #[test]
    fn each_restart_key_changed_alone_is_named_alone() {
        let base = Config::parse("", Path::new("/p.toml")).unwrap();
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY";
        let users = format!("[stream]\nauth-users = {{ robot = {hash:?} }}\n");
        let exempt = format!("{users}auth-exempt = [\"/state\"]\n");
        let table: [(&str, &str); 20] = [
            ("[camera]\nsource = \"test-pattern\"\n", "camera.source"),
            (
                "[camera]\nid = \"/base/soc/i2c0mux/i2c@1/imx219@10\"\n",
                "camera.id",
            ),
            // These six once went unnamed: a reload changing them said "nothing to apply".
            ("[camera]\nmodel = \"imx219\"\n", "camera.model"),
            ("[camera]\nindex = 1\n", "camera.index"),
            (
                "[camera]\nsensor-mode = \"1640x1232\"\n",
                "camera.sensor-mode",
            ),
            ("[camera]\nrotation = 180\n", "camera.rotation"),
            ("[camera]\nhflip = true\n", "camera.hflip"),
            ("[camera]\nvflip = true\n", "camera.vflip"),
            ("[camera]\nframerate = 15\n", "camera.framerate"),
            ("[camera]\ncrop = \"none\"\n", "camera.crop"),
            ("[camera]\nbuffers = \"driver\"\n", "camera.buffers"),
            ("[stream]\nenabled = false\n", "stream.enabled"),
            ("[stream]\nwidth = 256\n", "stream.width"),
            ("[stream]\nheight = 256\n", "stream.height"),
            ("[stream]\nallow-origin = \"*\"\n", "stream.allow-origin"),
            (&users, "stream.auth-users"),
            ("[still]\nsocket = \"/run/x.sock\"\n", "still.socket"),
            ("[still]\nwidth = 1024\n", "still.width"),
            ("[still]\nheight = 1024\n", "still.height"),
            // Exempting a route needs users; against the same users it is the only change.
            (&exempt, "stream.auth-exempt"),
        ];
        for (text, key) in table {
            let new = Config::parse(text, Path::new("/p.toml")).unwrap();
            let from = if key == "stream.auth-exempt" {
                Config::parse(&users, Path::new("/p.toml")).unwrap()
            } else {
                base.clone()
            };
            assert_eq!(restart_keys(&from, &new), vec![key], "{text}");
            assert_eq!(restart_keys(&new, &from), vec![key], "{text}");
        }
    }
}
