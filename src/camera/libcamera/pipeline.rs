//! The running camera: `LcPipeline` is what [`crate::camera::owner`]'s loop drives once the
//! camera streams, and all of it happens per frame or per restart: a completed request read
//! (status, sequence, crop, timestamp), its buffers lent or copied into a frame, the request
//! queued again with the controls of the moment. Kept apart from start-up so a change in how
//! frames flow does not touch how the camera is chosen or configured, and the other way round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use libcamera::camera::ActiveCamera;
use libcamera::control::{ControlList, MergePolicy};
use libcamera::controls;
use libcamera::framebuffer::{AsFrameBuffer, FrameMetadataStatus, OwnedFrameBuffer};
use libcamera::framebuffer_allocator::{FrameBuffer, FrameBufferAllocator};
use libcamera::geometry::Rectangle;
use libcamera::request::{Request, RequestStatus, ReuseFlag};
use libcamera::stream::Stream;
use libcamera::utils::UniquePtr;

use super::buffers::from_driver;
use super::formats::rect;
use super::negotiate::Streams;
use super::start::create_requests;
use crate::camera::buffers::{Layout, Mapped, copy_image, copy_planes};
use crate::camera::controls::{ControlFacts, ControlsHandle, Id, Value};
use crate::camera::owner::{self, Completion, FrameStatus, Next, Pipeline};
use crate::camera::{BufferSource, FrameMut, libcamera_controls};
use crate::dmabuf::Mapping;
use crate::frames::{Frame, Lease, Settings, now_timestamps, unix_us_now};

/// What reaches the owner thread: completed requests (libcamera's thread) and lent requests
/// whose last reader is done (any thread), through one channel so neither waits.
pub(super) enum Msg {
    Completed(Request),
    Released(u64),
}

/// The buffers of one request, mapped for reading, and the request while it is lent.
pub(super) struct Slot {
    pub(super) video: Mapped,
    pub(super) still: Option<Mapped>,
    pub(super) lent: Option<Request>,
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
pub(super) struct LcPipeline<'d> {
    pub(super) id: String,
    pub(super) completed: Receiver<Msg>,
    /// For the leases of lent requests.
    pub(super) released: Sender<Msg>,
    /// Requests the camera refused to take back: kept, not freed under it.
    pub(super) parked: Vec<Request>,
    /// Per request cookie: its mapped buffers, and the request while lent.
    pub(super) slots: Vec<Slot>,
    pub(super) disconnected: Arc<AtomicBool>,
    pub(super) video: (Stream, Layout),
    pub(super) still: Option<(Stream, Layout)>,
    pub(super) crop: Option<Rectangle>,
    pub(super) start_controls: UniquePtr<ControlList>,
    /// The `[controls]` of the config and of `PUT /controls`, and what the camera advertises.
    pub(super) controls: Arc<ControlsHandle>,
    pub(super) control_facts: ControlFacts,
    /// `DMA_BUF_IOCTL_SYNC` failed once (logged once).
    pub(super) warned_sync: std::cell::Cell<bool>,
    /// Frames may be lent: buffers from a cached heap, or a camera without an ISP. A Pi's
    /// driver buffers are uncached: the encoder reading them in place would be slower than
    /// one copy out (rpicam-apps' finding), so those frames are copied.
    pub(super) lend_ok: bool,
    /// A buffer's planes were in several mappings: copied instead (logged once).
    pub(super) warned_lend: bool,
    /// Where the buffers come from now (heap, driver, driver after the fallback).
    pub(super) buffers: BufferSource,
    /// A sensor behind an ISP (a Pi): the driver's buffers are uncached, never lent.
    pub(super) has_sensor: bool,
    /// The driver's buffers, when those are used (their descriptors are imported, duplicated).
    pub(super) _driver_buffers: Vec<FrameBuffer>,
    /// Fault injection for the VM test ([`REFUSE_HEAP_ENV`]): requests completed on picker's
    /// heap buffers are taken as cancelled.
    pub(super) refuse_heap: bool,
    pub(super) _alloc: FrameBufferAllocator,
    pub(super) active: ActiveCamera<'d>,
}

/// Set (to anything) in the environment, requests completed on picker's heap buffers count
/// as cancelled, as a Pi's ISP that will not queue an imported buffer cancels them
/// (rpicam-apps issue 569). Only the refusal is made up: what follows (stop, libcamera's own
/// buffers, new requests, start) is the real fallback on the real camera. The VM test uses it:
/// libcamera's virtual camera takes any buffer, and no other camera is there.
pub(super) const REFUSE_HEAP_ENV: &str = "PICKER_TEST_REFUSE_HEAP";

impl LcPipeline<'_> {
    /// The controls every request carries, and the runtime changes of `PUT /controls` since
    /// the last request.
    pub(super) fn request_controls(&mut self, req: &mut Request) {
        if let Some(crop) = self.crop {
            let _ = req.controls_mut().set(controls::ScalerCrop(crop));
        }
        if let Some(change) = self.controls.take_change() {
            libcamera_controls::add(req.controls_mut(), &change.values);
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
            cancelled: req.status() == RequestStatus::Cancelled
                || (self.refuse_heap && self.buffers == BufferSource::Heap),
            frame,
            sequence: meta.as_ref().map(|m| m.sequence()),
            crop: req
                .metadata()
                .get::<controls::ScalerCrop>()
                .ok()
                .map(|c| rect(c.0)),
            timestamp_ns: sensor_timestamp(req),
            frame_duration_us: req
                .metadata()
                .get::<controls::FrameDuration>()
                .ok()
                .and_then(|d| u64::try_from(d.0).ok())
                .filter(|d| *d > 0),
            settings: settings(req),
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

    fn buffer_source(&self) -> BufferSource {
        self.buffers
    }

    /// The camera refused picker's heap buffers at the first start: every request (and with
    /// them those buffers) is dropped, the driver's buffers allocated (as
    /// `camera.buffers = "driver"` would have), new requests made, the camera started again.
    fn fall_back(&mut self, mut held: Vec<Request>) -> Result<(), String> {
        self.buffers = BufferSource::DriverFallback;
        if self.slots.iter().any(|s| s.lent.is_some()) {
            // Never so: nothing is lent before a good frame. Readers still hold buffers.
            return Err("frames are lent out".to_string());
        }
        if let Err(e) = self.active.stop() {
            tracing::warn!(camera = %self.id, "stop before the fallback: {e}");
        }
        while let Ok(m) = self.completed.try_recv() {
            if let Msg::Completed(r) = m {
                held.push(r);
            }
        }
        held.append(&mut self.parked);
        drop(held);
        self.slots.clear();
        let streams = Streams {
            video: self.video,
            still: self.still,
        };
        let sets = from_driver(
            &mut self._alloc,
            &streams,
            &mut self._driver_buffers,
            &self.id,
        )
        .map_err(|e| e.to_string())?;
        let (requests, slots) = create_requests(&mut self.active, &streams, sets, &self.id)
            .map_err(|e| e.to_string())?;
        self.slots = slots;
        self.lend_ok = !self.has_sensor;
        let plan = self.controls.start(&self.control_facts);
        let start_controls = with_values(&self.start_controls, &plan.values);
        self.active
            .start(Some(&start_controls))
            .map_err(|e| format!("start: {e}"))?;
        for mut req in requests {
            self.request_controls(&mut req);
            if let Err((req, e)) = self.active.queue_request(req) {
                self.parked.push(req);
                return Err(format!("queue request: {e}"));
            }
        }
        Ok(())
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
pub(super) fn with_values(base: &ControlList, values: &[(Id, Value)]) -> UniquePtr<ControlList> {
    let mut list = ControlList::new();
    list.merge(base, MergePolicy::OverwriteExisting);
    libcamera_controls::add(&mut list, values);
    list
}

/// What the request's metadata says the frame was taken with (a Pi's IPA reports each of
/// these for every frame; libcamera's virtual camera none).
fn settings(req: &Request) -> Settings {
    let m = req.metadata();
    Settings {
        exposure_time: m
            .get::<controls::ExposureTime>()
            .ok()
            .and_then(|v| u32::try_from(v.0).ok()),
        analogue_gain: m.get::<controls::AnalogueGain>().ok().map(|v| v.0),
        digital_gain: m.get::<controls::DigitalGain>().ok().map(|v| v.0),
        lens_position: m.get::<controls::LensPosition>().ok().map(|v| v.0),
        colour_gains: m.get::<controls::ColourGains>().ok().map(|v| v.0),
        colour_temperature: m
            .get::<controls::ColourTemperature>()
            .ok()
            .and_then(|v| u32::try_from(v.0).ok()),
    }
}

/// The capture time libcamera reports (CLOCK_BOOTTIME ns), if any.
fn sensor_timestamp(req: &Request) -> Option<u64> {
    req.metadata()
        .get::<controls::SensorTimestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.0).ok())
        .filter(|t| *t > 0)
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
