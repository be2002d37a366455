//! The real camera, through libcamera: one `CameraConfiguration` with two streams, a still
//! stream (RGB, the ISP's main output, which must be the larger) and a video stream (YUV
//! 4:2:0 in the JPEG colour space, the low-resolution output), both cropped by the ISP
//! (`ScalerCrop`) to a centred rectangle of the output's shape and the full sensor height,
//! frame rate through `FrameDurationLimits`, orientation through the configuration.
//!
//! Order matters on a Raspberry Pi: control limits are placeholders until `configure()`. So
//! this module only gathers facts and applies decisions; the decisions are
//! [`super::plan`]'s, made from limits read *after* configure: each full-field-of-view
//! candidate sensor mode is configured (output size and bit depth only, all the Pi pipeline
//! uses) and its `ScalerCrop` maximum read, the first that covers the whole active area kept;
//! then the crop and the frame period are planned from that configuration's limits.
//!
//! Threads: every libcamera object lives on the owner thread ([`super::owner`]); [`LcPipeline`]
//! is the [`Pipeline`] the owner loop drives (good frames only, counts, restarts). Whatever
//! validation changes is accepted when the pixels are readable, and described once in
//! [`CameraInfo::adjustments`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

use libcamera::camera::{
    ActiveCamera, CameraConfiguration, CameraConfigurationStatus, Orientation as LcOrientation,
    SensorConfiguration,
};
use libcamera::camera_manager::{CameraList, CameraManager};
use libcamera::color_space::ColorSpace;
use libcamera::control::{ControlList, MergePolicy};
use libcamera::control_value::ControlValue;
use libcamera::controls;
use libcamera::framebuffer::{
    AsFrameBuffer, FrameBufferPlane, FrameMetadataStatus, OwnedFrameBuffer,
};
use libcamera::framebuffer_allocator::{FrameBuffer, FrameBufferAllocator};
use libcamera::geometry::{Rectangle, Size};
use libcamera::pixel_format::PixelFormat as LcFormat;
use libcamera::properties;
use libcamera::request::{Request, RequestStatus, ReuseFlag};
use libcamera::stream::{Stream, StreamRole};
use libcamera::utils::UniquePtr;

use super::buffers::{Layout, Mapped};
use super::controls::{ControlFacts, ControlsHandle};
use super::owner::{self, Completion, FrameStatus, Next, Pipeline};
use super::plan::{self, ModeLimits, Orientation, RawMode, Selector};
use super::{
    Camera, CameraError, CameraInfo, CropState, FrameMut, PixelFormat, Rect, SourceKind, StreamInfo,
};
use crate::config::{Buffers, Config, Crop};
use crate::dmabuf::{self, Heap, Mapping};
use crate::frames::{Frame, Image, Lease, now_timestamps, unix_us_now};

/// How long libcamera may take to enumerate, configure and start the camera (slow under
/// emulation; instant on a Pi; a few configures when choosing the sensor mode).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

const YUV420: u32 = fourcc(b"YU12");
const NV12: u32 = fourcc(b"NV12");
const YUYV: u32 = fourcc(b"YUYV");
/// DRM RGB888: a little-endian 24-bit word R:G:B, i.e. bytes B, G, R.
const RGB888: u32 = fourcc(b"RG24");
/// DRM BGR888: bytes R, G, B.
const BGR888: u32 = fourcc(b"BG24");

/// Formats we can read, in order of preference, when validation gave us one we cannot.
const VIDEO_PREFERENCE: [u32; 3] = [YUV420, NV12, YUYV];
const STILL_PREFERENCE: [u32; 5] = [RGB888, BGR888, YUV420, NV12, YUYV];

fn our_format(fourcc: u32) -> Option<PixelFormat> {
    Some(match fourcc {
        YUV420 => PixelFormat::I420,
        NV12 => PixelFormat::Nv12,
        YUYV => PixelFormat::Yuyv,
        RGB888 => PixelFormat::Bgr24,
        BGR888 => PixelFormat::Rgb24,
        _ => return None,
    })
}

/// The first of `preference` that the stream offers.
fn pick_format(offered: &[u32], preference: &[u32]) -> Option<u32> {
    preference.iter().copied().find(|f| offered.contains(f))
}

fn format_name(fourcc: u32) -> String {
    LcFormat::new(fourcc, 0)
        .info()
        .map(|i| i.name)
        .unwrap_or_else(|| format!("{fourcc:08x}"))
}

fn failed(id: &str, what: impl std::fmt::Display) -> CameraError {
    CameraError::Failed {
        id: id.to_string(),
        what: what.to_string(),
    }
}

fn rect(r: Rectangle) -> Rect {
    Rect {
        x: r.x,
        y: r.y,
        width: r.width,
        height: r.height,
    }
}

fn rectangle(r: Rect) -> Rectangle {
    Rectangle {
        x: r.x,
        y: r.y,
        width: r.width,
        height: r.height,
    }
}

fn lc_orientation(o: Orientation) -> LcOrientation {
    match o {
        Orientation::Rotate0 => LcOrientation::Rotate0,
        Orientation::Rotate0Mirror => LcOrientation::Rotate0Mirror,
        Orientation::Rotate180 => LcOrientation::Rotate180,
        Orientation::Rotate180Mirror => LcOrientation::Rotate180Mirror,
    }
}

/// What we ask of the camera.
#[derive(Clone, Debug)]
struct Wanted {
    selector: Selector,
    video: (u32, u32),
    still: (u32, u32),
    framerate: u32,
    crop: Crop,
    buffers: Buffers,
    orientation: Orientation,
}

impl Wanted {
    /// How the camera was asked for, for error messages.
    fn what(&self) -> Option<String> {
        let s = &self.selector;
        s.id.clone()
            .or_else(|| s.model.as_ref().map(|m| format!("model {m:?}")))
            .or_else(|| s.index.map(|i| format!("index {i}")))
    }
}

/// Opens the camera the config names (by id, model or index; else the first), configures and
/// starts it on its own thread, and reports what it got. Fails with the list of cameras when
/// the wanted one is missing, with libcamera's reason when it is busy or cannot be
/// configured, and with [`CameraError::Config`] when the config asks what it cannot do.
pub fn open(config: &Config) -> Result<Box<dyn Camera>, CameraError> {
    let c = &config.camera;
    let wanted = Wanted {
        selector: Selector {
            id: c.id.clone(),
            model: c.model.clone(),
            index: c.index,
        },
        video: (config.stream.width, config.stream.height),
        still: (config.still.width, config.still.height),
        framerate: c.framerate,
        crop: c.crop,
        buffers: c.buffers,
        orientation: plan::orientation(c.rotation, c.hflip, c.vflip),
    };
    let what = wanted.what().unwrap_or_else(|| "-".to_string());
    let controls = Arc::new(ControlsHandle::new(&config.controls));
    let owner_controls = controls.clone();
    let camera = owner::spawn(&what, OPEN_TIMEOUT, move |owner| {
        owner_body(&wanted, owner_controls, owner)
    })?;
    Ok(Box::new(camera.with_controls(controls)))
}

/// Buffers (requests) asked of the camera per stream: the Pi's own apps use six for video.
/// Up to `owner::max_lent` of them are lent to readers at a time, the rest stay queued.
const BUFFERS: u32 = 6;

/// What reaches the owner thread: completed requests (libcamera's thread) and lent requests
/// whose last reader is done (any thread), through one channel so neither waits.
enum Msg {
    Completed(Request),
    Released(u64),
}

/// The buffers of one request, mapped for reading, and the request while it is lent.
struct Slot {
    video: Mapped,
    still: Option<Mapped>,
    lent: Option<Request>,
}

impl Slot {
    fn mappings(&self) -> Vec<&Arc<Mapping>> {
        let mut all = self.video.mappings();
        if let Some(s) = &self.still {
            for m in s.mappings() {
                if !all.iter().any(|o| Arc::ptr_eq(o, m)) {
                    all.push(m);
                }
            }
        }
        all
    }
}

/// The libcamera side of the owner loop. Field order is drop order: requests come back
/// (in `Drop`) before the allocator frees their buffers and before the camera is released.
struct LcPipeline<'d> {
    id: String,
    completed: Receiver<Msg>,
    /// For the leases of lent requests.
    released: Sender<Msg>,
    /// Requests the camera refused to take back: kept, not freed under it.
    parked: Vec<Request>,
    /// Per request cookie: its mapped buffers, and the request while lent.
    slots: Vec<Slot>,
    disconnected: Arc<AtomicBool>,
    video: (Stream, Layout),
    still: Option<(Stream, Layout)>,
    crop: Option<Rectangle>,
    start_controls: UniquePtr<ControlList>,
    /// The `[controls]` of the config and of `PUT /controls`, and what the camera advertises.
    controls: Arc<ControlsHandle>,
    control_facts: ControlFacts,
    /// `DMA_BUF_IOCTL_SYNC` failed once (logged once).
    warned_sync: std::cell::Cell<bool>,
    /// Frames may be lent: buffers from a cached heap, or a camera without an ISP. A Pi's
    /// driver buffers are uncached: the encoder reading them in place would be slower than
    /// one copy out (rpicam-apps' finding), so those frames are copied.
    lend_ok: bool,
    /// A buffer's planes were in several mappings: copied instead (logged once).
    warned_lend: bool,
    /// The driver's buffers, when those are used (their descriptors are imported, duplicated).
    _driver_buffers: Vec<FrameBuffer>,
    _alloc: FrameBufferAllocator,
    active: ActiveCamera<'d>,
}

impl LcPipeline<'_> {
    /// The controls every request carries, and the runtime changes of `PUT /controls` since
    /// the last request.
    fn request_controls(&mut self, req: &mut Request) {
        if let Some(crop) = self.crop {
            let _ = req.controls_mut().set(controls::ScalerCrop(crop));
        }
        if let Some(change) = self.controls.take_change() {
            super::libcamera_controls::add(req.controls_mut(), &change.values);
        }
    }
}

impl LcPipeline<'_> {
    /// Brackets the CPU's reads of a slot's buffers (`start`: before, else after).
    fn sync(&self, cookie: usize, start: bool) {
        let Some(slot) = self.slots.get(cookie) else {
            return;
        };
        let mut failed = None;
        for m in slot.mappings() {
            let r = if start { m.begin_read() } else { m.end_read() };
            if let Err(e) = r {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            if !self.warned_sync.replace(true) {
                tracing::warn!(camera = %self.id, "DMA_BUF_IOCTL_SYNC failed (frames may show stale cache lines): {e}");
            }
        }
    }
}

impl Pipeline for LcPipeline<'_> {
    type Request = Request;

    fn next(&mut self, timeout: Duration) -> Next<Request> {
        match self.completed.recv_timeout(timeout) {
            Ok(Msg::Completed(r)) => Next::Request(r),
            Ok(Msg::Released(cookie)) => Next::Released(cookie),
            Err(RecvTimeoutError::Timeout) => Next::Timeout,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }

    fn completion(&self, req: &Request) -> Completion {
        let meta = req
            .buffer::<OwnedFrameBuffer>(&self.video.0)
            .and_then(|b| b.metadata());
        let frame = match meta.as_ref().map(|m| m.status()) {
            Some(FrameMetadataStatus::Success) => FrameStatus::Success,
            Some(FrameMetadataStatus::Startup) => FrameStatus::Startup,
            Some(FrameMetadataStatus::Cancelled) => FrameStatus::Cancelled,
            Some(FrameMetadataStatus::Error) | None => FrameStatus::Error,
        };
        Completion {
            cancelled: req.status() == RequestStatus::Cancelled,
            frame,
            sequence: meta.as_ref().map(|m| m.sequence()),
            crop: req
                .metadata()
                .get::<controls::ScalerCrop>()
                .ok()
                .map(|c| rect(c.0)),
            timestamp_ns: sensor_timestamp(req),
        }
    }

    fn fill(&self, req: &Request, frame: &mut FrameMut) -> Option<usize> {
        let cookie = req.cookie() as usize;
        let slot = self.slots.get(cookie)?;
        self.sync(cookie, true);
        let ok = fill(
            frame,
            req,
            (&slot.video, self.video.1),
            slot.still
                .as_ref()
                .zip(self.still.as_ref().map(|(_, l)| *l)),
        );
        self.sync(cookie, false);
        ok
    }

    fn lend(&mut self, req: Request, frame: &mut Frame) -> Result<(), Request> {
        if !self.lend_ok {
            return Err(req);
        }
        let cookie = req.cookie();
        let Some(slot) = self.slots.get(cookie as usize) else {
            return Err(req);
        };
        let lease: Lease = Arc::new(owner::Release::new(
            self.released.clone(),
            cookie,
            Msg::Released,
        ));
        let video = slot.video.lend(self.video.1, &lease);
        let still = match (&slot.still, &self.still) {
            (Some(m), Some((_, layout))) => m.lend(*layout, &lease),
            // One stream: the still is the video image (the same lent buffer).
            _ => video.clone(),
        };
        let (Some(video), Some(still)) = (video, still) else {
            // Dropping the lease sends a release nobody waits for: the owner ignores a cookie
            // with nothing lent.
            if !self.warned_lend {
                tracing::warn!(camera = %self.id, "a frame buffer's planes cannot be read in place (several descriptors, or short): frames are copied");
                self.warned_lend = true;
            }
            return Err(req);
        };
        self.sync(cookie as usize, true);
        frame.timestamp_ns = sensor_timestamp(&req).unwrap_or_else(|| now_timestamps().0);
        frame.unix_us = unix_us_now();
        frame.video = video;
        frame.still = still;
        if let Some(slot) = self.slots.get_mut(cookie as usize) {
            slot.lent = Some(req);
        }
        Ok(())
    }

    fn take_lent(&mut self, token: u64) -> Option<Request> {
        let req = self.slots.get_mut(token as usize)?.lent.take()?;
        self.sync(token as usize, false);
        Some(req)
    }

    fn buffers(&self) -> usize {
        self.slots.len()
    }

    fn requeue(&mut self, mut req: Request) -> Result<(), Request> {
        req.reuse(ReuseFlag::REUSE_BUFFERS);
        self.request_controls(&mut req);
        self.active.queue_request(req).map_err(|(req, e)| {
            tracing::debug!(camera = %self.id, "cannot requeue a request: {e}");
            req
        })
    }

    fn disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Relaxed)
    }

    fn restart(&mut self, mut held: Vec<Request>) -> Result<(), String> {
        if let Err(e) = self.active.stop() {
            tracing::warn!(camera = %self.id, "stop before restart: {e}");
        }
        // Stopping completes every queued request (cancelled): take them all back. Releases
        // of lent requests come back through the owner later (take_lent).
        let mut releases = Vec::new();
        while let Ok(m) = self.completed.try_recv() {
            match m {
                Msg::Completed(r) => held.push(r),
                Msg::Released(cookie) => releases.push(cookie),
            }
        }
        for cookie in releases {
            let _ = self.released.send(Msg::Released(cookie));
        }
        held.append(&mut self.parked);
        self.disconnected.store(false, Ordering::Relaxed);
        // The controls in force now (runtime changes included) start the camera again.
        let plan = self.controls.start(&self.control_facts);
        let start_controls = with_values(&self.start_controls, &plan.values);
        let started = self.active.start(Some(&start_controls));
        let mut result = started.map_err(|e| format!("start: {e}"));
        for req in held {
            if result.is_err() {
                self.parked.push(req);
                continue;
            }
            if let Err(req) = self.requeue(req) {
                self.parked.push(req);
                result = Err("the camera refused the requests".to_string());
            }
        }
        result
    }
}

impl Drop for LcPipeline<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.active.stop() {
            tracing::warn!(camera = %self.id, "stop: {e}");
        }
        // Stopping completes (cancels) every queued request: free them here, before the
        // buffers, the allocator and the camera go.
        while self.completed.try_recv().is_ok() {}
    }
}

/// `base` (the controls picker itself sets) with the `[controls]` values added.
fn with_values(
    base: &ControlList,
    values: &[(super::controls::Id, super::controls::Value)],
) -> UniquePtr<ControlList> {
    let mut list = ControlList::new();
    list.merge(base, MergePolicy::OverwriteExisting);
    super::libcamera_controls::add(&mut list, values);
    list
}

/// The owner thread's work: everything libcamera, from the manager to the last request.
fn owner_body(
    wanted: &Wanted,
    controls_handle: Arc<ControlsHandle>,
    owner: &owner::Owner,
) -> Result<(), CameraError> {
    let mgr =
        CameraManager::new().map_err(|e| failed("-", format!("cannot start libcamera: {e}")))?;
    let cameras = mgr.cameras();
    super::pi_guard::check(cameras.len());
    let cam = find_camera(&cameras, wanted)?;
    let id = cam.id().to_string();
    let mut active = cam.acquire().map_err(|e| {
        failed(
            &id,
            format!("cannot acquire the camera (in use by another process?): {e}"),
        )
    })?;
    let mut neg = negotiate(&mut active, wanted)?;

    // Streams and layouts as configured (configure may still fix strides).
    let stream_at = |i: usize| -> Result<(Stream, Layout), CameraError> {
        let c = neg
            .config
            .get(i)
            .ok_or_else(|| failed(&id, "stream missing after configure"))?;
        let stream = c
            .stream()
            .ok_or_else(|| failed(&id, "stream missing after configure"))?;
        let size = c.get_size();
        let format = our_format(c.get_pixel_format().fourcc())
            .ok_or_else(|| failed(&id, "format changed by configure"))?;
        let layout = Layout {
            width: size.width,
            height: size.height,
            format,
            stride: c.get_stride() as usize,
        };
        Ok((stream, layout))
    };
    let (video_stream, video_layout) = stream_at(neg.video)?;
    let still = if neg.still != neg.video {
        Some(stream_at(neg.still)?)
    } else {
        None
    };
    let still_layout = still.as_ref().map_or(video_layout, |(_, l)| *l);
    let stream_info = |l: Layout| StreamInfo {
        width: l.width,
        height: l.height,
        format: l.format,
    };
    let info = CameraInfo {
        source: SourceKind::Libcamera,
        id: id.clone(),
        video: stream_info(video_layout),
        still: stream_info(still_layout),
        adjustments: std::mem::take(&mut neg.adjustments),
    };

    // Buffers: from a cached DMA heap where there is one, else the driver's; mapped once
    // (shared with the frames that lend them); one request per buffer pair, reused forever.
    let counts = |i: usize| {
        let c = neg.config.get(i).expect("stream exists");
        (c.get_buffer_count() as usize, c.get_frame_size() as usize)
    };
    let (video_count, video_frame_size) = counts(neg.video);
    let (still_count, still_frame_size) = if neg.still != neg.video {
        counts(neg.still)
    } else {
        (video_count, 0)
    };
    // What the camera settled on; picker's own (heap) buffers are never fewer than BUFFERS
    // (the virtual camera says 4 whatever it is asked): requests beyond those the camera
    // needs are what can be lent without starving it.
    let count = video_count.min(still_count).max(1);
    let heap_count = count.max(BUFFERS as usize);
    let heaps: &[&str] = if neg.has_sensor {
        &dmabuf::CONTIGUOUS_HEAPS
    } else {
        &[
            dmabuf::CONTIGUOUS_HEAPS[0],
            dmabuf::CONTIGUOUS_HEAPS[1],
            dmabuf::SYSTEM_HEAP,
        ]
    };
    let mut alloc = FrameBufferAllocator::new(&active);
    let mut driver_buffers: Vec<FrameBuffer> = Vec::new();
    let heap = match wanted.buffers {
        Buffers::Auto => Heap::open_first(heaps),
        Buffers::Driver => None,
    };
    let from_heap = match heap {
        Some(heap) => {
            let sets = (0..heap_count)
                .map(|_| {
                    let video = heap_buffer(&heap, video_layout, video_frame_size)?;
                    let still = match &still {
                        Some((_, l)) => Some(heap_buffer(&heap, *l, still_frame_size)?),
                        None => None,
                    };
                    Ok::<_, std::io::Error>((video, still))
                })
                .collect::<Result<Vec<_>, _>>();
            match sets {
                Ok(sets) => {
                    tracing::info!(camera = %id, heap = %heap.path().display(), buffers = heap_count, "frame buffers from a cached DMA heap, imported");
                    Some(sets)
                }
                Err(e) => {
                    tracing::warn!(camera = %id, heap = %heap.path().display(), "cannot allocate frame buffers from the DMA heap ({e}): using the driver's buffers");
                    None
                }
            }
        }
        None if wanted.buffers == Buffers::Driver => {
            tracing::info!(camera = %id, "camera.buffers = \"driver\": using the driver's buffers");
            None
        }
        None => {
            tracing::warn!(camera = %id, "no DMA heap ({}): using the driver's buffers (uncached on a Raspberry Pi: CPU reads are slower)", heaps.join(", "));
            None
        }
    };
    let lend_ok = from_heap.is_some() || !neg.has_sensor;
    if !lend_ok {
        tracing::warn!(camera = %id, "the driver's buffers are uncached: each frame is copied out once instead of read in place");
    }
    let sets = match from_heap {
        Some(sets) => sets,
        None => {
            let mut take =
                |stream: &Stream| -> Result<Vec<(OwnedFrameBuffer, Mapped)>, CameraError> {
                    let bufs = alloc
                        .alloc(stream)
                        .map_err(|e| failed(&id, format!("allocate buffers: {e}")))?;
                    let out = bufs
                        .iter()
                        .map(|b| {
                            driver_buffer(b).map_err(|e| failed(&id, format!("map buffer: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    driver_buffers.extend(bufs);
                    Ok(out)
                };
            let video_bufs = take(&video_stream)?;
            let still_bufs = match &still {
                Some((s, _)) => take(s)?.into_iter().map(Some).collect(),
                None => Vec::new(),
            };
            let mut still_bufs = still_bufs.into_iter();
            let mut sets = Vec::new();
            for v in video_bufs {
                let s = match &still {
                    // Fewer still buffers: that many requests.
                    Some(_) => match still_bufs.next().flatten() {
                        Some(b) => Some(b),
                        None => break,
                    },
                    None => None,
                };
                sets.push((v, s));
            }
            sets
        }
    };
    let mut requests = Vec::with_capacity(sets.len());
    let mut slots = Vec::with_capacity(sets.len());
    for (i, ((vb, vm), s)) in sets.into_iter().enumerate() {
        let mut req = active
            .create_request(Some(i as u64))
            .ok_or_else(|| failed(&id, "cannot create a request"))?;
        req.add_buffer(&video_stream, vb)
            .map_err(|e| failed(&id, format!("add buffer: {e}")))?;
        let still_mapped = match (&still, s) {
            (Some((stream, _)), Some((sb, sm))) => {
                req.add_buffer(stream, sb)
                    .map_err(|e| failed(&id, format!("add buffer: {e}")))?;
                Some(sm)
            }
            _ => None,
        };
        requests.push(req);
        slots.push(Slot {
            video: vm,
            still: still_mapped,
            lent: None,
        });
    }

    let (released, completed) = channel();
    {
        let tx = released.clone();
        active.on_request_completed(move |r| {
            let _ = tx.send(Msg::Completed(r));
        });
    }
    let disconnected = Arc::new(AtomicBool::new(false));
    {
        let disconnected = disconnected.clone();
        active.on_disconnected(move || disconnected.store(true, Ordering::Relaxed));
    }
    let mut start_controls = ControlList::new();
    if let Some(period) = neg.frame_period_us {
        let _ = start_controls.set(controls::FrameDurationLimits([period, period]));
    }
    if let Some(crop) = neg.crop {
        let _ = start_controls.set(controls::ScalerCrop(crop));
    }
    // After configure: the Pi's control limits are the sensor mode's now, not placeholders.
    // The camera's own controls are kept apart, so a restart can add the ones in force then.
    let control_facts =
        super::libcamera_controls::facts(active.controls()).with_frame_period(neg.frame_period_us);
    let plan = controls_handle.start(&control_facts);
    let first_controls = with_values(&start_controls, &plan.values);
    active
        .start(Some(&first_controls))
        .map_err(|e| failed(&id, format!("start: {e}")))?;
    let mut pipeline = LcPipeline {
        id: id.clone(),
        completed,
        released,
        parked: Vec::new(),
        slots,
        disconnected,
        video: (video_stream, video_layout),
        still,
        crop: neg.crop,
        start_controls,
        controls: controls_handle,
        control_facts,
        warned_sync: std::cell::Cell::new(false),
        lend_ok,
        warned_lend: false,
        _driver_buffers: driver_buffers,
        _alloc: alloc,
        active,
    };
    let count = requests.len();
    for mut req in requests {
        pipeline.request_controls(&mut req);
        pipeline
            .active
            .queue_request(req)
            .map_err(|(_, e)| failed(&id, format!("queue request: {e}")))?;
    }
    tracing::info!(
        camera = %id,
        video = ?info.video,
        still = ?info.still,
        sensor_mode = ?neg.sensor_mode,
        crop = ?neg.crop_state,
        frame_period_us = ?neg.frame_period_us,
        buffers = count,
        "libcamera streaming"
    );
    if !owner.opened(info, neg.crop_state) {
        // `open` gave up waiting; dropping the pipeline stops the camera.
        return Ok(());
    }
    let aspect = neg.crop.map(|_| wanted.still);
    // The period in force; the virtual camera reports no limits: then the one asked for.
    let period_us = neg
        .frame_period_us
        .unwrap_or(1_000_000 / i64::from(wanted.framerate.max(1)));
    // Frames beyond the period in force go back untouched (the virtual camera runs at
    // 85-100 fps whatever it is asked).
    let pacer = super::pace::Pacer::new(u64::try_from(period_us).unwrap_or(0) * 1_000);
    owner.drive(
        &id,
        &mut pipeline,
        aspect,
        super::owner::restart_wait(period_us),
        pacer,
    )
}

/// A buffer from a DMA heap for one stream, described to libcamera for import (planes one
/// after the other in one buffer) and mapped for reading.
fn heap_buffer(
    heap: &Heap,
    layout: Layout,
    frame_size: usize,
) -> std::io::Result<(OwnedFrameBuffer, Mapped)> {
    use std::os::fd::AsFd;
    let len = layout.buffer_len(frame_size);
    let fd = heap.alloc(len)?;
    // SAFETY: read only while its request is in hand or lent (LcPipeline::fill, lend).
    let map = Arc::new(unsafe { Mapping::new(fd.as_fd(), len) }?);
    let planes = layout.planes();
    let described = planes
        .iter()
        .map(|&(offset, length)| import_plane(fd.try_clone()?, offset, length))
        .collect::<std::io::Result<Vec<_>>>()?;
    let fb = OwnedFrameBuffer::new(described, None)?;
    let mapped = Mapped {
        planes: planes
            .into_iter()
            .map(|(offset, length)| (map.clone(), offset, length))
            .collect(),
    };
    Ok((fb, mapped))
}

/// One of the driver's buffers: its descriptors duplicated into a buffer to import (so every
/// request has the same buffer type) and mapped for reading, each descriptor once.
fn driver_buffer(b: &FrameBuffer) -> std::io::Result<(OwnedFrameBuffer, Mapped)> {
    use std::os::fd::BorrowedFd;
    let planes: Vec<(i32, usize, usize)> = b
        .planes()
        .into_iter()
        .map(|p| {
            let offset = p.offset().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "plane without an offset")
            })?;
            Ok((p.fd(), offset, p.len()))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut maps: Vec<(i32, Arc<Mapping>)> = Vec::new();
    let mut described = Vec::new();
    let mut mapped = Vec::new();
    for &(fd, offset, len) in &planes {
        if fd < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "plane without a descriptor",
            ));
        }
        // SAFETY: the allocator's buffer `b` owns this open descriptor and outlives this call.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let map = match maps.iter().find(|(f, _)| *f == fd) {
            Some((_, m)) => m.clone(),
            None => {
                let whole = planes
                    .iter()
                    .filter(|(f, ..)| *f == fd)
                    .map(|(_, o, l)| o + l)
                    .max()
                    .unwrap_or(0);
                // SAFETY: read only while its request is in hand or lent.
                let m = Arc::new(unsafe { Mapping::new(borrowed, whole) }?);
                maps.push((fd, m.clone()));
                m
            }
        };
        described.push(import_plane(borrowed.try_clone_to_owned()?, offset, len)?);
        mapped.push((map, offset, len));
    }
    Ok((
        OwnedFrameBuffer::new(described, None)?,
        Mapped { planes: mapped },
    ))
}

/// One plane of a buffer to import: libcamera takes offsets and lengths as 32 bits.
fn import_plane(
    fd: std::os::fd::OwnedFd,
    offset: usize,
    length: usize,
) -> std::io::Result<FrameBufferPlane> {
    let too_big = |_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "buffer too large");
    Ok(FrameBufferPlane {
        fd,
        offset: u32::try_from(offset).map_err(too_big)?,
        length: u32::try_from(length).map_err(too_big)?,
    })
}

/// The capture time libcamera reports (CLOCK_BOOTTIME ns), if any.
fn sensor_timestamp(req: &Request) -> Option<u64> {
    req.metadata()
        .get::<controls::SensorTimestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.0).ok())
        .filter(|t| *t > 0)
}

/// The camera the selector names, from libcamera's list (id and `Model` property).
fn find_camera<'a>(
    cameras: &'a CameraList<'a>,
    wanted: &Wanted,
) -> Result<libcamera::camera::Camera<'a>, CameraError> {
    let listed: Vec<(String, Option<String>)> = cameras
        .iter()
        .map(|c| {
            let model = c.properties().get::<properties::Model>().ok().map(|m| m.0);
            (c.id().to_string(), model)
        })
        .collect();
    let not_found = || CameraError::NotFound {
        wanted: wanted.what(),
        found: listed
            .iter()
            .map(|(id, model)| match model {
                Some(m) if m != id => format!("{id} ({m})"),
                _ => id.clone(),
            })
            .collect(),
    };
    let index = plan::choose_camera(&listed, &wanted.selector).ok_or_else(not_found)?;
    cameras.get(index).ok_or_else(not_found)
}

/// Copies the request's buffers into `frame`: the bytes copied out of the camera's buffers,
/// `None` when a plane is missing or short.
fn fill(
    frame: &mut FrameMut,
    req: &Request,
    (video, video_layout): (&Mapped, Layout),
    still: Option<(&Mapped, Layout)>,
) -> Option<usize> {
    let f = &mut **frame;
    f.timestamp_ns = sensor_timestamp(req).unwrap_or_else(|| now_timestamps().0);
    f.unix_us = unix_us_now();
    let planes = video.slices()?;
    copy_planes(&planes, video_layout, &mut f.video).then_some(())?;
    let video_bytes = f.video.data.len();
    match still {
        Some((mapped, layout)) => {
            let planes = mapped.slices()?;
            copy_planes(&planes, layout, &mut f.still).then_some(())?;
            Some(video_bytes + f.still.data.len())
        }
        None => {
            // From the copy just made, not from the camera's buffer.
            copy_image(&f.video, &mut f.still);
            Some(video_bytes)
        }
    }
}

/// What negotiation settled on.
struct Negotiated {
    config: CameraConfiguration,
    /// Index of the video stream in `config`, and of the still stream (the same index when
    /// the camera gives one stream only).
    video: usize,
    still: usize,
    adjustments: Vec<String>,
    /// The crop rectangle to ask for, when the camera has `ScalerCrop`.
    crop: Option<Rectangle>,
    crop_state: CropState,
    sensor_mode: Option<(u32, u32)>,
    /// A sensor behind an ISP (a Pi), not a virtual or USB camera: its buffers must be
    /// physically contiguous on a Pi 4.
    has_sensor: bool,
    /// For `FrameDurationLimits`, when the camera has the control.
    frame_period_us: Option<i64>,
}

/// A configuration as generated and adjusted by us, validated.
struct Built {
    config: CameraConfiguration,
    two: bool,
    status: CameraConfigurationStatus,
}

/// Generates and validates the configuration: two streams if the camera can, else one; the
/// given sensor mode (output size and bit depth only: all the Pi pipeline looks at).
fn build(
    cam: &libcamera::camera::Camera<'_>,
    wanted: &Wanted,
    mode: Option<RawMode>,
    orientation: Orientation,
) -> Result<Built, CameraError> {
    let id = cam.id();
    // Still first: on a Pi, output 0 is the main (larger) output and output 1 the
    // low-resolution one, which must be YUV.
    let (mut config, two) =
        match cam.generate_configuration(&[StreamRole::ViewFinder, StreamRole::VideoRecording]) {
            Some(c) if c.len() == 2 => (c, true),
            _ => {
                let c = cam
                    .generate_configuration(&[StreamRole::VideoRecording])
                    .ok_or_else(|| failed(id, "cannot generate any stream configuration"))?;
                (c, false)
            }
        };
    let (still, video) = if two { (0, 1) } else { (0, 0) };
    if two {
        let mut s = config.get_mut(still).expect("two streams");
        s.set_pixel_format(LcFormat::new(RGB888, 0));
        s.set_size(Size::new(wanted.still.0, wanted.still.1));
        s.set_buffer_count(BUFFERS);
    }
    {
        let mut v = config.get_mut(video).expect("video stream");
        v.set_pixel_format(LcFormat::new(YUV420, 0));
        v.set_size(Size::new(wanted.video.0, wanted.video.1));
        v.set_buffer_count(BUFFERS);
        // JPEG's own colour space (full range BT.601), so the encoder takes the planes as
        // they are; on a Pi the RGB stream then gets the matching sRGB.
        v.set_color_space(Some(ColorSpace::sycc()));
    }
    config.set_orientation(lc_orientation(orientation));
    if let Some(mode) = mode {
        let mut sc = SensorConfiguration::new();
        sc.set_bit_depth(mode.bit_depth);
        sc.set_output_size(mode.width, mode.height);
        config.set_sensor_configuration(sc);
    }
    let mut status = config.validate();
    // A format we cannot read (MJPEG from a webcam, Bayer): pick one we can, if offered.
    let mut retried = false;
    let mut streams = vec![(video, &VIDEO_PREFERENCE[..])];
    if two {
        streams.push((still, &STILL_PREFERENCE[..]));
    }
    for (i, preference) in streams {
        let offered: Vec<u32> = {
            let c = config.get(i).expect("stream exists");
            if our_format(c.get_pixel_format().fourcc()).is_some() {
                continue;
            }
            let formats = c.formats();
            formats
                .pixel_formats()
                .into_iter()
                .map(|f| f.fourcc())
                .collect()
        };
        if let Some(f) = pick_format(&offered, preference) {
            config
                .get_mut(i)
                .expect("stream exists")
                .set_pixel_format(LcFormat::new(f, 0));
            retried = true;
        }
    }
    if retried {
        status = config.validate();
    }
    Ok(Built {
        config,
        two,
        status,
    })
}

/// The limits that matter, as the camera reports them now (after configure).
fn limits(cam: &libcamera::camera::Camera<'_>) -> ModeLimits {
    let ctrls = cam.controls();
    let scaler_crop_max = ctrls
        .find(controls::ControlId::ScalerCrop.id())
        .ok()
        .and_then(|info| Rectangle::try_from(info.max()).ok())
        .map(rect);
    let scaler_crop_maximum = cam
        .properties()
        .get::<properties::ScalerCropMaximum>()
        .ok()
        .map(|m| rect(m.0));
    let frame_duration = ctrls
        .find(controls::ControlId::FrameDurationLimits.id())
        .ok()
        .map(|info| {
            let v = |v: ControlValue| i64::try_from(v).unwrap_or(0);
            (v(info.min()), v(info.max()))
        });
    ModeLimits {
        scaler_crop_max,
        scaler_crop_maximum,
        frame_duration,
    }
}

/// The sensor's raw modes and active area, or `None` for cameras without a pixel array
/// (virtual and USB cameras: asking them for a raw stream makes libcamera log an error).
fn sensor_facts(cam: &libcamera::camera::Camera<'_>) -> Option<((u32, u32), Vec<RawMode>)> {
    // PixelArraySize first: only real sensors have it (the virtual camera has active areas
    // but no raw role).
    cam.properties().get::<properties::PixelArraySize>().ok()?;
    let active = cam
        .properties()
        .get::<properties::PixelArrayActiveAreas>()
        .ok()
        .and_then(|a| a.0.first().copied())?;
    let raw = cam.generate_configuration(&[StreamRole::Raw])?;
    let stream = raw.get(0)?;
    let formats = stream.formats();
    let mut modes = Vec::new();
    for pf in formats.pixel_formats().into_iter() {
        let bits = pf.info().map(|i| i.bits_per_pixel).unwrap_or(0);
        for s in formats.sizes(pf) {
            modes.push(RawMode {
                width: s.width,
                height: s.height,
                bit_depth: bits,
            });
        }
    }
    Some(((active.width, active.height), modes))
}

/// Chooses the sensor mode (configuring candidates), configures the camera for good and plans
/// crop and frame period from the limits it then reports. Notes every change libcamera made
/// (or that we made to get readable pixels).
fn negotiate(active: &mut ActiveCamera<'_>, wanted: &Wanted) -> Result<Negotiated, CameraError> {
    let id = active.id().to_string();
    let mut adjustments = Vec::new();
    let facts = sensor_facts(active);
    let (orientation, note) = plan::orientation_for(wanted.orientation, facts.is_some());
    adjustments.extend(note);
    let need = (
        wanted.still.0.max(wanted.video.0),
        wanted.still.1.max(wanted.video.1),
    );

    // The mode: configure each candidate and read what it really sees.
    let mut last: Option<(Option<RawMode>, Built)> = None;
    let mut chosen: Option<RawMode> = None;
    if let Some((area, modes)) = &facts {
        let found = plan::choose_mode(*area, modes, need, |mode| {
            let mut b = build(active, wanted, Some(mode), orientation)?;
            if b.status.is_invalid() {
                return Ok(None);
            }
            if let Err(e) = active.configure(&mut b.config) {
                tracing::debug!(camera = %id, ?mode, "configure: {e}");
                return Ok(None);
            }
            let l = limits(active);
            last = Some((Some(mode), b));
            Ok::<_, CameraError>(Some(l))
        })?;
        match found {
            Some((mode, _)) => chosen = Some(mode),
            None => adjustments.push(
                "no sensor mode covers the whole sensor: libcamera chose the mode".to_string(),
            ),
        }
    }
    let built = match last {
        Some((mode, b)) if mode == chosen => b,
        _ => {
            let mut b = build(active, wanted, chosen, orientation)?;
            if !b.status.is_invalid() {
                active
                    .configure(&mut b.config)
                    .map_err(|e| failed(&id, format!("configure: {e}")))?;
            }
            b
        }
    };
    let Built {
        config,
        two,
        status,
        ..
    } = built;
    if !two {
        adjustments.push(
            "the camera gives one stream only: stills are copied from the video stream".to_string(),
        );
    }
    let (still, video) = if two { (0, 1) } else { (0, 0) };
    match status {
        CameraConfigurationStatus::Invalid => {
            return Err(failed(
                &id,
                format!("configuration rejected: {}", config.to_string_repr()),
            ));
        }
        CameraConfigurationStatus::Adjusted => {
            tracing::debug!(camera = %id, "libcamera adjusted the configuration to {}", config.to_string_repr());
        }
        CameraConfigurationStatus::Valid => {}
    }

    // Accept what libcamera made of it, as long as we can read the pixels.
    let mut describe = |name: &str, asked: (u32, u32), asked_fmt: u32, i: usize| {
        let c = config.get(i).expect("stream exists");
        let (size, fmt) = (c.get_size(), c.get_pixel_format().fourcc());
        if (size.width, size.height) != asked || fmt != asked_fmt {
            adjustments.push(format!(
                "{name} stream: asked {}x{} {}, got {}x{} {}",
                asked.0,
                asked.1,
                format_name(asked_fmt),
                size.width,
                size.height,
                format_name(fmt)
            ));
        }
        if name == "video" {
            let got = c.get_color_space();
            if got != Some(ColorSpace::sycc()) {
                adjustments.push(format!(
                    "video stream: asked colour space sYCC, got {}",
                    got.map_or_else(|| "none".to_string(), |c| c.to_string())
                ));
            }
        }
        match our_format(fmt) {
            Some(_) => Ok(()),
            None => Err(failed(
                &id,
                format!("{name} stream format {} is not supported", format_name(fmt)),
            )),
        }
    };
    if two {
        describe("still", wanted.still, RGB888, still)?;
    }
    describe("video", wanted.video, YUV420, video)?;
    let got = config.orientation();
    if got != lc_orientation(orientation) {
        adjustments.push(format!("orientation: asked {orientation:?}, got {got:?}"));
    }

    // A sensor behind an ISP (a Pi): one crop for both outputs, see plan::check_aspects.
    let size_of = |i: usize| {
        let s = config.get(i).expect("stream exists").get_size();
        (s.width, s.height)
    };
    if two {
        plan::check_aspects(size_of(still), size_of(video), facts.is_some()).map_err(|source| {
            CameraError::Config {
                id: id.clone(),
                source,
            }
        })?;
    }

    // Limits after configure: the real ones.
    let limits = limits(active);
    let (period, clamped) = plan::frame_period(wanted.framerate, limits.frame_duration);
    let frame_period_us = match limits.frame_duration {
        Some(_) => {
            if clamped {
                adjustments.push(format!(
                    "frame rate: asked {} fps, got {:.2} fps (the camera's FrameDurationLimits)",
                    wanted.framerate,
                    1e6 / period as f64
                ));
            }
            Some(period)
        }
        None => {
            adjustments.push(format!(
                "no FrameDurationLimits control: the camera runs at its own frame rate, not {} fps",
                wanted.framerate
            ));
            None
        }
    };
    let (crop, crop_state) = match wanted.crop {
        Crop::None => (None, CropState::Disabled),
        Crop::CenterSquare => {
            let area = plan::crop_area(facts.as_ref().map(|(a, _)| *a), &limits)
                .map_err(|e| failed(&id, e))?;
            match area {
                Some(area) => {
                    let aspect = size_of(still);
                    (
                        Some(rectangle(plan::centred_crop(area, aspect))),
                        CropState::Pending,
                    )
                }
                None => {
                    tracing::warn!(camera = %id, "camera has no ScalerCrop control: streaming uncropped (crop = \"unsupported\")");
                    (None, CropState::Unsupported)
                }
            }
        }
    };
    Ok(Negotiated {
        config,
        video,
        still,
        adjustments,
        crop,
        crop_state,
        sensor_mode: chosen.map(|m| (m.width, m.height)),
        has_sensor: facts.is_some(),
        frame_period_us,
    })
}

/// Copies a camera buffer's planes into `dst`, keeping the camera's strides (so rows need no
/// repacking). False when the buffer is shorter than the layout needs.
fn copy_planes(src: &[&[u8]], layout: Layout, dst: &mut Image) -> bool {
    dst.reshape_strided(
        layout.width,
        layout.height,
        layout.format,
        &layout.strides(),
    );
    let planes = dst.planes;
    if src.len() >= planes {
        for (i, plane) in src.iter().enumerate().take(planes) {
            if !copy_prefix(plane, dst.plane_mut(i)) {
                return false;
            }
        }
        true
    } else if let [one] = src {
        // All planes in one buffer plane, one after the other.
        copy_prefix(one, &mut dst.data)
    } else {
        false
    }
}

/// Fills `out` from the start of `src`; false when `src` is too short.
fn copy_prefix(src: &[u8], out: &mut [u8]) -> bool {
    match src.get(..out.len()) {
        Some(data) => {
            out.copy_from_slice(data);
            true
        }
        None => false,
    }
}

/// `dst` becomes a copy of `src`, reusing its allocation (the derived `clone_from` would not).
fn copy_image(src: &Image, dst: &mut Image) {
    dst.reshape_strided(
        src.width,
        src.height,
        src.format,
        &src.strides[..src.planes],
    );
    dst.data.copy_from_slice(&src.data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_names_follow_libcamera() {
        // libcamera RGB888 is bytes B, G, R.
        assert_eq!(our_format(RGB888), Some(PixelFormat::Bgr24));
        assert_eq!(our_format(BGR888), Some(PixelFormat::Rgb24));
        assert_eq!(our_format(fourcc(b"MJPG")), None);
    }

    #[test]
    fn unreadable_formats_are_replaced_by_preference() {
        let mjpg = fourcc(b"MJPG");
        assert_eq!(
            pick_format(&[mjpg, YUYV, NV12], &VIDEO_PREFERENCE),
            Some(NV12)
        );
        assert_eq!(pick_format(&[mjpg, YUYV], &STILL_PREFERENCE), Some(YUYV));
        assert_eq!(pick_format(&[mjpg], &VIDEO_PREFERENCE), None);
    }

    #[test]
    fn nv12_planes_are_copied_with_their_stride() {
        let (w, h, stride) = (6u32, 4u32, 8usize);
        let y: Vec<u8> = (0..stride * 4).map(|i| i as u8).collect();
        let uv: Vec<u8> = (0..stride * 2).map(|i| 100 + i as u8).collect();
        let mut img = Image::new(0, 0, PixelFormat::I420);
        let layout = Layout {
            width: w,
            height: h,
            format: PixelFormat::Nv12,
            stride,
        };
        assert!(copy_planes(&[&y, &uv], layout, &mut img));
        assert_eq!(img.format, PixelFormat::Nv12);
        assert_eq!(img.strides[..2], [8, 8]);
        assert_eq!(img.plane(0), &y[..]);
        assert_eq!(img.plane(1), &uv[..]);
        // A plane far too short is refused.
        assert!(!copy_planes(&[&y[..8], &uv], layout, &mut img));
    }

    #[test]
    fn i420_in_one_buffer_plane_and_chroma_at_half_stride() {
        let (w, h, stride) = (4u32, 2u32, 4usize);
        let all: Vec<u8> = (0..(4 * 2 + 2 + 2)).map(|i| i as u8).collect();
        let mut img = Image::new(0, 0, PixelFormat::I420);
        let layout = Layout {
            width: w,
            height: h,
            format: PixelFormat::I420,
            stride,
        };
        assert!(copy_planes(&[&all], layout, &mut img));
        assert_eq!(img.strides, [4, 2, 2]);
        assert_eq!(img.plane(0), &all[..8]);
        assert_eq!(img.plane(1), &all[8..10]);
        assert_eq!(img.plane(2), &all[10..12]);
    }

    #[test]
    fn one_stream_still_is_a_copy_without_reallocation() {
        let mut video = Image::new(0, 0, PixelFormat::Nv12);
        video.reshape_strided(4, 2, PixelFormat::Nv12, &[8, 8]);
        video
            .data
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        let mut still = Image::new(4, 2, PixelFormat::Rgb24);
        if let crate::frames::Pixels::Owned(v) = &mut still.data {
            v.reserve(1024);
        }
        let ptr = still.data.as_ptr();
        copy_image(&video, &mut still);
        assert_eq!(still.format, PixelFormat::Nv12);
        assert_eq!(still.strides, video.strides);
        assert_eq!(still.data, video.data);
        assert_eq!(still.data.as_ptr(), ptr);
    }
}
