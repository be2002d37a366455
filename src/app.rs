//! The running service: opens the camera, binds the sockets, wires camera -> encoder ->
//! clients together, and is the one place that decides shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};

use crate::camera::{Camera, CameraError, CameraInfo, CropState, StopFlag, StreamInfo};
use crate::config::{Config, Crop, SourceChoice};
use crate::encoder::{Demand, EncodedFrame};
use crate::frames::{Frame, FrameSink, Stats};
use crate::http::{self, Listener};
use crate::notify;

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
    },
    #[error(transparent)]
    Camera(#[from] CameraError),
    #[error("camera delivered no frame within {0:?} of starting")]
    NoFirstFrame(Duration),
    #[error("camera thread failed: {0}")]
    CameraThread(String),
}

/// Why a still could not be served.
#[derive(Debug, thiserror::Error)]
pub enum StillError {
    #[error("no frame captured yet")]
    NoFrame,
    #[error("no new frame within {0:?}: is the camera stalled?")]
    Timeout(Duration),
    #[error("shutting down")]
    ShuttingDown,
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// State shared by all request handlers.
pub struct Shared {
    pub config: Config,
    pub info: CameraInfo,
    pub sink: Arc<FrameSink>,
    pub stats: Arc<Stats>,
    pub encoded: watch::Receiver<Option<Arc<EncodedFrame>>>,
    pub demand: Demand,
    pub stream_slots: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    /// Compressors for snapshots, reused across requests.
    compressors: std::sync::Mutex<Vec<crate::jpeg::Compressor>>,
}

/// `/state`.
#[derive(Debug, Serialize)]
pub struct State {
    pub online: bool,
    pub source: crate::camera::SourceKind,
    pub camera: String,
    pub stream: StreamInfo,
    pub still: StreamInfo,
    pub fps: f64,
    pub clients: u64,
    pub frames: FrameCounts,
    pub crop: CropState,
    pub adjustments: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct FrameCounts {
    pub captured: u64,
    pub encoded: u64,
    pub dropped: u64,
    pub sequence: u64,
}

impl Shared {
    /// Frames older than this mean the camera is offline.
    pub fn stall_limit(&self) -> Duration {
        (Duration::from_secs(1) / self.config.camera.framerate * 10).max(Duration::from_secs(2))
    }

    pub fn latest(&self) -> Option<Arc<Frame>> {
        self.sink.subscribe().borrow().clone()
    }

    pub fn online(&self) -> bool {
        self.sink
            .since_last_frame()
            .is_some_and(|age| age < self.stall_limit())
    }

    pub fn state(&self) -> State {
        let latest = self.latest();
        let fps = if self.online() {
            self.stats.fps_milli.load(Ordering::Relaxed) as f64 / 1000.0
        } else {
            0.0
        };
        State {
            online: self.online(),
            source: self.info.source,
            camera: self.info.id.clone(),
            stream: self.info.video,
            still: self.info.still,
            fps,
            clients: self.stats.stream_clients.load(Ordering::Relaxed),
            frames: FrameCounts {
                captured: self.stats.captured.load(Ordering::Relaxed),
                encoded: self.stats.encoded.load(Ordering::Relaxed),
                dropped: self.stats.dropped.load(Ordering::Relaxed),
                sequence: latest.map(|f| f.sequence).unwrap_or(0),
            },
            crop: self.sink.crop(),
            adjustments: self.info.adjustments.clone(),
        }
    }

    /// The latest frame, or with `fresh` the first frame captured after this call.
    pub async fn still_frame(&self, fresh: bool) -> Result<Arc<Frame>, StillError> {
        let mut rx = self.sink.subscribe();
        if !fresh {
            return rx.borrow().clone().ok_or(StillError::NoFrame);
        }
        let (asked_at, _) = crate::frames::now_timestamps();
        let limit = self.stall_limit();
        let mut shutdown = self.shutdown.clone();
        let wait = rx.wait_for(|f| f.as_ref().is_some_and(|f| f.timestamp_ns > asked_at));
        tokio::select! {
            r = tokio::time::timeout(limit, wait) => match r {
                Ok(Ok(f)) => Ok(f.clone().expect("checked by wait_for")),
                Ok(Err(_)) => Err(StillError::ShuttingDown),
                Err(_) => Err(StillError::Timeout(limit)),
            },
            _ = shutdown.wait_for(|s| *s) => Err(StillError::ShuttingDown),
        }
    }

    /// The newest video frame as JPEG: the stream's if it is current, else encoded now.
    pub async fn latest_jpeg(&self) -> Result<(Bytes, u64), StillError> {
        let frame = self.latest().ok_or(StillError::NoFrame)?;
        if let Some(e) = self.encoded.borrow().as_ref() {
            if e.sequence == frame.sequence {
                return Ok((e.jpeg.clone(), e.sequence));
            }
        }
        let mut compressor = match self.compressors.lock().unwrap().pop() {
            Some(c) => c,
            None => {
                crate::jpeg::Compressor::new().map_err(|e| StillError::Encode(e.to_string()))?
            }
        };
        let quality = self.config.stream.quality;
        let (compressor, jpeg) = tokio::task::spawn_blocking(move || {
            let jpeg = compressor
                .compress(&frame.video, quality)
                .map(Bytes::copy_from_slice)
                .map_err(|e| e.to_string());
            (compressor, jpeg.map(|j| (j, frame.sequence)))
        })
        .await
        .map_err(|e| StillError::Encode(e.to_string()))?;
        let mut pool = self.compressors.lock().unwrap();
        if pool.len() < 2 {
            pool.push(compressor);
        }
        jpeg.map_err(StillError::Encode)
    }
}

/// Opens the camera the config asks for.
pub fn open_camera(config: &Config) -> Result<Box<dyn Camera>, CameraError> {
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

/// Binds the TCP listener (if the stream is enabled) and the still socket.
pub async fn bind(config: &Config) -> Result<Listeners, AppError> {
    let tcp = if config.stream.enabled {
        let addr = SocketAddr::new(config.stream.bind, config.stream.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::BindTcp {
                addr,
                port: config.stream.port,
                origin: config.origin(),
                source,
            })?;
        Some(listener)
    } else {
        None
    };
    let (unix, socket_guard) =
        bind_unix(&config.still.socket).map_err(|what| AppError::BindUnix {
            path: config.still.socket.clone(),
            origin: config.origin(),
            what,
        })?;
    Ok(Listeners {
        tcp,
        unix,
        socket_guard,
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

fn bind_unix(path: &Path) -> Result<(UnixListener, SocketGuard), String> {
    use std::os::unix::fs::MetadataExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create directory {}: {e}", parent.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A socket file: stale unless somebody still answers on it.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(
                    "another process is listening on it (is picker already running?)".into(),
                );
            }
            std::fs::remove_file(path).map_err(|e| format!("cannot remove stale socket: {e}"))?;
        }
        Ok(_) => return Err("a file that is not a socket is in the way".into()),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| e.to_string())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set mode 0660: {e}"))?;
    let inode = std::fs::symlink_metadata(path)
        .map_err(|e| e.to_string())?
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
pub async fn run(
    config: Config,
    camera: Box<dyn Camera>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let info = camera.info();
    for line in &info.adjustments {
        tracing::warn!("camera adjusted the configuration: {line}");
    }
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
    let shared = Arc::new(Shared {
        stream_slots: Arc::new(Semaphore::new(config.stream.max_clients)),
        config,
        info,
        sink: sink.clone(),
        stats: stats.clone(),
        encoded: encoded_rx,
        demand: demand.clone(),
        shutdown: stop_rx.clone(),
        compressors: std::sync::Mutex::new(Vec::new()),
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
        let (quality, stop_rx) = (shared.config.stream.quality, stop_rx.clone());
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
        servers.spawn(http::serve(
            Listener::Tcp(tcp, shared.config.stream.client_timeout),
            http::stream::routes(shared.clone()),
            stop_rx.clone(),
        ));
    } else {
        tracing::info!("stream disabled (stream.enabled = false): no TCP port opened");
    }
    tracing::info!("still socket at {}", shared.config.still.socket.display());
    servers.spawn(http::serve(
        Listener::Unix(unix),
        http::still::routes(shared.clone()),
        stop_rx.clone(),
    ));

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
        tokio::select! {
            r = &mut camera_done => camera_result(r),
            _ = &mut shutdown => Ok(()),
            _ = &mut monitor => Ok(()),
            Some(r) = servers.join_next() => {
                Err(AppError::CameraThread(format!("a server stopped unexpectedly: {r:?}")))
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
    if tokio::time::timeout(Duration::from_millis(400), joined)
        .await
        .is_err()
    {
        tracing::warn!("camera did not stop within 400 ms; exiting anyway");
    }
    tracing::debug!("camera and encoder stopped");
    outcome
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
