//! How each kind of control is planned, whatever the key: an enumerated value the camera
//! lists or not, a float clamped to the camera's range, a number or "auto" that switches the
//! camera's automatic algorithm off or on. Shared by the rows of the plan's table, so a new key
//! of a known kind needs no new logic; this changes when the camera's way with a kind does.

use serde::Serialize;

use super::facts::{MODE_AUTO, MODE_MANUAL};
use super::keys::name;
use super::{ControlFacts, Id, Limits, OrAuto, Plan, Status, Value};

pub(super) fn no_control(id: Id) -> String {
    format!("the camera has no {id:?} control")
}

/// Clamps `v` to a float control's limits: (value, note when clamped).
pub(super) fn clamp_float(v: f32, limits: &Limits) -> (f32, Option<String>) {
    match limits {
        Limits::Float { min, max, .. } if min <= max => {
            let c = v.clamp(*min, *max);
            let note = (c != v).then(|| format!("clamped to the camera's range {min} to {max}"));
            (c, note)
        }
        _ => (v, None),
    }
}

pub(super) fn no_control_or_value<T: Serialize>(facts: &ControlFacts, id: Id, v: &T) -> String {
    if facts.has(id) {
        format!("the camera's {id:?} has no {:?}", name(v))
    } else {
        no_control(id)
    }
}

/// An enumerated key: set when the camera lists the libcamera value (`value` of the asked).
pub(super) fn enumerated<T: Serialize + Copy>(
    p: &mut Plan,
    facts: &ControlFacts,
    key: &'static str,
    id: Id,
    asked: Option<T>,
    value: fn(T) -> i32,
) {
    let Some(asked) = asked else { return };
    let v = value(asked);
    if facts.accepts(id, v) {
        p.set(id, Value::Int(v));
        p.report(key, Status::Applied, asked, Some(name(&asked).into()), None);
    } else {
        p.unsupported(key, asked, no_control_or_value(facts, id, &asked));
    }
}

/// A float key: clamped to the camera's range; unsupported where the control is no float.
pub(super) fn float_key(
    p: &mut Plan,
    facts: &ControlFacts,
    key: &'static str,
    id: Id,
    v: Option<f32>,
) {
    let Some(v) = v else { return };
    match facts.get(id) {
        Some(limits @ Limits::Float { .. }) => {
            let (c, note) = clamp_float(v, limits);
            p.set(id, Value::Float(c));
            let status = if note.is_some() {
                Status::Adjusted
            } else {
                Status::Applied
            };
            p.report(key, status, v, Some(c.into()), note);
        }
        _ => p.unsupported(key, v, no_control(id)),
    }
}

/// A number or "auto" as [`auto_or_fixed`] takes it (every u32 and f32 is exact as an f64).
pub(super) fn widened<T: Into<f64>>(asked: Option<OrAuto<T>>) -> Option<OrAuto<f64>> {
    asked.map(|e| e.map(Into::into))
}

/// Exposure time and analogue gain: a fixed value switches the camera's automatic
/// algorithm off for it (`*Mode` manual; on libcamera before 0.5, `AeEnable` false), "auto"
/// switches it back on.
pub(super) fn auto_or_fixed(
    p: &mut Plan,
    facts: &ControlFacts,
    key: &'static str,
    asked: Option<OrAuto<f64>>,
    id: Id,
    mode: Id,
) {
    let Some(asked) = asked else { return };
    let shown = |v: OrAuto<f64>| match v {
        OrAuto::Auto => serde_json::Value::from("auto"),
        OrAuto::Fixed(x) if id == Id::ExposureTime => serde_json::Value::from(x as i64),
        OrAuto::Fixed(x) => serde_json::Value::from(x as f32),
    };
    let Some(limits) = facts.get(id) else {
        p.unsupported(key, shown(asked), no_control(id));
        return;
    };
    let manual = match asked {
        OrAuto::Auto => false,
        OrAuto::Fixed(_) => true,
    };
    if facts.has(mode) {
        p.set(
            mode,
            Value::Int(if manual { MODE_MANUAL } else { MODE_AUTO }),
        );
    } else if facts.has(Id::AeEnable) {
        p.set(Id::AeEnable, Value::Bool(!manual));
    }
    let OrAuto::Fixed(v) = asked else {
        p.report(key, Status::Applied, "auto", Some("auto".into()), None);
        return;
    };
    let (set, note) = match limits {
        Limits::Int { min, max, .. } if min <= max => {
            let mut c = (v as i64).clamp(*min, *max);
            let mut note =
                (c != v as i64).then(|| format!("clamped to the camera's range {min} to {max}"));
            // The camera would cap it silently to fit the frame; say so, and ask for what it
            // will do.
            if let (Some(period), Some(longest)) = (
                facts.frame_period_us,
                facts
                    .longest_exposure_us()
                    .filter(|l| id == Id::ExposureTime && c > *l),
            ) {
                c = longest;
                note = Some(format!(
                    "longer than a frame at the frame rate in force ({period} us per frame): \
                     the camera keeps the exposure within the frame, at most {longest} us; \
                     lower camera.framerate for a longer one"
                ));
            }
            p.set(id, Value::Int(c.clamp(0, i64::from(i32::MAX)) as i32));
            (serde_json::Value::from(c), note)
        }
        Limits::Float { .. } => {
            let (c, note) = clamp_float(v as f32, limits);
            p.set(id, Value::Float(c));
            (serde_json::Value::from(c), note)
        }
        _ => {
            p.unsupported(
                key,
                shown(asked),
                format!("the camera's {id:?} is not a number"),
            );
            return;
        }
    };
    let status = if note.is_some() {
        Status::Adjusted
    } else {
        Status::Applied
    };
    p.report(key, status, shown(asked), Some(set), note);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::controls::test_util::{cameras, status, toml};
    use crate::camera::controls::{fixtures, plan, plan_change};

    #[test]
    fn values_beyond_the_camera_limits_are_clamped_and_reported_adjusted() {
        struct Case {
            text: &'static str,
            cam: ControlFacts,
            key: &'static str,
            id: Id,
            want: Value,
        }
        let cases = [
            // The IMX708 focus map ends at 15 dioptres (the pre-configure 32 is a placeholder).
            Case {
                text: "lens-position = 20",
                cam: fixtures::imx708_pisp(),
                key: "lens-position",
                id: Id::LensPosition,
                want: Value::Float(15.0),
            },
            Case {
                text: "analogue-gain = 40.0",
                cam: fixtures::imx219(),
                key: "analogue-gain",
                id: Id::AnalogueGain,
                want: Value::Float(10.666_667),
            },
            Case {
                text: "analogue-gain = 40.0",
                cam: fixtures::ov5647(),
                key: "analogue-gain",
                id: Id::AnalogueGain,
                want: Value::Float(40.0),
            },
            Case {
                text: "exposure-time = 10",
                cam: fixtures::imx477(),
                key: "exposure-time",
                id: Id::ExposureTime,
                want: Value::Int(114),
            },
            Case {
                text: "exposure-time = 30000000",
                cam: fixtures::ov5647(),
                key: "exposure-time",
                id: Id::ExposureTime,
                want: Value::Int(969_249),
            },
            Case {
                text: "ev = 12",
                cam: fixtures::imx708_vc4(),
                key: "ev",
                id: Id::ExposureValue,
                want: Value::Float(8.0),
            },
            Case {
                text: "contrast = 40",
                cam: fixtures::imx477(),
                key: "contrast",
                id: Id::Contrast,
                want: Value::Float(32.0),
            },
            Case {
                text: "sharpness = 20",
                cam: fixtures::imx219(),
                key: "sharpness",
                id: Id::Sharpness,
                want: Value::Float(16.0),
            },
            Case {
                text: "colour-gains = [40.0, 1.5]",
                cam: fixtures::imx219(),
                key: "colour-gains",
                id: Id::ColourGains,
                want: Value::Floats([32.0, 1.5]),
            },
        ];
        for c in cases {
            let p = plan(&toml(c.text), &c.cam);
            assert_eq!(p.value(c.id), Some(c.want), "{}", c.text);
            let clamped = match c.want {
                Value::Float(40.0) => Status::Applied,
                _ => Status::Adjusted,
            };
            assert_eq!(
                status(&p, c.key),
                Some(clamped),
                "{}: {:?}",
                c.text,
                p.reports
            );
        }
    }

    /// A Pi caps a fixed exposure to the frame picker pinned (its IPA does so silently): an
    /// exposure longer than a frame is reported adjusted, and asked for as it will be.
    #[test]
    fn an_exposure_longer_than_the_frame_is_capped_to_the_frame_and_said_so() {
        let at_30 = fixtures::imx708_vc4().with_frame_period(Some(33_333));
        let p = plan(&toml("exposure-time = 50000"), &at_30);
        assert_eq!(p.value(Id::ExposureTime), Some(Value::Int(33_333)));
        let r = &p.reports["exposure-time"];
        assert_eq!(r.status, Status::Adjusted);
        assert_eq!(r.value, Some(serde_json::json!(33_333)));
        let note = r.note.as_deref().unwrap_or("");
        assert!(
            note.contains("33333 us per frame") && note.contains("camera.framerate"),
            "{note}"
        );
        // Within the frame: applied as asked.
        let p = plan(&toml("exposure-time = 33333"), &at_30);
        assert_eq!(p.reports["exposure-time"].status, Status::Applied);
        assert_eq!(p.value(Id::ExposureTime), Some(Value::Int(33_333)));
        // At 10 fps the same exposure fits.
        let at_10 = fixtures::imx708_vc4().with_frame_period(Some(100_000));
        let p = plan(&toml("exposure-time = 50000"), &at_10);
        assert_eq!(p.reports["exposure-time"].status, Status::Applied);
        assert_eq!(p.value(Id::ExposureTime), Some(Value::Int(50_000)));
        // No frame period pinned (no FrameDurationLimits): the camera's own range only.
        let p = plan(&toml("exposure-time = 50000"), &fixtures::imx708_vc4());
        assert_eq!(p.reports["exposure-time"].status, Status::Applied);
        // The gain is no exposure: never capped by the frame.
        let p = plan(&toml("analogue-gain = 8.0"), &at_30);
        assert_eq!(p.reports["analogue-gain"].status, Status::Applied);
        // A runtime change is planned the same way.
        let change = plan_change(
            &toml("exposure-time = 10000"),
            &toml("exposure-time = 40000"),
            &at_30,
        );
        assert_eq!(change.value(Id::ExposureTime), Some(Value::Int(33_333)));
    }

    /// A camera on libcamera before 0.5: `AeEnable`, no `ExposureTimeMode`.
    fn ae_enable_only() -> ControlFacts {
        ControlFacts::none().with(Id::AeEnable, Limits::Bool).with(
            Id::ExposureTime,
            Limits::Int {
                min: 1,
                max: 1_000_000,
                default: 0,
            },
        )
    }

    #[test]
    fn fixed_exposure_and_gain_switch_their_automatic_mode_off_and_auto_back_on() {
        let c = toml("exposure-time = 10000\nanalogue-gain = 2.0");
        for (cam, facts) in cameras() {
            let p = plan(&c, &facts);
            if cam == "virtual" {
                assert!(p.values.is_empty());
                assert_eq!(status(&p, "exposure-time"), Some(Status::Unsupported));
                assert_eq!(status(&p, "analogue-gain"), Some(Status::Unsupported));
                continue;
            }
            assert_eq!(
                p.value(Id::ExposureTimeMode),
                Some(Value::Int(MODE_MANUAL)),
                "{cam}"
            );
            assert_eq!(p.value(Id::ExposureTime), Some(Value::Int(10_000)), "{cam}");
            assert_eq!(
                p.value(Id::AnalogueGainMode),
                Some(Value::Int(MODE_MANUAL)),
                "{cam}"
            );
            assert_eq!(p.value(Id::AnalogueGain), Some(Value::Float(2.0)), "{cam}");
        }
        let p = plan(&toml("exposure-time = \"auto\""), &fixtures::imx219());
        assert_eq!(
            p.values,
            vec![(Id::ExposureTimeMode, Value::Int(MODE_AUTO))]
        );
        // libcamera before 0.5 has only AeEnable.
        let old = ae_enable_only();
        let p = plan(&toml("exposure-time = 5000"), &old);
        assert_eq!(p.value(Id::AeEnable), Some(Value::Bool(false)));
        assert_eq!(p.value(Id::ExposureTime), Some(Value::Int(5000)));
    }

    /// What a report says, not only its status: the value asked as written (an exposure in
    /// whole microseconds, a gain as a float), the value in force, and why they differ.
    #[test]
    fn reports_show_the_asked_value_the_value_in_force_and_why() {
        use serde_json::json;
        type J = serde_json::Value;
        // (TOML, camera, key, asked, in force, note)
        type Row = (
            &'static str,
            ControlFacts,
            &'static str,
            J,
            Option<J>,
            Option<&'static str>,
        );
        let table: [Row; 8] = [
            (
                "exposure-time = 10",
                fixtures::imx477(),
                "exposure-time",
                json!(10),
                Some(json!(114)),
                Some("clamped to the camera's range 114 to 694422939"),
            ),
            (
                "exposure-time = 5000",
                fixtures::imx477(),
                "exposure-time",
                json!(5000),
                Some(json!(5000)),
                None,
            ),
            (
                "analogue-gain = 1.5",
                fixtures::imx477(),
                "analogue-gain",
                json!(1.5),
                Some(json!(1.5)),
                None,
            ),
            (
                "ev = 9",
                fixtures::imx477(),
                "ev",
                json!(9.0),
                Some(json!(8.0)),
                Some("clamped to the camera's range -8 to 8"),
            ),
            (
                "ev = 1",
                ControlFacts::none(),
                "ev",
                json!(1.0),
                None,
                Some("the camera has no ExposureValue control"),
            ),
            (
                "exposure-time = 1000",
                ControlFacts::none(),
                "exposure-time",
                json!(1000),
                None,
                Some("the camera has no ExposureTime control"),
            ),
            (
                "analogue-gain = 1.5",
                ControlFacts::none(),
                "analogue-gain",
                json!(1.5),
                None,
                Some("the camera has no AnalogueGain control"),
            ),
            (
                "metering = \"spot\"",
                ControlFacts::none().with(
                    Id::AeMeteringMode,
                    Limits::Enum {
                        values: vec![0],
                        default: 0,
                    },
                ),
                "metering",
                json!("spot"),
                None,
                Some("the camera's AeMeteringMode has no \"spot\""),
            ),
        ];
        for (text, cam, key, asked, value, note) in table {
            let r = &plan(&toml(text), &cam).reports[key];
            assert_eq!(r.asked, asked, "{text}");
            assert_eq!(r.value, value, "{text}");
            assert_eq!(r.note.as_deref(), note, "{text}");
        }
    }

    /// Limits a camera reports upside down (minimum above maximum) are no range: the value is
    /// passed on as asked for a float, refused for an integer, and nothing panics.
    #[test]
    fn limits_upside_down_are_not_clamped_to() {
        let float = ControlFacts::none().with(
            Id::Brightness,
            Limits::Float {
                min: 1.0,
                max: -1.0,
                default: 0.0,
            },
        );
        let p = plan(&toml("brightness = 0.5"), &float);
        assert_eq!(p.value(Id::Brightness), Some(Value::Float(0.5)));
        assert_eq!(status(&p, "brightness"), Some(Status::Applied));
        let int = ControlFacts::none().with(
            Id::ExposureTime,
            Limits::Int {
                min: 10,
                max: 1,
                default: 5,
            },
        );
        let p = plan(&toml("exposure-time = 5"), &int);
        assert_eq!(p.value(Id::ExposureTime), None);
        let r = &p.reports["exposure-time"];
        assert_eq!(r.status, Status::Unsupported);
        assert_eq!(
            r.note.as_deref(),
            Some("the camera's ExposureTime is not a number")
        );
        // "auto" on a camera with only AeEnable switches it back on.
        let old = ae_enable_only();
        let p = plan(&toml("exposure-time = \"auto\""), &old);
        assert_eq!(p.values, vec![(Id::AeEnable, Value::Bool(true))]);
    }
}
