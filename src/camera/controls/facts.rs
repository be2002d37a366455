//! What a camera advertises after `configure()`, in picker's own types: which controls
//! ([`Id`]), their limits ([`Limits`]), the frame period in force ([`ControlFacts`]), the values
//! set ([`Value`]) and the libcamera numbers the keys' values stand for. No libcamera types, so
//! facts are recorded ([`fixtures`](super::fixtures)) and the plan is tested on any machine;
//! `libcamera_controls` reads them from a real camera. This changes when libcamera or a camera
//! does, not when a key's spelling does.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{AfMode, AfRange, AwbMode, Denoise, ExposureMode, Metering};
use crate::camera::plan::{self, LineTiming};

/// The libcamera controls this module sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Id {
    AfMode,
    AfTrigger,
    AfRange,
    LensPosition,
    AeEnable,
    ExposureTimeMode,
    ExposureTime,
    AnalogueGainMode,
    AnalogueGain,
    AeExposureMode,
    AeMeteringMode,
    ExposureValue,
    AwbEnable,
    AwbMode,
    ColourGains,
    Brightness,
    Contrast,
    Saturation,
    Sharpness,
    NoiseReductionMode,
}

impl Id {
    pub const ALL: [Id; 20] = [
        Id::AfMode,
        Id::AfTrigger,
        Id::AfRange,
        Id::LensPosition,
        Id::AeEnable,
        Id::ExposureTimeMode,
        Id::ExposureTime,
        Id::AnalogueGainMode,
        Id::AnalogueGain,
        Id::AeExposureMode,
        Id::AeMeteringMode,
        Id::ExposureValue,
        Id::AwbEnable,
        Id::AwbMode,
        Id::ColourGains,
        Id::Brightness,
        Id::Contrast,
        Id::Saturation,
        Id::Sharpness,
        Id::NoiseReductionMode,
    ];
}

// libcamera's enum values (control_ids_core.yaml, control_ids_draft.yaml).
pub(super) const AF_MANUAL: i32 = 0;
pub(super) const AF_AUTO: i32 = 1;
pub(super) const AF_CONTINUOUS: i32 = 2;
pub(super) const AF_TRIGGER_START: i32 = 0;
pub(super) const MODE_AUTO: i32 = 0; // ExposureTimeModeAuto, AnalogueGainModeAuto
pub(super) const MODE_MANUAL: i32 = 1;

pub(super) fn af_mode_value(m: AfMode) -> i32 {
    match m {
        AfMode::Manual => AF_MANUAL,
        AfMode::Auto => AF_AUTO,
        AfMode::Continuous => AF_CONTINUOUS,
    }
}

pub(super) fn af_range_value(r: AfRange) -> i32 {
    match r {
        AfRange::Normal => 0,
        AfRange::Macro => 1,
        AfRange::Full => 2,
    }
}

pub(super) fn exposure_mode_value(m: ExposureMode) -> i32 {
    match m {
        ExposureMode::Normal => 0,
        ExposureMode::Short => 1,
        ExposureMode::Long => 2,
    }
}

pub(super) fn metering_value(m: Metering) -> i32 {
    match m {
        Metering::Centre => 0, // MeteringCentreWeighted
        Metering::Spot => 1,
        Metering::Matrix => 2,
    }
}

pub(super) fn awb_value(m: AwbMode) -> i32 {
    match m {
        AwbMode::Auto => 0,
        AwbMode::Incandescent => 1,
        AwbMode::Tungsten => 2,
        AwbMode::Fluorescent => 3,
        AwbMode::Indoor => 4,
        AwbMode::Daylight => 5,
        AwbMode::Cloudy => 6,
    }
}

/// libcamera's `draft::NoiseReductionModeHighQuality`.
pub(super) const NR_HIGH_QUALITY: i32 = 2;
/// libcamera's `draft::NoiseReductionModeMinimal` (on a Pi 4: spatial denoise only).
pub(super) const NR_MINIMAL: i32 = 3;

pub(super) fn denoise_value(d: Denoise) -> i32 {
    match d {
        Denoise::Off => 0,
        Denoise::Fast => 1,
        Denoise::HighQuality => 2,
    }
}

/// The limits a camera advertises for one control (libcamera's `ControlInfo`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Limits {
    Bool,
    Int {
        min: i64,
        max: i64,
        default: i64,
    },
    Float {
        min: f32,
        max: f32,
        default: f32,
    },
    /// An enumerated control: the values the camera accepts.
    Enum {
        values: Vec<i32>,
        default: i32,
    },
}

/// Which of our controls a camera advertises after `configure()`, with their limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ControlFacts {
    pub controls: BTreeMap<Id, Limits>,
    /// The frame period picker pinned through `FrameDurationLimits` (min = max), in
    /// microseconds, when the camera has that control. No exposure is longer than a frame:
    /// the Raspberry Pi IPA caps a fixed `ExposureTime` to what fits in the longest frame
    /// duration allowed (`IpaBase::applyFrameDurations`, `AgcChannel::limitExposureTime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_period_us: Option<i64>,
    /// The configured sensor mode's line timing, where known: the IPA's cap is then a few
    /// lines short of the frame ([`plan::longest_exposure_us`]), not the whole frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_timing: Option<LineTiming>,
    /// The value a control starts in where that is not its `ControlInfo` default: what
    /// removing a runtime value goes back to (libcamera's default for an enumerated control
    /// is merely its first value). See [`ControlFacts::on_pi`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub starting: BTreeMap<Id, Value>,
    /// The Raspberry Pi pipeline behind the camera, when it is one ("rpi/vc4", "rpi/pisp").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<&'static str>,
}

impl ControlFacts {
    /// A camera with none of the controls (the test pattern by default, libcamera's virtual
    /// camera, a camera whose backend does not report controls).
    pub fn none() -> ControlFacts {
        ControlFacts::default()
    }

    pub fn with(mut self, id: Id, limits: Limits) -> ControlFacts {
        self.controls.insert(id, limits);
        self
    }

    /// The frame period in force, pinned by picker (see [`ControlFacts::frame_period_us`]).
    pub fn with_frame_period(mut self, us: Option<i64>) -> ControlFacts {
        self.frame_period_us = us.filter(|us| *us > 0);
        self
    }

    /// The sensor mode's line timing (see [`ControlFacts::line_timing`]).
    pub fn with_line_timing(mut self, line: Option<LineTiming>) -> ControlFacts {
        self.line_timing = line;
        self
    }

    /// The longest exposure a frame allows at the frame period in force: what the Pi's IPA
    /// caps a fixed `ExposureTime` to. The whole period where the line timing is unknown.
    pub fn longest_exposure_us(&self) -> Option<i64> {
        let period = self.frame_period_us?;
        Some(match self.line_timing {
            Some(line) => plan::longest_exposure_us(period, line),
            None => period,
        })
    }

    /// A camera behind Raspberry Pi's IPA on `handler`: the state its algorithms start in
    /// where `ControlInfo` says otherwise. `NoiseReductionMode`'s `ControlInfo` default is
    /// Off (the first value, `controls.cpp`), but the IPA starts denoising: on a Pi 5
    /// (`rpi.denoise`, `denoise.cpp`) in colour high quality, which it maps back to
    /// `HighQuality`; on a Pi 4 and earlier (`rpi.sdn`, `sdn.cpp`) in `ColourOff` (spatial
    /// denoise on, colour off), which `vc4.cpp` maps from `Minimal`. Only for controls the
    /// camera advertises.
    pub fn on_pi(mut self, handler: crate::camera::pi_guard::PiHandler) -> ControlFacts {
        use crate::camera::pi_guard::PiHandler;
        self.pipeline = Some(handler.name());
        let denoise = match handler {
            PiHandler::Pisp => NR_HIGH_QUALITY,
            PiHandler::Vc4 => NR_MINIMAL,
        };
        if self.has(Id::NoiseReductionMode) {
            self.starting
                .insert(Id::NoiseReductionMode, Value::Int(denoise));
        }
        self
    }

    /// The value `id` starts in: the recorded starting state, else the `ControlInfo`
    /// default; `None` for a control without either (a bool, or absent).
    pub fn starting_value(&self, id: Id) -> Option<Value> {
        if let Some(v) = self.starting.get(&id) {
            return Some(*v);
        }
        Some(match self.get(id)? {
            Limits::Enum { default, .. } => Value::Int(*default),
            Limits::Float { default, .. } => Value::Float(*default),
            Limits::Int { default, .. } => Value::Int(i32::try_from(*default).ok()?),
            Limits::Bool => return None,
        })
    }

    pub fn has(&self, id: Id) -> bool {
        self.controls.contains_key(&id)
    }

    pub(super) fn get(&self, id: Id) -> Option<&Limits> {
        self.controls.get(&id)
    }

    pub(super) fn accepts(&self, id: Id, v: i32) -> bool {
        match self.get(id) {
            Some(Limits::Enum { values, .. }) => values.contains(&v),
            Some(Limits::Int { min, max, .. }) => (*min..=*max).contains(&i64::from(v)),
            _ => false,
        }
    }
}

/// A value to set, in libcamera's types.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i32),
    Float(f32),
    Floats([f32; 2]),
}
