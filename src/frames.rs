//! Frames and the latest-frame broadcast.
//!
//! A camera fills a [`FrameMut`] taken from a small pool and publishes it; readers see the
//! most recent frame through a `watch` channel and simply miss the ones they were too slow
//! for. Publishing never waits for anybody, and frame memory is recycled once no reader
//! holds it, so steady-state capture allocates nothing.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;

use crate::camera::CropState;

/// Pixel layouts, named by their byte order in memory (in `/state`: lowercase, as
/// FFmpeg's pixel formats are: "i420", "nv12", "yuyv", "rgb24", "bgr24").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Planar Y, U, V; chroma halved both ways (libcamera `YUV420`).
    I420,
    /// Y plane, then interleaved U/V; chroma halved both ways.
    Nv12,
    /// Packed Y0 U Y1 V; chroma halved horizontally.
    Yuyv,
    /// Bytes R, G, B (libcamera `BGR888`).
    Rgb24,
    /// Bytes B, G, R (libcamera `RGB888`: named after a little-endian word).
    Bgr24,
}

impl PixelFormat {
    /// Number of planes and, for each, (bytes per pixel row at `width`, rows at `height`).
    fn plane_sizes(self, width: usize, height: usize) -> ([(usize, usize); 3], usize) {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        match self {
            PixelFormat::I420 => ([(width, height), (cw, ch), (cw, ch)], 3),
            PixelFormat::Nv12 => ([(width, height), (cw * 2, ch), (0, 0)], 2),
            PixelFormat::Yuyv => ([(cw * 4, height), (0, 0), (0, 0)], 1),
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => ([(width * 3, height), (0, 0), (0, 0)], 1),
        }
    }
}

/// One image in one buffer, planes at `offsets` with `strides` bytes per row.
#[derive(Clone, Debug)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub planes: usize,
    pub strides: [usize; 3],
    pub offsets: [usize; 3],
    pub data: Vec<u8>,
}

impl Image {
    pub fn new(width: u32, height: u32, format: PixelFormat) -> Self {
        let mut image = Image {
            width: 0,
            height: 0,
            format,
            planes: 0,
            strides: [0; 3],
            offsets: [0; 3],
            data: Vec::new(),
        };
        image.reshape(width, height, format);
        image
    }

    /// Lays the image out tightly packed at this size, reusing the allocation when it fits.
    pub fn reshape(&mut self, width: u32, height: u32, format: PixelFormat) {
        let (sizes, planes) = format.plane_sizes(width as usize, height as usize);
        let mut offset = 0;
        for (i, (stride, rows)) in sizes.iter().enumerate() {
            self.strides[i] = *stride;
            self.offsets[i] = offset;
            offset += stride * rows;
        }
        self.width = width;
        self.height = height;
        self.format = format;
        self.planes = planes;
        self.data.resize(offset, 0);
    }

    /// Lays the image out with the given per-plane strides (as a camera buffer has them), so
    /// rows can be copied without repacking.
    pub fn reshape_strided(
        &mut self,
        width: u32,
        height: u32,
        format: PixelFormat,
        strides: &[usize],
    ) {
        let (sizes, planes) = format.plane_sizes(width as usize, height as usize);
        let mut offset = 0;
        for (i, (min_stride, rows)) in sizes.iter().take(planes).enumerate() {
            let stride = strides
                .get(i)
                .copied()
                .unwrap_or(*min_stride)
                .max(*min_stride);
            self.strides[i] = stride;
            self.offsets[i] = offset;
            offset += stride * rows;
        }
        self.width = width;
        self.height = height;
        self.format = format;
        self.planes = planes;
        self.data.resize(offset, 0);
    }

    /// The rows of plane `i` (with stride padding); shorter if `data` is too short, so
    /// consumers check lengths instead of panicking here.
    pub fn plane(&self, i: usize) -> &[u8] {
        let (sizes, _) = self
            .format
            .plane_sizes(self.width as usize, self.height as usize);
        let start = self.offsets[i].min(self.data.len());
        let end = (self.offsets[i] + self.strides[i] * sizes[i].1).min(self.data.len());
        &self.data[start..end]
    }

    pub fn plane_mut(&mut self, i: usize) -> &mut [u8] {
        let (sizes, _) = self
            .format
            .plane_sizes(self.width as usize, self.height as usize);
        let start = self.offsets[i];
        let len = self.strides[i] * sizes[i].1;
        &mut self.data[start..start + len]
    }
}

/// One capture: the video image (to be JPEG-encoded for the stream) and the still image,
/// taken at the same instant.
#[derive(Debug)]
pub struct Frame {
    /// Counts every frame the camera delivered, from 1.
    pub sequence: u64,
    /// Capture time, CLOCK_BOOTTIME nanoseconds: the clock of libcamera's `SensorTimestamp`
    /// (on a machine that never suspends, the same as CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// Capture time as Unix microseconds, for the `X-Timestamp` header.
    pub unix_us: u64,
    pub video: Image,
    pub still: Image,
}

/// A frame being filled by the camera. Unique until published, so it can be written.
pub struct FrameMut(Arc<Frame>);

impl Deref for FrameMut {
    type Target = Frame;
    fn deref(&self) -> &Frame {
        &self.0
    }
}

impl DerefMut for FrameMut {
    fn deref_mut(&mut self) -> &mut Frame {
        Arc::get_mut(&mut self.0).expect("a FrameMut is never shared before publish")
    }
}

/// How many frames the pool keeps for reuse. Readers hold at most a couple at once (the
/// encoder's current one, a still being converted); more than this is allocated and dropped.
const POOL_FRAMES: usize = 6;

/// Counters shown in `/state` and `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub captured: AtomicU64,
    pub encoded: AtomicU64,
    /// Frames the encoder skipped while clients were watching (it was still busy).
    pub dropped: AtomicU64,
    pub stream_clients: AtomicU64,
    /// Frames per second over the last second, times 1000.
    pub fps_milli: AtomicU64,
    /// Written by the camera owner (`camera::owner`): frames flagged startup or error by the
    /// camera (requeued, never published), gaps in its frame sequence, frames that found no
    /// empty buffer, camera restarts.
    pub frames_startup: AtomicU64,
    pub frames_error: AtomicU64,
    pub sequence_gaps: AtomicU64,
    pub frames_lost: AtomicU64,
    pub camera_restarts: AtomicU64,
}

/// Where a camera publishes frames.
pub struct FrameSink {
    tx: watch::Sender<Option<Arc<Frame>>>,
    pool: Mutex<Vec<Arc<Frame>>>,
    crop: watch::Sender<CropState>,
    stats: Arc<Stats>,
    fps: Mutex<FpsMeter>,
    /// When the latest frame was published (CLOCK_BOOTTIME ns), whatever clock the camera
    /// stamps its frames with.
    last_publish_ns: AtomicU64,
}

struct FpsMeter {
    window_start: Option<Instant>,
    frames: u64,
}

impl FrameSink {
    pub fn new(stats: Arc<Stats>, crop: CropState) -> Self {
        FrameSink {
            tx: watch::channel(None).0,
            pool: Mutex::new(Vec::with_capacity(POOL_FRAMES + 1)),
            crop: watch::channel(crop).0,
            stats,
            fps: Mutex::new(FpsMeter {
                window_start: None,
                frames: 0,
            }),
            last_publish_ns: AtomicU64::new(0),
        }
    }

    /// A frame to fill: a recycled one nobody reads any more, else a new one.
    pub fn acquire(&self) -> FrameMut {
        let mut pool = self.pool.lock().unwrap();
        if let Some(i) = pool.iter().position(|f| Arc::strong_count(f) == 1) {
            return FrameMut(pool.swap_remove(i));
        }
        drop(pool);
        FrameMut(Arc::new(Frame {
            sequence: 0,
            timestamp_ns: 0,
            unix_us: 0,
            video: Image::new(0, 0, PixelFormat::I420),
            still: Image::new(0, 0, PixelFormat::Rgb24),
        }))
    }

    /// Makes `frame` the latest frame. Never waits.
    pub fn publish(&self, frame: FrameMut) {
        let frame = frame.0;
        {
            let mut pool = self.pool.lock().unwrap();
            if pool.len() >= POOL_FRAMES {
                pool.remove(0);
            }
            pool.push(frame.clone());
        }
        self.stats.captured.fetch_add(1, Ordering::Relaxed);
        self.last_publish_ns
            .store(now_timestamps().0, Ordering::Relaxed);
        self.count_fps();
        self.tx.send_replace(Some(frame));
    }

    /// Records the crop rectangle the camera reports (only when it changed).
    pub fn set_crop(&self, crop: CropState) {
        self.crop.send_if_modified(|c| {
            let changed = *c != crop;
            *c = crop;
            changed
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Frame>>> {
        self.tx.subscribe()
    }

    pub fn crop(&self) -> CropState {
        *self.crop.borrow()
    }

    /// Time since the latest frame was published; `None` before the first.
    pub fn since_last_frame(&self) -> Option<std::time::Duration> {
        let at = self.last_publish_ns.load(Ordering::Relaxed);
        (at != 0).then(|| std::time::Duration::from_nanos(now_timestamps().0.saturating_sub(at)))
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn count_fps(&self) {
        let now = Instant::now();
        let mut m = self.fps.lock().unwrap();
        m.frames += 1;
        let start = *m.window_start.get_or_insert(now);
        let elapsed = now.duration_since(start);
        if elapsed.as_millis() >= 1000 {
            // frames - 1 intervals fit in the window; fps * 1000 = intervals * 1e9 / us.
            let fps_milli = (m.frames - 1) as u128 * 1_000_000_000 / elapsed.as_micros().max(1);
            self.stats
                .fps_milli
                .store(fps_milli as u64, Ordering::Relaxed);
            m.window_start = Some(now);
            m.frames = 1;
        }
    }
}

/// Clock readings for a frame captured now: (CLOCK_BOOTTIME ns, Unix us).
pub fn now_timestamps() -> (u64, u64) {
    let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0);
    (mono, unix_us_now())
}

pub fn unix_us_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
