//! The `[controls]` keys as written in the TOML file and in `PUT /controls`: their serde
//! shapes, the checks that need no camera, and how a runtime layer lies over the file's table.
//! They change when a key is added or its accepted values do, never because a camera or
//! libcamera did; the libcamera values they map to live with the facts (`facts.rs`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Autofocus mode (`AfMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfMode {
    Manual,
    Auto,
    Continuous,
}

/// Focus search range (`AfRange`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfRange {
    Normal,
    Macro,
    Full,
}

/// Automatic exposure profile (`AeExposureMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExposureMode {
    Normal,
    Short,
    Long,
}

/// Automatic exposure metering (`AeMeteringMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metering {
    Centre,
    Spot,
    Matrix,
}

/// Automatic white balance preset (`AwbMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AwbMode {
    Auto,
    Incandescent,
    Tungsten,
    Fluorescent,
    Indoor,
    Daylight,
    Cloudy,
}

/// Noise reduction (`NoiseReductionMode`, a libcamera draft control).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Denoise {
    Off,
    Fast,
    HighQuality,
}

/// A value that may also be `"auto"` (the camera's algorithm decides).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OrAuto<T> {
    Auto,
    Fixed(T),
}

impl<T> OrAuto<T> {
    /// The same choice, a fixed value converted by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> OrAuto<U> {
        match self {
            OrAuto::Auto => OrAuto::Auto,
            OrAuto::Fixed(v) => OrAuto::Fixed(f(v)),
        }
    }
}

impl<T: Serialize> Serialize for OrAuto<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OrAuto::Auto => s.serialize_str("auto"),
            OrAuto::Fixed(v) => v.serialize(s),
        }
    }
}

// Hand-written instead of `#[serde(untagged)]`: untagged enums lose the reason ("data did not
// match any variant"), and the message must say what is accepted.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrAuto<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IntoDeserializer, value};
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = OrAuto<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or \"auto\"")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "auto" {
                    Ok(OrAuto::Auto)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OrAuto::Fixed)
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OrAuto::Fixed)
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OrAuto::Fixed)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                let mut seq = Counted { seq: a, taken: 0 };
                let fixed = T::deserialize(value::SeqAccessDeserializer::new(&mut seq))?;
                // A fixed-size `T` stops reading at its length and the TOML deserializer
                // does not look at what is left (serde_json does): `[1.0, 2.0, 3.0]` was
                // taken as `[1.0, 2.0]`. Whatever follows is an error of its own.
                let mut extra = 0;
                while seq.seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    extra += 1;
                }
                if extra > 0 {
                    return Err(A::Error::invalid_length(
                        seq.taken + extra,
                        &format!("an array of length {}", seq.taken).as_str(),
                    ));
                }
                Ok(OrAuto::Fixed(fixed))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A sequence that counts the elements taken from it: how long the array [`OrAuto`] read was.
struct Counted<A> {
    seq: A,
    taken: usize,
}

impl<'de, A: serde::de::SeqAccess<'de>> serde::de::SeqAccess<'de> for Counted<A> {
    type Error = A::Error;

    fn next_element_seed<S: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let element = self.seq.next_element_seed(seed)?;
        self.taken += usize::from(element.is_some());
        Ok(element)
    }
}

/// The `[controls]` table, and also one layer of runtime overrides. Every key optional:
/// absent means "the camera's own default".
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ControlsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub af_mode: Option<AfMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub af_range: Option<AfRange>,
    /// Dioptres (1 / distance in metres); 0 = infinity. Implies `af-mode = "manual"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lens_position: Option<f32>,
    /// Microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure_time: Option<OrAuto<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analogue_gain: Option<OrAuto<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure_mode: Option<ExposureMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metering: Option<Metering>,
    /// Exposure compensation in stops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ev: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awb_mode: Option<AwbMode>,
    /// Fixed red and blue gains (automatic white balance off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colour_gains: Option<OrAuto<[f32; 2]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brightness: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contrast: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saturation: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharpness: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denoise: Option<Denoise>,
}

/// Every key, in the order reports and docs list them.
pub const KEYS: [&str; 15] = [
    "af-mode",
    "af-range",
    "lens-position",
    "exposure-time",
    "analogue-gain",
    "exposure-mode",
    "metering",
    "ev",
    "awb-mode",
    "colour-gains",
    "brightness",
    "contrast",
    "saturation",
    "sharpness",
    "denoise",
];

/// Longest exposure libcamera's `ExposureTime` (int32 microseconds) can carry. The key is
/// read as an `i64` so that any whole number gets this range in its error, not a Rust type's.
const MAX_EXPOSURE_US: i64 = i32::MAX as i64;

impl ControlsConfig {
    /// Range and consistency checks that need no camera; `table` prefixes the key in messages
    /// ("controls." for the TOML, "" for the HTTP API). Limits of the camera are applied later
    /// by clamping (see [`plan`](fn@super::plan)), not refused, because they are known only
    /// after configure.
    pub fn check(&self, table: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let mut float = |key: &str, v: Option<f32>, min: f32, max: f32, what: &str| {
            if let Some(v) = v {
                if !v.is_finite() || v < min || v > max {
                    errors.push(format!("{table}{key} = {v}: {what}"));
                }
            }
        };
        float(
            "lens-position",
            self.lens_position,
            0.0,
            1000.0,
            "must be from 0 (infinity) to 1000 dioptres",
        );
        float("ev", self.ev, -16.0, 16.0, "must be from -16 to 16 stops");
        float(
            "brightness",
            self.brightness,
            -1.0,
            1.0,
            "must be from -1 to 1 (0 = normal)",
        );
        for (key, v) in [
            ("contrast", self.contrast),
            ("saturation", self.saturation),
            ("sharpness", self.sharpness),
        ] {
            float(key, v, 0.0, 1000.0, "must be from 0 to 1000 (1 = normal)");
        }
        if let Some(OrAuto::Fixed(g)) = self.analogue_gain {
            float(
                "analogue-gain",
                Some(g),
                1.0,
                1000.0,
                "must be from 1 to 1000, or \"auto\"",
            );
        }
        if let Some(OrAuto::Fixed(t)) = self.exposure_time {
            if !(1..=MAX_EXPOSURE_US).contains(&t) {
                errors.push(format!(
                    "{table}exposure-time = {t}: must be from 1 to {MAX_EXPOSURE_US} microseconds, or \"auto\""
                ));
            }
        }
        if let Some(OrAuto::Fixed([r, b])) = self.colour_gains {
            if ![r, b]
                .iter()
                .all(|g| g.is_finite() && *g > 0.0 && *g <= 1000.0)
            {
                errors.push(format!(
                    "{table}colour-gains = [{r}, {b}]: both gains must be above 0 and at most 1000, or \"auto\""
                ));
            }
        }
        if let (Some(mode @ (AfMode::Auto | AfMode::Continuous)), Some(p)) =
            (self.af_mode, self.lens_position)
        {
            errors.push(format!(
                "{table}lens-position = {p} needs af-mode = \"manual\" (or no af-mode), not {:?}",
                name(&mode)
            ));
        }
        if let (Some(awb), Some(OrAuto::Fixed(_))) = (self.awb_mode, self.colour_gains) {
            errors.push(format!(
                "{table}colour-gains (fixed white balance) and {table}awb-mode = {:?} exclude each other: set one",
                name(&awb)
            ));
        }
        errors
    }

    /// `self` with `over` laid on top: a key `over` sets wins; a key that decides what
    /// another means clears it from below (lens-position vs af-mode, colour-gains vs
    /// awb-mode), so the result never holds a pair that excludes each other.
    pub fn merged(&self, over: &ControlsConfig) -> ControlsConfig {
        let mut m = ControlsConfig {
            af_mode: over.af_mode.or(self.af_mode),
            af_range: over.af_range.or(self.af_range),
            lens_position: over.lens_position.or(self.lens_position),
            exposure_time: over.exposure_time.or(self.exposure_time),
            analogue_gain: over.analogue_gain.or(self.analogue_gain),
            exposure_mode: over.exposure_mode.or(self.exposure_mode),
            metering: over.metering.or(self.metering),
            ev: over.ev.or(self.ev),
            awb_mode: over.awb_mode.or(self.awb_mode),
            colour_gains: over.colour_gains.or(self.colour_gains),
            brightness: over.brightness.or(self.brightness),
            contrast: over.contrast.or(self.contrast),
            saturation: over.saturation.or(self.saturation),
            sharpness: over.sharpness.or(self.sharpness),
            denoise: over.denoise.or(self.denoise),
        };
        if over.lens_position.is_some() && over.af_mode.is_none() {
            m.af_mode = None; // lens-position implies manual
        }
        if matches!(over.af_mode, Some(AfMode::Auto | AfMode::Continuous))
            && over.lens_position.is_none()
        {
            m.lens_position = None;
        }
        if matches!(over.colour_gains, Some(OrAuto::Fixed(_))) && over.awb_mode.is_none() {
            m.awb_mode = None;
        }
        if over.awb_mode.is_some() && over.colour_gains.is_none() {
            m.colour_gains = None;
        }
        m
    }

    /// Applies a JSON object of `PUT /controls`: a key with a value sets it (with the same
    /// clearing as [`merged`](Self::merged)), `null` removes the override (back to the TOML
    /// value, or the camera's default). Errors name the key.
    pub fn patched(&self, patch: &serde_json::Value) -> Result<ControlsConfig, Vec<String>> {
        let Some(obj) = patch.as_object() else {
            return Err(vec![
                "the body must be a JSON object of [controls] keys, e.g. {\"lens-position\": 4}"
                    .to_string(),
            ]);
        };
        let mut errors = Vec::new();
        let mut set = serde_json::Map::new();
        let mut cleared = Vec::new();
        for (k, v) in obj {
            if !KEYS.contains(&k.as_str()) {
                errors.push(format!("unknown key {k:?} (known: {})", KEYS.join(", ")));
            } else if v.is_null() {
                cleared.push(k.as_str());
            } else {
                // Checked one at a time, so a wrong type names its key.
                let one = serde_json::Value::Object([(k.clone(), v.clone())].into_iter().collect());
                match serde_json::from_value::<ControlsConfig>(one) {
                    Ok(_) => {
                        set.insert(k.clone(), v.clone());
                    }
                    Err(e) => errors.push(format!(
                        "{k} = {v}: {}",
                        crate::config::plain_types(&e.to_string())
                    )),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let over: ControlsConfig = serde_json::from_value(serde_json::Value::Object(set))
            .map_err(|e| vec![e.to_string()])?;
        let errors = over.check("");
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut result = self.merged(&over);
        for key in cleared {
            result.clear(key);
        }
        Ok(result)
    }

    fn clear(&mut self, key: &str) {
        match key {
            "af-mode" => self.af_mode = None,
            "af-range" => self.af_range = None,
            "lens-position" => self.lens_position = None,
            "exposure-time" => self.exposure_time = None,
            "analogue-gain" => self.analogue_gain = None,
            "exposure-mode" => self.exposure_mode = None,
            "metering" => self.metering = None,
            "ev" => self.ev = None,
            "awb-mode" => self.awb_mode = None,
            "colour-gains" => self.colour_gains = None,
            "brightness" => self.brightness = None,
            "contrast" => self.contrast = None,
            "saturation" => self.saturation = None,
            "sharpness" => self.sharpness = None,
            "denoise" => self.denoise = None,
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == ControlsConfig::default()
    }
}

/// The kebab-case name of an enum value, as written in the config.
pub(super) fn name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::controls::facts::AF_MANUAL;
    use crate::camera::controls::test_util::toml;
    use crate::camera::controls::{Id, Value, fixtures, plan};

    #[test]
    fn config_checks_name_the_key() {
        let cases = [
            ("lens-position = -1", "controls.lens-position = -1"),
            ("exposure-time = 0", "controls.exposure-time = 0"),
            ("analogue-gain = 0.5", "controls.analogue-gain = 0.5"),
            ("brightness = 2", "controls.brightness = 2"),
            ("colour-gains = [0, 1]", "controls.colour-gains = [0, 1]"),
            (
                "af-mode = \"continuous\"\nlens-position = 2",
                "lens-position = 2 needs af-mode",
            ),
            (
                "awb-mode = \"auto\"\ncolour-gains = [1.5, 2]",
                "exclude each other",
            ),
        ];
        for (text, want) in cases {
            let c: ControlsConfig = toml::from_str(text).unwrap();
            let errors = c.check("controls.");
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{text}: {errors:?}"
            );
        }
        for bad in [
            "af-mode = \"sideways\"",
            "exposure-time = \"fast\"",
            "focus = 1",
            "colour-gains = [1]",
        ] {
            assert!(toml::from_str::<ControlsConfig>(bad).is_err(), "{bad}");
        }
        let err = toml::from_str::<ControlsConfig>("exposure-time = \"fast\"").unwrap_err();
        assert!(err.to_string().contains("a number or \"auto\""), "{err}");
    }

    #[test]
    fn patches_merge_clear_and_name_bad_keys() {
        let base = ControlsConfig::default();
        let r = base
            .patched(&serde_json::json!({"lens-position": 3, "ev": -1}))
            .unwrap();
        assert_eq!((r.lens_position, r.ev), (Some(3.0), Some(-1.0)));
        // Continuous autofocus clears a lens position from below.
        let r2 = r
            .patched(&serde_json::json!({"af-mode": "continuous"}))
            .unwrap();
        assert_eq!(
            (r2.af_mode, r2.lens_position, r2.ev),
            (Some(AfMode::Continuous), None, Some(-1.0))
        );
        // null removes the runtime value.
        let r3 = r2.patched(&serde_json::json!({"ev": null})).unwrap();
        assert_eq!(r3.ev, None);
        for (patch, want) in [
            (
                serde_json::json!({"lens-positon": 3}),
                "unknown key \"lens-positon\"",
            ),
            (
                serde_json::json!({"exposure-time": "long"}),
                "exposure-time = \"long\"",
            ),
            (
                serde_json::json!({"exposure-time": -5}),
                "exposure-time = -5",
            ),
            (serde_json::json!({"brightness": 3}), "brightness = 3"),
            // What to write, not serde's Rust type ("expected f32").
            (
                serde_json::json!({"ev": "x"}),
                "ev = \"x\": invalid type: string \"x\", expected a number",
            ),
            (
                serde_json::json!({"af-mode": "auto", "lens-position": 1}),
                "needs af-mode",
            ),
            (serde_json::json!([1, 2]), "JSON object"),
        ] {
            let errors = r.patched(&patch).unwrap_err();
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{patch}: {errors:?}"
            );
        }
    }

    #[test]
    fn runtime_layer_over_the_config_never_holds_a_conflicting_pair() {
        let config = toml("lens-position = 3\nawb-mode = \"daylight\"");
        let runtime = ControlsConfig::default()
            .patched(&serde_json::json!({"af-mode": "continuous", "colour-gains": [1.5, 1.8]}))
            .unwrap();
        let asked = config.merged(&runtime);
        assert_eq!(asked.check(""), Vec::<String>::new());
        assert_eq!((asked.lens_position, asked.awb_mode), (None, None));
        let config = toml("af-mode = \"continuous\"");
        let runtime = ControlsConfig::default()
            .patched(&serde_json::json!({"lens-position": 5}))
            .unwrap();
        let asked = config.merged(&runtime);
        assert_eq!((asked.af_mode, asked.lens_position), (None, Some(5.0)));
        let p = plan(&asked, &fixtures::imx708_pisp());
        assert_eq!(p.value(Id::AfMode), Some(Value::Int(AF_MANUAL)));
    }

    #[test]
    fn shipped_config_documents_every_key_with_a_valid_example() {
        let text = include_str!("../../../config/picker.toml");
        let table = &text[text.find("[controls]").expect("a [controls] table")..];
        for key in KEYS {
            let line = table
                .lines()
                .find(|l| l.starts_with(&format!("#{key} = ")))
                .unwrap_or_else(|| panic!("{key} is not documented in config/picker.toml"));
            let c: ControlsConfig = toml::from_str(&line[1..]).unwrap();
            assert!(!c.is_empty() && c.check("").is_empty(), "{line}");
        }
    }

    /// Every range `check` enforces, at each end and just past it, plus what is no number at
    /// all: an end is allowed, a step past it is one error naming the key.
    #[test]
    fn each_range_check_allows_its_ends_and_refuses_a_step_past_them() {
        // (TOML, the key of the one error, or "" for none)
        let table = [
            ("lens-position = 0", ""),
            ("lens-position = 1000", ""),
            ("lens-position = -0.01", "lens-position"),
            ("lens-position = 1000.1", "lens-position"),
            ("lens-position = nan", "lens-position"),
            ("lens-position = inf", "lens-position"),
            ("ev = -16", ""),
            ("ev = 16", ""),
            ("ev = -16.1", "ev"),
            ("ev = 16.1", "ev"),
            ("brightness = -1", ""),
            ("brightness = 1", ""),
            ("brightness = -1.01", "brightness"),
            ("brightness = 1.01", "brightness"),
            ("contrast = 0", ""),
            ("contrast = 1000", ""),
            ("contrast = -0.01", "contrast"),
            ("saturation = 1000.1", "saturation"),
            ("sharpness = -inf", "sharpness"),
            ("analogue-gain = 1", ""),
            ("analogue-gain = 1000", ""),
            ("analogue-gain = 0.99", "analogue-gain"),
            ("analogue-gain = 1000.1", "analogue-gain"),
            ("analogue-gain = \"auto\"", ""),
            ("exposure-time = 1", ""),
            ("exposure-time = 2147483647", ""),
            ("exposure-time = 0", "exposure-time"),
            ("exposure-time = 2147483648", "exposure-time"),
            ("exposure-time = -5", "exposure-time"),
            ("exposure-time = 4294967296", "exposure-time"),
            ("exposure-time = \"auto\"", ""),
            ("colour-gains = [0.001, 1000]", ""),
            ("colour-gains = [1000, 0.001]", ""),
            ("colour-gains = [0, 1]", "colour-gains"),
            ("colour-gains = [1, 0]", "colour-gains"),
            ("colour-gains = [1000.1, 1]", "colour-gains"),
            ("colour-gains = [1, 1000.1]", "colour-gains"),
            ("colour-gains = [nan, 1]", "colour-gains"),
            ("colour-gains = [1, inf]", "colour-gains"),
            ("colour-gains = \"auto\"", ""),
            ("af-mode = \"manual\"\nlens-position = 2", ""),
            ("af-mode = \"auto\"\nlens-position = 2", "lens-position"),
            (
                "af-mode = \"continuous\"\nlens-position = 2",
                "lens-position",
            ),
            ("af-mode = \"auto\"", ""),
            ("awb-mode = \"cloudy\"\ncolour-gains = \"auto\"", ""),
            (
                "awb-mode = \"cloudy\"\ncolour-gains = [1, 1]",
                "colour-gains",
            ),
        ];
        for (text, key) in table {
            let c: ControlsConfig = toml::from_str(text).unwrap();
            for prefix in ["controls.", ""] {
                let errors = c.check(prefix);
                if key.is_empty() {
                    assert_eq!(errors, Vec::<String>::new(), "{text}");
                } else {
                    assert_eq!(errors.len(), 1, "{text}: {errors:?}");
                    let named = format!("{prefix}{key}");
                    assert!(errors[0].starts_with(&named), "{text}: {errors:?}");
                }
            }
        }
    }

    /// Any whole number gets exposure-time's own range, from TOML and from `PUT /controls`:
    /// read as a u32, -5 and 2^32 had got "from 0 to 4294967295", a range it does not have.
    #[test]
    fn exposure_time_out_of_range_names_its_real_range() {
        let range = "must be from 1 to 2147483647 microseconds";
        for text in ["exposure-time = -5", "exposure-time = 4294967296"] {
            let c: ControlsConfig = toml::from_str(text).unwrap();
            let errors = c.check("controls.");
            assert!(errors[0].contains(range), "{text}: {errors:?}");
        }
        let base = ControlsConfig::default();
        for v in [-5_i64, 4_294_967_296] {
            let errors = base
                .patched(&serde_json::json!({ "exposure-time": v }))
                .unwrap_err();
            assert!(errors[0].contains(range), "{v}: {errors:?}");
        }
    }

    /// A number, an array or "auto", from TOML (integers are i64 there) and from JSON
    /// (u64), and back: what each visitor of `OrAuto` turns them into.
    #[test]
    fn or_auto_reads_and_writes_numbers_arrays_and_auto() {
        // (TOML, the same in JSON)
        let table = [
            (
                "exposure-time = 5000",
                serde_json::json!({"exposure-time": 5000}),
            ),
            (
                "exposure-time = \"auto\"",
                serde_json::json!({"exposure-time": "auto"}),
            ),
            (
                "analogue-gain = 2.5",
                serde_json::json!({"analogue-gain": 2.5}),
            ),
            (
                "colour-gains = [1.5, 2.0]",
                serde_json::json!({"colour-gains": [1.5, 2.0]}),
            ),
            (
                "colour-gains = \"auto\"",
                serde_json::json!({"colour-gains": "auto"}),
            ),
        ];
        for (text, json) in table {
            let from_toml: ControlsConfig = toml::from_str(text).unwrap();
            let from_json: ControlsConfig = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(from_toml, from_json, "{text}");
            assert_eq!(serde_json::to_value(&from_toml).unwrap(), json, "{text}");
        }
        let c: ControlsConfig = toml::from_str("exposure-time = 5000\nanalogue-gain = 2").unwrap();
        assert_eq!(c.exposure_time, Some(OrAuto::Fixed(5000)));
        assert_eq!(c.analogue_gain, Some(OrAuto::Fixed(2.0)));
        let c: ControlsConfig = toml::from_str("colour-gains = [1.5, 2.0]").unwrap();
        assert_eq!(c.colour_gains, Some(OrAuto::Fixed([1.5, 2.0])));
        let err = toml::from_str::<ControlsConfig>("analogue-gain = \"automatic\"").unwrap_err();
        assert!(err.to_string().contains("a number or \"auto\""), "{err}");
        assert_eq!(name(&AfMode::Continuous), "continuous");
        assert_eq!(name(&Denoise::HighQuality), "high-quality");
        assert_eq!(name(&1.5f32), "1.5");
    }

    /// An array longer than the key's is refused, from TOML and from `PUT /controls` alike,
    /// with the length found and the one wanted: TOML's deserializer does not look past the
    /// elements a fixed-size array takes, and `[1.0, 2.0, 3.0]` was read as `[1.0, 2.0]`.
    #[test]
    fn or_auto_refuses_elements_past_a_fixed_length() {
        // (TOML value, JSON value, message)
        let table = [
            (
                "[1.0, 2.0, 3.0]",
                serde_json::json!([1.0, 2.0, 3.0]),
                "invalid length 3, expected an array of length 2",
            ),
            (
                "[1.0, 2.0, \"x\", {a = 1}]",
                serde_json::json!([1.0, 2.0, "x", {"a": 1}]),
                "invalid length 4, expected an array of length 2",
            ),
            (
                "[1.0]",
                serde_json::json!([1.0]),
                "invalid length 1, expected an array of length 2",
            ),
        ];
        for (text, json, want) in table {
            let err =
                toml::from_str::<ControlsConfig>(&format!("colour-gains = {text}")).unwrap_err();
            assert_eq!(err.message(), want, "{text}");
            let err = serde_json::from_value::<ControlsConfig>(serde_json::json!({
                "colour-gains": json
            }))
            .unwrap_err();
            assert_eq!(err.to_string(), want, "{json}");
        }
        // Exactly two still pass, and a bad element within them is named as before.
        let c: ControlsConfig = toml::from_str("colour-gains = [1.5, 2]").unwrap();
        assert_eq!(c.colour_gains, Some(OrAuto::Fixed([1.5, 2.0])));
        let err = toml::from_str::<ControlsConfig>("colour-gains = [1.5, \"x\", 3]").unwrap_err();
        assert!(
            err.message().starts_with("invalid type: string \"x\""),
            "{err}"
        );
    }

    /// `null` for a key removes it whatever the key; a layer with nothing left is empty.
    #[test]
    fn null_clears_each_key_and_only_that_key() {
        let text = include_str!("../../../config/picker.toml");
        let table = &text[text.find("[controls]").expect("a [controls] table")..];
        assert!(ControlsConfig::default().is_empty());
        for key in KEYS {
            let line = table
                .lines()
                .find(|l| l.starts_with(&format!("#{key} = ")))
                .unwrap();
            let one: ControlsConfig = toml::from_str(&line[1..]).unwrap();
            assert!(!one.is_empty(), "{key}");
            let with_ev = one.merged(&toml("ev = 1"));
            let null = [(key.to_string(), serde_json::Value::Null)];
            let cleared = with_ev
                .patched(&serde_json::Value::Object(null.into_iter().collect()))
                .unwrap();
            if key == "ev" {
                assert!(cleared.is_empty(), "{key}: {cleared:?}");
            } else {
                assert_eq!(cleared, toml("ev = 1"), "{key}");
            }
        }
    }

    /// A key that says nothing of focus or white balance clears neither from below.
    #[test]
    fn merging_an_unrelated_key_keeps_focus_and_white_balance() {
        for base in [
            "af-mode = \"continuous\"\nawb-mode = \"daylight\"",
            "lens-position = 3\ncolour-gains = [1.5, 1.8]",
            "af-mode = \"manual\"\nlens-position = 3",
        ] {
            let base = toml(base);
            let mut want = base.clone();
            want.ev = Some(1.0);
            assert_eq!(base.merged(&toml("ev = 1")), want);
        }
        // A lens position with manual focus asked at once keeps both.
        let m = toml("af-mode = \"continuous\"")
            .merged(&toml("af-mode = \"manual\"\nlens-position = 3"));
        assert_eq!(
            (m.af_mode, m.lens_position),
            (Some(AfMode::Manual), Some(3.0))
        );
    }
}
