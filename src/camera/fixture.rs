//! What `picker probe --json` writes and the camera model's tests read: one camera as picker
//! sees it on one machine, in one format, so that a file recorded on a real Pi and dropped
//! into `tests/fixtures/cameras/` becomes a test case with no code change. Only the facts the
//! plan consumes are kept (each sensor mode with the limits read *after* configuring it), not
//! derived figures, so a kernel that changes a mode's rate changes the file, not the code.

use serde::{Deserialize, Serialize};

/// `picker probe`: the camera the config selects as a [`Fixture`], or why there is none (no
/// libcamera in this build, no camera, the camera busy).
pub fn probe(config: &crate::config::Config) -> Result<Fixture, String> {
    #[cfg(feature = "libcamera")]
    {
        super::libcamera::probe(config).map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "libcamera"))]
    {
        let _ = config;
        Err("no camera to probe: this picker was built without libcamera".to_string())
    }
}

/// The format's name, in every file.
pub const FORMAT: &str = "picker-probe-1";

/// One camera.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fixture {
    pub format: String,
    /// Where the facts come from: "picker probe on" and the board, or the driver read.
    pub recorded_by: String,
    pub libcamera: String,
    /// "rpi/vc4", "rpi/pisp", or `None` when not known (no Pi, or written from a driver).
    pub pipeline: Option<String>,
    pub model: String,
    /// The first `PixelArrayActiveAreas` rectangle's size; `None` without a pixel array (the
    /// virtual camera, USB cameras).
    pub active_area: Option<(u32, u32)>,
    pub modes: Vec<FixtureMode>,
    /// The output sizes `chosen` was planned for (the config's still and stream sizes).
    pub outputs: Outputs,
    pub chosen: Chosen,
    /// The still and video streams as configured for `outputs` (probe only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamFacts>,
    /// Every control picker uses, with its limits and default after configure (probe only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controls: Option<serde_json::Value>,
    /// The DMA heap picker would take its buffers from; `None`: the driver's (probe only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dma_heap: Option<String>,
}

/// One configured stream: what picker reads out of its buffers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamFacts {
    pub role: String,
    pub size: (u32, u32),
    pub format: String,
    pub stride: usize,
    pub frame_size: usize,
}

/// One raw sensor mode, configured alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FixtureMode {
    pub size: (u32, u32),
    pub bit_depth: u32,
    /// The `ScalerCrop` maximum after configure (x, y, width, height), active-area coordinates.
    pub scaler_crop_maximum: Option<(i32, i32, u32, u32)>,
    /// `FrameDurationLimits` after configure (min, max) in microseconds.
    pub frame_duration_limits: Option<(i64, Option<i64>)>,
    /// The mode's minimum line length in pixels, blanking included, and its pixel rate in
    /// Hz: what the Pi's IPA caps a fixed exposure by ([`super::plan::LineTiming`]).
    /// libcamera does not tell an application, so only files written from a driver have them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_rate: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    pub still: (u32, u32),
    pub video: (u32, u32),
}

/// What picker chose for `outputs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    /// The sensor mode; `None` when libcamera chose (no raw modes, or none sees the whole
    /// sensor).
    pub mode: Option<(u32, u32)>,
    /// The `ScalerCrop` asked for, when cropping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<(i32, i32, u32, u32)>,
    /// The frame period picker pinned, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_period_us: Option<i64>,
}

/// The human-readable form of `picker probe`.
pub fn describe(f: &Fixture) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "camera {} ({})", f.model, f.recorded_by);
    let _ = writeln!(
        out,
        "libcamera {}, pipeline {}",
        f.libcamera,
        f.pipeline.as_deref().unwrap_or("-")
    );
    match f.active_area {
        Some((w, h)) => {
            let _ = writeln!(out, "active area {w}x{h}");
        }
        None => {
            let _ = writeln!(out, "no pixel array (not a sensor camera)");
        }
    }
    for m in &f.modes {
        let _ = writeln!(
            out,
            "mode {}x{}:{}  ScalerCrop max {:?}  FrameDurationLimits {:?} us",
            m.size.0, m.size.1, m.bit_depth, m.scaler_crop_maximum, m.frame_duration_limits
        );
    }
    let _ = writeln!(
        out,
        "for still {:?} and video {:?}: mode {:?}, crop {:?}, frame period {:?} us",
        f.outputs.still, f.outputs.video, f.chosen.mode, f.chosen.crop, f.chosen.frame_period_us
    );
    for s in &f.streams {
        let _ = writeln!(
            out,
            "{} stream {}x{} {} stride {} frame size {}",
            s.role, s.size.0, s.size.1, s.format, s.stride, s.frame_size
        );
    }
    if let Some(c) = &f.controls {
        let _ = writeln!(out, "controls {c}");
    }
    let _ = writeln!(
        out,
        "DMA heap {}",
        f.dma_heap
            .as_deref()
            .unwrap_or("none (the driver's buffers)")
    );
    out
}
