//! The running service: opens the camera, binds the sockets, wires camera -> encoder ->
//! clients together, and is the one place that decides shutdown. [`run`] is the list of the
//! steps, one function each, so that the order of start-up and of the drain (which the
//! threads, tasks and socket file depend on) reads in one place; binding ([`sockets`]),
//! reloading ([`reload`]) and signals ([`signal`]) have rooms of their own.

pub mod reload;
pub mod signal;
pub mod sockets;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::camera::controls::{ControlFacts, ControlsHandle};
use crate::camera::{Camera, CameraError, CameraInfo, CropState, StopFlag};
use crate::config::{Config, Crop, SourceChoice};
use crate::encode_pool::EncodePool;
use crate::encoder::{Demand, EncodedFrame};
use crate::frames::{FrameSink, Stats};
use crate::http::{self, Listener};
use crate::notify;
use crate::state::Shared;
use crate::throttle::Events;
use reload::reload_config;
pub use signal::{hangups, signals};
pub use sockets::{Listeners, bind};
use sockets::{SocketGuard, connection_budget};

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
    /// `stream.bind` names an address the machine does not have: perhaps not yet (Wi-Fi or
    /// DHCP that comes up after picker, which does not wait for the network), so no config
    /// error: systemd starts picker again until the address is there.
    #[error(
        "cannot listen on {addr}: stream.bind = {ip} in {origin} is not an address of this \
         machine (not yet, perhaps: Wi-Fi or DHCP may bring it after picker starts)",
        ip = .addr.ip()
    )]
    AddressAbsent {
        addr: SocketAddr,
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
    /// Whether the config is at fault (exit 78: restarting will not help). A port in use, a
    /// still socket another process answers on, or an address this machine does not have yet
    /// ([`AppError::AddressAbsent`]) may come right; a port we may not use or a socket path
    /// that cannot be made will not.
    pub fn is_config(&self) -> bool {
        match self {
            AppError::BindTcp { source, .. } => {
                source.kind() == std::io::ErrorKind::PermissionDenied
            }
            AppError::BindUnix { busy, .. } => !busy,
            // What the config asks of this camera cannot be done.
            AppError::Camera(CameraError::Config { .. }) => true,
            _ => false,
        }
    }

    /// What the service's exit says of this error beyond its text, where the exit status is
    /// not the obvious one. Not in the error's text itself: a reload meets the same errors
    /// and exits not at all.
    pub fn exit_note(&self) -> Option<&'static str> {
        match self {
            AppError::AddressAbsent { .. } => Some(
                "exiting with status 1, not 78 (a config error), so that systemd starts \
                 picker again until the address is there",
            ),
            _ => None,
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

/// How long the first frame may take (libcamera under emulation is slow to start).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// What the encoder side hands on to stream clients (`None` until the first part).
type Parts = watch::Sender<Option<Arc<EncodedFrame>>>;

/// Runs the service until `shutdown` completes or something fails; then stops in order:
/// clients, servers, camera, socket file.
///
/// The config is loaded, the camera opened and the sockets bound before this (see
/// [`crate::run`]): they come in as arguments so that tests can pass a fake camera and
/// listeners of their own.
///
/// `reload` (SIGHUP, see [`hangups`]) re-reads the config file: see [`reload::reload_config`].
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
    let budget = connection_budget();
    let (stop_tx, stop_rx) = watch::channel(false);
    let feeds = start_publisher(&stop_rx);
    let shared = share(config, camera.as_ref(), info, feeds.encoded, &stop_rx)?;
    show_offline(&shared, feeds.offline, &stop_rx);
    let mut camera = start_camera(camera, &shared.sink)?;
    let encoder_thread = start_encoder(&shared, feeds.parts, &stop_rx)?;
    let (mut servers, status) = start_servers(&shared, listeners, budget, &stop_rx)?;
    tokio::pin!(shutdown);
    let outcome = until_shutdown(
        &shared,
        &mut camera.done,
        &mut servers,
        status,
        shutdown.as_mut(),
        reload.as_mut(),
    )
    .await;
    drain(stop_tx, camera, encoder_thread, servers).await;
    outcome
}

/// The channels between the encoders and the stream clients.
struct Feeds {
    /// Read by the handlers ([`Shared::encoded`]).
    encoded: watch::Receiver<Option<Arc<EncodedFrame>>>,
    /// Fed by the encoder thread.
    parts: Parts,
    /// Fed by the camera-offline task.
    offline: Parts,
}

/// Starts [`crate::encoder::publish`], which hands the encoder's parts (or the "camera
/// offline" frames) on to the stream clients.
fn start_publisher(stop_rx: &watch::Receiver<bool>) -> Feeds {
    let (encoded_tx, encoded_rx) = watch::channel(None);
    let (parts_tx, parts_rx) = watch::channel(None);
    let (offline_tx, offline_rx) = watch::channel(None);
    tokio::spawn(crate::encoder::publish(
        parts_rx,
        offline_rx,
        encoded_tx,
        stop_rx.clone(),
    ));
    Feeds {
        encoded: encoded_rx,
        parts: parts_tx,
        offline: offline_tx,
    }
}

/// The state every handler shares, around a new frame sink and the encode pool's threads.
fn share(
    config: Config,
    camera: &dyn Camera,
    info: CameraInfo,
    encoded: watch::Receiver<Option<Arc<EncodedFrame>>>,
    stop_rx: &watch::Receiver<bool>,
) -> Result<Arc<Shared>, AppError> {
    let events = Arc::new(Events::default());
    let stats = Arc::new(Stats::default());
    let initial_crop = match (config.camera.crop, info.source) {
        (Crop::None, _) => CropState::Disabled,
        (Crop::CenterSquare, crate::camera::SourceKind::TestPattern) => CropState::Unsupported,
        (Crop::CenterSquare, _) => CropState::Pending,
    };
    let sink = Arc::new(FrameSink::new(stats.clone(), initial_crop));
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
    Ok(Arc::new(Shared {
        controls,
        stream_slots: Arc::new(Semaphore::new(config.stream.max_clients)),
        per_address: Arc::new(crate::peers::PerAddress::new(
            config.stream.max_clients_per_address,
        )),
        connections_per_address: Arc::new(crate::peers::PerAddress::new(
            crate::peers::connections_per_address(config.stream.max_clients_per_address),
        )),
        config,
        info,
        sink,
        stats,
        encoded,
        demand,
        shutdown: stop_rx.clone(),
        encode_pool: EncodePool::new(crate::encode_pool::THREADS, crate::encode_pool::QUEUE)
            .map_err(|e| AppError::CameraThread(format!("cannot start encode threads: {e}")))?,
        events,
        quality: Arc::new(AtomicU8::new(config_quality)),
        max_clients: AtomicUsize::new(max_clients),
        client_timeout_secs: Arc::new(AtomicU64::new(client_timeout)),
        detached: std::sync::Mutex::new(None),
    }))
}

/// "Camera offline" frames for stream clients while no frames come.
fn show_offline(shared: &Shared, offline_tx: Parts, stop_rx: &watch::Receiver<bool>) {
    match crate::jpeg::Compressor::new().and_then(|mut c| {
        let picture =
            crate::offline::render(shared.config.stream.width, shared.config.stream.height);
        c.compress(&picture, shared.config.stream.quality)
            .map(Bytes::copy_from_slice)
    }) {
        Ok(jpeg) => {
            tokio::spawn(crate::offline::run(
                shared.sink.clone(),
                shared.stall_limit(),
                jpeg,
                shared.demand.subscribe(),
                offline_tx,
                stop_rx.clone(),
            ));
        }
        Err(e) => tracing::warn!("no camera-offline picture for stream clients: {e}"),
    }
}

/// The camera's own thread, and how to stop it and hear that it stopped.
struct CameraThread {
    thread: std::thread::JoinHandle<()>,
    /// What [`Camera::run`] returned, once it returns.
    done: tokio::sync::oneshot::Receiver<Result<(), CameraError>>,
    stop: StopFlag,
}

/// Runs the camera on a thread of its own, publishing into `sink`.
fn start_camera(camera: Box<dyn Camera>, sink: &Arc<FrameSink>) -> Result<CameraThread, AppError> {
    let stop = StopFlag::new();
    let (camera_done_tx, done) = tokio::sync::oneshot::channel();
    let thread = {
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
    Ok(CameraThread { thread, done, stop })
}

/// Runs the stream encoder ([`crate::encoder::run`]) on a thread of its own.
fn start_encoder(
    shared: &Shared,
    parts_tx: Parts,
    stop_rx: &watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<()>, AppError> {
    let runtime = tokio::runtime::Handle::current();
    let (sink, stall_limit, demand) = (
        shared.sink.clone(),
        shared.stall_limit(),
        shared.demand.subscribe(),
    );
    let (quality, stop_rx) = (shared.quality.clone(), stop_rx.clone());
    std::thread::Builder::new()
        .name("encoder".into())
        .spawn(move || {
            crate::encoder::run(
                runtime,
                sink,
                stall_limit,
                demand,
                parts_tx,
                quality,
                stop_rx,
            )
        })
        .map_err(|e| AppError::CameraThread(e.to_string()))
}

/// The running servers, and what the rest of [`run`] needs of them.
struct Servers {
    tasks: tokio::task::JoinSet<()>,
    socket_guard: SocketGuard,
    /// A reload that moves the stream's listener talks to its front here.
    swap_tx: tokio::sync::mpsc::Sender<Swap>,
}

/// What sd-notify's status line names: the stream's URLs.
struct Status {
    /// The first stream URL, for READY (none with the stream disabled).
    stream_url: Option<String>,
    /// The stream URLs as the machine's addresses come and go.
    urls_rx: watch::Receiver<Vec<String>>,
}

/// Serves the stream port (if the stream is enabled) and the still socket, and logs the
/// tail of a burst of connection events.
///
/// Longer than a screen, kept whole: it takes the listeners apart and hands each to its
/// server; the stream's half alone would need most of these locals as arguments.
fn start_servers(
    shared: &Arc<Shared>,
    listeners: Listeners,
    budget: crate::budget::Budget,
    stop_rx: &watch::Receiver<bool>,
) -> Result<(Servers, Status), AppError> {
    let mut servers = tokio::task::JoinSet::new();
    let Listeners {
        tcp,
        unix,
        socket_guard,
    } = listeners;
    let mut stream_url = None;
    let (swap_tx, swap_rx) = tokio::sync::mpsc::channel::<Swap>(1);
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
        // The address the front serves on, which a reload may move: the URLs follow it.
        let (serving_tx, serving_rx) = watch::channel(addr);
        tokio::spawn(crate::net::watch_addresses(
            serving_rx,
            urls_tx,
            stop_rx.clone(),
        ));
        servers.spawn(tcp_front(
            tcp,
            shared.clone(),
            stop_rx.clone(),
            http::Limits {
                connections: budget.tcp,
                write_progress: None,
                // Off with logins: see `Limits::half_close` (`stream.auth-users` needs a
                // restart, so this holds for the life of the process).
                half_close: shared.config.stream.auth_users.is_empty(),
            },
            swap_rx,
            serving_tx,
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
            half_close: true,
        },
        shared.events.clone(),
    ));
    // The tail of a burst of refused connections or dropped clients is logged too.
    servers.spawn(flush_events(shared.clone(), stop_rx.clone()));
    let servers = Servers {
        tasks: servers,
        socket_guard,
        swap_tx,
    };
    Ok((
        servers,
        Status {
            stream_url,
            urls_rx,
        },
    ))
}

/// Logs the connection events, control changes and panics not yet logged, every
/// [`crate::throttle::PERIOD`].
async fn flush_events(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(crate::throttle::PERIOD);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                shared.events.flush();
                shared.controls.flush_log();
                crate::logging::flush_panics();
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Waits for the first frame, says READY, then serves (feeding the watchdog) until shutdown
/// or a failure; reloads the config on each SIGHUP meanwhile.
///
/// One function rather than two: the wait for the first frame and the loop after READY
/// answer the same exits (the camera stops, shutdown comes), and READY sits between them.
async fn until_shutdown(
    shared: &Arc<Shared>,
    camera_done: &mut tokio::sync::oneshot::Receiver<Result<(), CameraError>>,
    servers: &mut Servers,
    status: Status,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    mut reload: Option<&mut tokio::signal::unix::Signal>,
) -> Result<(), AppError> {
    // READY only once frames flow (sockets are bound already).
    let mut frames = shared.sink.subscribe();
    tokio::select! {
        r = tokio::time::timeout(FIRST_FRAME_TIMEOUT, frames.wait_for(|f| f.is_some())) => {
            if r.is_err() {
                return Err(AppError::NoFirstFrame(FIRST_FRAME_TIMEOUT));
            }
        }
        r = &mut *camera_done => return camera_result(r),
        _ = &mut shutdown => return Ok(()),
    }
    tracing::info!(source = %shared.info.source, camera = %shared.info.id, "ready");
    notify::ready(status.stream_url.as_deref());
    let mut monitor = std::pin::pin!(notify::monitor(shared.clone(), status.urls_rx));
    let mut running = shared.config.clone();
    loop {
        let hangup = async {
            match reload.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut *camera_done => break camera_result(r),
            _ = &mut shutdown => break Ok(()),
            _ = &mut monitor => break Ok(()),
            Some(r) = servers.tasks.join_next() => {
                break Err(AppError::CameraThread(format!(
                    "a server stopped unexpectedly: {r:?}"
                )));
            }
            Some(()) = hangup => {
                reload_config(&mut running, shared, &servers.swap_tx).await;
            }
        }
    }
}

/// Stops in order: clients and servers ([`http::SHUTDOWN_GRACE`] to finish), the socket file, then the
/// camera and encoder threads (3 s at most).
async fn drain(
    stop_tx: watch::Sender<bool>,
    camera: CameraThread,
    encoder_thread: std::thread::JoinHandle<()>,
    mut servers: Servers,
) {
    tracing::info!("stopping");
    notify::stopping();
    let _ = stop_tx.send(true);
    camera.stop.stop();
    // The servers' own grace, and time to close what is left after it.
    let _ = tokio::time::timeout(http::SHUTDOWN_GRACE + Duration::from_millis(500), async {
        while servers.tasks.join_next().await.is_some() {}
    })
    .await;
    servers.tasks.abort_all();
    tracing::debug!("servers stopped");
    drop(servers.socket_guard);
    let camera_thread = camera.thread;
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
}

/// What a reload asks of the stream's front (the task that serves the stream port).
pub enum Swap {
    /// Serve this listener from now on and close the one served so far (connections already
    /// open on it, streams included, keep running).
    Serve(TcpListener),
    /// Close the listener served so far and say so once its socket is closed (the new
    /// address needs its port); serve nothing until the next `Serve`.
    Close(tokio::sync::oneshot::Sender<()>),
    /// Stop: no listener could be bound. The service ends, and systemd starts it again.
    GiveUp,
}

/// Serves the stream port; when a reload binds a new port, serves that one and closes the
/// old listener (connections already open on it, streams included, keep running). `serving`
/// always holds the address of the listener served (the stream URLs follow it).
///
/// Every listener it serves shares one connection cap and one set of routes, and with them
/// one [`http::auth::Auth`]: connections left on an old listener still count against the
/// cap (a move must not add a cap's worth of descriptors), and a move keeps the login
/// throttle, the remembered logins and the one `auth` thread.
async fn tcp_front(
    first: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    limits: http::Limits,
    mut swap: tokio::sync::mpsc::Receiver<Swap>,
    serving: watch::Sender<SocketAddr>,
) {
    let connections = Arc::new(Semaphore::new(limits.connections));
    let routes = http::stream::routes(shared.clone());
    let mut next = Some(first);
    loop {
        let Some(listener) = next.take() else {
            // Closed for a reload that binds the same port elsewhere: wait for its listener.
            tokio::select! {
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                new = swap.recv() => match new {
                    Some(Swap::Serve(l)) => next = Some(l),
                    Some(Swap::Close(closed)) => { let _ = closed.send(()); }
                    Some(Swap::GiveUp) | None => return,
                }
            }
            continue;
        };
        if let Ok(addr) = listener.local_addr() {
            serving.send_if_modified(|a| std::mem::replace(a, addr) != addr);
        }
        // Each listener has its own stop signal, so that a port change closes only it.
        let (this_stop, this_rx) = watch::channel(false);
        let mut server = tokio::spawn(http::serve(
            Listener::Tcp(
                listener,
                shared.client_timeout_secs.clone(),
                shared.connections_per_address.clone(),
                connections.clone(),
            ),
            routes.clone(),
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
                    Some(Swap::Serve(l)) => next = Some(l),
                    Some(Swap::Close(closed)) => {
                        // `serve` drops its listener as it stops, before its grace period
                        // for open connections (300 ms): the port is free once it returns.
                        let _ = server.await;
                        let _ = closed.send(());
                    }
                    Some(Swap::GiveUp) | None => {
                        let _ = server.await;
                        return;
                    }
                }
            }
            _ = &mut server => return,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Exit 78 (systemd never restarts it) only for what a restart cannot mend: an address the
    /// machine does not have yet is not one (Wi-Fi or DHCP may bring it after picker).
    #[test]
    fn only_what_a_restart_cannot_mend_is_a_config_error() {
        let addr: SocketAddr = "192.0.2.1:8000".parse().unwrap();
        let tcp = |errno| AppError::BindTcp {
            addr,
            port: 8000,
            origin: "/p.toml".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        let unix = |busy| AppError::BindUnix {
            path: "/run/picker/still.sock".into(),
            origin: "/p.toml".into(),
            what: "x".into(),
            busy,
        };
        let absent = AppError::AddressAbsent {
            addr,
            origin: "/p.toml".into(),
            source: std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
        };
        // (error, config error)
        let table = [
            (tcp(libc::EACCES), true),
            (tcp(libc::EADDRINUSE), false),
            (absent, false),
            // What `bind_tcp` makes an AddressAbsent of, were it ever left a BindTcp.
            (tcp(libc::EADDRNOTAVAIL), false),
            (unix(false), true),
            (unix(true), false),
            (AppError::NoFirstFrame(FIRST_FRAME_TIMEOUT), false),
        ];
        for (error, want) in table {
            assert_eq!(error.is_config(), want, "{error}");
            // Only the address that may come yet says why its exit is no config error.
            assert_eq!(
                error.exit_note().is_some(),
                matches!(error, AppError::AddressAbsent { .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn an_absent_address_names_the_key_the_address_and_the_port() {
        let e = AppError::AddressAbsent {
            addr: "192.168.77.50:8000".parse().unwrap(),
            origin: "/etc/picker/picker.toml".into(),
            source: std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
        };
        assert_eq!(
            format!("{:#}", anyhow::Error::new(e)),
            "cannot listen on 192.168.77.50:8000: stream.bind = 192.168.77.50 in \
             /etc/picker/picker.toml is not an address of this machine (not yet, perhaps: \
             Wi-Fi or DHCP may bring it after picker starts): Cannot assign requested address \
             (os error 99)"
        );
    }
}
