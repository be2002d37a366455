//! The edge between [`super::controls`] and libcamera: reads which of our controls a
//! configured camera advertises ([`facts`], from `Camera::controls()` after `configure()`,
//! when the Pi has replaced its placeholder limits with the sensor mode's), and writes a
//! plan's values into a `ControlList` ([`add`]). Everything else about controls is pure and
//! lives in `controls`.

use libcamera::control::{ControlInfo, ControlInfoMap, ControlList};
use libcamera::control_value::ControlValue;
use libcamera::controls::ControlId;

use super::controls::{ControlFacts, Id, Limits, Value};

/// libcamera's id of each control we set. `NoiseReductionMode` is a draft control (the
/// crate's `vendor_draft` feature).
fn libcamera_id(id: Id) -> Option<ControlId> {
    Some(match id {
        Id::AfMode => ControlId::AfMode,
        Id::AfTrigger => ControlId::AfTrigger,
        Id::AfRange => ControlId::AfRange,
        Id::LensPosition => ControlId::LensPosition,
        Id::AeEnable => ControlId::AeEnable,
        #[cfg(libcamera_mode_controls)]
        Id::ExposureTimeMode => ControlId::ExposureTimeMode,
        Id::ExposureTime => ControlId::ExposureTime,
        #[cfg(libcamera_mode_controls)]
        Id::AnalogueGainMode => ControlId::AnalogueGainMode,
        // libcamera before 0.5 (Debian trixie's 0.4) has no such controls: never advertised.
        #[cfg(not(libcamera_mode_controls))]
        Id::ExposureTimeMode | Id::AnalogueGainMode => return None,
        Id::AnalogueGain => ControlId::AnalogueGain,
        Id::AeExposureMode => ControlId::AeExposureMode,
        Id::AeMeteringMode => ControlId::AeMeteringMode,
        Id::ExposureValue => ControlId::ExposureValue,
        Id::AwbEnable => ControlId::AwbEnable,
        Id::AwbMode => ControlId::AwbMode,
        Id::ColourGains => ControlId::ColourGains,
        Id::Brightness => ControlId::Brightness,
        Id::Contrast => ControlId::Contrast,
        Id::Saturation => ControlId::Saturation,
        Id::Sharpness => ControlId::Sharpness,
        Id::NoiseReductionMode => ControlId::NoiseReductionMode,
    })
}

/// The kind of value each control carries (control_ids_core.yaml / control_ids_draft.yaml).
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Float,
    Enum,
}

fn kind(id: Id) -> Kind {
    match id {
        Id::AeEnable | Id::AwbEnable => Kind::Bool,
        Id::ExposureTime => Kind::Int,
        Id::LensPosition
        | Id::AnalogueGain
        | Id::ExposureValue
        | Id::ColourGains
        | Id::Brightness
        | Id::Contrast
        | Id::Saturation
        | Id::Sharpness => Kind::Float,
        Id::AfMode
        | Id::AfTrigger
        | Id::AfRange
        | Id::ExposureTimeMode
        | Id::AnalogueGainMode
        | Id::AeExposureMode
        | Id::AeMeteringMode
        | Id::AwbMode
        | Id::NoiseReductionMode => Kind::Enum,
    }
}

fn first_i64(v: ControlValue) -> Option<i64> {
    match v {
        ControlValue::Int32(v) => v.first().map(|x| i64::from(*x)),
        ControlValue::Int64(v) => v.first().copied(),
        ControlValue::Uint32(v) => v.first().map(|x| i64::from(*x)),
        ControlValue::Byte(v) => v.first().map(|x| i64::from(*x)),
        _ => None,
    }
}

fn first_f32(v: ControlValue) -> Option<f32> {
    match v {
        ControlValue::Float(v) => v.first().copied(),
        other => first_i64(other).map(|x| x as f32),
    }
}

/// Our view of one `ControlInfo`; `None` when it does not have the expected type (such a
/// control is then treated as absent: reported unsupported, never set wrongly).
fn limits(id: Id, info: &ControlInfo) -> Option<Limits> {
    Some(match kind(id) {
        Kind::Bool => Limits::Bool,
        Kind::Int => Limits::Int {
            min: first_i64(info.min())?,
            max: first_i64(info.max())?,
            default: first_i64(info.def()).unwrap_or(0),
        },
        Kind::Float => Limits::Float {
            min: first_f32(info.min())?,
            max: first_f32(info.max())?,
            default: first_f32(info.def()).unwrap_or(0.0),
        },
        Kind::Enum => {
            let mut values: Vec<i32> = info
                .values()
                .into_iter()
                .filter_map(first_i64)
                .filter_map(|v| i32::try_from(v).ok())
                .collect();
            if values.is_empty() {
                // A range instead of a list: every value in it.
                let (min, max) = (first_i64(info.min())?, first_i64(info.max())?);
                if max < min || max - min > 64 {
                    return None;
                }
                values = (min..=max).filter_map(|v| i32::try_from(v).ok()).collect();
            }
            let default = first_i64(info.def())
                .and_then(|v| i32::try_from(v).ok())
                .filter(|v| values.contains(v))
                .unwrap_or(values[0]);
            Limits::Enum { values, default }
        }
    })
}

/// Which of our controls `map` (the camera's `controls()` after configure) advertises.
pub fn facts(map: &ControlInfoMap) -> ControlFacts {
    let mut facts = ControlFacts::none();
    for id in Id::ALL {
        if let Some(Ok(info)) = libcamera_id(id).map(|c| map.find(c.id())) {
            if let Some(l) = limits(id, info) {
                facts = facts.with(id, l);
            }
        }
    }
    facts
}

/// Sets `values` (a plan's) in `list`.
pub fn add(list: &mut ControlList, values: &[(Id, Value)]) {
    for (id, v) in values {
        let value = match *v {
            Value::Bool(b) => ControlValue::from(b),
            Value::Int(i) => ControlValue::from(i),
            Value::Float(f) => ControlValue::from(f),
            Value::Floats(f) => ControlValue::from(f),
        };
        // Fails only for an id the list's map lacks; the plan holds advertised ones only.
        let Some(lc) = libcamera_id(*id) else {
            continue;
        };
        if let Err(e) = list.set_raw(lc.id(), value) {
            tracing::warn!("cannot set {id:?}: {e}");
        }
    }
}
