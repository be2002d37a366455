//! The running service: opens the camera, binds the sockets, wires camera -> encoder ->
//! clients together, and is the one place that decides shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};

use crate::camera::controls::{ControlFacts, ControlsHandle};
use crate::camera::{Camera, CameraError, CropState, StopFlag};
use crate::config::{Config, Crop, SourceChoice};
use crate::encode_pool::EncodePool;
use crate::encoder::Demand;
use crate::frames::{FrameSink, Stats};
use crate::http::{self, Listener};
use crate::notify;
use crate::state::Shared;
use crate::throttle::Events;

/// Failures that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr} (stream.port = {port} in {origin})")]
    BindTcp {
        addr: SocketAddr,
        port: u16,
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create still socket {path} (still.socket in {origin}): {what}")]
    BindUnix {
        path: PathBuf,
        origin: String,
        what: String,
        /// Another process answers on it (not the config's fault).
        busy: bool,
    },
    #[error(transparent)]
    Camera(#[from] CameraError),
    #[error("camera delivered no frame within {0:?} of starting")]
    NoFirstFrame(Duration),
    #[error("camera thread failed: {0}")]
    CameraThread(String),
}

impl AppError {
    /// Whether the config is at fault (exit 78: restarting will not help). A port in use or
    /// a still socket another process answers on may free up; a port we may not use, an
    /// address this machine does not have, or a socket path that cannot be made will not.
    pub fn is_config(&self) -> bool {
        match self {
            AppError::BindTcp { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::AddrNotAvailable
            ),
            AppError::BindUnix { busy, .. } => !busy,
            // What the config asks of this camera cannot be done.
            AppError::Camera(CameraError::Config { .. }) => true,
            _ => false,
        }
    }
}

/// Opens the camera the config asks for.
pub fn open_camera(config: &Config) -> Result<Box<dyn Camera>, CameraError> {
    if let Some(script) = crate::camera::fake::from_env() {
        return crate::camera::fake::open(config, script?);
    }
    let libcamera = match config.camera.source {
        SourceChoice::TestPattern => false,
        SourceChoice::Libcamera => true,
        SourceChoice::Auto => cfg!(feature = "libcamera"),
    };
    if !libcamera {
        let why = if config.camera.source == SourceChoice::TestPattern {
            "camera.source = \"test-pattern\""
        } else {
            "this build has no libcamera support"
        };
        tracing::warn!("NO CAMERA: serving the built-in TEST PATTERN ({why})");
        return Ok(Box::new(crate::camera::test_pattern::TestPattern::new(
            config,
        )));
    }
    #[cfg(feature = "libcamera")]
    {
        crate::camera::libcamera::open(config)
    }
    #[cfg(not(feature = "libcamera"))]
    {
        Err(CameraError::NotBuiltIn)
    }
}

/// The listeners the service serves on, bound before `run` so that failures are reported
/// with the config key at fault, and so tests can pass their own.
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub unix: UnixListener,
    /// Removes the socket file when dropped.
    pub socket_guard: SocketGuard,
}

/// Binds the still socket, then the TCP listener (if the stream is enabled). The still
/// socket first: a second instance is refused on the robot's socket, whatever the port.
pub async fn bind(config: &Config) -> Result<Listeners, AppError> {
    let (unix, socket_guard) =
        bind_unix(&config.still.socket).map_err(|(what, busy)| AppError::BindUnix {
            path: config.still.socket.clone(),
            origin: config.origin(),
            what,
            busy,
        })?;
    let tcp = if config.stream.enabled {
        Some(bind_tcp(config).await?)
    } else {
        None
    };
    Ok(Listeners {
        tcp,
        unix,
        socket_guard,
    })
}

/// Binds the stream port of `config`.
pub async fn bind_tcp(config: &Config) -> Result<TcpListener, AppError> {
    let addr = SocketAddr::new(config.stream.bind, config.stream.port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::BindTcp {
            addr,
            port: config.stream.port,
            origin: config.origin(),
            source,
        })
}

/// Removes the still socket file on drop, if it is still ours.
pub struct SocketGuard {
    path: PathBuf,
    inode: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn bind_unix(path: &Path) -> Result<(UnixListener, SocketGuard), (String, bool)> {
    let config = |what: String| (what, false);
    use std::os::unix::fs::MetadataExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| config(format!("cannot create directory {}: {e}", parent.display())))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A socket file: stale unless somebody still answers on it.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err((
                    "another process is listening on it (is picker already running?)".into(),
                    true,
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| config(format!("cannot remove stale socket: {e}")))?;
        }
        Ok(_) => return Err(config("a file that is not a socket is in the way".into())),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| config(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| config(format!("cannot set mode 0660: {e}")))?;
    let inode = std::fs::symlink_metadata(path)
        .map_err(|e| config(e.to_string()))?
        .ino();
    Ok((
        listener,
        SocketGuard {
            path: path.to_owned(),
            inode,
        },
    ))
}

/// How long the first frame may take (libcamera under emulation is slow to start).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the service until `shutdown` completes or something fails; then stops in order:
/// clients, servers, camera, socket file.
///
/// `reload` (SIGHUP, see [`hangups`]) re-reads the config file: see [`reload_config`].
pub async fn run(
    config: Config,
    camera: Box<dyn Camera>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    mut reload: Option<tokio::signal::unix::Signal>,
) -> Result<(), AppError> {
    let info = camera.info();
    for line in &info.adjustments {
        tracing::warn!("camera adjusted the configuration: {line}");
    }
    let budget = descriptor_budget();
    let events = Arc::new(Events::default());
    let stats = Arc::new(Stats::default());
    let initial_crop = match (config.camera.crop, info.source) {
        (Crop::None, _) => CropState::Disabled,
        (Crop::CenterSquare, crate::camera::SourceKind::TestPattern) => CropState::Unsupported,
        (Crop::CenterSquare, _) => CropState::Pending,
    };
    let sink = Arc::new(FrameSink::new(stats.clone(), initial_crop));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (encoded_tx, encoded_rx) = watch::channel(None);
    let (parts_tx, parts_rx) = watch::channel(None);
    let (offline_tx, offline_rx) = watch::channel(None);
    tokio::spawn(crate::encoder::publish(
        parts_rx,
        offline_rx,
        encoded_tx,
        stop_rx.clone(),
    ));
    let demand = Demand::new();
    // A camera without controls still answers /controls: every key reported unsupported.
    let controls = camera.controls().unwrap_or_else(|| {
        let handle = ControlsHandle::new(&config.controls);
        handle.start(&ControlFacts::none());
        Arc::new(handle)
    });
    let config_quality = config.stream.quality;
    let client_timeout = config.stream.client_timeout.as_secs();
    let max_clients = config.stream.max_clients;
    let shared = Arc::new(Shared {
        controls,
        stream_slots: Arc::new(Semaphore::new(config.stream.max_clients)),
        config,
        info,
        sink: sink.clone(),
        stats: stats.clone(),
        encoded: encoded_rx,
        demand: demand.clone(),
        shutdown: stop_rx.clone(),
        encode_pool: EncodePool::new(crate::encode_pool::THREADS, crate::encode_pool::QUEUE)
            .map_err(|e| AppError::CameraThread(format!("cannot start encode threads: {e}")))?,
        events: events.clone(),
        quality: Arc::new(AtomicU8::new(config_quality)),
        max_clients: AtomicUsize::new(max_clients),
        client_timeout_secs: Arc::new(AtomicU64::new(client_timeout)),
        detached: std::sync::Mutex::new(None),
    });

    // "Camera offline" frames for stream clients while no frames come.
    match crate::jpeg::Compressor::new().and_then(|mut c| {
        let picture =
            crate::offline::render(shared.config.stream.width, shared.config.stream.height);
        c.compress(&picture, shared.config.stream.quality)
            .map(Bytes::copy_from_slice)
    }) {
        Ok(jpeg) => {
            tokio::spawn(crate::offline::run(
                sink.clone(),
                shared.stall_limit(),
                jpeg,
                demand.subscribe(),
                offline_tx,
                stop_rx.clone(),
            ));
        }
        Err(e) => tracing::warn!("no camera-offline picture for stream clients: {e}"),
    }

    // Camera thread.
    let stop = StopFlag::new();
    let (camera_done_tx, mut camera_done) = tokio::sync::oneshot::channel();
    let camera_thread = {
        let (sink, stop) = (sink.clone(), stop.clone());
        let mut camera = camera;
        std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                let result = camera.run(&sink, &stop);
                let _ = camera_done_tx.send(result);
            })
            .map_err(|e| AppError::CameraThread(e.to_string()))?
    };

    // Encoder thread.
    let encoder_thread = {
        let runtime = tokio::runtime::Handle::current();
        let (frames, demand, stats) = (sink.subscribe(), demand.subscribe(), stats.clone());
        let (quality, stop_rx) = (shared.quality.clone(), stop_rx.clone());
        std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || {
                crate::encoder::run(runtime, frames, demand, parts_tx, quality, stats, stop_rx)
            })
            .map_err(|e| AppError::CameraThread(e.to_string()))?
    };

    // Servers.
    let mut servers = tokio::task::JoinSet::new();
    let Listeners {
        tcp,
        unix,
        socket_guard,
    } = listeners;
    let mut stream_url = None;
    // A reload that changes the port sends the new listener here.
    let (swap_tx, swap_rx) = tokio::sync::mpsc::channel::<TcpListener>(1);
    let (urls_tx, urls_rx) = watch::channel(Vec::new());
    if let Some(tcp) = tcp {
        let addr = tcp
            .local_addr()
            .map_err(|e| AppError::CameraThread(e.to_string()))?;
        tracing::info!("listening on http://{addr}");
        let urls = crate::net::stream_urls(addr);
        for url in &urls {
            tracing::info!("stream at {url}");
            stream_url.get_or_insert(url.clone());
        }
        urls_tx.send_replace(urls);
        tokio::spawn(crate::net::watch_addresses(addr, urls_tx, stop_rx.clone()));
        servers.spawn(tcp_front(
            tcp,
            shared.clone(),
            stop_rx.clone(),
            http::Limits {
                connections: budget.tcp,
                write_progress: None,
            },
            swap_rx,
        ));
    } else {
        tracing::info!("stream disabled (stream.enabled = false): no TCP port opened");
    }
    tracing::info!("still socket at {}", shared.config.still.socket.display());
    servers.spawn(http::serve(
        Listener::Unix(unix),
        http::still::routes(shared.clone()),
        stop_rx.clone(),
        http::Limits {
            connections: budget.still,
            write_progress: Some(http::STILL_PROGRESS_TIMEOUT),
        },
        events.clone(),
    ));
    // The tail of a burst of refused connections or dropped clients is logged too.
    servers.spawn({
        let (events, mut stop) = (events.clone(), stop_rx.clone());
        async move {
            let mut tick = tokio::time::interval(crate::throttle::PERIOD);
            loop {
                tokio::select! {
                    _ = tick.tick() => events.flush(),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    });

    tokio::pin!(shutdown);
    let outcome: Result<(), AppError> = async {
        // READY only once frames flow (sockets are bound already).
        let mut frames = sink.subscribe();
        tokio::select! {
            r = tokio::time::timeout(FIRST_FRAME_TIMEOUT, frames.wait_for(|f| f.is_some())) => {
                if r.is_err() {
                    return Err(AppError::NoFirstFrame(FIRST_FRAME_TIMEOUT));
                }
            }
            r = &mut camera_done => return camera_result(r),
            _ = &mut shutdown => return Ok(()),
        }
        tracing::info!(source = %shared.info.source, camera = %shared.info.id, "ready");
        notify::ready(stream_url.as_deref());
        let mut monitor = std::pin::pin!(notify::monitor(shared.clone(), urls_rx));
        let mut running = shared.config.clone();
        loop {
            let hangup = async {
                match reload.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut camera_done => break camera_result(r),
                _ = &mut shutdown => break Ok(()),
                _ = &mut monitor => break Ok(()),
                Some(r) = servers.join_next() => {
                    break Err(AppError::CameraThread(format!(
                        "a server stopped unexpectedly: {r:?}"
                    )));
                }
                Some(()) = hangup => {
                    reload_config(&mut running, &shared, &swap_tx).await;
                }
            }
        }
    }
    .await;

    tracing::info!("stopping");
    notify::stopping();
    let _ = stop_tx.send(true);
    stop.stop();
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    servers.abort_all();
    tracing::debug!("servers stopped");
    drop(socket_guard);
    // The camera checks its stop flag between frames; don't let a wedged driver hold us.
    let joined = tokio::task::spawn_blocking(move || {
        let _ = camera_thread.join();
        let _ = encoder_thread.join();
    });
    // Longer than the camera's own stop grace (camera::owner::STOP_GRACE), so the camera
    // thread reports a slow libcamera stop itself.
    if tokio::time::timeout(Duration::from_secs(3), joined)
        .await
        .is_err()
    {
        tracing::warn!("camera did not stop within 3 s; exiting anyway");
    }
    tracing::debug!("camera and encoder stopped");
    outcome
}

/// Serves the stream port; when a reload binds a new port, serves that one and closes the
/// old listener (connections already open on it, streams included, keep running).
async fn tcp_front(
    first: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    limits: http::Limits,
    mut swap: tokio::sync::mpsc::Receiver<TcpListener>,
) {
    let mut listener = first;
    loop {
        // Each listener has its own stop signal, so that a port change closes only it.
        let (this_stop, this_rx) = watch::channel(false);
        let mut server = tokio::spawn(http::serve(
            Listener::Tcp(listener, shared.client_timeout_secs.clone()),
            http::stream::routes(shared.clone()),
            this_rx,
            limits,
            shared.events.clone(),
        ));
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                let _ = this_stop.send(true);
                let _ = server.await;
                return;
            }
            new = swap.recv() => {
                let _ = this_stop.send(true);
                match new {
                    Some(l) => listener = l,
                    None => {
                        let _ = server.await;
                        return;
                    }
                }
            }
            _ = &mut server => return,
        }
    }
}

/// SIGHUP: re-reads the config file the service started with. A file that does not load or
/// check is logged (with file and line) and changes nothing. Otherwise the keys that can
/// change while running are applied at once: `stream.quality` (next frame),
/// `stream.max-clients` (new clients; a lower cap takes effect as clients leave),
/// `stream.client-timeout` (connections accepted from then on), the `[controls]` table (the
/// camera takes it before its next request; values set with `PUT /controls` stay on top, see
/// [`ControlsHandle::set_config`]),
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
    let mut applied = Vec::new();
    if new.stream.quality != running.stream.quality {
        shared.quality.store(new.stream.quality, Ordering::Relaxed);
        running.stream.quality = new.stream.quality;
        applied.push(format!("stream.quality = {}", new.stream.quality));
    }
    let (old_max, new_max) = (running.stream.max_clients, new.stream.max_clients);
    if new_max != old_max {
        let slots = shared.stream_slots.clone();
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
        shared.max_clients.store(new_max, Ordering::Relaxed);
        running.stream.max_clients = new_max;
        applied.push(format!("stream.max-clients = {new_max}"));
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
        match bind_tcp(&new).await {
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

/// The keys that differ between `a` and `b` and cannot change while running.
fn restart_keys(a: &Config, b: &Config) -> Vec<&'static str> {
    let pairs = [
        (a.camera.source != b.camera.source, "camera.source"),
        (a.camera.id != b.camera.id, "camera.id"),
        (a.camera.framerate != b.camera.framerate, "camera.framerate"),
        (a.camera.crop != b.camera.crop, "camera.crop"),
        (a.camera.buffers != b.camera.buffers, "camera.buffers"),
        (a.stream.enabled != b.stream.enabled, "stream.enabled"),
        (a.stream.width != b.stream.width, "stream.width"),
        (a.stream.height != b.stream.height, "stream.height"),
        // Read when the stream routes are built, once per listener.
        (
            a.stream.allow_origin != b.stream.allow_origin,
            "stream.allow-origin",
        ),
        (
            a.stream.auth_users != b.stream.auth_users,
            "stream.auth-users",
        ),
        (
            a.stream.auth_exempt != b.stream.auth_exempt,
            "stream.auth-exempt",
        ),
        (a.still.socket != b.still.socket, "still.socket"),
        (a.still.width != b.still.width, "still.width"),
        (a.still.height != b.still.height, "still.height"),
    ];
    pairs.iter().filter(|(d, _)| *d).map(|(_, k)| *k).collect()
}

/// Installs the SIGHUP handler now (the default action would kill picker); each SIGHUP
/// then asks [`run`] to reload the config.
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// Raises the descriptor limit to its hard maximum, shares it out (see [`crate::budget`]),
/// and says the figures once.
fn descriptor_budget() -> crate::budget::Budget {
    let (nofile, err) = crate::budget::raise_nofile();
    if let Some(e) = err {
        tracing::warn!("cannot raise the open-file limit (RLIMIT_NOFILE {nofile}): {e}");
    }
    let b = crate::budget::plan(nofile);
    tracing::info!(
        "descriptors: limit {}, up to {} TCP connections, {} on the still socket, {} reserved \
         for the camera, journal and sd-notify",
        b.nofile,
        b.tcp,
        b.still,
        b.reserve
    );
    if b.starved {
        tracing::warn!(
            "the open-file limit {} is too low for {} reserved descriptors and both connection \
             caps: raise LimitNOFILE",
            b.nofile,
            b.reserve
        );
    }
    b
}

fn camera_result(
    r: Result<Result<(), CameraError>, tokio::sync::oneshot::error::RecvError>,
) -> Result<(), AppError> {
    match r {
        Ok(Ok(())) => Err(AppError::CameraThread("camera stopped by itself".into())),
        Ok(Err(e)) => Err(AppError::Camera(e)),
        Err(_) => Err(AppError::CameraThread("camera thread panicked".into())),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_names_exactly_the_changed_keys_that_need_a_restart() {
        let base = Config::parse("", Path::new("/p.toml")).unwrap();
        // (TOML, keys that need a restart)
        let table: [(&str, &[&str]); 6] = [
            (
                "[stream]\nquality = 50\nmax-clients = 3\nport = 9000\n",
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
}
