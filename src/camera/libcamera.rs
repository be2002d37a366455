//! The real camera, through libcamera: one `CameraConfiguration` with two streams, a still
//! stream (RGB, stream 0: the ISP's main output, which must be the larger) and a video
//! stream (YUV 4:2:0, stream 1: the low-resolution output), both cropped to a centred square
//! by the ISP (`ScalerCrop`), frame rate through `FrameDurationLimits`.
//!
//! Ownership: libcamera's objects borrow one another (manager -> camera -> active camera ->
//! requests), so they all live on the camera thread, inside [`Camera::run`]. [`open`] does
//! the same negotiation once at start and drops it again: that is where a missing camera or
//! an impossible configuration is reported (before any socket is bound), and where
//! [`CameraInfo`] comes from. Opening twice costs a few milliseconds at start only.
//!
//! Per frame: the completion callback only forwards the request into a channel (it never
//! blocks and never encodes); the run loop copies the planes out of the memory-mapped
//! buffers into a pooled frame, requeues the request at once and publishes the frame.
//! In-flight buffers are bounded by what the pipeline allocated.

use std::time::Duration;

use libcamera::camera::{
    ActiveCamera, CameraConfiguration, CameraConfigurationStatus, SensorConfiguration,
};
use libcamera::camera_manager::CameraManager;
use libcamera::control::ControlList;
use libcamera::controls;
use libcamera::framebuffer_allocator::{FrameBuffer, FrameBufferAllocator};
use libcamera::framebuffer_map::MemoryMappedFrameBuffer;
use libcamera::geometry::{Rectangle, Size};
use libcamera::pixel_format::PixelFormat as LcFormat;
use libcamera::properties;
use libcamera::request::{Request, RequestStatus, ReuseFlag};
use libcamera::stream::StreamRole;

use super::crop::{center_square, full_fov_mode};
use super::{
    Camera, CameraError, CameraInfo, CropState, FrameSink, PixelFormat, Rect, SourceKind, StopFlag,
    StreamInfo,
};
use crate::config::{Config, Crop};
use crate::frames::{Image, now_timestamps, unix_us_now};

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

fn our_format(f: LcFormat) -> Option<PixelFormat> {
    Some(match f.fourcc() {
        YUV420 => PixelFormat::I420,
        NV12 => PixelFormat::Nv12,
        YUYV => PixelFormat::Yuyv,
        RGB888 => PixelFormat::Bgr24,
        BGR888 => PixelFormat::Rgb24,
        _ => return None,
    })
}

fn format_name(f: LcFormat) -> String {
    f.info()
        .map(|i| i.name)
        .unwrap_or_else(|| format!("{:08x}", f.fourcc()))
}

fn failed(id: &str, what: impl std::fmt::Display) -> CameraError {
    CameraError::Failed {
        id: id.to_string(),
        what: what.to_string(),
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

/// The outcome of negotiating a configuration: what each stream got.
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
}

pub struct LibcameraCamera {
    wanted: Wanted,
    info: CameraInfo,
}

/// Opens the camera named in the config (or the first), negotiates the two streams and
/// reports what it got. Fails with the list of cameras when the wanted one is missing.
pub fn open(config: &Config) -> Result<Box<dyn Camera>, CameraError> {
    let wanted = Wanted {
        id: config.camera.id.clone(),
        video: (config.stream.width, config.stream.height),
        still: (config.still.width, config.still.height),
        framerate: config.camera.framerate,
        crop: config.camera.crop,
    };
    let mgr =
        CameraManager::new().map_err(|e| failed("-", format!("cannot start libcamera: {e}")))?;
    let cameras = mgr.cameras();
    let cam = find_camera(&mgr, &cameras, &wanted)?;
    let id = cam.id().to_string();
    let neg = negotiate(&cam, &wanted, true)?;
    let stream_info = |i: usize| {
        let c = neg.config.get(i).expect("negotiated stream exists");
        let size = c.get_size();
        StreamInfo {
            width: size.width,
            height: size.height,
            format: our_format(c.get_pixel_format()).expect("negotiate only accepts known formats"),
        }
    };
    let info = CameraInfo {
        source: SourceKind::Libcamera,
        id: id.clone(),
        video: stream_info(neg.video),
        still: stream_info(neg.still),
        adjustments: neg.adjustments.clone(),
    };
    tracing::info!(
        camera = %id,
        video = ?info.video,
        still = ?info.still,
        sensor_mode = ?neg.sensor_mode,
        crop = ?neg.crop_state,
        "libcamera configured"
    );
    Ok(Box::new(LibcameraCamera { wanted, info }))
}

fn find_camera<'a>(
    mgr: &'a CameraManager,
    cameras: &'a libcamera::camera_manager::CameraList<'a>,
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

/// Builds and validates the configuration: two streams if the camera can, else one.
fn negotiate(
    cam: &libcamera::camera::Camera<'_>,
    wanted: &Wanted,
    // Log what libcamera changed: once, at open, not again when capture starts.
    log: bool,
) -> Result<Negotiated, CameraError> {
    let id = cam.id().to_string();
    let mut adjustments = Vec::new();

    // Still first: on a Pi, output 0 is the main (larger) output and output 1 the
    // low-resolution one that must be YUV 4:2:0.
    let (mut config, two) =
        match cam.generate_configuration(&[StreamRole::ViewFinder, StreamRole::VideoRecording]) {
            Some(c) if c.len() == 2 => (c, true),
            _ => {
                let c = cam
                    .generate_configuration(&[StreamRole::VideoRecording])
                    .ok_or_else(|| failed(&id, "cannot generate any stream configuration"))?;
                adjustments.push(
                    "the camera gives one stream only: stills are taken from the video stream"
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
        // The pipeline refused our sensor mode: let it choose.
        if log {
            tracing::warn!(camera = %id, "sensor mode refused; letting libcamera choose");
        }
        config.set_sensor_configuration(SensorConfiguration::new());
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
            if log {
                tracing::info!(camera = %id, "libcamera adjusted the configuration to {}", config.to_string_repr());
            }
        }
        CameraConfigurationStatus::Valid => {}
    }

    // Accept what libcamera made of it, as long as we can read the pixels.
    let describe =
        |name: &str, asked: (u32, u32), asked_fmt: u32, i: usize, notes: &mut Vec<String>| {
            let c = config.get(i).expect("stream exists");
            let (size, fmt) = (c.get_size(), c.get_pixel_format());
            if (size.width, size.height) != asked || fmt.fourcc() != asked_fmt {
                notes.push(format!(
                    "{name} stream: asked {}x{} {}, got {}x{} {}",
                    asked.0,
                    asked.1,
                    format_name(LcFormat::new(asked_fmt, 0)),
                    size.width,
                    size.height,
                    format_name(fmt)
                ));
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
        describe("still", wanted.still, RGB888, still, &mut adjustments)?;
    }
    describe("video", wanted.video, YUV420, video, &mut adjustments)?;
    // The notes themselves are logged once by the app, from `CameraInfo::adjustments`.

    let (crop, crop_state) = match wanted.crop {
        Crop::None => (None, CropState::Disabled),
        Crop::CenterSquare => match scaler_crop_max(cam) {
            Some(max) => {
                let r = center_square(Rect {
                    x: max.x,
                    y: max.y,
                    width: max.width,
                    height: max.height,
                });
                let rect = Rectangle {
                    x: r.x,
                    y: r.y,
                    width: r.width,
                    height: r.height,
                };
                (Some(rect), CropState::Pending)
            }
            None => {
                if log {
                    tracing::warn!(camera = %id, "camera has no ScalerCrop control: streaming uncropped (crop = \"unsupported\")");
                }
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
    })
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
/// or `None` when the camera lists no raw modes (virtual and USB cameras).
fn choose_sensor_mode(
    cam: &libcamera::camera::Camera<'_>,
    wanted: &Wanted,
) -> Option<(SensorConfiguration, (u32, u32))> {
    let raw = cam.generate_configuration(&[StreamRole::Raw])?;
    let stream = raw.get(0)?;
    let formats = stream.formats();
    let mut modes = Vec::new();
    let mut depth_of = Vec::new();
    for pf in formats.pixel_formats().into_iter() {
        let bits = pf.info().map(|i| i.bits_per_pixel).unwrap_or(0);
        for s in formats.sizes(pf) {
            modes.push((s.width, s.height));
            depth_of.push(((s.width, s.height), bits));
        }
    }
    let full = cam.properties().get::<properties::PixelArraySize>().ok()?.0;
    let need = (
        wanted.still.0.max(wanted.video.0),
        wanted.still.1.max(wanted.video.1),
    );
    let (w, h) = full_fov_mode(&modes, (full.width, full.height), need)?;
    let bits = depth_of
        .iter()
        .filter(|(m, _)| *m == (w, h))
        .map(|(_, b)| *b)
        .max()?;
    let active = cam
        .properties()
        .get::<properties::PixelArrayActiveAreas>()
        .ok()
        .and_then(|a| a.0.first().copied())?;
    let mut sc = SensorConfiguration::new();
    sc.set_bit_depth(bits);
    sc.set_analog_crop(active);
    sc.set_output_size(w, h);
    if w > 0 && h > 0 && active.width % w == 0 && active.height % h == 0 {
        sc.set_binning(active.width / w, active.height / h);
    }
    Some((sc, (w, h)))
}

impl Camera for LibcameraCamera {
    fn info(&self) -> CameraInfo {
        self.info.clone()
    }

    fn run(&mut self, sink: &FrameSink, stop: &StopFlag) -> Result<(), CameraError> {
        let mgr = CameraManager::new()
            .map_err(|e| failed("-", format!("cannot start libcamera: {e}")))?;
        let cameras = mgr.cameras();
        let cam = find_camera(&mgr, &cameras, &self.wanted)?;
        let id = cam.id().to_string();
        let mut active = cam.acquire().map_err(|e| {
            failed(
                &id,
                format!("cannot acquire (in use by another process?): {e}"),
            )
        })?;
        let mut neg = negotiate(&active, &self.wanted, false)?;
        active
            .configure(&mut neg.config)
            .map_err(|e| failed(&id, format!("configure: {e}")))?;
        sink.set_crop(neg.crop_state);

        let stream_of = |i: usize| neg.config.get(i).and_then(|c| c.stream());
        let video_stream = stream_of(neg.video)
            .ok_or_else(|| failed(&id, "video stream missing after configure"))?;
        let still_stream = if neg.still != neg.video {
            Some(
                stream_of(neg.still)
                    .ok_or_else(|| failed(&id, "still stream missing after configure"))?,
            )
        } else {
            None
        };
        let layout = |i: usize| {
            let c = neg.config.get(i).expect("configured stream");
            let size = c.get_size();
            (
                size.width,
                size.height,
                our_format(c.get_pixel_format()).expect("checked"),
                c.get_stride() as usize,
            )
        };
        let video_layout = layout(neg.video);
        let still_layout = layout(neg.still);

        let mut alloc = FrameBufferAllocator::new(&active);
        let map = |bufs: Vec<FrameBuffer>| -> Result<Vec<MemoryMappedFrameBuffer<FrameBuffer>>, CameraError> {
            bufs.into_iter()
                .map(|b| MemoryMappedFrameBuffer::new(b).map_err(|e| failed(&id, format!("mmap: {e:?}"))))
                .collect()
        };
        let mut video_bufs = map(alloc
            .alloc(&video_stream)
            .map_err(|e| failed(&id, format!("allocate: {e}")))?)?;
        let mut still_bufs = match &still_stream {
            Some(s) => map(alloc
                .alloc(s)
                .map_err(|e| failed(&id, format!("allocate: {e}")))?)?,
            None => Vec::new(),
        };
        let count = if still_stream.is_some() {
            video_bufs.len().min(still_bufs.len())
        } else {
            video_bufs.len()
        };
        let mut requests = Vec::with_capacity(count);
        for i in 0..count {
            let mut req = active
                .create_request(Some(i as u64))
                .ok_or_else(|| failed(&id, "cannot create request"))?;
            req.add_buffer(&video_stream, video_bufs.remove(0))
                .map_err(|e| failed(&id, format!("add buffer: {e}")))?;
            if let Some(s) = &still_stream {
                req.add_buffer(s, still_bufs.remove(0))
                    .map_err(|e| failed(&id, format!("add buffer: {e}")))?;
            }
            if let Some(crop) = neg.crop {
                let _ = req.controls_mut().set(controls::ScalerCrop(crop));
            }
            requests.push(req);
        }

        let completed = active.subscribe_request_completed();
        let mut start_controls = ControlList::new();
        let period_us = 1_000_000 / i64::from(self.wanted.framerate.max(1));
        if let Err(e) = start_controls.set(controls::FrameDurationLimits([period_us, period_us])) {
            tracing::warn!(camera = %id, "cannot set FrameDurationLimits: {e:?}");
        }
        if let Some(crop) = neg.crop {
            let _ = start_controls.set(controls::ScalerCrop(crop));
        }
        active
            .start(Some(&start_controls))
            .map_err(|e| failed(&id, format!("start: {e}")))?;
        for req in requests {
            active
                .queue_request(req)
                .map_err(|(_, e)| failed(&id, format!("queue request: {e}")))?;
        }
        tracing::info!(camera = %id, buffers = count, "libcamera streaming");

        let mut sequence = 0u64;
        let mut warned_crop = false;
        let result = loop {
            if stop.is_stopped() {
                break Ok(());
            }
            let mut req: Request = match completed.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(failed(&id, "camera disconnected"));
                }
            };
            if req.status() == RequestStatus::Complete {
                sequence += 1;
                let mut frame = sink.acquire();
                let timestamp = req
                    .metadata()
                    .get::<controls::SensorTimestamp>()
                    .ok()
                    .map(|t| t.0 as u64)
                    .filter(|t| *t > 0)
                    .unwrap_or_else(|| now_timestamps().0);
                frame.sequence = sequence;
                frame.timestamp_ns = timestamp;
                frame.unix_us = unix_us_now();
                let video_ok = req
                    .buffer::<MemoryMappedFrameBuffer<FrameBuffer>>(&video_stream)
                    .map(|b| copy_planes(&b.data(), video_layout, &mut frame.video))
                    .unwrap_or(false);
                let still_ok = match &still_stream {
                    Some(s) => req
                        .buffer::<MemoryMappedFrameBuffer<FrameBuffer>>(s)
                        .map(|b| copy_planes(&b.data(), still_layout, &mut frame.still))
                        .unwrap_or(false),
                    None => {
                        let f = &mut *frame;
                        f.still.clone_from(&f.video);
                        true
                    }
                };
                match req.metadata().get::<controls::ScalerCrop>() {
                    Ok(c) => sink.set_crop(CropState::Applied(Rect {
                        x: c.0.x,
                        y: c.0.y,
                        width: c.0.width,
                        height: c.0.height,
                    })),
                    Err(_) if neg.crop.is_some() && !warned_crop => {
                        tracing::warn!(camera = %id, "frames carry no ScalerCrop metadata: the applied crop is unknown");
                        warned_crop = true;
                    }
                    Err(_) => {}
                }
                if video_ok && still_ok {
                    sink.publish(frame);
                } else {
                    tracing::warn!(camera = %id, sequence, "frame with missing or short planes dropped");
                }
            }
            // Back to the camera at once: the data is copied.
            req.reuse(ReuseFlag::REUSE_BUFFERS);
            if let Some(crop) = neg.crop {
                let _ = req.controls_mut().set(controls::ScalerCrop(crop));
            }
            if let Err((_, e)) = active.queue_request(req) {
                break Err(failed(&id, format!("requeue: {e}")));
            }
        };
        if let Err(e) = active.stop() {
            tracing::warn!(camera = %id, "stop: {e}");
        }
        result
    }
}

/// Copies a camera buffer's planes into `dst`, keeping the camera's strides. Returns false
/// when the buffer is shorter than the layout needs.
fn copy_planes(
    src: &[&[u8]],
    (w, h, format, stride): (u32, u32, PixelFormat, usize),
    dst: &mut Image,
) -> bool {
    let chroma_stride = match format {
        PixelFormat::I420 => stride / 2,
        _ => stride,
    };
    dst.reshape_strided(w, h, format, &[stride, chroma_stride, chroma_stride]);
    let planes = dst.planes;
    if src.len() >= planes {
        for (i, plane) in src.iter().enumerate().take(planes) {
            let out = dst.plane_mut(i);
            let Some(data) = plane.get(..out.len()) else {
                return false;
            };
            out.copy_from_slice(data);
        }
    } else if let Some(one) = src.first() {
        // All planes in one buffer, one after the other.
        let Some(data) = one.get(..dst.data.len()) else {
            return false;
        };
        dst.data.copy_from_slice(data);
    } else {
        return false;
    }
    true
}

impl std::fmt::Debug for LibcameraCamera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibcameraCamera")
            .field("info", &self.info)
            .finish()
    }
}

#[allow(dead_code)]
fn _assert_send(_: &ActiveCamera<'_>) {}
