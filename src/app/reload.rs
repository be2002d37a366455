//! SIGHUP applies what can change while the service runs, without dropping a client, and
//! names what cannot (a restart is the user's call, not ours); a file that does not load
//! changes nothing. Kept apart from the wiring because it is the one place that changes
//! running state after start-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::sockets::bind_tcp;
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
/// `stream.port`/`stream.bind` (the new port is bound first, then the old listener closed;
/// open connections stay). Keys that shape the camera or the still socket need a restart:
/// they are named in the log and keep their running values.
pub async fn reload_config(
    running: &mut Config,
    shared: &Shared,
    swap: &tokio::sync::mpsc::Sender<TcpListener>,
) {
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
    let applied = apply_live_keys(running, &new, shared, swap).await;
    let restart = restart_keys(running, &new);
    if applied.is_empty() {
        tracing::info!("config reloaded from {}: nothing to apply", path.display());
    } else {
        tracing::info!(
            "config reloaded from {}: applied {}",
            path.display(),
            applied.join(", ")
        );
    }
    if !restart.is_empty() {
        tracing::warn!(
            "config keys changed that need a restart (systemctl restart picker): {}; \
             running with their old values",
            restart.join(", ")
        );
    }
}

/// Applies the keys of `new` that can change while running and differ from `running`, and
/// records them in `running`; returns them as `key = value` for the log.
async fn apply_live_keys(
    running: &mut Config,
    new: &Config,
    shared: &Shared,
    swap: &tokio::sync::mpsc::Sender<TcpListener>,
) -> Vec<String> {
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
    let moved = (new.stream.bind, new.stream.port) != (running.stream.bind, running.stream.port);
    if moved && running.stream.enabled && new.stream.enabled {
        match bind_tcp(new).await {
            Ok(l) => {
                let addr = l.local_addr().ok();
                if swap.send(l).await.is_ok() {
                    if let Some(addr) = addr {
                        tracing::info!("listening on http://{addr}");
                        for url in crate::net::stream_urls(addr) {
                            tracing::info!("stream at {url}");
                        }
                    }
                    running.stream.bind = new.stream.bind;
                    running.stream.port = new.stream.port;
                    applied.push(format!("stream.port = {}", new.stream.port));
                }
            }
            Err(e) => tracing::error!(
                "reload: {e:#}; still serving on port {}",
                running.stream.port
            ),
        }
    }
    applied
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
