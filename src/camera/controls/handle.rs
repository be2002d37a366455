//! The one place the camera thread and the HTTP handlers share controls state: the file's
//! table, the runtime layer of `PUT /controls`, the reports in force and the change the camera
//! thread has yet to take. Kept apart from the plan so that locking, logging and the hand-over
//! to the camera can change without touching a decision, and the decisions stay pure.
//!
//! A change over the socket is one log line (what changed, and any key the camera adjusts or
//! cannot take), rate-limited like every line a client can repeat: a loop of `PUT /controls`
//! used to write a line plus one warning per key per request, 22 MB in 10 s.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::{ControlFacts, ControlsConfig, Id, Limits, Plan, Report, Status, plan, plan_change};

/// What `/state` and `GET /controls` show.
#[derive(Clone, Debug, Serialize)]
pub struct ControlsState {
    /// The `[controls]` table of the config file.
    pub config: ControlsConfig,
    /// Changes made over the socket since start (lost on restart).
    pub runtime: ControlsConfig,
    /// The two combined: what picker asks of the camera.
    pub asked: ControlsConfig,
    /// Per key, what the camera does with it; empty until the camera has started.
    pub in_force: BTreeMap<&'static str, Report>,
    /// True while a change waits for the camera thread to take it.
    pub pending: bool,
    /// Changes the camera thread has taken since start.
    pub changes_applied: u64,
    /// The controls the camera advertises (null before the camera started).
    pub camera: Option<BTreeMap<Id, Limits>>,
}

/// Shared between the camera thread and the HTTP handlers; see the module docs.
#[derive(Debug)]
pub struct ControlsHandle {
    dirty: AtomicBool,
    inner: Mutex<Inner>,
    /// The "controls changed over the socket" line.
    log: crate::throttle::Repeated,
}

#[derive(Debug)]
struct Inner {
    config: ControlsConfig,
    runtime: ControlsConfig,
    facts: Option<ControlFacts>,
    /// What the camera thread has been given.
    on_camera: ControlsConfig,
    reports: BTreeMap<&'static str, Report>,
    changes_applied: u64,
}

impl ControlsHandle {
    pub fn new(config: &ControlsConfig) -> ControlsHandle {
        ControlsHandle {
            log: Default::default(),
            dirty: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                config: config.clone(),
                runtime: ControlsConfig::default(),
                facts: None,
                on_camera: ControlsConfig::default(),
                reports: BTreeMap::new(),
                changes_applied: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The camera thread, once after configure: the values for the start `ControlList`.
    /// Logs the report once.
    pub fn start(&self, facts: &ControlFacts) -> Plan {
        let mut inner = self.lock();
        let asked = inner.config.merged(&inner.runtime);
        let plan = plan(&asked, facts);
        for (key, r) in &plan.reports {
            log_report(key, r);
        }
        inner.facts = Some(facts.clone());
        inner.on_camera = asked;
        inner.reports = plan.reports.clone();
        self.dirty.store(false, Ordering::Release);
        plan
    }

    /// The camera thread, before queuing each request: the values to add when the runtime
    /// controls changed since the last call (or since start).
    pub fn take_change(&self) -> Option<Plan> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return None;
        }
        let mut inner = self.lock();
        let facts = inner.facts.clone()?;
        let asked = inner.config.merged(&inner.runtime);
        let change = plan_change(&inner.on_camera, &asked, &facts);
        inner.on_camera = asked;
        inner.changes_applied += 1;
        Some(change)
    }

    pub fn state(&self) -> ControlsState {
        let inner = self.lock();
        ControlsState {
            asked: inner.config.merged(&inner.runtime),
            config: inner.config.clone(),
            runtime: inner.runtime.clone(),
            in_force: inner.reports.clone(),
            pending: self.dirty.load(Ordering::Acquire),
            changes_applied: inner.changes_applied,
            camera: inner.facts.as_ref().map(|f| f.controls.clone()),
        }
    }

    /// `PUT /controls`: merges `patch` into the runtime values. Errors name the key; on
    /// error nothing changes.
    pub fn update(&self, patch: &serde_json::Value) -> Result<ControlsState, Vec<String>> {
        {
            let mut inner = self.lock();
            let runtime = inner.runtime.patched(patch)?;
            self.replace(&mut inner, runtime);
        }
        Ok(self.state())
    }

    /// `DELETE /controls`: back to the config file's values.
    pub fn reset(&self) -> ControlsState {
        {
            let mut inner = self.lock();
            self.replace(&mut inner, ControlsConfig::default());
        }
        self.state()
    }

    /// A reload (SIGHUP) with a new `[controls]` table: it becomes the base the runtime
    /// changes of `PUT /controls` are laid on. Those stay on top (a robot that set a value
    /// over the socket keeps it; `DELETE /controls` goes back to the file), so a key they
    /// set is named in the log as still overridden. The camera thread takes the change
    /// before its next request, as it does after a `PUT`. Returns whether the table changed.
    pub fn set_config(&self, config: &ControlsConfig) -> bool {
        let mut inner = self.lock();
        if *config == inner.config {
            return false;
        }
        let shadowed = overridden_keys(config, &inner.config, &inner.runtime);
        if !shadowed.is_empty() {
            tracing::warn!(
                "reload: [controls] {} changed in the file but set over the socket; the socket's \
                 values stay until DELETE /controls or a restart",
                shadowed.join(", ")
            );
        }
        inner.config = config.clone();
        let notes = self.replanned(&mut inner);
        if !notes.is_empty() {
            tracing::warn!("reload: [controls] {}", notes.join("; "));
        }
        true
    }

    fn replace(&self, inner: &mut Inner, runtime: ControlsConfig) {
        if runtime == inner.runtime {
            return;
        }
        let changed = serde_json::to_string(&runtime).unwrap_or_default();
        inner.runtime = runtime;
        let notes = self.replanned(inner);
        let line = if notes.is_empty() {
            format!("controls changed over the socket: {changed}")
        } else {
            format!(
                "controls changed over the socket: {changed}; {}",
                notes.join("; ")
            )
        };
        if let Some((n, line)) = self.log.hit(line) {
            tracing::info!("{}", crate::throttle::summary(n, &line));
        }
    }

    /// Logs the tail of a burst of changes over the socket, once a line is due; call every
    /// 10 s or so.
    pub fn flush_log(&self) {
        if let Some((n, line)) = self.log.flush() {
            tracing::info!("{}", crate::throttle::summary(n, &line));
        }
    }

    /// After the config or the runtime values changed: the new reports, and a change for the
    /// camera thread (before the camera started, [`start`](Self::start) reads them anyway).
    /// Returns what the camera adjusts or cannot take, one note per key, for the caller's
    /// single log line.
    fn replanned(&self, inner: &mut Inner) -> Vec<String> {
        let Some(facts) = &inner.facts else {
            return Vec::new();
        };
        let asked = inner.config.merged(&inner.runtime);
        inner.reports = plan(&asked, facts).reports;
        self.dirty.store(true, Ordering::Release);
        inner
            .reports
            .iter()
            .filter(|(_, r)| r.status != Status::Applied)
            .map(|(key, r)| report_text(key, r))
            .collect()
    }
}

/// The `[controls]` keys that differ between `old` and `new` but whose change does not show:
/// `runtime` sets them, or sets the key that excludes them (an `af-mode` of "continuous" over
/// the socket drops the file's `lens-position`, an `awb-mode` its `colour-gains`, and the
/// other way round), so what is asked of the camera is not the file's new value.
fn overridden_keys(
    new: &ControlsConfig,
    old: &ControlsConfig,
    runtime: &ControlsConfig,
) -> Vec<String> {
    let as_map = |c: &ControlsConfig| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let asked = as_map(&new.merged(runtime));
    let (new, old, runtime) = (as_map(new), as_map(old), as_map(runtime));
    let mut keys: Vec<String> = new
        .keys()
        .chain(old.keys())
        .filter(|k| new.get(*k) != old.get(*k))
        .filter(|k| runtime.get(*k).is_some_and(|v| !v.is_null()) || asked.get(*k) != new.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn log_report(key: &str, r: &Report) {
    match r.status {
        Status::Applied => tracing::info!("{}", report_text(key, r)),
        Status::Adjusted | Status::Unsupported => tracing::warn!("{}", report_text(key, r)),
    }
}

/// What a key's report says, as a log line names it.
fn report_text(key: &str, r: &Report) -> String {
    let value = r.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
    let note = r.note.as_deref().unwrap_or("");
    match r.status {
        Status::Applied if note.is_empty() => format!("controls.{key}: applied {value}"),
        Status::Applied => format!("controls.{key}: applied {value} ({note})"),
        Status::Adjusted => format!("controls.{key} = {}: adjusted to {value}: {note}", r.asked),
        Status::Unsupported => format!("controls.{key} = {}: unsupported: {note}", r.asked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::controls::facts::MODE_AUTO;
    use crate::camera::controls::test_util::toml;
    use crate::camera::controls::{Value, fixtures};

    #[test]
    fn a_reloaded_key_the_socket_overrides_is_named() {
        // (old file, new file, runtime, keys named)
        let table: [(&str, &str, &str, &[&str]); 9] = [
            ("ev = 1", "ev = 2", "", &[]),
            ("ev = 1", "ev = 2", "ev = 0", &["ev"]),
            ("ev = 1", "", "ev = 0", &["ev"]),
            (
                "",
                "brightness = 0.2\nev = 2",
                "ev = 0\nbrightness = 0.3",
                &["brightness", "ev"],
            ),
            ("ev = 1", "ev = 1\ncontrast = 2", "ev = 0", &[]),
            // The key that excludes it, set over the socket, overrides it too (a review:
            // only "applied [controls]" was said).
            (
                "lens-position = 2",
                "lens-position = 3",
                "af-mode = \"continuous\"",
                &["lens-position"],
            ),
            (
                "colour-gains = [1.5, 1.5]",
                "colour-gains = [2.0, 2.0]",
                "awb-mode = \"daylight\"",
                &["colour-gains"],
            ),
            (
                "af-mode = \"auto\"",
                "af-mode = \"continuous\"",
                "lens-position = 5",
                &["af-mode"],
            ),
            // A manual af-mode leaves the lens position: its change shows.
            (
                "lens-position = 2",
                "lens-position = 3",
                "af-mode = \"manual\"",
                &[],
            ),
        ];
        for (old, new, runtime, want) in table {
            let got = overridden_keys(&toml(new), &toml(old), &toml(runtime));
            assert_eq!(got, want.to_vec(), "{old:?} -> {new:?} under {runtime:?}");
        }
    }

    #[test]
    fn set_config_replans_for_the_camera_under_the_runtime_values() {
        let handle = ControlsHandle::new(&toml("ev = 1\nbrightness = 0.1"));
        handle.start(&fixtures::imx708_pisp());
        handle
            .update(&serde_json::json!({"brightness": 0.3}))
            .unwrap();
        assert!(handle.take_change().is_some());
        assert!(
            !handle.set_config(&toml("ev = 1\nbrightness = 0.1")),
            "same table"
        );
        assert!(handle.take_change().is_none());
        assert!(handle.set_config(&toml("ev = -1\nbrightness = 0.2")));
        let state = handle.state();
        assert!(state.pending);
        assert_eq!(state.asked, toml("ev = -1\nbrightness = 0.3"));
        let change = handle.take_change().expect("a change for the camera");
        assert_eq!(change.value(Id::ExposureValue), Some(Value::Float(-1.0)));
        assert_eq!(
            change.value(Id::Brightness),
            Some(Value::Float(0.3)),
            "the socket's value stays on top"
        );
    }

    #[test]
    fn handle_hands_a_change_to_the_camera_once() {
        let h = ControlsHandle::new(&toml("brightness = 0.2"));
        assert!(h.take_change().is_none());
        let start = h.start(&fixtures::imx219());
        assert_eq!(start.value(Id::Brightness), Some(Value::Float(0.2)));
        assert!(h.take_change().is_none());
        let s = h
            .update(&serde_json::json!({"exposure-time": 5000}))
            .unwrap();
        assert!(s.pending);
        assert_eq!(s.in_force["exposure-time"].status, Status::Applied);
        let change = h.take_change().expect("a change");
        assert_eq!(change.value(Id::ExposureTime), Some(Value::Int(5000)));
        assert!(h.take_change().is_none());
        assert!(h.update(&serde_json::json!({"exposure-time": 0})).is_err());
        assert!(
            h.take_change().is_none(),
            "a refused update changes nothing"
        );
        let s = h.reset();
        assert!(s.runtime.is_empty() && s.pending);
        let change = h.take_change().expect("reset is a change");
        assert_eq!(
            change.value(Id::ExposureTimeMode),
            Some(Value::Int(MODE_AUTO))
        );
        assert_eq!(h.state().changes_applied, 2);
    }
}
