//! Frames and the latest-frame broadcast.
//!
//! A camera fills a [`FrameMut`] taken from a small pool and publishes it; readers see the
//! most recent frame through a `watch` channel and simply miss the ones they were too slow
//! for. Publishing never waits for anybody, and frame memory is recycled once no reader
//! holds it, so steady-state capture allocates nothing.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Memory a camera lends: its buffer, mapped, readable while the lease is held.
pub type Region = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Held by every image that reads a lent camera buffer; dropping the last one gives the
/// buffer back to the camera (see `camera::owner`). Whatever is inside does that in its `Drop`.
pub type Lease = Arc<dyn Send + Sync>;

/// The bytes of an image: its own, or a camera buffer lent to it (no copy).
#[derive(Clone)]
pub enum Pixels {
    Owned(Vec<u8>),
    /// `len` bytes from `start` of a lent camera buffer.
    Lent {
        region: Region,
        start: usize,
        len: usize,
        lease: Lease,
    },
}

impl Pixels {
    /// Lent pixels; `None` when the range is not inside the region.
    pub fn lent(region: Region, start: usize, len: usize, lease: Lease) -> Option<Self> {
        let end = start.checked_add(len)?;
        ((*region).as_ref().len() >= end).then_some(Pixels::Lent {
            region,
            start,
            len,
            lease,
        })
    }

    pub fn is_lent(&self) -> bool {
        matches!(self, Pixels::Lent { .. })
    }

    /// `len` bytes of its own: an owned buffer is resized (contents kept), a lent one is let
    /// go of for zeroes.
    pub fn resize(&mut self, len: usize) {
        match self {
            Pixels::Owned(v) => v.resize(len, 0),
            Pixels::Lent { .. } => *self = Pixels::Owned(vec![0; len]),
        }
    }

    pub fn truncate(&mut self, len: usize) {
        let keep = len.min(self.len());
        self.make_owned().truncate(keep);
    }

    /// Its own bytes, copying lent ones out first.
    fn make_owned(&mut self) -> &mut Vec<u8> {
        if let Pixels::Lent { .. } = self {
            *self = Pixels::Owned(self.to_vec());
        }
        match self {
            Pixels::Owned(v) => v,
            Pixels::Lent { .. } => unreachable!("made owned above"),
        }
    }
}

impl Default for Pixels {
    fn default() -> Self {
        Pixels::Owned(Vec::new())
    }
}

impl Deref for Pixels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Owned(v) => v,
            Pixels::Lent {
                region, start, len, ..
            } => &(**region).as_ref()[*start..*start + *len],
        }
    }
}

/// Writing to lent pixels copies them first: a camera buffer is never written by us.
impl DerefMut for Pixels {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.make_owned()
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pixels::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            Pixels::Lent { start, len, .. } => write!(f, "Lent({len} bytes at {start})"),
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
    pub data: Pixels,
}

impl Image {
    pub fn new(width: u32, height: u32, format: PixelFormat) -> Self {
        let mut image = Image::layout_only(width, height, format, &[]);
        image.data.resize(image.needed_len());
        image
    }

    /// Lays the image out tightly packed at this size, reusing the allocation when it fits.
    pub fn reshape(&mut self, width: u32, height: u32, format: PixelFormat) {
        self.reshape_strided(width, height, format, &[]);
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
        let len = self.set_layout(width, height, format, strides);
        self.data.resize(len);
    }

    /// An image with this layout and no pixels yet (nothing allocated): for lent buffers.
    pub fn layout_only(width: u32, height: u32, format: PixelFormat, strides: &[usize]) -> Image {
        let mut image = Image {
            width: 0,
            height: 0,
            format,
            planes: 0,
            strides: [0; 3],
            offsets: [0; 3],
            data: Pixels::default(),
        };
        image.set_layout(width, height, format, strides);
        image
    }

    /// Sets size, format, strides and tight plane offsets; returns the bytes they span.
    fn set_layout(
        &mut self,
        width: u32,
        height: u32,
        format: PixelFormat,
        strides: &[usize],
    ) -> usize {
        let (sizes, planes) = format.plane_sizes(width as usize, height as usize);
        self.strides = [0; 3];
        self.offsets = [0; 3];
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
        offset
    }

    /// Bytes of plane data the layout needs (stride padding included), for checking a
    /// camera buffer before lending it.
    pub fn needed_len(&self) -> usize {
        let (sizes, _) = self
            .format
            .plane_sizes(self.width as usize, self.height as usize);
        (0..self.planes)
            .map(|i| self.offsets[i] + self.strides[i] * sizes[i].1)
            .max()
            .unwrap_or(0)
    }

    /// An image with its own copy of these pixels (tightly laid out as they are).
    pub fn to_owned_image(&self) -> Image {
        let mut out = self.clone();
        if self.data.is_lent() {
            out.data = Pixels::Owned(self.data.to_vec());
        }
        out
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

/// What a frame was taken with, as the camera reports it in the request's metadata (on a
/// Raspberry Pi, the IPA's values for that very frame: the exposure and gains the sensor used,
/// where it told the lens to go), so that a robot that changed the controls can tell when its
/// stills show the change. `None` for what the camera does not report. Served on stills as
/// `X-Exposure-Time` and the headers named in [`Settings::headers`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Settings {
    /// Microseconds (libcamera `ExposureTime`).
    pub exposure_time: Option<u32>,
    /// libcamera `AnalogueGain`.
    pub analogue_gain: Option<f32>,
    /// libcamera `DigitalGain`.
    pub digital_gain: Option<f32>,
    /// Dioptres (libcamera `LensPosition`): reported by a camera with a focus lens. A Pi's
    /// IPA reports the position it commanded when it processed this frame (its `Af`'s
    /// `fsmooth_`), which the lens moves to only afterwards: not where it was during the
    /// exposure.
    pub lens_position: Option<f32>,
    /// Red and blue gains (libcamera `ColourGains`).
    pub colour_gains: Option<[f32; 2]>,
    /// Kelvin (libcamera `ColourTemperature`).
    pub colour_temperature: Option<u32>,
}

impl Settings {
    /// The response headers that state these settings, named after picker's `[controls]`
    /// keys (`X-Colour-Gains: 1.5,2.25`). A value that is not a finite number, or is out of
    /// the range a camera could report, is left out rather than served as nonsense.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        // Not `v >= 0.0`: -0.0 passes that and prints as "-0".
        let finite = |v: f32| (v.is_finite() && v.is_sign_positive()).then_some(v);
        let mut out = Vec::new();
        if let Some(v) = self.exposure_time {
            out.push(("x-exposure-time", v.to_string()));
        }
        if let Some(v) = self.analogue_gain.and_then(finite) {
            out.push(("x-analogue-gain", v.to_string()));
        }
        if let Some(v) = self.digital_gain.and_then(finite) {
            out.push(("x-digital-gain", v.to_string()));
        }
        if let Some(v) = self.lens_position.and_then(finite) {
            out.push(("x-lens-position", v.to_string()));
        }
        if let Some([r, b]) = self.colour_gains {
            if let (Some(r), Some(b)) = (finite(r), finite(b)) {
                out.push(("x-colour-gains", format!("{r},{b}")));
            }
        }
        if let Some(v) = self.colour_temperature {
            out.push(("x-colour-temperature", v.to_string()));
        }
        out
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
    /// What the camera says this frame was taken with (none from a camera that says nothing).
    pub settings: Settings,
    pub video: Image,
    pub still: Image,
    /// Set by the first reader (the encoder, a still): a frame replaced before anybody read
    /// it is counted in [`Stats::frames_unconsumed`].
    consumed: AtomicBool,
}

impl Frame {
    /// An empty frame, to be filled (or given lent images) by a camera.
    pub fn empty() -> Self {
        Frame {
            sequence: 0,
            timestamp_ns: 0,
            unix_us: 0,
            settings: Settings::default(),
            video: Image::new(0, 0, PixelFormat::I420),
            still: Image::new(0, 0, PixelFormat::Rgb24),
            consumed: AtomicBool::new(false),
        }
    }

    /// The frame in `slot` (the latest, borrowed from the channel), marked read: marked while
    /// still borrowed, so a publish that replaces it sees the mark.
    pub fn consume(slot: &Option<Arc<Frame>>) -> Option<Arc<Frame>> {
        let frame = slot.as_ref()?;
        frame.consumed.store(true, Ordering::Relaxed);
        Some(frame.clone())
    }

    /// True when the frame's pixels are a camera buffer lent to it.
    pub fn is_lent(&self) -> bool {
        self.video.data.is_lent() || self.still.data.is_lent()
    }

    /// The frame with its own copy of the still image and no video: what a still request
    /// keeps, so no camera buffer waits for a slow client. Returns the bytes copied.
    pub fn detach_still(&self) -> (Frame, usize) {
        let still = self.still.to_owned_image();
        let copied = if self.still.data.is_lent() {
            still.data.len()
        } else {
            0
        };
        (
            Frame {
                sequence: self.sequence,
                timestamp_ns: self.timestamp_ns,
                unix_us: self.unix_us,
                settings: self.settings,
                video: Image::new(0, 0, PixelFormat::I420),
                still,
                consumed: AtomicBool::new(true),
            },
            copied,
        )
    }
}

/// A frame being filled by the camera. Unique until published, so it can be written.
pub struct FrameMut(Arc<Frame>);

impl FrameMut {
    /// A frame of the camera's own making (lent images), not from the sink's pool.
    pub fn new(frame: Frame) -> Self {
        FrameMut(Arc::new(frame))
    }
}

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
    /// Frames captured, lent and bytes copied, counted together: see [`Tally`].
    tally: Mutex<Tally>,
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
    /// Good frames the camera delivered beyond `camera.framerate`, given back untouched.
    pub frames_paced: AtomicU64,
    /// Published frames replaced before anybody (encoder, still) read them.
    pub frames_unconsumed: AtomicU64,
    /// Where the camera's frame buffers come from (`camera::BufferSource`, as a number).
    pub buffer_source: std::sync::atomic::AtomicU8,
    /// The camera restart in progress, if any: the watchdog is fed until its deadline (see
    /// `notify`), never longer.
    pub recovery: Mutex<Option<Recovery>>,
    /// Time the camera thread spent per good frame (lend or copy, publish), microseconds.
    pub camera_us: Histogram,
    /// Time the stream encoder spent per frame, microseconds.
    pub encode_us: Histogram,
}

/// A camera restart in progress, as the owner thread announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// 1-based attempt, of `of`.
    pub attempt: u32,
    pub of: u32,
    /// When this attempt has failed at the latest (its backoff plus the wait for a good frame,
    /// plus a margin): past it the attempt counts as wedged, and feeds no watchdog.
    pub until: std::time::Instant,
}

impl Stats {
    /// The restart in progress (poisoning cannot leave it unsound: it is one plain value).
    pub fn recovery(&self) -> Option<Recovery> {
        *self.recovery.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_recovery(&self, r: Option<Recovery>) {
        *self.recovery.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }
}

/// Counters that are read together and must add up: every frame a camera publishes is
/// either lent or copied whole (the test pattern's are neither), so `captured - lent` frames
/// were copied, and `bytes_copied` is their bytes plus the stills'. Kept under one lock (taken a few times per frame, never contended for
/// long) rather than as separate atomics: a reading between two updates would not add up,
/// which made a check of exactly this fail once in the VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Frames published.
    pub captured: u64,
    /// Frames whose camera buffers were lent to readers instead of copied.
    pub lent: u64,
    /// Bytes the CPU copied out of camera buffers (frames that could not be lent, and the
    /// still of each still request).
    pub bytes_copied: u64,
}

impl Stats {
    /// The frame counters, as one consistent reading.
    pub fn tally(&self) -> Tally {
        *self.tally_mut()
    }

    /// Counts `bytes` copied out of a camera buffer outside publishing (a still's own copy).
    pub fn add_copied(&self, bytes: u64) {
        let mut t = self.tally_mut();
        t.bytes_copied = t.bytes_copied.saturating_add(bytes);
    }

    /// The tally, locked. Its updates cannot panic, so a poisoned lock still holds sound
    /// counts.
    fn tally_mut(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A Prometheus histogram of microsecond durations with fixed buckets. Written by hand: the
/// text format is a few lines, a metrics crate would bring a registry this service does not
/// need (the other metrics are hand-written too).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound of [`HISTOGRAM_BOUNDS_US`] (not cumulative),
    /// then above the last.
    buckets: [AtomicU64; HISTOGRAM_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

/// Bucket bounds, microseconds: 50 us to 1 s.
pub const HISTOGRAM_BOUNDS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

impl Histogram {
    pub fn observe(&self, us: u64) {
        let i = HISTOGRAM_BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(HISTOGRAM_BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn observe_since(&self, start: Instant) {
        self.observe(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
    }

    /// Appends the histogram in the Prometheus text format, in seconds as its convention is.
    pub fn write(&self, out: &mut String, name: &str, help: &str) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in HISTOGRAM_BOUNDS_US.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[HISTOGRAM_BOUNDS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
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
            let mut frame = pool.swap_remove(i);
            if let Some(f) = Arc::get_mut(&mut frame) {
                *f.consumed.get_mut() = false;
            }
            return FrameMut(frame);
        }
        drop(pool);
        FrameMut(Arc::new(Frame::empty()))
    }

    /// Makes `frame` the latest frame. Never waits. `copied`: the bytes copied out of the
    /// camera's buffers to make it (0 for a lent frame, or one of picker's own making).
    pub fn publish(&self, frame: FrameMut, copied: u64) {
        let frame = frame.0;
        // Only frames with memory of their own are worth recycling; a lent frame in the
        // pool would keep its camera buffer from going back.
        if !frame.is_lent() {
            let mut pool = self.pool.lock().unwrap();
            if pool.len() >= POOL_FRAMES {
                pool.remove(0);
            }
            pool.push(frame.clone());
        }
        {
            let mut t = self.stats.tally_mut();
            t.captured += 1;
            t.lent += u64::from(frame.is_lent());
            t.bytes_copied = t.bytes_copied.saturating_add(copied);
        }
        self.last_publish_ns
            .store(now_timestamps().0, Ordering::Relaxed);
        self.count_fps();
        let replaced = self.tx.send_replace(Some(frame));
        if replaced.is_some_and(|f| !f.consumed.load(Ordering::Relaxed)) {
            self.stats.frames_unconsumed.fetch_add(1, Ordering::Relaxed);
        }
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

    /// Whether the camera counts as online: a frame published within `stall_limit`.
    pub fn online(&self, stall_limit: std::time::Duration) -> bool {
        self.since_last_frame().is_some_and(|age| age < stall_limit)
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

#[cfg(test)]
mod tests {
    use super::Settings;

    #[test]
    fn settings_are_served_as_headers_named_after_the_controls_keys() {
        assert_eq!(Settings::default().headers(), vec![]);
        let s = Settings {
            exposure_time: Some(8000),
            analogue_gain: Some(2.5),
            digital_gain: Some(1.0),
            lens_position: Some(0.0),
            colour_gains: Some([1.5, 2.25]),
            colour_temperature: Some(4500),
        };
        assert_eq!(
            s.headers(),
            vec![
                ("x-exposure-time", "8000".to_string()),
                ("x-analogue-gain", "2.5".to_string()),
                ("x-digital-gain", "1".to_string()),
                ("x-lens-position", "0".to_string()),
                ("x-colour-gains", "1.5,2.25".to_string()),
                ("x-colour-temperature", "4500".to_string()),
            ]
        );
    }

    #[test]
    fn a_value_no_camera_could_report_is_left_out() {
        for bad in [f32::NAN, f32::INFINITY, -1.0, -0.0] {
            for gains in [[1.0, bad], [bad, 1.0]] {
                let s = Settings {
                    analogue_gain: Some(bad),
                    digital_gain: Some(bad),
                    lens_position: Some(bad),
                    colour_gains: Some(gains),
                    ..Settings::default()
                };
                assert_eq!(s.headers(), vec![], "{bad} {gains:?}");
            }
        }
    }
}
