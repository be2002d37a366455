//! Controls advertised by real Raspberry Pi cameras after `configure()`, for tests and for
//! the test pattern (`PICKER_TEST_CONTROLS=imx708`). From the Pi IPA's control tables
//! (`ipa_base.cpp`: `ipaControls`, `ipaColourControls`, `ipaAfControls`; the AF controls only
//! where a lens driver is present), with the per-mode limits `IpaBase::configure` fills in:
//! `AnalogueGain` up to the sensor's maximum gain code through its cam helper, `LensPosition`
//! the tuning file's focus map (IMX708: 0 to 15 dioptres, default 1.0). `ExposureTime` limits
//! depend on the sensor mode; the ones here are those of the full-field binned mode, rounded.
//!
//! Beside the plan's tests because they are its inputs, yet compiled in every build: the
//! test pattern reads them at run time, so `/controls` is tested through the binary too.

use super::{ControlFacts, Id, Limits};
use crate::camera::pi_guard::PiHandler;

fn float(min: f32, max: f32, default: f32) -> Limits {
    Limits::Float { min, max, default }
}

fn enumerated(values: &[i32]) -> Limits {
    Limits::Enum {
        values: values.to_vec(),
        default: values[0],
    }
}

/// What every Pi camera with a colour sensor has (vc4 and pisp alike).
fn pi_common(exposure: (i64, i64), max_gain: f32) -> ControlFacts {
    ControlFacts::none()
        .with(Id::AeEnable, Limits::Bool)
        .with(Id::ExposureTimeMode, enumerated(&[0, 1]))
        .with(
            Id::ExposureTime,
            Limits::Int {
                min: exposure.0,
                max: exposure.1,
                default: 20_000,
            },
        )
        .with(Id::AnalogueGainMode, enumerated(&[0, 1]))
        .with(Id::AnalogueGain, float(1.0, max_gain, 1.0))
        .with(Id::AeMeteringMode, enumerated(&[0, 1, 2, 3]))
        .with(Id::AeExposureMode, enumerated(&[0, 1, 2, 3]))
        .with(Id::ExposureValue, float(-8.0, 8.0, 0.0))
        .with(Id::Brightness, float(-1.0, 1.0, 0.0))
        .with(Id::Contrast, float(0.0, 32.0, 1.0))
        .with(Id::Sharpness, float(0.0, 16.0, 1.0))
        .with(Id::NoiseReductionMode, enumerated(&[0, 1, 2, 3, 4]))
        .with(Id::AwbEnable, Limits::Bool)
        .with(Id::AwbMode, enumerated(&[0, 1, 2, 3, 4, 5, 6, 7]))
        .with(Id::ColourGains, float(0.0, 32.0, 0.0))
        .with(Id::Saturation, float(0.0, 32.0, 1.0))
}

fn with_af(facts: ControlFacts, lens_max: f32) -> ControlFacts {
    facts
        .with(Id::AfMode, enumerated(&[0, 1, 2]))
        .with(Id::AfTrigger, enumerated(&[0, 1]))
        .with(Id::AfRange, enumerated(&[0, 1, 2]))
        .with(Id::LensPosition, float(0.0, lens_max, 1.0))
}

/// Camera Module 3 on a Pi 5 (pisp): autofocus, gain code 960 -> 16x.
pub fn imx708_pisp() -> ControlFacts {
    with_af(pi_common((26, 112_015_096), 16.0), 15.0).on_pi(PiHandler::Pisp)
}

/// Camera Module 3 on a Pi 4 (vc4): the same controls, another starting denoise.
pub fn imx708_vc4() -> ControlFacts {
    with_af(pi_common((26, 112_015_096), 16.0), 15.0).on_pi(PiHandler::Vc4)
}

/// Camera Module 2 on a Pi 5: no lens driver, so no AF controls; gain code 232 -> 10.67x.
pub fn imx219() -> ControlFacts {
    pi_common((75, 11_766_829), 10.666_667).on_pi(PiHandler::Pisp)
}

/// Camera Module 2 on a Pi 4 (vc4).
pub fn imx219_vc4() -> ControlFacts {
    pi_common((75, 11_766_829), 10.666_667).on_pi(PiHandler::Vc4)
}

/// HQ camera on a Pi 5: manual lens, no AF controls; gain code 978 -> 22.26x; very long
/// exposures.
pub fn imx477() -> ControlFacts {
    pi_common((114, 694_422_939), 22.260_87).on_pi(PiHandler::Pisp)
}

/// Camera Module 1 on a Pi 5: no AF; gain code 1023 -> 63.9x.
pub fn ov5647() -> ControlFacts {
    pi_common((130, 969_249), 63.937_5).on_pi(PiHandler::Pisp)
}

/// A fixture by name, for `PICKER_TEST_CONTROLS`.
pub fn by_name(name: &str) -> Option<ControlFacts> {
    Some(match name {
        "imx708" | "imx708-pisp" => imx708_pisp(),
        "imx708-vc4" => imx708_vc4(),
        "imx219" => imx219(),
        "imx219-vc4" => imx219_vc4(),
        "imx477" => imx477(),
        "ov5647" => ov5647(),
        "none" => ControlFacts::none(),
        _ => return None,
    })
}
