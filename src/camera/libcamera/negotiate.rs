//! Negotiation: facts in, plan applied. What the camera is (its list entry, raw sensor modes,
//! active area) and what it allows once configured (`ScalerCrop`, `FrameDurationLimits`) are read
//! here, handed to [`crate::camera::plan`] for the decisions, and the decisions written back
//! into one `CameraConfiguration`. The order is the Pi's: its limits are placeholders until
//! `configure()`, so each candidate mode is configured before its limits are read. Whatever
//! libcamera changed is accepted when picker can read the pixels, and noted once.

use libcamera::camera::{
    ActiveCamera, CameraConfiguration, CameraConfigurationStatus, SensorConfiguration,
};
use libcamera::camera_manager::CameraList;
use libcamera::color_space::ColorSpace;
use libcamera::control_value::ControlValue;
use libcamera::controls;
use libcamera::geometry::{Rectangle, Size};
use libcamera::pixel_format::PixelFormat as LcFormat;
use libcamera::properties;
use libcamera::stream::{Stream, StreamRole};

use super::formats::{
    RGB888, STILL_PREFERENCE, VIDEO_PREFERENCE, YUV420, format_name, lc_orientation, our_format,
    pick_format, rect, rectangle,
};
use super::{BUFFERS, Wanted, failed};
use crate::camera::buffers::Layout;
use crate::camera::plan::{self, ModeLimits, Orientation, RawMode};
use crate::camera::{CameraError, CropState};
use crate::config::Crop;

/// The camera the selector names, from libcamera's list (id and `Model` property).
pub(super) fn find_camera<'a>(
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

/// What negotiation settled on.
pub(super) struct Negotiated {
    pub(super) config: CameraConfiguration,
    /// Index of the video stream in `config`, and of the still stream (the same index when
    /// the camera gives one stream only).
    pub(super) video: usize,
    pub(super) still: usize,
    pub(super) adjustments: Vec<String>,
    /// The crop rectangle to ask for, when the camera has `ScalerCrop`.
    pub(super) crop: Option<Rectangle>,
    pub(super) crop_state: CropState,
    pub(super) sensor_mode: Option<(u32, u32)>,
    /// A sensor behind an ISP (a Pi), not a virtual or USB camera: its buffers must be
    /// physically contiguous on a Pi 4.
    pub(super) has_sensor: bool,
    /// For `FrameDurationLimits`, when the camera has the control.
    pub(super) frame_period_us: Option<i64>,
    /// The chosen mode's line timing, where its limits agree with a known Pi sensor's
    /// driver: the IPA caps a fixed exposure a few lines short of the frame.
    pub(super) line_timing: Option<plan::LineTiming>,
}

/// The configured streams, each with the layout of its buffers.
pub(super) struct Streams {
    pub(super) video: (Stream, Layout),
    /// `None` when the camera gives one stream: the still is the video image.
    pub(super) still: Option<(Stream, Layout)>,
}

impl Negotiated {
    /// Streams and layouts as configured (configure may still fix strides).
    pub(super) fn streams(&self, id: &str) -> Result<Streams, CameraError> {
        let stream_at = |i: usize| -> Result<(Stream, Layout), CameraError> {
            let c = self
                .config
                .get(i)
                .ok_or_else(|| failed(id, "stream missing after configure"))?;
            let stream = c
                .stream()
                .ok_or_else(|| failed(id, "stream missing after configure"))?;
            let size = c.get_size();
            let format = our_format(c.get_pixel_format().fourcc())
                .ok_or_else(|| failed(id, "format changed by configure"))?;
            let layout = Layout {
                width: size.width,
                height: size.height,
                format,
                stride: c.get_stride() as usize,
            };
            Ok((stream, layout))
        };
        let video = stream_at(self.video)?;
        let still = if self.still != self.video {
            Some(stream_at(self.still)?)
        } else {
            None
        };
        Ok(Streams { video, still })
    }
}

/// A configuration as generated and adjusted by us, validated.
pub(super) struct Built {
    pub(super) config: CameraConfiguration,
    two: bool,
    pub(super) status: CameraConfigurationStatus,
}

/// Generates and validates the configuration: two streams if the camera can, else one; the
/// given sensor mode (output size and bit depth only: all the Pi pipeline looks at).
pub(super) fn build(
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
pub(super) fn limits(cam: &libcamera::camera::Camera<'_>) -> ModeLimits {
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

/// The camera's `Model` property ("imx708_wide"), when it has one.
pub(super) fn sensor_model(cam: &libcamera::camera::Camera<'_>) -> Option<String> {
    cam.properties()
        .get::<properties::Model>()
        .ok()
        .map(|m| m.0)
}

/// The sensor's raw modes and active area, or `None` for cameras without a pixel array
/// (virtual and USB cameras: asking them for a raw stream makes libcamera log an error).
pub(super) fn sensor_facts(
    cam: &libcamera::camera::Camera<'_>,
) -> Option<((u32, u32), Vec<RawMode>)> {
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
pub(super) fn negotiate(
    active: &mut ActiveCamera<'_>,
    wanted: &Wanted,
) -> Result<Negotiated, CameraError> {
    let id = active.id().to_string();
    let mut adjustments = Vec::new();
    let facts = sensor_facts(active);
    let model = sensor_model(active);
    let sensor = facts.as_ref().map(|_| model.as_deref().unwrap_or(""));
    let (orientation, note) = plan::orientation_for(wanted.orientation, sensor);
    adjustments.extend(note);
    let (chosen, built) = configure_mode(
        active,
        wanted,
        facts.as_ref(),
        orientation,
        &id,
        &mut adjustments,
    )?;
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
    check_status(&config, status, &id)?;

    // Accept what libcamera made of it, as long as we can read the pixels.
    if two {
        let asked = (wanted.still, RGB888);
        note_stream(&config, still, "still", asked, &id, &mut adjustments)?;
    }
    let asked = (wanted.video, YUV420);
    note_stream(&config, video, "video", asked, &id, &mut adjustments)?;
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
    let frame_period_us = plan_frame_period(wanted.framerate, &limits, &mut adjustments);
    let line_timing = match (chosen, limits.frame_duration, model.as_deref()) {
        (Some(mode), Some((shortest, _)), Some(model)) => {
            plan::known_line_timing(model, (mode.width, mode.height), shortest)
        }
        _ => None,
    };
    let area = facts.as_ref().map(|(a, _)| *a);
    let (crop, crop_state) = plan_crop(wanted.crop, area, &limits, size_of(still), &id)?;
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
        line_timing,
    })
}

/// The mode: configures each candidate of a real sensor and reads what it really sees, until
/// [`plan::choose_mode`] has one; then leaves the camera configured with it. libcamera picks
/// the mode for a camera without raw modes, and (noted) when none covers the whole sensor.
fn configure_mode(
    active: &mut ActiveCamera<'_>,
    wanted: &Wanted,
    facts: Option<&((u32, u32), Vec<RawMode>)>,
    orientation: Orientation,
    id: &str,
    adjustments: &mut Vec<String>,
) -> Result<(Option<RawMode>, Built), CameraError> {
    let need = (
        wanted.still.0.max(wanted.video.0),
        wanted.still.1.max(wanted.video.1),
    );
    let mut last: Option<(Option<RawMode>, Built)> = None;
    let mut chosen: Option<RawMode> = None;
    if let Some(spec) = wanted.sensor_mode {
        // camera.sensor-mode: that mode, whatever picker would choose (a driver bug's way
        // round); one the camera has not is a config error naming those it has.
        let modes = facts.map(|(_, m)| m.as_slice()).unwrap_or(&[]);
        let mode = plan::forced_mode(modes, spec).map_err(|source| CameraError::Config {
            id: id.to_string(),
            source,
        })?;
        adjustments.push(format!(
            "sensor mode {}x{}:{} from camera.sensor-mode",
            mode.width, mode.height, mode.bit_depth
        ));
        chosen = Some(mode);
    } else if let Some((area, modes)) = facts {
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
                    .map_err(|e| failed(id, format!("configure: {e}")))?;
            }
            b
        }
    };
    Ok((chosen, built))
}

/// An invalid configuration is an error; an adjusted one is described by the notes after it.
fn check_status(
    config: &CameraConfiguration,
    status: CameraConfigurationStatus,
    id: &str,
) -> Result<(), CameraError> {
    match status {
        CameraConfigurationStatus::Invalid => {
            return Err(failed(
                id,
                format!("configuration rejected: {}", config.to_string_repr()),
            ));
        }
        CameraConfigurationStatus::Adjusted => {
            tracing::debug!(camera = %id, "libcamera adjusted the configuration to {}", config.to_string_repr());
        }
        CameraConfigurationStatus::Valid => {}
    }
    Ok(())
}

/// Notes how stream `i` differs from what was asked (size, format; colour space for video), and
/// fails when picker cannot read its format.
fn note_stream(
    config: &CameraConfiguration,
    i: usize,
    name: &str,
    (asked, asked_fmt): ((u32, u32), u32),
    id: &str,
    adjustments: &mut Vec<String>,
) -> Result<(), CameraError> {
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
            id,
            format!("{name} stream format {} is not supported", format_name(fmt)),
        )),
    }
}

/// The frame period for `FrameDurationLimits` ([`plan::frame_period`] within the camera's
/// limits), or `None` when the camera has no such control; either noted when it is not the
/// rate asked for.
fn plan_frame_period(
    framerate: u32,
    limits: &ModeLimits,
    adjustments: &mut Vec<String>,
) -> Option<i64> {
    let (period, clamped) = plan::frame_period(framerate, limits.frame_duration);
    match limits.frame_duration {
        Some(_) => {
            if clamped {
                adjustments.push(format!(
                    "frame rate: asked {framerate} fps, got {:.2} fps (the camera's FrameDurationLimits)",
                    1e6 / period as f64
                ));
            }
            Some(period)
        }
        None => {
            adjustments.push(format!(
                "no FrameDurationLimits control: the camera runs at its own frame rate, not {framerate} fps"
            ));
            None
        }
    }
}

/// The `ScalerCrop` rectangle to ask for, centred with the still's `aspect` in the area
/// [`plan::crop_area`] finds, and what `/state` says about it until a frame reports one.
fn plan_crop(
    crop: Crop,
    area: Option<(u32, u32)>,
    limits: &ModeLimits,
    aspect: (u32, u32),
    id: &str,
) -> Result<(Option<Rectangle>, CropState), CameraError> {
    Ok(match crop {
        Crop::None => (None, CropState::Disabled),
        Crop::CenterSquare => {
            let area = plan::crop_area(area, limits).map_err(|e| failed(id, e))?;
            if let (Some(clipped), Some(max)) = (area, limits.scaler_crop_max) {
                if clipped != max {
                    tracing::warn!(camera = %id, ?max, ?clipped, "the sensor mode's analogue crop overhangs the active area: clipped to it");
                }
            }
            match area {
                Some(area) => (
                    Some(rectangle(plan::centred_crop(area, aspect))),
                    CropState::Pending,
                ),
                None => {
                    tracing::warn!(camera = %id, "camera has no ScalerCrop control: streaming uncropped (crop = \"unsupported\")");
                    (None, CropState::Unsupported)
                }
            }
        }
    })
}
