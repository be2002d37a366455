//! The camera seam: every frame source (the built-in test pattern, libcamera) implements
//! [`Camera`] and publishes [`Frame`]s into a [`FrameSink`], so the rest of the service never
//! knows which one is running and no test needs hardware.
//!
//! - [`plan`]: the decisions (camera, sensor mode, crop, frame period, orientation) as pure
//!   functions of facts recorded from libcamera; `pi_model` (tests only) checks them against a
//!   model of Raspberry Pi's pipeline and its cameras.
//! - [`owner`]: the owner thread of a request pipeline (good frames only, counters,
//!   restarts), generic over [`owner::Pipeline`]; `libcamera` and [`fake`] implement it.
//! - [`test_pattern`]: the built-in pattern when there is no camera.

pub mod buffers;
pub mod controls;
pub mod fake;
pub mod fixture;
pub mod owner;
pub mod pace;
pub mod pi_guard;
#[cfg(test)]
mod pi_model;
pub mod plan;
pub mod test_pattern;

#[cfg(feature = "libcamera")]
pub mod libcamera;
#[cfg(feature = "libcamera")]
pub mod libcamera_controls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

pub use crate::frames::{Frame, FrameMut, FrameSink, Image, PixelFormat};

/// Where the frames come from, as named in the config and in `/state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    TestPattern,
    Libcamera,
    /// The fake pipeline of the tests (`PICKER_TEST_PIPELINE`).
    Fake,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::TestPattern => "test-pattern",
            SourceKind::Libcamera => "libcamera",
            SourceKind::Fake => "fake",
        })
    }
}

/// Where a request pipeline's frame buffers come from, for `/state` and `/metrics`: on a Pi
/// the heap's are picker's choice, and the driver's after a fallback say the camera refused
/// them (see [`owner`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BufferSource {
    /// No request pipeline (the test pattern), or not running yet.
    #[default]
    None,
    /// picker's own, from a cached DMA heap, imported into the camera.
    Heap,
    /// libcamera's own (the driver's): asked for (`camera.buffers = "driver"`), or no heap.
    Driver,
    /// libcamera's own, after the camera gave no good frame on the heap's at the first start.
    DriverFallback,
}

impl BufferSource {
    /// Its name in `/state` and `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            BufferSource::None => "none",
            BufferSource::Heap => "heap",
            BufferSource::Driver => "driver",
            BufferSource::DriverFallback => "driver-fallback",
        }
    }

    pub fn to_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => BufferSource::Heap,
            2 => BufferSource::Driver,
            3 => BufferSource::DriverFallback,
            _ => BufferSource::None,
        }
    }
}

/// A rectangle in sensor pixel coordinates (libcamera's `Rectangle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

/// What the service knows about cropping, shown in `/state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CropState {
    /// `crop = "none"` in the config.
    Disabled,
    /// The camera has no `ScalerCrop` control.
    Unsupported,
    /// Requested but no frame has reported the applied rectangle yet.
    Pending,
    /// The rectangle the ISP reported for the latest frame.
    Applied(Rect),
    /// The ISP applied a crop of another shape than the output: the picture is squashed.
    NotSquare(Rect),
}

impl Serialize for CropState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CropState::Disabled => s.serialize_str("none"),
            CropState::Unsupported => s.serialize_str("unsupported"),
            CropState::Pending => s.serialize_str("pending"),
            CropState::Applied(r) => r.serialize(s),
            CropState::NotSquare(r) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("not-square", r)?;
                m.end()
            }
        }
    }
}

/// The size and format of one output as actually configured (after validation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
}

/// What a started camera reports about itself, once, for the log and `/state`.
#[derive(Clone, Debug, Serialize)]
pub struct CameraInfo {
    pub source: SourceKind,
    /// Camera id (libcamera) or a fixed name (test pattern).
    pub id: String,
    pub video: StreamInfo,
    pub still: StreamInfo,
    /// Human-readable notes of what the camera changed from the request ("still stream
    /// 512x512 RGB888 -> 512x512 NV12", "one stream only: still served from video").
    pub adjustments: Vec<String>,
}

/// Tells a running camera to stop. Cheap to clone; checked between frames.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A frame source. Opening happens in the backend's constructor (so a missing camera is an
/// error at start, before any socket is bound); `run` then captures on its own thread.
pub trait Camera: Send {
    /// The configuration the camera actually runs with.
    fn info(&self) -> CameraInfo;

    /// Captures until `stop` is set, publishing every frame into `sink`. Must not block on
    /// readers: `sink.publish` never waits. Returns an error only for a failure the camera
    /// cannot recover from; a stall is not an error (the service notices the missing frames).
    fn run(&mut self, sink: &FrameSink, stop: &StopFlag) -> Result<(), CameraError>;

    /// The camera's controls, shared with the HTTP handlers (`/controls`, `/state`). `None`:
    /// this camera sets no controls (the service then reports every `[controls]` key as
    /// unsupported).
    fn controls(&self) -> Option<Arc<controls::ControlsHandle>> {
        None
    }
}

/// Failures of a camera backend.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("{}{} (camera.id, camera.model or camera.index in the config)", wanted_text(.wanted), found_list(.found))]
    NotFound {
        wanted: Option<String>,
        found: Vec<String>,
    },
    #[error("camera {id}: {what}")]
    Failed { id: String, what: String },
    /// The config asks for something this camera cannot do (exit 78).
    #[error("camera {id}: {source}")]
    Config {
        id: String,
        #[source]
        source: plan::PlanError,
    },
    #[error("this build has no libcamera support (build with `--features libcamera`)")]
    NotBuiltIn,
}

fn wanted_text(wanted: &Option<String>) -> String {
    match wanted {
        Some(what) if what.starts_with("model ") || what.starts_with("index ") => {
            format!("no camera with {what}")
        }
        Some(id) => format!("camera {id:?} not found"),
        None => "no camera found".to_string(),
    }
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        ": libcamera lists no cameras".to_string()
    } else {
        format!("; available cameras: {}", found.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_camera_names_what_was_wanted_and_what_exists() {
        let e = CameraError::NotFound {
            wanted: Some("imx708".into()),
            found: vec![
                "Virtual0".into(),
                "/base/soc/i2c0mux/i2c@1/imx219@10".into(),
            ],
        };
        assert_eq!(
            e.to_string(),
            "camera \"imx708\" not found; available cameras: Virtual0, /base/soc/i2c0mux/i2c@1/imx219@10 (camera.id, camera.model or camera.index in the config)"
        );
        let e = CameraError::NotFound {
            wanted: None,
            found: vec![],
        };
        assert_eq!(
            e.to_string(),
            "no camera found: libcamera lists no cameras (camera.id, camera.model or camera.index in the config)"
        );
    }
}
