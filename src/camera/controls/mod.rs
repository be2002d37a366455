//! Camera controls: the `[controls]` table (focus, exposure, white balance, picture tuning),
//! what a camera advertises after `configure()` ([`ControlFacts`]), and the pure [`plan`] that
//! turns one into the other: the values to set, clamped to the camera's limits, and a report
//! per key (applied / adjusted / unsupported). No libcamera types here, so the planning is
//! compiled and tested on any machine, table-driven over recorded Raspberry Pi cameras
//! ([`fixtures`]); `libcamera_controls` translates facts and values at the edge.
//!
//! [`ControlsHandle`] is the state the camera thread and the HTTP handlers share: the TOML
//! values, the runtime overrides from `PUT /controls` (kept until restart), and the change the
//! camera thread has not taken yet. The camera thread calls [`ControlsHandle::start`] once
//! after configure and [`ControlsHandle::take_change`] before queuing each request (a relaxed
//! atomic load when nothing changed).
//!
//! Names and values follow rpicam-apps' options, which Raspberry Pi users know. Semantics of
//! the libcamera controls follow Raspberry Pi's IPA (`src/ipa/rpi/common/ipa_base.cpp`):
//! `ExposureTime`/`AnalogueGain` only act in the manual `ExposureTimeMode`/`AnalogueGainMode`,
//! `LensPosition` only in `AfMode` manual, `ColourGains` switch automatic white balance off.
//!
//! # Layout
//! One file per reason to change, so that a new key, a new camera or a new decision each
//! touch the file that owns it; every public item is re-exported here, so callers name
//! `camera::controls::X` and never the file:
//! - `keys`: the keys as users write them (serde shapes, checks, the runtime layer).
//! - `facts`: what a camera advertises, and the libcamera numbers the values stand for.
//! - `plan`: the pure decisions, a table with one row per key, and runtime changes;
//!   `kinds`: how each kind of control (enumerated, float, number or "auto") is planned.
//! - `handle`: the state the camera thread and the HTTP handlers share, and its log lines.
//! - `echo`: the settings a camera that takes values literally would report (the test
//!   pattern's stand-in for a Pi's per-frame metadata).
//! - [`fixtures`]: the recorded Pi cameras the tests and the test pattern plan against.
//!
//! A new key: its field in `ControlsConfig`, `KEYS`, `merged`, `clear` and, with a range,
//! `check` (`keys`); its [`Id`] and value mapping (`facts`); one row in the table and, if a
//! removed runtime value must be undone, an arm in `restore` (`plan`); its libcamera id and
//! kind (`libcamera_controls`); its limits on the recorded cameras (`fixtures`); an example
//! line in `config/picker.toml` (a test checks it).

mod echo;
mod facts;
pub mod fixtures;
mod handle;
mod keys;
mod kinds;
mod plan;

pub use echo::Echo;
pub use facts::{ControlFacts, Id, Limits, Value};
pub use handle::{ControlsHandle, ControlsState};
pub use keys::{
    AfMode, AfRange, AwbMode, ControlsConfig, Denoise, ExposureMode, KEYS, Metering, OrAuto,
};
pub use plan::{Plan, Report, Status, plan, plan_change};

/// What the tests of every part start from.
#[cfg(test)]
mod test_util {
    use super::{ControlFacts, ControlsConfig, Plan, Status, fixtures};

    /// A `[controls]` table from TOML that passes the checks.
    pub fn toml(text: &str) -> ControlsConfig {
        let c: ControlsConfig = toml::from_str(text).unwrap();
        assert_eq!(c.check("controls."), Vec::<String>::new());
        c
    }

    /// Every recorded Pi camera, and one with no controls (libcamera's virtual camera).
    pub fn cameras() -> Vec<(&'static str, ControlFacts)> {
        vec![
            ("imx708-pisp", fixtures::imx708_pisp()),
            ("imx708-vc4", fixtures::imx708_vc4()),
            ("imx219", fixtures::imx219()),
            ("imx477", fixtures::imx477()),
            ("ov5647", fixtures::ov5647()),
            ("virtual", ControlFacts::none()),
        ]
    }

    /// How `key` fared in `p`, if it was reported.
    pub fn status(p: &Plan, key: &str) -> Option<Status> {
        p.reports.get(key).map(|r| r.status)
    }
}
