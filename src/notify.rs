//! systemd integration: `READY=1` once frames flow and sockets are bound, `STATUS=` with the
//! stream URL and client count, `WATCHDOG=1` fed by frame progress (never by a timer
//! alone: a stalled camera must let the watchdog fire), `STOPPING=1` on shutdown. All of it
//! is a no-op outside systemd (no `NOTIFY_SOCKET`).
//!
//! A camera restart is the one exception to "frames only": at 1-2 fps the owner's three
//! attempts (each a backoff plus several frame periods for a good frame) outlast
//! `WatchdogSec`, and the watchdog would kill the process in the middle of a recovery that
//! works. So while an attempt is in progress the watchdog is fed too, but only up to the
//! deadline the owner gives each attempt ([`crate::frames::Recovery`]): an attempt wedged in
//! libcamera stops the feeding there, and the watchdog fires as it should. `STATUS=` says
//! "camera restarting (attempt n of 3)" meanwhile. The decision is [`Feeder::step`], a pure
//! function of the time and what the monitor saw, tested on a made-up clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::frames::Recovery;
use crate::state::Shared;

/// A message for systemd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Say {
    Watchdog,
    Status(String),
}

/// What the monitor saw at one moment.
#[derive(Clone, Debug)]
pub struct Seen {
    pub now: Instant,
    /// A new frame arrived since the last step.
    pub frame: bool,
    /// The camera restart in progress, as the owner announced it.
    pub recovery: Option<Recovery>,
    /// `STATUS=` when no restart is in progress (URL and clients).
    pub status: String,
}

/// The watchdog and status decisions: when to feed, what to say.
#[derive(Debug)]
pub struct Feeder {
    /// Feed at most this often (a quarter of `WatchdogSec`); `None`: no watchdog.
    every: Option<Duration>,
    last_feed: Option<Instant>,
    said: Option<String>,
}

impl Feeder {
    /// `said`: the `STATUS=` already sent (with READY).
    pub fn new(watchdog: Option<Duration>, said: String) -> Self {
        Feeder {
            every: watchdog.map(|w| w / 4),
            last_feed: None,
            said: Some(said),
        }
    }

    /// The messages for this moment: `WATCHDOG=1` when a frame arrived or an attempt is within
    /// its deadline (and the last feed is a quarter interval old), `STATUS=` when it changed.
    pub fn step(&mut self, seen: &Seen) -> Vec<Say> {
        let mut out = Vec::new();
        let recovering = seen.recovery.filter(|r| seen.now < r.until);
        if let Some(every) = self.every {
            let due = self
                .last_feed
                .is_none_or(|t| seen.now.saturating_duration_since(t) >= every);
            if due && (seen.frame || recovering.is_some()) {
                out.push(Say::Watchdog);
                self.last_feed = Some(seen.now);
            }
        }
        // The owner still says it is restarting, deadline or not.
        let status = match seen.recovery {
            Some(r) => format!("camera restarting (attempt {} of {})", r.attempt, r.of),
            None => seen.status.clone(),
        };
        if self.said.as_deref() != Some(status.as_str()) {
            out.push(Say::Status(status.clone()));
            self.said = Some(status);
        }
        out
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

fn status(url: Option<&str>, clients: u64) -> String {
    match url {
        Some(url) => format!("streaming at {url}, {clients} client(s)"),
        None => "stream disabled; stills on the socket".to_string(),
    }
}

pub fn ready(url: Option<&str>) {
    let status = status(url, 0);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Watches frame progress for as long as the service runs: feeds the watchdog while frames
/// arrive, logs stalls and recoveries, and keeps `STATUS=` current. Never returns.
///
/// `urls` are the stream URLs as [`crate::net::watch_addresses`] keeps them (empty when the
/// stream is disabled); `STATUS=` names the first and follows its changes.
pub async fn monitor(shared: Arc<Shared>, mut urls: tokio::sync::watch::Receiver<Vec<String>>) {
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(interval) = watchdog {
        tracing::info!(
            "systemd watchdog every {interval:?}, fed by frame progress (and during a camera restart, bounded)"
        );
    }
    // Feed four times per interval while frames arrive. A stall stops the feeding at once
    // (unless a restart attempt is in progress, up to its deadline), so systemd sees a silent
    // watchdog within one interval of the last frame.
    let stall = shared.stall_limit();
    let mut frames = shared.sink.subscribe();
    let mut online = true;
    let mut url = urls.borrow_and_update().first().cloned();
    let mut feeder = Feeder::new(watchdog, status(url.as_deref(), 0));
    loop {
        let progressed = tokio::time::timeout(Duration::from_millis(500), frames.changed()).await;
        let frame = match progressed {
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => {
                if !online {
                    tracing::info!("camera back online: frames arrive again");
                    online = true;
                }
                true
            }
            Err(_) => false,
        };
        let recovery = shared.stats.recovery();
        if online && !shared.online() {
            if recovery.is_some() {
                tracing::warn!("camera offline: no frame for more than {stall:?}; restarting it");
            } else {
                tracing::warn!(
                    "camera offline: no frame for more than {stall:?}; watchdog no longer fed"
                );
            }
            online = false;
        }
        if urls.has_changed().unwrap_or(false) {
            url = urls.borrow_and_update().first().cloned();
        }
        let clients = shared.stats.stream_clients.load(Ordering::Relaxed);
        let seen = Seen {
            now: Instant::now(),
            frame,
            recovery,
            status: status(url.as_deref(), clients),
        };
        for say in feeder.step(&seen) {
            match say {
                Say::Watchdog => send(&[NotifyState::Watchdog]),
                Say::Status(s) => send(&[NotifyState::Status(&s)]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::owner::{MAX_RESTARTS, RECOVERY_MARGIN, RESTART_BACKOFF, restart_wait};

    /// The unit's `WatchdogSec` (systemd/picker.service).
    const WATCHDOG: Duration = Duration::from_secs(10);
    /// The monitor wakes at least this often without frames.
    const POLL: Duration = Duration::from_millis(500);
    /// What stopping and starting the camera takes at most (within `RECOVERY_MARGIN`).
    const RESTART_OP: Duration = Duration::from_millis(1500);

    /// One run on a made-up clock: frames at `fps` for 10 s, the camera stops; the Pi's
    /// frontend times out max(1 s, 5 frames) later (vc4.cpp/pisp.cpp `setCameraTimeout`);
    /// the owner's attempts follow its constants, each failing as late as it can (its good
    /// frame never comes within `restart_wait`), until attempt `back_on` brings a good frame
    /// at the last moment it may. `wedged_on`: that attempt never ends (libcamera hangs).
    /// Returns the times of every message, in order, from 0.
    fn run(fps: u32, back_on: Option<u32>, wedged_on: Option<u32>) -> Vec<(Duration, Say)> {
        let t0 = Instant::now();
        let at = |d: Duration| t0 + d;
        let period = Duration::from_secs(1) / fps;
        let wait = restart_wait(period.as_micros() as i64);
        let last_frame = Duration::from_secs(10);
        let failed = last_frame + (period * 5).max(Duration::from_secs(1));
        // Each attempt: (announced, until, ends) and whether it ends with a frame.
        let mut attempts = Vec::new();
        let mut start = failed;
        let mut back_at = None;
        for k in 1..=MAX_RESTARTS {
            let backoff = RESTART_BACKOFF * 2u32.pow(k - 1);
            let until = start + backoff + wait + RECOVERY_MARGIN;
            attempts.push((k, start, until));
            if wedged_on == Some(k) {
                break;
            }
            let end = start + backoff + RESTART_OP + wait - Duration::from_millis(1);
            if back_on == Some(k) {
                back_at = Some(end);
                break;
            }
            start = end + Duration::from_millis(1);
        }
        let horizon = back_at.unwrap_or(start) + Duration::from_secs(40);
        let mut feeder = Feeder::new(Some(WATCHDOG), "streaming".into());
        let mut out = Vec::new();
        // The monitor's wake-ups: every frame, and every POLL between.
        let mut times: Vec<Duration> = Vec::new();
        let mut t = Duration::ZERO;
        while t <= horizon {
            times.push(t);
            t += POLL;
        }
        let mut frames: Vec<Duration> = (0..)
            .map(|i| period * i)
            .take_while(|f| *f <= last_frame)
            .collect();
        if let Some(b) = back_at {
            frames.extend((0..).map(|i| b + period * i).take_while(|f| *f <= horizon));
        }
        times.extend(&frames);
        times.sort();
        times.dedup();
        for t in times {
            let recovery = attempts
                .iter()
                .rev()
                .find(|(_, s, _)| *s <= t)
                .filter(|_| back_at.is_none_or(|b| t < b))
                .map(|&(attempt, _, until)| Recovery {
                    attempt,
                    of: MAX_RESTARTS,
                    until: at(until),
                });
            let seen = Seen {
                now: at(t),
                frame: frames.contains(&t),
                recovery,
                status: "streaming".into(),
            };
            out.extend(feeder.step(&seen).into_iter().map(|s| (t, s)));
        }
        out
    }

    fn feeds(msgs: &[(Duration, Say)]) -> Vec<Duration> {
        msgs.iter()
            .filter(|(_, s)| *s == Say::Watchdog)
            .map(|(t, _)| *t)
            .collect()
    }

    fn statuses(msgs: &[(Duration, Say)]) -> Vec<String> {
        msgs.iter()
            .filter_map(|(_, s)| match s {
                Say::Status(s) => Some(s.clone()),
                Say::Watchdog => None,
            })
            .collect()
    }

    #[test]
    fn a_camera_back_on_the_last_attempt_never_starves_the_watchdog_at_any_allowed_rate() {
        for fps in [1, 2, 3, 5, 10, 30, 60, 120] {
            for back_on in 1..=MAX_RESTARTS {
                let msgs = run(fps, Some(back_on), None);
                let feeds = feeds(&msgs);
                let widest = feeds.windows(2).map(|w| w[1] - w[0]).max().unwrap();
                assert!(
                    widest < WATCHDOG,
                    "{fps} fps, back on attempt {back_on}: {widest:?} without WATCHDOG=1"
                );
                // Fed after the camera came back too.
                assert!(
                    *feeds.last().unwrap() > Duration::from_secs(30),
                    "{fps} fps"
                );
                let mut want: Vec<String> = (1..=back_on)
                    .map(|n| format!("camera restarting (attempt {n} of 3)"))
                    .collect();
                want.push("streaming".into());
                assert_eq!(statuses(&msgs), want, "{fps} fps, back on {back_on}");
            }
        }
    }

    #[test]
    fn today_at_2_fps_the_third_attempt_would_start_after_the_watchdog_fired() {
        // The arithmetic, from the owner's constants: frames only feed the watchdog.
        let period = Duration::from_millis(500);
        let wait = restart_wait(500_000);
        let failed = (period * 5).max(Duration::from_secs(1));
        let third =
            failed + RESTART_BACKOFF + wait + RESTART_BACKOFF * 2 + wait + RESTART_BACKOFF * 4;
        assert!(third > WATCHDOG, "{third:?}");
    }

    #[test]
    fn a_wedged_attempt_stops_the_feeding_at_its_deadline() {
        for fps in [1, 30] {
            let msgs = run(fps, None, Some(2));
            let last = *feeds(&msgs).last().unwrap();
            let period = Duration::from_secs(1) / fps;
            let wait = restart_wait(period.as_micros() as i64);
            // The second attempt's deadline, bounded from the failure: nothing after it.
            let failed = Duration::from_secs(10) + (period * 5).max(Duration::from_secs(1));
            let bound = failed
                + RESTART_BACKOFF
                + RESTART_OP
                + wait
                + RESTART_BACKOFF * 2
                + wait
                + RECOVERY_MARGIN;
            assert!(last < bound, "{fps} fps: fed at {last:?}, past {bound:?}");
            // Horizon is 40 s later: the watchdog went silent for good.
            let end = msgs.last().unwrap().0;
            assert!(end <= bound, "{fps} fps: {msgs:?}");
        }
    }

    #[test]
    fn no_frames_and_no_restart_feeds_nothing() {
        let t0 = Instant::now();
        let mut f = Feeder::new(Some(WATCHDOG), "s".into());
        let seen = |s: u64, frame| Seen {
            now: t0 + Duration::from_secs(s),
            frame,
            recovery: None,
            status: "s".into(),
        };
        assert_eq!(f.step(&seen(0, true)), vec![Say::Watchdog]);
        // A quarter interval not reached: not yet.
        assert_eq!(f.step(&seen(1, true)), vec![]);
        assert_eq!(f.step(&seen(3, true)), vec![Say::Watchdog]);
        for s in 4..60 {
            assert_eq!(f.step(&seen(s, false)), vec![], "at {s} s");
        }
        // An attempt past its deadline feeds nothing either.
        let stale = Seen {
            recovery: Some(Recovery {
                attempt: 1,
                of: 3,
                until: t0 + Duration::from_secs(59),
            }),
            ..seen(60, false)
        };
        assert_eq!(
            f.step(&stale),
            vec![Say::Status("camera restarting (attempt 1 of 3)".into())]
        );
        // No watchdog: only the status.
        let mut quiet = Feeder::new(None, "s".into());
        assert_eq!(quiet.step(&seen(0, true)), vec![]);
        let changed = Seen {
            status: "t".into(),
            ..seen(1, true)
        };
        assert_eq!(quiet.step(&changed), vec![Say::Status("t".into())]);
    }

    #[test]
    fn each_boundary_of_step_falls_on_its_documented_side() {
        let t0 = Instant::now();
        let ns = Duration::from_nanos(1);
        let quarter = WATCHDOG / 4;
        let seen = |now: Instant, frame: bool, until: Option<Instant>| Seen {
            now,
            frame,
            recovery: until.map(|until| Recovery {
                attempt: 1,
                of: 3,
                until,
            }),
            status: "s".into(),
        };
        // A frame feeds once the last feed is exactly a quarter of `WatchdogSec` old (2.5 s
        // of the unit's 10), not a nanosecond sooner.
        let mut f = Feeder::new(Some(WATCHDOG), "s".into());
        assert_eq!(f.step(&seen(t0, true, None)), vec![Say::Watchdog]);
        assert_eq!(f.step(&seen(t0 + quarter - ns, true, None)), vec![]);
        assert_eq!(f.step(&seen(t0 + quarter, true, None)), vec![Say::Watchdog]);
        // ... counted from the last feed, not the first.
        assert_eq!(f.step(&seen(t0 + quarter * 2 - ns, true, None)), vec![]);
        assert_eq!(
            f.step(&seen(t0 + quarter * 2, true, None)),
            vec![Say::Watchdog]
        );
        // An attempt without frames feeds up to its deadline, not at it.
        let restarting = "camera restarting (attempt 1 of 3)";
        let until = t0 + Duration::from_secs(7);
        for (now, fed) in [(until - ns, true), (until, false), (until + ns, false)] {
            let mut f = Feeder::new(Some(WATCHDOG), restarting.into());
            let want = if fed { vec![Say::Watchdog] } else { vec![] };
            assert_eq!(
                f.step(&seen(now, false, Some(until))),
                want,
                "{:?}",
                now - t0
            );
        }
    }

    #[test]
    fn status_names_the_stream_s_url_and_clients_or_the_stills_socket() {
        let url = "http://192.0.2.7:8080/stream.mjpg";
        assert_eq!(
            status(Some(url), 0),
            "streaming at http://192.0.2.7:8080/stream.mjpg, 0 client(s)"
        );
        assert_eq!(
            status(Some(url), 3),
            "streaming at http://192.0.2.7:8080/stream.mjpg, 3 client(s)"
        );
        assert_eq!(status(None, 2), "stream disabled; stills on the socket");
    }
}
