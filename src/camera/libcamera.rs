//! The real camera, through libcamera: one `CameraConfiguration` with two streams, a still
//! stream (RGB, the ISP's main output, which must be the larger) and a video stream (YUV
//! 4:2:0 in the JPEG colour space, the low-resolution output), both cropped to a centred
//! square by the ISP (`ScalerCrop`), frame rate through `FrameDurationLimits`. Whatever
//! validation changes is accepted when the pixels are readable, and described once in
//! [`CameraInfo::adjustments`].
//!
//! Ownership: libcamera's objects borrow one another (manager -> camera -> active camera ->
//! requests and buffers) and none of them may move between threads, while [`Camera`] must be
//! `Send`. So [`open`] starts one dedicated thread, the *owner*, which creates, uses and
//! destroys every libcamera object: it opens, acquires, configures, maps the buffers and
//! starts the camera, then reports [`CameraInfo`] (or the error: missing camera with the list
//! of ids, camera busy, configuration impossible) back through a channel, all before any
//! socket is bound. The [`LibcameraCamera`] handle holds only channels and the join handle.
//!
//! Per frame: libcamera's completion callback only sends the request into a channel (it never
//! blocks and never encodes). The owner takes it, copies the planes out of the memory-mapped
//! buffers into an empty pooled frame, requeues the request at once and passes the filled
//! frame to [`Camera::run`], which publishes it into the (borrowed) [`FrameSink`] and hands
//! the owner a fresh empty frame. In flight: the pipeline's buffers (one request each) and
//! [`FRAMES_LENT`] frames. Frame memory is recycled, so nothing is allocated per frame in
//! steady state beyond the libcamera crate's own small bookkeeping (the list of plane slices
//! `data()` returns, its completion channel). A stalled camera simply sends no frames; the
//! owner and `run` both wake every 100 ms to honour the stop flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libcamera::camera::{CameraConfiguration, CameraConfigurationStatus, SensorConfiguration};
use libcamera::camera_manager::{CameraList, CameraManager};
use libcamera::color_space::ColorSpace;
use libcamera::control::ControlList;
use libcamera::control_value::ControlValue;
use libcamera::controls;
use libcamera::framebuffer_allocator::{FrameBuffer, FrameBufferAllocator};
use libcamera::framebuffer_map::MemoryMappedFrameBuffer;
use libcamera::geometry::{Rectangle, Size};
use libcamera::pixel_format::PixelFormat as LcFormat;
use libcamera::properties;
use libcamera::request::{Request, RequestStatus, ReuseFlag};
use libcamera::stream::{Stream, StreamRole};

use super::crop::{center_square, full_fov_mode};
use super::{
    Camera, CameraError, CameraInfo, CropState, FrameMut, FrameSink, PixelFormat, Rect, SourceKind,
    StopFlag, StreamInfo,
};
use crate::config::{Config, Crop};
use crate::frames::{Image, now_timestamps, unix_us_now};

/// Empty frames lent to the owner thread at a time: one being filled while the previous one
/// is on its way to the sink.
const FRAMES_LENT: usize = 2;
/// How long libcamera may take to enumerate, configure and start the camera (slow under
/// emulation; instant on a Pi).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Wake-up period of both loops, so `stop` is honoured promptly even when no frame comes.
const TICK: Duration = Duration::from_millis(100);
/// How long `run` waits for the owner to stop the camera after `stop` was set.
const STOP_GRACE: Duration = Duration::from_millis(300);

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

/// What we ask of the camera.
#[derive(Clone, Debug)]
struct Wanted {
    id: Option<String>,
    video: (u32, u32),
    still: (u32, u32),
    framerate: u32,
    crop: Crop,
}

/// Messages from the owner thread.
enum Event {
    /// The camera is configured and streaming (frames are requeued unread until `run`).
    Opened(Box<Opened>),
    /// A filled frame, and the crop the ISP reported for it.
    Frame {
        frame: FrameMut,
        crop: Option<CropState>,
    },
    /// The owner stopped the camera and released everything (or never got it).
    Ended(Result<(), CameraError>),
}

/// Handle on the owner thread; see the module docs.
pub struct LibcameraCamera {
    info: CameraInfo,
    crop: CropState,
    /// Sends the stop flag, which starts delivery; dropped unsent, it stops the owner.
    start: Option<SyncSender<StopFlag>>,
    empty: SyncSender<FrameMut>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

/// Opens the camera named in the config (or the first), configures and starts it on its own
/// thread, and reports what it got. Fails with the list of cameras when the wanted one is
/// missing, and with libcamera's reason when it is busy or cannot be configured.
pub fn open(config: &Config) -> Result<Box<dyn Camera>, CameraError> {
    let wanted = Wanted {
        id: config.camera.id.clone(),
        video: (config.stream.width, config.stream.height),
        still: (config.still.width, config.still.height),
        framerate: config.camera.framerate,
        crop: config.camera.crop,
    };
    let what = wanted.id.clone().unwrap_or_else(|| "-".to_string());
    let (start_tx, start_rx) = sync_channel(1);
    let (empty_tx, empty_rx) = sync_channel(FRAMES_LENT);
    // Frame events never exceed the frames lent; plus Opened and Ended.
    let (event_tx, event_rx) = sync_channel(FRAMES_LENT + 2);
    let thread = std::thread::Builder::new()
        .name("libcamera".into())
        .spawn(move || {
            let result = owner(&wanted, &start_rx, &empty_rx, &event_tx);
            let _ = event_tx.try_send(Event::Ended(result));
        })
        .map_err(|e| failed(&what, format!("cannot start the libcamera thread: {e}")))?;
    match event_rx.recv_timeout(OPEN_TIMEOUT) {
        Ok(Event::Opened(info)) => {
            let crop = info.crop;
            Ok(Box::new(LibcameraCamera {
                info: info.info,
                crop,
                start: Some(start_tx),
                empty: empty_tx,
                events: event_rx,
                thread: Some(thread),
            }))
        }
        Ok(Event::Ended(Err(e))) => {
            let _ = thread.join();
            Err(e)
        }
        Ok(_) => Err(failed(&what, "the libcamera thread ended while opening")),
        Err(RecvTimeoutError::Timeout) => Err(failed(
            &what,
            format!(
                "libcamera did not open the camera within {} s",
                OPEN_TIMEOUT.as_secs()
            ),
        )),
        Err(RecvTimeoutError::Disconnected) => {
            let _ = thread.join();
            Err(failed(&what, "the libcamera thread panicked while opening"))
        }
    }
}

impl Camera for LibcameraCamera {
    fn info(&self) -> CameraInfo {
        self.info.clone()
    }

    fn run(&mut self, sink: &FrameSink, stop: &StopFlag) -> Result<(), CameraError> {
        let id = self.info.id.clone();
        let start = self
            .start
            .take()
            .ok_or_else(|| failed(&id, "the camera can run only once"))?;
        sink.set_crop(self.crop);
        for _ in 0..FRAMES_LENT {
            let _ = self.empty.try_send(sink.acquire());
        }
        if start.send(stop.clone()).is_err() {
            return Err(self.ended(&id));
        }
        let mut stopping: Option<Instant> = None;
        loop {
            match self.events.recv_timeout(TICK) {
                Ok(Event::Frame { frame, crop }) => {
                    if let Some(crop) = crop {
                        sink.set_crop(crop);
                    }
                    sink.publish(frame);
                    // One back for the one returned: FRAMES_LENT stay lent. Fails only when
                    // the owner is gone, which the next recv reports.
                    let _ = self.empty.try_send(sink.acquire());
                }
                Ok(Event::Ended(result)) => {
                    if let Some(t) = self.thread.take() {
                        let _ = t.join();
                    }
                    return result;
                }
                Ok(Event::Opened(_)) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.ended(&id)),
            }
            if stop.is_stopped() {
                let since = *stopping.get_or_insert_with(Instant::now);
                if since.elapsed() > STOP_GRACE {
                    tracing::warn!(camera = %id, "libcamera did not stop within {STOP_GRACE:?}; leaving it");
                    return Ok(());
                }
            }
        }
    }
}

impl LibcameraCamera {
    /// The owner thread is gone without saying why: it panicked.
    fn ended(&mut self, id: &str) -> CameraError {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        failed(id, "the libcamera thread panicked")
    }
}

impl Drop for LibcameraCamera {
    /// Not run (or run gave up waiting): tell the owner to release the camera, and give it a
    /// moment, so libcamera is not torn down by process exit under its feet.
    fn drop(&mut self) {
        self.start = None;
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                match self
                    .events
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok(Event::Ended(_)) | Err(RecvTimeoutError::Disconnected) => {
                        let _ = thread.join();
                        return;
                    }
                    Ok(_) => {}
                    Err(RecvTimeoutError::Timeout) => return,
                }
            }
        }
    }
}

impl std::fmt::Debug for LibcameraCamera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibcameraCamera")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What `open` learns from the owner.
struct Opened {
    info: CameraInfo,
    crop: CropState,
}

/// The size, format and row stride of one configured stream, as we copy it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    width: u32,
    height: u32,
    format: PixelFormat,
    stride: usize,
}

type MappedBuffer = MemoryMappedFrameBuffer<FrameBuffer>;

/// The owner thread: everything libcamera, from the manager to the last request.
fn owner(
    wanted: &Wanted,
    start: &Receiver<StopFlag>,
    empty: &Receiver<FrameMut>,
    events: &SyncSender<Event>,
) -> Result<(), CameraError> {
    let mgr =
        CameraManager::new().map_err(|e| failed("-", format!("cannot start libcamera: {e}")))?;
    let cameras = mgr.cameras();
    super::pi_guard::check(cameras.len());
    let cam = find_camera(&mgr, &cameras, wanted)?;
    let id = cam.id().to_string();
    let mut active = cam.acquire().map_err(|e| {
        failed(
            &id,
            format!("cannot acquire the camera (in use by another process?): {e}"),
        )
    })?;
    let mut neg = negotiate(&active, wanted)?;
    active
        .configure(&mut neg.config)
        .map_err(|e| failed(&id, format!("configure: {e}")))?;

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
    let (still_stream, still_layout) = if neg.still != neg.video {
        let (s, l) = stream_at(neg.still)?;
        (Some(s), l)
    } else {
        (None, video_layout)
    };
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

    // Buffers, memory-mapped once; one request per buffer (pair), reused forever.
    let mut alloc = FrameBufferAllocator::new(&active);
    let mut map = |stream: &Stream| -> Result<Vec<MappedBuffer>, CameraError> {
        alloc
            .alloc(stream)
            .map_err(|e| failed(&id, format!("allocate buffers: {e}")))?
            .into_iter()
            .map(|b| MemoryMappedFrameBuffer::new(b).map_err(|e| failed(&id, format!("mmap: {e}"))))
            .collect()
    };
    let video_bufs = map(&video_stream)?;
    let mut still_bufs = match &still_stream {
        Some(s) => map(s)?.into_iter().map(Some).collect(),
        None => Vec::new(),
    };
    let mut requests = Vec::with_capacity(video_bufs.len());
    for (i, vb) in video_bufs.into_iter().enumerate() {
        let sb = match &still_stream {
            Some(_) => match still_bufs.get_mut(i).and_then(Option::take) {
                Some(b) => Some(b),
                None => break, // fewer still buffers: that many requests
            },
            None => None,
        };
        let mut req = active
            .create_request(Some(i as u64))
            .ok_or_else(|| failed(&id, "cannot create a request"))?;
        req.add_buffer(&video_stream, vb)
            .map_err(|e| failed(&id, format!("add buffer: {e}")))?;
        if let (Some(s), Some(b)) = (&still_stream, sb) {
            req.add_buffer(s, b)
                .map_err(|e| failed(&id, format!("add buffer: {e}")))?;
        }
        if let Some(crop) = neg.crop {
            let _ = req.controls_mut().set(controls::ScalerCrop(crop));
        }
        requests.push(req);
    }
    drop(still_bufs);

    let completed = active.subscribe_request_completed();
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
    active
        .start(Some(&start_controls))
        .map_err(|e| failed(&id, format!("start: {e}")))?;
    let count = requests.len();
    for req in requests {
        active
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
    if events
        .send(Event::Opened(Box::new(Opened {
            info,
            crop: neg.crop_state,
        })))
        .is_err()
    {
        // `open` gave up waiting.
        let _ = active.stop();
        return Ok(());
    }

    let mut stop: Option<StopFlag> = None;
    // A lent frame kept for the next request after a failed copy.
    let mut spare: Option<FrameMut> = None;
    // Requests libcamera refused to take back (camera gone): kept, not freed under it.
    let mut parked = Vec::new();
    let mut sequence = 0u64;
    let (mut warned_short, mut warned_gone, mut warned_no_crop) = (false, false, false);
    let result = loop {
        if stop.is_none() {
            match start.try_recv() {
                Ok(s) => stop = Some(s),
                Err(TryRecvError::Empty) => {}
                // Dropped without running.
                Err(TryRecvError::Disconnected) => break Ok(()),
            }
        }
        if stop.as_ref().is_some_and(StopFlag::is_stopped) {
            break Ok(());
        }
        if disconnected.load(Ordering::Relaxed) && !warned_gone {
            tracing::error!(camera = %id, "camera disconnected: no more frames");
            warned_gone = true;
        }
        let mut req = match completed.recv_timeout(TICK) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                break Err(failed(&id, "libcamera dropped the completion channel"));
            }
        };
        // Before `run` there is nowhere to put frames: straight back to the camera.
        if stop.is_some() && req.status() == RequestStatus::Complete {
            let frame = spare.take().or_else(|| empty.try_recv().ok());
            if let Some(mut frame) = frame {
                sequence += 1;
                let ok = fill(
                    &mut frame,
                    &req,
                    sequence,
                    (&video_stream, video_layout),
                    still_stream.as_ref().map(|s| (s, still_layout)),
                );
                if ok {
                    let crop = match req.metadata().get::<controls::ScalerCrop>() {
                        Ok(c) => Some(CropState::Applied(rect(c.0))),
                        Err(_) => {
                            if neg.crop.is_some() && !warned_no_crop {
                                tracing::warn!(camera = %id, "frames carry no ScalerCrop metadata: the applied crop is unknown");
                                warned_no_crop = true;
                            }
                            None
                        }
                    };
                    // Never full: at most FRAMES_LENT frames exist to send.
                    let _ = events.try_send(Event::Frame { frame, crop });
                } else {
                    if !warned_short {
                        tracing::warn!(camera = %id, sequence, "frame with missing or short planes dropped");
                        warned_short = true;
                    }
                    spare = Some(frame);
                }
            }
            // No empty frame: `run` is behind; this frame is skipped.
        }
        // Back to the camera at once: the data is copied.
        req.reuse(ReuseFlag::REUSE_BUFFERS);
        if let Some(crop) = neg.crop {
            let _ = req.controls_mut().set(controls::ScalerCrop(crop));
        }
        if let Err((req, e)) = active.queue_request(req) {
            if !warned_gone {
                tracing::error!(camera = %id, "cannot requeue a request ({e}): no more frames");
                warned_gone = true;
            }
            parked.push(req);
        }
    };
    if let Err(e) = active.stop() {
        tracing::warn!(camera = %id, "stop: {e}");
    }
    // Stopping completes (cancels) every queued request: free them here, before the buffers,
    // the allocator and the camera go.
    while completed.try_recv().is_ok() {}
    drop(parked);
    result
}

fn find_camera<'a>(
    mgr: &'a CameraManager,
    cameras: &'a CameraList<'a>,
    wanted: &Wanted,
) -> Result<libcamera::camera::Camera<'a>, CameraError> {
    let found: Vec<String> = cameras.iter().map(|c| c.id().to_string()).collect();
    let cam = match &wanted.id {
        Some(id) => mgr.get(id),
        None => cameras.get(0),
    };
    cam.ok_or(CameraError::NotFound {
        wanted: wanted.id.clone(),
        found,
    })
}

/// Copies the request's buffers into `frame`. False when a plane is missing or short.
fn fill(
    frame: &mut FrameMut,
    req: &Request,
    sequence: u64,
    (video_stream, video_layout): (&Stream, Layout),
    still: Option<(&Stream, Layout)>,
) -> bool {
    let timestamp = req
        .metadata()
        .get::<controls::SensorTimestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.0).ok())
        .filter(|t| *t > 0)
        .unwrap_or_else(|| now_timestamps().0);
    let f = &mut **frame;
    f.sequence = sequence;
    f.timestamp_ns = timestamp;
    f.unix_us = unix_us_now();
    let video_ok = req
        .buffer::<MappedBuffer>(video_stream)
        .is_some_and(|b| copy_planes(&b.data(), video_layout, &mut f.video));
    video_ok
        && match still {
            Some((stream, layout)) => req
                .buffer::<MappedBuffer>(stream)
                .is_some_and(|b| copy_planes(&b.data(), layout, &mut f.still)),
            None => {
                copy_image(&f.video, &mut f.still);
                true
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
    /// For `FrameDurationLimits`, when the camera has the control.
    frame_period_us: Option<i64>,
}

/// Builds and validates the configuration: two streams if the camera can, else one. Notes
/// every change libcamera made (or that we made to get readable pixels).
fn negotiate(
    cam: &libcamera::camera::Camera<'_>,
    wanted: &Wanted,
) -> Result<Negotiated, CameraError> {
    let id = cam.id().to_string();
    let mut adjustments = Vec::new();

    // Still first: on a Pi, output 0 is the main (larger) output and output 1 the
    // low-resolution one, which must be YUV.
    let (mut config, two) =
        match cam.generate_configuration(&[StreamRole::ViewFinder, StreamRole::VideoRecording]) {
            Some(c) if c.len() == 2 => (c, true),
            _ => {
                let c = cam
                    .generate_configuration(&[StreamRole::VideoRecording])
                    .ok_or_else(|| failed(&id, "cannot generate any stream configuration"))?;
                adjustments.push(
                    "the camera gives one stream only: stills are copied from the video stream"
                        .to_string(),
                );
                (c, false)
            }
        };
    let (still, video) = if two { (0, 1) } else { (0, 0) };
    if two {
        let mut s = config.get_mut(still).expect("two streams");
        s.set_pixel_format(LcFormat::new(RGB888, 0));
        s.set_size(Size::new(wanted.still.0, wanted.still.1));
    }
    {
        let mut v = config.get_mut(video).expect("video stream");
        v.set_pixel_format(LcFormat::new(YUV420, 0));
        v.set_size(Size::new(wanted.video.0, wanted.video.1));
        // JPEG's own colour space (full range BT.601), so the encoder takes the planes as
        // they are; on a Pi the RGB stream then gets the matching sRGB.
        v.set_color_space(Some(ColorSpace::sycc()));
    }

    // Prefer a sensor mode that covers the whole pixel array (binned), so the centred square
    // spans the full sensor height.
    let mut sensor_mode = None;
    if let Some((mode, size)) = choose_sensor_mode(cam, wanted) {
        config.set_sensor_configuration(mode);
        sensor_mode = Some(size);
    }
    let mut status = config.validate();
    if status.is_invalid() && sensor_mode.take().is_some() {
        tracing::warn!(camera = %id, "sensor mode refused; letting libcamera choose");
        config.set_sensor_configuration(SensorConfiguration::new());
        status = config.validate();
    }
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

    let frame_period_us = frame_period(cam, wanted.framerate, &mut adjustments);

    let (crop, crop_state) = match wanted.crop {
        Crop::None => (None, CropState::Disabled),
        Crop::CenterSquare => match scaler_crop_max(cam) {
            Some(max) => {
                let r = center_square(rect(max));
                let r = Rectangle {
                    x: r.x,
                    y: r.y,
                    width: r.width,
                    height: r.height,
                };
                (Some(r), CropState::Pending)
            }
            None => {
                tracing::warn!(camera = %id, "camera has no ScalerCrop control: streaming uncropped (crop = \"unsupported\")");
                (None, CropState::Unsupported)
            }
        },
    };
    Ok(Negotiated {
        config,
        video,
        still,
        adjustments,
        crop,
        crop_state,
        sensor_mode,
        frame_period_us,
    })
}

/// The frame period for `framerate`, within the camera's `FrameDurationLimits`; `None` when
/// the camera has no such control (it then runs at its own rate, noted as an adjustment).
fn frame_period(
    cam: &libcamera::camera::Camera<'_>,
    framerate: u32,
    adjustments: &mut Vec<String>,
) -> Option<i64> {
    let Ok(info) = cam
        .controls()
        .find(controls::ControlId::FrameDurationLimits.id())
    else {
        adjustments.push(format!(
            "no FrameDurationLimits control: the camera runs at its own frame rate, not {framerate} fps"
        ));
        return None;
    };
    let limit = |v: ControlValue| i64::try_from(v).ok().filter(|v| *v > 0);
    let (period, clamped) = clamp_period(framerate, limit(info.min()), limit(info.max()));
    if clamped {
        adjustments.push(format!(
            "frame rate: asked {framerate} fps, got {:.2} fps (the camera's FrameDurationLimits)",
            1e6 / period as f64
        ));
    }
    Some(period)
}

/// Frame period in microseconds for `framerate`, clamped to `[min, max]` where known; true
/// when clamping changed it.
fn clamp_period(framerate: u32, min: Option<i64>, max: Option<i64>) -> (i64, bool) {
    let want = 1_000_000 / i64::from(framerate.max(1));
    let mut period = want;
    if let Some(min) = min {
        period = period.max(min);
    }
    if let Some(max) = max.filter(|m| *m >= min.unwrap_or(0)) {
        period = period.min(max);
    }
    (period, period != want)
}

/// The area `ScalerCrop` may select from: its control maximum, else the active pixel array.
/// `None` when the camera has no `ScalerCrop` control at all.
fn scaler_crop_max(cam: &libcamera::camera::Camera<'_>) -> Option<Rectangle> {
    let info = cam
        .controls()
        .find(controls::ControlId::ScalerCrop.id())
        .ok()?;
    let from_control = Rectangle::try_from(info.max())
        .ok()
        .filter(|r| r.width > 0 && r.height > 0);
    from_control.or_else(|| {
        cam.properties()
            .get::<properties::PixelArrayActiveAreas>()
            .ok()
            .and_then(|a| a.0.first().copied())
    })
}

/// A sensor configuration for the smallest full-field-of-view raw mode that is big enough,
/// or `None` for cameras without a pixel array or raw modes (virtual and USB cameras).
fn choose_sensor_mode(
    cam: &libcamera::camera::Camera<'_>,
    wanted: &Wanted,
) -> Option<(SensorConfiguration, (u32, u32))> {
    // Properties first: only real sensors have them, and asking a camera without a sensor
    // for a raw stream makes libcamera log an error.
    let full = cam.properties().get::<properties::PixelArraySize>().ok()?.0;
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
            modes.push(((s.width, s.height), bits));
        }
    }
    let need = (
        wanted.still.0.max(wanted.video.0),
        wanted.still.1.max(wanted.video.1),
    );
    let sizes: Vec<(u32, u32)> = modes.iter().map(|(m, _)| *m).collect();
    let (w, h) = full_fov_mode(&sizes, (full.width, full.height), need)?;
    // The deepest raw format of that size (10 bit unpacked over 8 bit compressed, say).
    let bits = modes
        .iter()
        .filter(|(m, _)| *m == (w, h))
        .map(|(_, b)| *b)
        .max()
        .filter(|b| *b > 0)?;
    let mut sc = SensorConfiguration::new();
    sc.set_bit_depth(bits);
    sc.set_analog_crop(active);
    sc.set_output_size(w, h);
    if w > 0 && h > 0 && active.width % w == 0 && active.height % h == 0 {
        sc.set_binning(active.width / w, active.height / h);
    }
    Some((sc, (w, h)))
}

/// Copies a camera buffer's planes into `dst`, keeping the camera's strides (so rows need no
/// repacking). False when the buffer is shorter than the layout needs.
fn copy_planes(src: &[&[u8]], layout: Layout, dst: &mut Image) -> bool {
    let chroma_stride = match layout.format {
        PixelFormat::I420 => layout.stride / 2,
        _ => layout.stride,
    };
    dst.reshape_strided(
        layout.width,
        layout.height,
        layout.format,
        &[layout.stride, chroma_stride, chroma_stride],
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
    fn frame_period_is_clamped_to_the_camera_limits() {
        assert_eq!(clamp_period(30, None, None), (33_333, false));
        assert_eq!(
            clamp_period(30, Some(16_666), Some(1_000_000)),
            (33_333, false)
        );
        // IMX477 at full resolution cannot do 30 fps.
        assert_eq!(
            clamp_period(30, Some(100_000), Some(200_000)),
            (100_000, true)
        );
        assert_eq!(clamp_period(1, Some(1_000), Some(500_000)), (500_000, true));
        // Nonsense maximum below the minimum is ignored.
        assert_eq!(clamp_period(30, Some(40_000), Some(10)), (40_000, true));
        assert_eq!(clamp_period(0, None, None), (1_000_000, false));
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
        still.data.reserve(1024);
        let ptr = still.data.as_ptr();
        copy_image(&video, &mut still);
        assert_eq!(still.format, PixelFormat::Nv12);
        assert_eq!(still.strides, video.strides);
        assert_eq!(still.data, video.data);
        assert_eq!(still.data.as_ptr(), ptr);
    }
}
