//! The pure plan: from the keys asked and the facts of one camera, the values to set and a
//! report per key; for a runtime change, the values that get there from what the camera runs.
//! Plain functions of recorded facts, so every decision is tested table-driven over the Pi
//! fixtures and the camera thread only applies the result.

use std::collections::BTreeMap;

use serde::Serialize;

use super::facts::{
    AF_CONTINUOUS, AF_TRIGGER_START, MODE_AUTO, af_mode_value, af_range_value, awb_value,
    denoise_value, exposure_mode_value, metering_value,
};
use super::keys::name;
use super::kinds::{
    auto_or_fixed, clamp_float, enumerated, float_key, no_control, no_control_or_value, widened,
};
use super::{AfMode, ControlFacts, ControlsConfig, Denoise, Id, KEYS, OrAuto, Value};
use crate::camera::pi_guard::PiHandler;

/// How one `[controls]` key fared on this camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Set as asked.
    Applied,
    /// Set, but changed to fit the camera (clamped to its limits).
    Adjusted,
    /// The camera does not advertise the control (or that value): not set, not an error.
    Unsupported,
}

/// The report for one key: what was asked, what is in force, and why they differ.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub status: Status,
    /// As asked (config or runtime).
    pub asked: serde_json::Value,
    /// In force on the camera; absent when unsupported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What to set on the camera, and the report per key.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// In order; a later entry for the same control wins.
    pub values: Vec<(Id, Value)>,
    pub reports: BTreeMap<&'static str, Report>,
}

impl Plan {
    pub(super) fn set(&mut self, id: Id, v: Value) {
        self.values.retain(|(i, _)| *i != id);
        self.values.push((id, v));
    }

    pub(super) fn report(
        &mut self,
        key: &'static str,
        status: Status,
        asked: impl Serialize,
        value: Option<serde_json::Value>,
        note: Option<String>,
    ) {
        let asked = tidy(serde_json::to_value(asked).unwrap_or(serde_json::Value::Null));
        let value = value.map(tidy);
        self.reports.insert(
            key,
            Report {
                status,
                asked,
                value,
                note,
            },
        );
    }

    pub(super) fn unsupported(&mut self, key: &'static str, asked: impl Serialize, why: String) {
        self.report(key, Status::Unsupported, asked, None, Some(why));
    }

    /// The value of control `id` this plan sets, if any.
    pub fn value(&self, id: Id) -> Option<Value> {
        self.values.iter().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }
}

/// Numbers in reports as written (0.1, not the 0.10000000149011612 an f32 widens to): every
/// fractional number here comes from an f32, so its shortest f32 form is the true one.
fn tidy(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::Number(n) if n.is_f64() => {
            let short = (n.as_f64().unwrap_or(0.0) as f32).to_string();
            short.parse::<f64>().map(J::from).unwrap_or(J::Number(n))
        }
        J::Array(a) => J::Array(a.into_iter().map(tidy).collect()),
        other => other,
    }
}

/// The plan for `config` on a camera with `facts`. Where the camera has autofocus and the
/// config says nothing about focus, autofocus is continuous (what rpicam-apps does; the Pi
/// starts in manual focus at 1 m, useless for close work).
pub fn plan(config: &ControlsConfig, facts: &ControlFacts) -> Plan {
    let mut p = Plan::default();
    for (key, step) in STEPS {
        step(&mut p, facts, key, config);
    }
    p
}

/// One key's part of a plan: reads its key (and any key it depends on) from the config.
type Step = fn(&mut Plan, &ControlFacts, &'static str, &ControlsConfig);

/// Every key and how it is planned, in the order of [`KEYS`]. The order is behaviour: the
/// values are set in it, and a later value for the same control wins. Most keys are one kind
/// of control ([`enumerated`], [`float_key`], [`auto_or_fixed`]); the few with rules of their
/// own (focus, white balance) have a function below. A table rather than one long function,
/// so that a new key is one row, in its place among the others.
const STEPS: [(&str, Step); 15] = [
    // Focus.
    ("af-mode", af_mode),
    ("af-range", |p, f, key, c| {
        enumerated(p, f, key, Id::AfRange, c.af_range, af_range_value)
    }),
    ("lens-position", lens_position),
    // Exposure.
    ("exposure-time", |p, f, key, c| {
        // Checked to be 1 to i32::MAX microseconds (`ControlsConfig::check`): exact in an f64.
        let asked = c.exposure_time.map(|e| e.map(|t| t as f64));
        auto_or_fixed(p, f, key, asked, Id::ExposureTime, Id::ExposureTimeMode)
    }),
    ("analogue-gain", |p, f, key, c| {
        let asked = widened(c.analogue_gain);
        auto_or_fixed(p, f, key, asked, Id::AnalogueGain, Id::AnalogueGainMode)
    }),
    ("exposure-mode", |p, f, key, c| {
        let asked = c.exposure_mode;
        enumerated(p, f, key, Id::AeExposureMode, asked, exposure_mode_value)
    }),
    ("metering", |p, f, key, c| {
        enumerated(p, f, key, Id::AeMeteringMode, c.metering, metering_value)
    }),
    ("ev", |p, f, key, c| {
        float_key(p, f, key, Id::ExposureValue, c.ev)
    }),
    // White balance.
    ("awb-mode", awb_mode),
    ("colour-gains", colour_gains),
    // Picture tuning.
    ("brightness", |p, f, key, c| {
        float_key(p, f, key, Id::Brightness, c.brightness)
    }),
    ("contrast", |p, f, key, c| {
        float_key(p, f, key, Id::Contrast, c.contrast)
    }),
    ("saturation", |p, f, key, c| {
        float_key(p, f, key, Id::Saturation, c.saturation)
    }),
    ("sharpness", |p, f, key, c| {
        float_key(p, f, key, Id::Sharpness, c.sharpness)
    }),
    ("denoise", |p, f, key, c| {
        enumerated(p, f, key, Id::NoiseReductionMode, c.denoise, denoise_value);
        // A Pi 5's IPA maps every mode but Off to colour high quality (`pisp.cpp`
        // `handleControls`): "fast" is accepted, and is high quality there.
        if f.pipeline == Some(PiHandler::Pisp.name()) && c.denoise == Some(Denoise::Fast) {
            if let Some(r) = p
                .reports
                .get_mut(key)
                .filter(|r| r.status == Status::Applied)
            {
                r.note =
                    Some("on a Raspberry Pi 5 every denoise mode but off is high quality".into());
            }
        }
    }),
];

/// `af-mode`, also when only `lens-position` is set (it implies manual focus), and the
/// default of continuous autofocus.
fn af_mode(p: &mut Plan, facts: &ControlFacts, key: &'static str, config: &ControlsConfig) {
    let af_asked = config
        .af_mode
        .or(config.lens_position.map(|_| AfMode::Manual));
    match (af_asked, facts.has(Id::AfMode)) {
        (Some(m), true) if facts.accepts(Id::AfMode, af_mode_value(m)) => {
            p.set(Id::AfMode, Value::Int(af_mode_value(m)));
            // "auto" focuses when triggered: once now (start, or the change that set it).
            if m == AfMode::Auto && facts.accepts(Id::AfTrigger, AF_TRIGGER_START) {
                p.set(Id::AfTrigger, Value::Int(AF_TRIGGER_START));
            }
            if config.af_mode.is_some() {
                p.report(key, Status::Applied, m, Some(name(&m).into()), None);
            }
        }
        (Some(m), true) => {
            p.unsupported(key, m, format!("the camera's AfMode has no {:?}", name(&m)))
        }
        (Some(m), false) => {
            if config.af_mode.is_some() {
                p.unsupported(key, m, "the camera has no autofocus (AfMode)".into());
            }
        }
        (None, true) if facts.accepts(Id::AfMode, AF_CONTINUOUS) => {
            p.set(Id::AfMode, Value::Int(AF_CONTINUOUS));
            p.report(
                key,
                Status::Applied,
                serde_json::Value::Null,
                Some("continuous".into()),
                Some("default: continuous autofocus where the camera has it".into()),
            );
        }
        (None, _) => {}
    }
}

/// `lens-position`: only where the camera has autofocus too (the lens is moved in its
/// manual mode, which `af_mode` sets).
fn lens_position(p: &mut Plan, facts: &ControlFacts, key: &'static str, config: &ControlsConfig) {
    let Some(pos) = config.lens_position else {
        return;
    };
    match (facts.get(Id::LensPosition), facts.has(Id::AfMode)) {
        (Some(limits), true) => {
            let (v, note) = clamp_float(pos, limits);
            p.set(Id::LensPosition, Value::Float(v));
            let status = if note.is_some() {
                Status::Adjusted
            } else {
                Status::Applied
            };
            p.report(key, status, pos, Some(v.into()), note);
        }
        _ => p.unsupported(
            key,
            pos,
            "the camera has no lens to move (LensPosition)".into(),
        ),
    }
}

/// `awb-mode`: a preset also switches automatic white balance on, where there is a switch.
fn awb_mode(p: &mut Plan, facts: &ControlFacts, key: &'static str, config: &ControlsConfig) {
    let Some(m) = config.awb_mode else { return };
    if facts.accepts(Id::AwbMode, awb_value(m)) {
        if facts.has(Id::AwbEnable) {
            p.set(Id::AwbEnable, Value::Bool(true));
        }
        p.set(Id::AwbMode, Value::Int(awb_value(m)));
        p.report(key, Status::Applied, m, Some(name(&m).into()), None);
    } else {
        p.unsupported(key, m, no_control_or_value(facts, Id::AwbMode, &m));
    }
}

/// `colour-gains`: fixed gains switch automatic white balance off; "auto" back on.
fn colour_gains(p: &mut Plan, facts: &ControlFacts, key: &'static str, config: &ControlsConfig) {
    match config.colour_gains {
        None => {}
        Some(g) if !facts.has(Id::ColourGains) => {
            p.unsupported(key, g, no_control(Id::ColourGains));
        }
        Some(OrAuto::Auto) => {
            // AwbEnable where there is one; else gains of 0, which the Pi reads as "auto".
            if facts.has(Id::AwbEnable) {
                p.set(Id::AwbEnable, Value::Bool(true));
            } else {
                p.set(Id::ColourGains, Value::Floats([0.0, 0.0]));
            }
            p.report(key, Status::Applied, "auto", Some("auto".into()), None);
        }
        Some(OrAuto::Fixed([r, b])) => {
            let limits = facts.get(Id::ColourGains).expect("checked above");
            let (rc, n1) = clamp_float(r, limits);
            let (bc, n2) = clamp_float(b, limits);
            p.set(Id::ColourGains, Value::Floats([rc, bc]));
            let note = n1.or(n2);
            let status = if note.is_some() {
                Status::Adjusted
            } else {
                Status::Applied
            };
            p.report(key, status, [r, b], Some(serde_json::json!([rc, bc])), note);
        }
    }
}

/// The values that take the camera back to its own behaviour for `key` once a runtime value
/// is removed (libcamera controls persist until set again).
fn restore(key: &str, facts: &ControlFacts, p: &mut Plan) {
    // The state the camera starts in, not libcamera's `ControlInfo` default (see
    // `ControlFacts::on_pi`): restoring must give back what a fresh start gives.
    let mut default = |id: Id| {
        if let Some(v) = facts.starting_value(id) {
            p.set(id, v);
        }
    };
    match key {
        "af-range" => default(Id::AfRange),
        "exposure-mode" => default(Id::AeExposureMode),
        "metering" => default(Id::AeMeteringMode),
        "ev" => default(Id::ExposureValue),
        "brightness" => default(Id::Brightness),
        "contrast" => default(Id::Contrast),
        "saturation" => default(Id::Saturation),
        "sharpness" => default(Id::Sharpness),
        "denoise" => default(Id::NoiseReductionMode),
        "awb-mode" if facts.has(Id::AwbMode) => p.set(Id::AwbMode, Value::Int(0)),
        "exposure-time" | "analogue-gain" => {
            let mode = if key == "exposure-time" {
                Id::ExposureTimeMode
            } else {
                Id::AnalogueGainMode
            };
            if facts.has(mode) {
                p.set(mode, Value::Int(MODE_AUTO));
            } else if facts.has(Id::AeEnable) {
                p.set(Id::AeEnable, Value::Bool(true));
            }
        }
        "colour-gains" => {
            if facts.has(Id::AwbEnable) {
                p.set(Id::AwbEnable, Value::Bool(true));
            } else if facts.has(Id::ColourGains) {
                p.set(Id::ColourGains, Value::Floats([0.0, 0.0]));
            }
        }
        // af-mode and lens-position: the new plan sets AfMode (default continuous).
        _ => {}
    }
}

/// The plan that takes a camera running `old` to `new`: restores for the keys `new` no
/// longer sets, then everything `new` sets.
pub fn plan_change(old: &ControlsConfig, new: &ControlsConfig, facts: &ControlFacts) -> Plan {
    let was = serde_json::to_value(old).unwrap_or_default();
    let is = serde_json::to_value(new).unwrap_or_default();
    let mut p = Plan::default();
    for key in KEYS {
        if was.get(key).is_some() && is.get(key).is_none() {
            restore(key, facts, &mut p);
        }
    }
    let next = plan(new, facts);
    for (id, v) in &next.values {
        // A new scan only when af-mode changed, not with every other change.
        if *id == Id::AfTrigger && old.af_mode == new.af_mode {
            continue;
        }
        p.set(*id, *v);
    }
    p.reports = next.reports;
    p
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::camera::controls::Limits;
    use crate::camera::controls::facts::{AF_AUTO, AF_MANUAL};
    use crate::camera::controls::fixtures;
    use crate::camera::controls::test_util::{cameras, status, toml};

    #[test]
    fn default_is_continuous_autofocus_where_the_camera_has_it_and_nothing_else() {
        for (cam, facts) in cameras() {
            let p = plan(&ControlsConfig::default(), &facts);
            if cam.starts_with("imx708") {
                assert_eq!(
                    p.values,
                    vec![(Id::AfMode, Value::Int(AF_CONTINUOUS))],
                    "{cam}"
                );
                assert_eq!(status(&p, "af-mode"), Some(Status::Applied), "{cam}");
            } else {
                assert!(p.values.is_empty(), "{cam}: {:?}", p.values);
                assert!(p.reports.is_empty(), "{cam}");
            }
        }
    }

    #[test]
    fn focus_for_close_work_per_camera() {
        // 4 dioptres = 25 cm.
        let c = toml("lens-position = 4\naf-range = \"macro\"");
        for (cam, facts) in cameras() {
            let p = plan(&c, &facts);
            if cam.starts_with("imx708") {
                assert_eq!(p.value(Id::AfMode), Some(Value::Int(AF_MANUAL)), "{cam}");
                assert_eq!(p.value(Id::LensPosition), Some(Value::Float(4.0)), "{cam}");
                assert_eq!(p.value(Id::AfRange), Some(Value::Int(1)), "{cam}");
                assert_eq!(status(&p, "lens-position"), Some(Status::Applied));
            } else {
                assert_eq!(p.value(Id::LensPosition), None, "{cam}");
                assert_eq!(p.value(Id::AfMode), None, "{cam}");
                assert_eq!(
                    status(&p, "lens-position"),
                    Some(Status::Unsupported),
                    "{cam}"
                );
                assert_eq!(status(&p, "af-range"), Some(Status::Unsupported), "{cam}");
            }
        }
    }

    #[test]
    fn enumerated_keys_map_to_libcamera_values() {
        let c = toml(
            "exposure-mode = \"long\"\nmetering = \"spot\"\nawb-mode = \"daylight\"\ndenoise = \"high-quality\"\naf-mode = \"auto\"",
        );
        let p = plan(&c, &fixtures::imx708_pisp());
        assert_eq!(p.value(Id::AeExposureMode), Some(Value::Int(2)));
        assert_eq!(p.value(Id::AeMeteringMode), Some(Value::Int(1)));
        assert_eq!(p.value(Id::AwbMode), Some(Value::Int(5)));
        assert_eq!(p.value(Id::AwbEnable), Some(Value::Bool(true)));
        assert_eq!(p.value(Id::NoiseReductionMode), Some(Value::Int(2)));
        assert_eq!(p.value(Id::AfMode), Some(Value::Int(AF_AUTO)));
        assert_eq!(p.value(Id::AfTrigger), Some(Value::Int(AF_TRIGGER_START)));
        // Auto focus scans once when set, not again with every other change.
        let later = c.merged(&toml("ev = 1"));
        let change = plan_change(&c, &later, &fixtures::imx708_pisp());
        assert_eq!(change.value(Id::AfTrigger), None);
        let change = plan_change(&ControlsConfig::default(), &c, &fixtures::imx708_pisp());
        assert_eq!(
            change.value(Id::AfTrigger),
            Some(Value::Int(AF_TRIGGER_START))
        );
        assert!(
            p.reports.values().all(|r| r.status == Status::Applied),
            "{:?}",
            p.reports
        );
        // A camera that lists fewer values: that value is unsupported, the others still set.
        let few = fixtures::imx219().with(Id::AwbMode, enumerated_limits(&[0, 1]));
        let p = plan(&c, &few);
        assert_eq!(status(&p, "awb-mode"), Some(Status::Unsupported));
        assert_eq!(p.value(Id::AwbMode), None);
        assert_eq!(status(&p, "metering"), Some(Status::Applied));
        assert_eq!(status(&p, "af-mode"), Some(Status::Unsupported));
    }

    fn enumerated_limits(v: &[i32]) -> Limits {
        Limits::Enum {
            values: v.to_vec(),
            default: v[0],
        }
    }

    #[test]
    fn every_key_on_a_camera_without_controls_is_unsupported_not_an_error() {
        let c = toml(
            "af-mode = \"continuous\"\naf-range = \"full\"\nexposure-time = 1000\nanalogue-gain = 1.5\n\
             exposure-mode = \"short\"\nmetering = \"matrix\"\nev = 0.5\nawb-mode = \"cloudy\"\n\
             brightness = 0.1\ncontrast = 1.2\nsaturation = 0.8\nsharpness = 2\ndenoise = \"off\"",
        );
        let p = plan(&c, &ControlFacts::none());
        assert!(p.values.is_empty());
        assert_eq!(p.reports.len(), 13);
        assert!(
            p.reports
                .values()
                .all(|r| r.status == Status::Unsupported && r.value.is_none())
        );
    }

    #[test]
    fn every_key_is_planned_once_in_the_order_of_keys() {
        let planned: Vec<&str> = STEPS.iter().map(|(key, _)| *key).collect();
        assert_eq!(planned, KEYS);
    }

    /// Issue 20: restoring `denoise` gave `NoiseReductionMode`'s `ControlInfo` default, Off
    /// (the first value), while the Pi's IPA starts denoising. Restore means "the state the
    /// camera starts in", per pipeline.
    #[test]
    fn removing_denoise_restores_the_state_the_pi_starts_in_not_off() {
        let old = toml("denoise = \"off\"");
        let new = ControlsConfig::default();
        let table: &[(ControlFacts, Option<Value>)] = &[
            // Pi 5: rpi.denoise starts in colour high quality.
            (
                fixtures::imx708_pisp(),
                Some(Value::Int(super::super::facts::NR_HIGH_QUALITY)),
            ),
            // Pi 4: rpi.sdn starts in ColourOff, libcamera's Minimal.
            (
                fixtures::imx708_vc4(),
                Some(Value::Int(super::super::facts::NR_MINIMAL)),
            ),
            (fixtures::imx219_vc4(), Some(Value::Int(3))),
            (fixtures::imx477(), Some(Value::Int(2))),
            // No such control: nothing to restore.
            (ControlFacts::none(), None),
        ];
        for (facts, want) in table {
            let p = plan_change(&old, &new, facts);
            assert_eq!(
                p.value(Id::NoiseReductionMode),
                *want,
                "{:?}",
                facts.pipeline
            );
            assert_ne!(p.value(Id::NoiseReductionMode), Some(Value::Int(0)));
        }
        // Every other control restores to its start too: the ControlInfo defaults, which the
        // Pi's IPA starts in (ipa_base.cpp, agc/awb/contrast/ccm/sharpen).
        let old = toml(
            "ev = 1\nbrightness = 0.3\ncontrast = 2\nsaturation = 0\nsharpness = 4\nmetering = \"spot\"\nexposure-mode = \"long\"\naf-range = \"macro\"",
        );
        let p = plan_change(&old, &new, &fixtures::imx708_pisp());
        for (id, want) in [
            (Id::ExposureValue, Value::Float(0.0)),
            (Id::Brightness, Value::Float(0.0)),
            (Id::Contrast, Value::Float(1.0)),
            (Id::Saturation, Value::Float(1.0)),
            (Id::Sharpness, Value::Float(1.0)),
            (Id::AeMeteringMode, Value::Int(0)),
            (Id::AeExposureMode, Value::Int(0)),
            (Id::AfRange, Value::Int(0)),
        ] {
            assert_eq!(p.value(id), Some(want), "{id:?}");
        }
    }

    #[test]
    fn fast_denoise_on_a_pi_5_says_it_is_high_quality() {
        let c = toml("denoise = \"fast\"");
        let p = plan(&c, &fixtures::imx708_pisp());
        assert_eq!(status(&p, "denoise"), Some(Status::Applied));
        assert!(
            p.reports["denoise"]
                .note
                .as_deref()
                .is_some_and(|n| n.contains("high quality")),
            "{:?}",
            p.reports["denoise"]
        );
        let p = plan(&c, &fixtures::imx708_vc4());
        assert_eq!(p.reports["denoise"].note, None);
    }

    #[test]
    fn removing_a_runtime_value_restores_the_camera_behaviour() {
        let facts = fixtures::imx708_pisp();
        let old = toml(
            "exposure-time = 8000\ncolour-gains = [1.2, 1.9]\nbrightness = 0.3\nlens-position = 2",
        );
        let p = plan_change(&old, &ControlsConfig::default(), &facts);
        assert_eq!(p.value(Id::ExposureTimeMode), Some(Value::Int(MODE_AUTO)));
        assert_eq!(p.value(Id::AwbEnable), Some(Value::Bool(true)));
        assert_eq!(p.value(Id::Brightness), Some(Value::Float(0.0)));
        assert_eq!(p.value(Id::AfMode), Some(Value::Int(AF_CONTINUOUS)));
        assert_eq!(p.value(Id::ExposureTime), None);
    }

    /// What a change sets, exactly, per camera: removing a key gives back the camera's own
    /// behaviour by the controls that camera has (the mode switches, or `AeEnable` and gains
    /// of 0 on a camera without them), and setting one key sets that key only.
    #[test]
    fn a_change_sets_exactly_what_each_camera_needs() {
        // A camera with the older controls only: no exposure or gain mode, no AwbEnable.
        let older = ControlFacts::none()
            .with(Id::AeEnable, Limits::Bool)
            .with(
                Id::ExposureTime,
                Limits::Int {
                    min: 100,
                    max: 1_000_000,
                    default: 20_000,
                },
            )
            .with(
                Id::AnalogueGain,
                Limits::Float {
                    min: 1.0,
                    max: 16.0,
                    default: 1.0,
                },
            )
            .with(Id::AwbMode, enumerated_limits(&[0, 1, 2]))
            .with(
                Id::ColourGains,
                Limits::Float {
                    min: 0.0,
                    max: 32.0,
                    default: 0.0,
                },
            );
        let auto = Value::Int(MODE_AUTO);
        // (was, is, camera, values set)
        type Case = (&'static str, &'static str, ControlFacts, Vec<(Id, Value)>);
        let table: Vec<Case> = vec![
            (
                "awb-mode = \"daylight\"",
                "",
                fixtures::imx219(),
                vec![(Id::AwbMode, Value::Int(0))],
            ),
            (
                "awb-mode = \"daylight\"",
                "",
                older.clone(),
                vec![(Id::AwbMode, Value::Int(0))],
            ),
            ("awb-mode = \"daylight\"", "", ControlFacts::none(), vec![]),
            (
                "exposure-time = 8000",
                "",
                fixtures::imx219(),
                vec![(Id::ExposureTimeMode, auto)],
            ),
            (
                "analogue-gain = 2.0",
                "",
                fixtures::imx219(),
                vec![(Id::AnalogueGainMode, auto)],
            ),
            (
                "exposure-time = 8000",
                "",
                older.clone(),
                vec![(Id::AeEnable, Value::Bool(true))],
            ),
            (
                "analogue-gain = 2.0",
                "",
                older.clone(),
                vec![(Id::AeEnable, Value::Bool(true))],
            ),
            ("analogue-gain = 2.0", "", ControlFacts::none(), vec![]),
            (
                "colour-gains = [1.5, 1.8]",
                "",
                fixtures::imx219(),
                vec![(Id::AwbEnable, Value::Bool(true))],
            ),
            (
                "colour-gains = [1.5, 1.8]",
                "",
                older.clone(),
                vec![(Id::ColourGains, Value::Floats([0.0, 0.0]))],
            ),
            (
                "colour-gains = [1.5, 1.8]",
                "",
                ControlFacts::none(),
                vec![],
            ),
            // Setting one key sets it alone: nothing restored that was never set, no scan.
            (
                "",
                "ev = 1",
                fixtures::imx219(),
                vec![(Id::ExposureValue, Value::Float(1.0))],
            ),
            (
                "",
                "ev = 1",
                fixtures::imx708_pisp(),
                vec![
                    (Id::AfMode, Value::Int(AF_CONTINUOUS)),
                    (Id::ExposureValue, Value::Float(1.0)),
                ],
            ),
            // Only "auto" focus scans; continuous and manual focus do not trigger.
            (
                "",
                "af-mode = \"continuous\"",
                fixtures::imx708_pisp(),
                vec![(Id::AfMode, Value::Int(AF_CONTINUOUS))],
            ),
            (
                "",
                "af-mode = \"manual\"",
                fixtures::imx708_pisp(),
                vec![(Id::AfMode, Value::Int(AF_MANUAL))],
            ),
        ];
        for (was, is, facts, want) in table {
            let p = plan_change(&toml(was), &toml(is), &facts);
            assert_eq!(p.values, want, "{was:?} -> {is:?} on {facts:?}");
        }
    }

    /// A camera whose AfMode lacks the mode asked (or continuous, the default): nothing set,
    /// and the key asked is reported unsupported; gains on a camera without ColourGains too.
    #[test]
    fn a_mode_or_control_the_camera_lacks_is_not_set() {
        let manual_only = fixtures::imx219().with(Id::AfMode, enumerated_limits(&[AF_MANUAL]));
        let p = plan(&ControlsConfig::default(), &manual_only);
        assert_eq!(p.values, vec![]);
        assert!(p.reports.is_empty(), "{:?}", p.reports);
        let p = plan(&toml("af-mode = \"continuous\""), &manual_only);
        assert_eq!(p.values, vec![]);
        assert_eq!(status(&p, "af-mode"), Some(Status::Unsupported));
        for gains in ["colour-gains = [1.5, 1.8]", "colour-gains = \"auto\""] {
            let p = plan(&toml(gains), &ControlFacts::none());
            assert_eq!(p.values, vec![], "{gains}");
            assert_eq!(
                status(&p, "colour-gains"),
                Some(Status::Unsupported),
                "{gains}"
            );
        }
    }

    /// The Pi 5 note is for "fast" alone: high quality on a Pi 5 is what it says.
    #[test]
    fn only_fast_denoise_on_a_pi_5_has_the_note() {
        let p = plan(
            &toml("denoise = \"high-quality\""),
            &fixtures::imx708_pisp(),
        );
        assert_eq!(status(&p, "denoise"), Some(Status::Applied));
        assert_eq!(p.reports["denoise"].note, None);
    }

    /// Reports show numbers as written in the config (0.1), not as the f32 they were read
    /// into widens them (0.10000000149011612), asked and in force, alone and in arrays.
    #[test]
    fn reports_show_numbers_as_written() {
        let p = plan(
            &toml("brightness = 0.1\ncolour-gains = [1.1, 2.3]"),
            &fixtures::imx219(),
        );
        let b = &p.reports["brightness"];
        assert_eq!((&b.asked, &b.value), (&json!(0.1), &Some(json!(0.1))));
        let g = &p.reports["colour-gains"];
        assert_eq!(
            (&g.asked, &g.value),
            (&json!([1.1, 2.3]), &Some(json!([1.1, 2.3])))
        );
    }
}
