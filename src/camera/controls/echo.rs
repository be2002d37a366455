//! What a camera that takes every control value literally, from the next frame on, would
//! report as its frames' settings: the test pattern's stand-in for a Raspberry Pi's request
//! metadata, so that the stills' settings headers are tested through the binary.
//!
//! A Pi reports what its sensor and lens did for each frame (its AGC's exposure while
//! exposure is automatic, the lens position while autofocus drives it, a few frames after a
//! change). A test pattern has no sensor: it reports only what is fixed by a manual value in
//! force, and nothing while a control is automatic, rather than make a value up.
//!
//! The values are taken in the order the camera thread sets them: libcamera controls persist
//! until set again, and a later mode (`AwbEnable`, `ExposureTimeMode`) decides whether an
//! earlier value is in force.

use super::Value;
use super::facts::{AF_MANUAL, Id, MODE_MANUAL};
use crate::frames::Settings;

/// The controls set so far, folded into what is in force.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Echo {
    exposure: Fixed<i32>,
    gain: Fixed<f32>,
    lens: Fixed<f32>,
    gains: Fixed<[f32; 2]>,
}

/// A value and whether its manual mode is on.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Fixed<T> {
    value: Option<T>,
    manual: bool,
}

impl<T: Copy> Fixed<T> {
    fn in_force(&self) -> Option<T> {
        self.value.filter(|_| self.manual)
    }
}

impl Echo {
    /// Takes `values` as a camera would, in order (a plan's values, or a change's).
    pub fn apply(&mut self, values: &[(Id, Value)]) {
        for (id, value) in values {
            match (id, *value) {
                (Id::ExposureTimeMode, Value::Int(m)) => self.exposure.manual = m == MODE_MANUAL,
                (Id::AnalogueGainMode, Value::Int(m)) => self.gain.manual = m == MODE_MANUAL,
                // The older switch for both (cameras without the two modes).
                (Id::AeEnable, Value::Bool(on)) => {
                    self.exposure.manual = !on;
                    self.gain.manual = !on;
                }
                (Id::ExposureTime, Value::Int(v)) => self.exposure.value = Some(v),
                (Id::AnalogueGain, Value::Float(v)) => self.gain.value = Some(v),
                (Id::AfMode, Value::Int(m)) => self.lens.manual = m == AF_MANUAL,
                (Id::LensPosition, Value::Float(v)) => self.lens.value = Some(v),
                (Id::AwbEnable, Value::Bool(on)) => self.gains.manual = !on,
                // As on a Pi: gains switch automatic white balance off, zero gains back on.
                (Id::ColourGains, Value::Floats(g)) => {
                    self.gains.manual = g[0] > 0.0 && g[1] > 0.0;
                    self.gains.value = Some(g);
                }
                _ => {}
            }
        }
    }

    /// The settings a frame taken now shows.
    pub fn settings(&self) -> Settings {
        Settings {
            exposure_time: self.exposure.in_force().and_then(|v| u32::try_from(v).ok()),
            analogue_gain: self.gain.in_force(),
            lens_position: self.lens.in_force(),
            colour_gains: self.gains.in_force(),
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::controls::test_util::{cameras, toml};
    use crate::camera::controls::{ControlsConfig, plan, plan_change};

    fn echo_of(values: &[(Id, Value)]) -> Settings {
        let mut e = Echo::default();
        e.apply(values);
        e.settings()
    }

    #[test]
    fn manual_values_show_and_automatic_ones_do_not() {
        let asked = toml(
            "exposure-time = 8000\nanalogue-gain = 2.0\nlens-position = 4.0\n\
             colour-gains = [1.5, 2.0]\n",
        );
        let p = plan(&asked, &cameras()[0].1);
        assert_eq!(
            echo_of(&p.values),
            Settings {
                exposure_time: Some(8000),
                analogue_gain: Some(2.0),
                lens_position: Some(4.0),
                colour_gains: Some([1.5, 2.0]),
                ..Settings::default()
            }
        );
        // Nothing asked: a Pi starts automatic everywhere (and continuous focus).
        for (cam, facts) in cameras() {
            let p = plan(&ControlsConfig::default(), &facts);
            assert_eq!(echo_of(&p.values), Settings::default(), "{cam}");
        }
    }

    #[test]
    fn a_change_back_to_auto_takes_the_value_out_of_force() {
        let facts = cameras()[0].1.clone();
        let fixed = toml(
            "exposure-time = 8000\nanalogue-gain = 2.0\ncolour-gains = [1.5, 2.0]\nlens-position = 4.0\n",
        );
        let mut e = Echo::default();
        e.apply(&plan(&fixed, &facts).values);
        assert_eq!(e.settings().exposure_time, Some(8000));
        let auto = toml("exposure-time = \"auto\"\n");
        e.apply(&plan_change(&fixed, &auto, &facts).values);
        assert_eq!(e.settings(), Settings::default());
        // And fixed again, with another value.
        let again = toml("exposure-time = 9000\n");
        e.apply(&plan_change(&auto, &again, &facts).values);
        assert_eq!(
            e.settings(),
            Settings {
                exposure_time: Some(9000),
                ..Settings::default()
            }
        );
    }

    #[test]
    fn each_switch_decides_its_own_value_in_the_order_set() {
        use Value::*;
        let on = |v: &[(Id, Value)]| echo_of(v);
        // The value without its manual mode is not in force; the mode after it is.
        assert_eq!(on(&[(Id::ExposureTime, Int(5))]).exposure_time, None);
        let manual = [
            (Id::ExposureTime, Int(5)),
            (Id::ExposureTimeMode, Int(MODE_MANUAL)),
        ];
        assert_eq!(on(&manual).exposure_time, Some(5));
        let later_auto = [manual[0], manual[1], (Id::ExposureTimeMode, Int(0))];
        assert_eq!(on(&later_auto).exposure_time, None);
        // A negative exposure is no exposure.
        assert_eq!(
            on(&[
                (Id::ExposureTimeMode, Int(MODE_MANUAL)),
                (Id::ExposureTime, Int(-1))
            ])
            .exposure_time,
            None
        );
        let gain = [
            (Id::AnalogueGainMode, Int(MODE_MANUAL)),
            (Id::AnalogueGain, Float(3.0)),
        ];
        assert_eq!(on(&gain).analogue_gain, Some(3.0));
        assert_eq!(on(&gain).exposure_time, None);
        // AeEnable (cameras without the modes) switches both.
        let ae_off = [
            (Id::AeEnable, Bool(false)),
            (Id::ExposureTime, Int(7)),
            (Id::AnalogueGain, Float(1.5)),
        ];
        assert_eq!(
            (on(&ae_off).exposure_time, on(&ae_off).analogue_gain),
            (Some(7), Some(1.5))
        );
        let ae_on = [ae_off[0], ae_off[1], ae_off[2], (Id::AeEnable, Bool(true))];
        assert_eq!(on(&ae_on), Settings::default());
        // The lens in manual focus only.
        let lens = [(Id::LensPosition, Float(2.0)), (Id::AfMode, Int(AF_MANUAL))];
        assert_eq!(on(&lens).lens_position, Some(2.0));
        assert_eq!(
            on(&[lens[0], lens[1], (Id::AfMode, Int(2))]).lens_position,
            None
        );
        // Gains switch white balance off; zero gains or AwbEnable switch it back on.
        let gains = [(Id::ColourGains, Floats([1.5, 2.0]))];
        assert_eq!(on(&gains).colour_gains, Some([1.5, 2.0]));
        assert_eq!(
            on(&[gains[0], (Id::AwbEnable, Bool(true))]).colour_gains,
            None
        );
        assert_eq!(
            on(&[
                (Id::AwbEnable, Bool(false)),
                (Id::ColourGains, Floats([0.0, 2.0]))
            ])
            .colour_gains,
            None
        );
        assert_eq!(
            on(&[(Id::ColourGains, Floats([1.5, 0.0]))]).colour_gains,
            None
        );
        assert_eq!(
            on(&[
                gains[0],
                (Id::AwbEnable, Bool(true)),
                (Id::AwbEnable, Bool(false))
            ])
            .colour_gains,
            Some([1.5, 2.0])
        );
    }
}
