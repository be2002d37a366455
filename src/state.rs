//! What every request handler shares ([`Shared`]): built once by [`crate::app`], read by
//! [`crate::http`] and [`crate::notify`]. It sits below both so that imports only run
//! downward; while it lived in `app`, the wiring imported the handlers and the handlers
//! imported it back. `/state`'s report ([`State`]) and why a still failed ([`StillError`]) are
//! answers the handlers give from it, so they live here too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use crate::camera::controls::ControlsHandle;
use crate::camera::{CameraInfo, CropState, StreamInfo};
use crate::config::Config;
use crate::encode_pool::{EncodePool, Kind, PoolError};
use crate::encoder::{Demand, EncodedFrame};
use crate::frames::{Frame, FrameSink, Stats};
use crate::throttle::Events;

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
    /// The encode queue is full; answered 503 with `Retry-After`.
    #[error("busy: too many requests at once, retry shortly")]
    Busy,
}

impl From<PoolError> for StillError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Busy => StillError::Busy,
            PoolError::Gone => StillError::ShuttingDown,
            PoolError::Failed(e) => StillError::Encode(e.to_string()),
        }
    }
}

/// State shared by all request handlers.
pub struct Shared {
    pub config: Config,
    pub info: CameraInfo,
    /// The camera's controls (`/controls` on the still socket, `controls` in `/state`).
    pub controls: Arc<ControlsHandle>,
    pub sink: Arc<FrameSink>,
    pub stats: Arc<Stats>,
    pub encoded: watch::Receiver<Option<Arc<EncodedFrame>>>,
    pub demand: Demand,
    pub stream_slots: Arc<Semaphore>,
    /// Stream slots held per client address (`stream.max-clients-per-address`, reloadable).
    pub per_address: Arc<crate::peers::PerAddress>,
    /// Open TCP connections per client address on the stream port (follows
    /// `stream.max-clients-per-address`, see [`crate::peers::connections_per_address`]);
    /// shared by every listener a port change opens.
    pub connections_per_address: Arc<crate::peers::PerAddress>,
    pub shutdown: watch::Receiver<bool>,
    /// Encodes snapshots and stills, once per frame and output, on a fixed set of threads.
    pub encode_pool: Arc<EncodePool>,
    /// Refused connections, accept errors, dropped clients: counted and rate-limited.
    pub events: Arc<Events>,
    /// `stream.quality` as it is now: a reload (SIGHUP) changes it; `config` keeps the value
    /// the service started with.
    pub quality: Arc<AtomicU8>,
    /// `stream.max-clients` as it is now (reloadable), for the 503 that names it.
    pub max_clients: AtomicUsize,
    /// `stream.client-timeout` in seconds as it is now (reloadable): each accepted stream
    /// connection reads it once.
    pub client_timeout_secs: Arc<AtomicU64>,
    /// The still of the last still request, copied out of its camera buffer.
    pub detached: std::sync::Mutex<Option<Arc<Frame>>>,
}

/// `/state`.
#[derive(Debug, Serialize)]
pub struct State {
    pub online: bool,
    /// Why the camera counts as offline (`null` while online), for people: the preview page
    /// shows it beside the status.
    pub offline_reason: Option<String>,
    pub source: crate::camera::SourceKind,
    /// Where the camera's frame buffers come from ("driver-fallback": it refused picker's).
    pub buffers: crate::camera::BufferSource,
    pub camera: String,
    pub stream: StreamInfo,
    pub still: StreamInfo,
    pub fps: f64,
    pub clients: u64,
    pub frames: FrameCounts,
    pub crop: CropState,
    pub adjustments: Vec<String>,
    /// `[controls]` per key: applied / adjusted / unsupported, and the values in force.
    pub controls: BTreeMap<&'static str, crate::camera::controls::Report>,
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

    /// The latest frame, marked read (for `/metrics`' unconsumed frames).
    fn take_latest(&self) -> Option<Arc<Frame>> {
        Frame::consume(&self.sink.subscribe().borrow())
    }

    /// A still request's frame with its own copy of the still (see `Frame::detach_still`),
    /// made once per frame however many requests ask for it: a lent camera buffer goes back
    /// at once instead of waiting for clients, and the copy is the only one a still costs.
    fn detached(&self, frame: Arc<Frame>) -> Arc<Frame> {
        if !frame.is_lent() {
            return frame;
        }
        // The copy is made under the lock (a millisecond at most): concurrent requests for a
        // new frame wait for one copy instead of each making its own.
        let mut last = self.detached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = last.as_ref().filter(|d| d.sequence == frame.sequence) {
            return d.clone();
        }
        let (d, copied) = frame.detach_still();
        self.stats.add_copied(copied as u64);
        let d = Arc::new(d);
        *last = Some(d.clone());
        d
    }

    pub fn online(&self) -> bool {
        self.sink.online(self.stall_limit())
    }

    /// Why [`Shared::online`] is false: no frame yet, or none for longer than the stall limit.
    pub fn offline_reason(&self) -> Option<String> {
        let limit = self.stall_limit();
        match self.sink.since_last_frame() {
            None => Some("no frame from the camera yet".to_string()),
            Some(age) if age >= limit => Some(format!(
                "no frame for {:.1} s (offline after {:.1} s without one): the camera stalled, \
                 restarts or is disconnected",
                age.as_secs_f64(),
                limit.as_secs_f64()
            )),
            Some(_) => None,
        }
    }

    pub fn state(&self) -> State {
        let latest = self.latest();
        let fps = if self.online() {
            self.stats.fps_milli.load(Ordering::Relaxed) as f64 / 1000.0
        } else {
            0.0
        };
        // Read before the frames captured: a frame is encoded after it is captured, so one
        // reading never shows more encoded (or dropped) than captured.
        let encoded = self.stats.encoded.load(Ordering::Relaxed);
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        State {
            online: self.online(),
            offline_reason: self.offline_reason(),
            source: self.info.source,
            buffers: crate::camera::BufferSource::from_u8(
                self.stats.buffer_source.load(Ordering::Relaxed),
            ),
            camera: self.info.id.clone(),
            stream: self.info.video,
            still: self.info.still,
            fps,
            clients: self.stats.stream_clients.load(Ordering::Relaxed),
            frames: FrameCounts {
                captured: self.stats.tally().captured,
                encoded,
                dropped,
                sequence: latest.map(|f| f.sequence).unwrap_or(0),
            },
            crop: self.sink.crop(),
            adjustments: self.info.adjustments.clone(),
            controls: self.controls.state().in_force,
        }
    }

    /// The latest frame, or with `fresh` the first frame captured after this call.
    pub async fn still_frame(&self, fresh: bool) -> Result<Arc<Frame>, StillError> {
        self.newest_frame(fresh).await.map(|f| self.detached(f))
    }

    async fn newest_frame(&self, fresh: bool) -> Result<Arc<Frame>, StillError> {
        let mut rx = self.sink.subscribe();
        if !fresh {
            return self.take_latest().ok_or(StillError::NoFrame);
        }
        let (asked_at, _) = crate::frames::now_timestamps();
        let limit = self.stall_limit();
        let mut shutdown = self.shutdown.clone();
        let wait = rx.wait_for(|f| f.as_ref().is_some_and(|f| f.timestamp_ns > asked_at));
        tokio::select! {
            r = tokio::time::timeout(limit, wait) => match r {
                Ok(Ok(f)) => Frame::consume(&f).ok_or(StillError::NoFrame),
                Ok(Err(_)) => Err(StillError::ShuttingDown),
                Err(_) => Err(StillError::Timeout(limit)),
            },
            _ = shutdown.wait_for(|s| *s) => Err(StillError::ShuttingDown),
        }
    }

    /// `stream.client-timeout` in force (reloadable).
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_secs.load(Ordering::Relaxed))
    }

    /// `stream.max-clients` in force (reloadable).
    pub fn max_clients(&self) -> usize {
        self.max_clients.load(Ordering::Relaxed)
    }

    /// The JPEG quality in force (reloadable).
    pub fn quality(&self) -> u8 {
        self.quality.load(Ordering::Relaxed)
    }

    /// The reliability counters for `/metrics`: connection events and the encode pool.
    pub fn write_reliability_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        self.events.write_metrics(out);
        let pool = &self.encode_pool;
        for (name, help, value) in [
            (
                "picker_still_encodes_total",
                "Snapshot and still encodes (one per frame and format, shared by requests).",
                pool.encodes.load(Ordering::Relaxed),
            ),
            (
                "picker_encode_busy_total",
                "Snapshot and still requests answered 503: encode queue full.",
                pool.busy.load(Ordering::Relaxed),
            ),
        ] {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        }
    }

    /// The newest video frame as JPEG: the stream's if it is current, else encoded now.
    pub async fn latest_jpeg(&self) -> Result<(Bytes, Arc<Frame>), StillError> {
        let frame = self.take_latest().ok_or(StillError::NoFrame)?;
        if let Some(e) = self.encoded.borrow().as_ref() {
            if e.sequence == frame.sequence {
                return Ok((e.jpeg.clone(), frame));
            }
        }
        let quality = self.quality();
        let job = frame.clone();
        let jpeg = self
            .encode_pool
            .encode(Kind::Snapshot, frame.sequence, move || {
                crate::encode_pool::jpeg(&job.video, quality)
            })
            .await?;
        Ok((jpeg, frame))
    }
}
