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
//! Threads: every libcamera object lives on the owner thread ([`super::owner`]); `LcPipeline`
//! is the [`Pipeline`](super::owner::Pipeline) the owner loop drives (good frames only, counts,
//! restarts). Whatever validation changes is accepted when the pixels are readable, and
//! described once in [`CameraInfo::adjustments`](super::CameraInfo::adjustments).
//!
//! Layout, one reason to change each:
//! - `start`: the owner thread's steps, from libcamera's manager to the owner loop.
//! - `negotiate`: facts read from the camera in, [`super::plan`]'s decisions applied to the
//!   configuration.
//! - `buffers`: frame buffers (a cached DMA heap's, imported, or the driver's) and the copies
//!   out of them.
//! - `pipeline`: `LcPipeline`, per frame and per restart once the camera streams.
//! - `formats`: libcamera's names for picker's pixel formats, rectangles and orientations.

mod buffers;
mod formats;
mod negotiate;
mod pipeline;
mod probe;
mod start;

use std::sync::Arc;
use std::time::Duration;

use super::controls::ControlsHandle;
use super::owner;
use super::plan::{self, Orientation, Selector};
use super::{Camera, CameraError};
use crate::config::{Buffers, Config, Crop};

/// How long libcamera may take to enumerate, configure and start the camera (slow under
/// emulation; instant on a Pi; a few configures when choosing the sensor mode).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

fn failed(id: &str, what: impl std::fmt::Display) -> CameraError {
    CameraError::Failed {
        id: id.to_string(),
        what: what.to_string(),
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
    /// `camera.sensor-mode`, when not "auto".
    sensor_mode: Option<plan::ModeSpec>,
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
    let wanted = wanted(config);
    let what = wanted.what().unwrap_or_else(|| "-".to_string());
    let controls = Arc::new(ControlsHandle::new(&config.controls));
    let owner_controls = controls.clone();
    let camera = owner::spawn(&what, OPEN_TIMEOUT, move |owner| {
        start::owner_body(&wanted, owner_controls, owner)
    })?;
    Ok(Box::new(camera.with_controls(controls)))
}

/// `picker probe`: what picker sees of the camera the config selects (see `probe.rs`).
pub fn probe(config: &Config) -> Result<crate::camera::fixture::Fixture, CameraError> {
    probe::probe(&wanted(config))
}

fn wanted(config: &Config) -> Wanted {
    let c = &config.camera;
    Wanted {
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
        sensor_mode: c.sensor_mode,
        orientation: plan::orientation(c.rotation, c.hflip, c.vflip),
    }
}

/// Buffers (requests) asked of the camera per stream: the Pi's own apps use six for video.
/// Up to `owner::max_lent` of them are lent to readers at a time, the rest stay queued.
const BUFFERS: u32 = 6;
