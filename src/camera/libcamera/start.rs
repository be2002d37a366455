//! Start-up on the owner thread: from libcamera's manager to a streaming camera handed to the
//! owner loop. Every libcamera object is made here and dropped on this thread; the order is
//! libcamera's (acquire, configure, buffers, requests, start, queue), and a failure at any step
//! ends in an error `open` reports before the service binds a socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use libcamera::camera::{ActiveCamera, Camera as LcCamera};
use libcamera::camera_manager::CameraManager;
use libcamera::control::ControlList;
use libcamera::controls;
use libcamera::request::Request;
use libcamera::utils::UniquePtr;

use super::buffers::{Set, allocate};
use super::negotiate::{Negotiated, Streams, find_camera, negotiate};
use super::pipeline::{LcPipeline, Msg, Slot, with_values};
use super::{Wanted, failed};
use crate::camera::buffers::Layout;
use crate::camera::controls::{ControlFacts, ControlsHandle};
use crate::camera::{CameraError, CameraInfo, SourceKind, StreamInfo};
use crate::camera::{libcamera_controls, owner, pace, pi_guard};

/// The owner thread's work: everything libcamera, from the manager to the last request, one
/// named step after the other, then the owner loop. The manager, its camera list and the camera
/// stay here, made first and so dropped last, after the pipeline has stopped the camera.
pub(super) fn owner_body(
    wanted: &Wanted,
    controls_handle: Arc<ControlsHandle>,
    owner: &owner::Owner,
) -> Result<(), CameraError> {
    let mgr =
        CameraManager::new().map_err(|e| failed("-", format!("cannot start libcamera: {e}")))?;
    let cameras = mgr.cameras();
    pi_guard::check(cameras.len());
    let cam = find_camera(&cameras, wanted)?;
    let id = cam.id().to_string();
    let mut active = acquire(&cam, &id)?;
    let mut neg = negotiate(&mut active, wanted)?;
    let streams = neg.streams(&id)?;
    let info = camera_info(&id, &streams, std::mem::take(&mut neg.adjustments));
    let buffers = allocate(&active, wanted.buffers, &neg, &streams, &id)?;
    let (requests, slots) = create_requests(&mut active, &streams, buffers.sets, &id)?;
    let (released, completed, disconnected) = connect(&mut active);
    let (start_controls, control_facts) = start_camera(&mut active, &neg, &controls_handle, &id)?;
    let mut pipeline = LcPipeline {
        id: id.clone(),
        completed,
        released,
        parked: Vec::new(),
        slots,
        disconnected,
        video: streams.video,
        still: streams.still,
        crop: neg.crop,
        start_controls,
        controls: controls_handle,
        control_facts,
        warned_sync: std::cell::Cell::new(false),
        lend_ok: buffers.lend_ok,
        buffers: buffers.source,
        has_sensor: neg.has_sensor,
        warned_lend: false,
        _driver_buffers: buffers.driver_buffers,
        refuse_heap: std::env::var_os(super::pipeline::REFUSE_HEAP_ENV).is_some(),
        _alloc: buffers.alloc,
        active,
    };
    let count = queue(&mut pipeline, requests)?;
    log_streaming(&info, &neg, count);
    if !owner.opened(info, neg.crop_state) {
        // `open` gave up waiting; dropping the pipeline stops the camera.
        return Ok(());
    }
    drive(owner, &id, &mut pipeline, wanted, &neg)
}

/// Exclusive use of the camera, or why not.
fn acquire<'d>(cam: &LcCamera<'d>, id: &str) -> Result<ActiveCamera<'d>, CameraError> {
    cam.acquire().map_err(|e| {
        failed(
            id,
            format!("cannot acquire the camera (in use by another process?): {e}"),
        )
    })
}

/// What the camera runs with, for the log and `/state`.
fn camera_info(id: &str, streams: &Streams, adjustments: Vec<String>) -> CameraInfo {
    let video_layout = streams.video.1;
    let still_layout = streams.still.as_ref().map_or(video_layout, |(_, l)| *l);
    let stream_info = |l: Layout| StreamInfo {
        width: l.width,
        height: l.height,
        format: l.format,
    };
    CameraInfo {
        source: SourceKind::Libcamera,
        id: id.to_string(),
        video: stream_info(video_layout),
        still: stream_info(still_layout),
        adjustments,
    }
}

/// One request per buffer set, its cookie the index of its slot; reused forever.
pub(super) fn create_requests(
    active: &mut ActiveCamera<'_>,
    streams: &Streams,
    sets: Vec<Set>,
    id: &str,
) -> Result<(Vec<Request>, Vec<Slot>), CameraError> {
    let mut requests = Vec::with_capacity(sets.len());
    let mut slots = Vec::with_capacity(sets.len());
    for (i, ((vb, vm), s)) in sets.into_iter().enumerate() {
        let mut req = active
            .create_request(Some(i as u64))
            .ok_or_else(|| failed(id, "cannot create a request"))?;
        req.add_buffer(&streams.video.0, vb)
            .map_err(|e| failed(id, format!("add buffer: {e}")))?;
        let still_mapped = match (&streams.still, s) {
            (Some((stream, _)), Some((sb, sm))) => {
                req.add_buffer(stream, sb)
                    .map_err(|e| failed(id, format!("add buffer: {e}")))?;
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
    Ok((requests, slots))
}

/// libcamera's signals into the owner's channel: completed requests, and a flag for a camera
/// unplugged. Also the sender the leases of lent requests clone.
fn connect(active: &mut ActiveCamera<'_>) -> (Sender<Msg>, Receiver<Msg>, Arc<AtomicBool>) {
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
    (released, completed, disconnected)
}

/// Starts the camera with the negotiated frame period and crop and the `[controls]` the camera
/// advertises; returns picker's own start controls and those facts, which a restart needs again.
fn start_camera(
    active: &mut ActiveCamera<'_>,
    neg: &Negotiated,
    controls_handle: &ControlsHandle,
    id: &str,
) -> Result<(UniquePtr<ControlList>, ControlFacts), CameraError> {
    let mut start_controls = ControlList::new();
    if let Some(period) = neg.frame_period_us {
        let _ = start_controls.set(controls::FrameDurationLimits([period, period]));
    }
    if let Some(crop) = neg.crop {
        let _ = start_controls.set(controls::ScalerCrop(crop));
    }
    // After configure: the Pi's control limits are the sensor mode's now, not placeholders.
    // The camera's own controls are kept apart, so a restart can add the ones in force then.
    let mut control_facts = libcamera_controls::facts(active.controls())
        .with_frame_period(neg.frame_period_us)
        .with_line_timing(neg.line_timing);
    // Behind a Pi's ISP: the state Raspberry Pi's IPA starts in, which a restore goes back to.
    let board = std::fs::read_to_string("/proc/device-tree/model").ok();
    if let Some(handler) = board
        .as_deref()
        .and_then(pi_guard::handler_for_model)
        .filter(|_| neg.has_sensor)
    {
        control_facts = control_facts.on_pi(handler);
    }
    let plan = controls_handle.start(&control_facts);
    let first_controls = with_values(&start_controls, &plan.values);
    active
        .start(Some(&first_controls))
        .map_err(|e| failed(id, format!("start: {e}")))?;
    Ok((start_controls, control_facts))
}

/// Queues every request (with the controls each carries); how many.
fn queue(pipeline: &mut LcPipeline<'_>, requests: Vec<Request>) -> Result<usize, CameraError> {
    let count = requests.len();
    for mut req in requests {
        pipeline.request_controls(&mut req);
        pipeline
            .active
            .queue_request(req)
            .map_err(|(_, e)| failed(&pipeline.id, format!("queue request: {e}")))?;
    }
    Ok(count)
}

/// Once, when streaming: what the camera settled on, for whoever reads the log of a start.
fn log_streaming(info: &CameraInfo, neg: &Negotiated, count: usize) {
    tracing::info!(
        camera = %info.id,
        video = ?info.video,
        still = ?info.still,
        sensor_mode = ?neg.sensor_mode,
        crop = ?neg.crop_state,
        frame_period_us = ?neg.frame_period_us,
        buffers = count,
        "libcamera streaming"
    );
}

/// Hands the started pipeline to the owner loop, paced to the frame period in force; returns
/// when the camera stops or fails for good.
fn drive(
    owner: &owner::Owner,
    id: &str,
    pipeline: &mut LcPipeline<'_>,
    wanted: &Wanted,
    neg: &Negotiated,
) -> Result<(), CameraError> {
    let aspect = neg.crop.map(|_| wanted.still);
    // The period in force; the virtual camera reports no limits: then the one asked for.
    let period_us = neg
        .frame_period_us
        .unwrap_or(1_000_000 / i64::from(wanted.framerate.max(1)));
    // Frames beyond the period in force go back untouched (the virtual camera runs at
    // 85-100 fps whatever it is asked).
    let pacer = pace::Pacer::new(u64::try_from(period_us).unwrap_or(0) * 1_000);
    owner.drive(id, pipeline, aspect, owner::restart_wait(period_us), pacer)
}
