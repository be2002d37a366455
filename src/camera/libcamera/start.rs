//! Start-up on the owner thread: from libcamera's manager to a streaming camera handed to the
//! owner loop. Every libcamera object is made here and dropped on this thread; the order is
//! libcamera's (acquire, configure, buffers, requests, start, queue), and a failure at any step
//! ends in an error `open` reports before the service binds a socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;

use libcamera::camera_manager::CameraManager;
use libcamera::control::ControlList;
use libcamera::controls;
use libcamera::framebuffer::OwnedFrameBuffer;
use libcamera::framebuffer_allocator::{FrameBuffer, FrameBufferAllocator};
use libcamera::stream::Stream;

use super::buffers::{driver_buffer, heap_buffer};
use super::formats::our_format;
use super::negotiate::{find_camera, negotiate};
use super::pipeline::{LcPipeline, Msg, Slot, with_values};
use super::{BUFFERS, Wanted, failed};
use crate::camera::buffers::{Layout, Mapped};
use crate::camera::controls::ControlsHandle;
use crate::camera::{CameraError, CameraInfo, SourceKind, StreamInfo};
use crate::camera::{libcamera_controls, owner, pace, pi_guard};
use crate::config::Buffers;
use crate::dmabuf::{self, Heap};

/// The owner thread's work: everything libcamera, from the manager to the last request.
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
        libcamera_controls::facts(active.controls()).with_frame_period(neg.frame_period_us);
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
    let pacer = pace::Pacer::new(u64::try_from(period_us).unwrap_or(0) * 1_000);
    owner.drive(
        &id,
        &mut pipeline,
        aspect,
        owner::restart_wait(period_us),
        pacer,
    )
}
