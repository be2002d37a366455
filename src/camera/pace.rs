//! Pacing to `camera.framerate`: a camera that delivers more frames than asked (libcamera's
//! virtual camera runs at 85-100 fps whatever it is asked; a USB camera may have only faster
//! modes) must not cost a copy or an encode per surplus frame. The owner gives such frames
//! back to the camera untouched and counts them.
//!
//! Pure: decisions from capture timestamps alone, so tests replay recorded sequences.

/// Decides, frame by frame, which to keep so that kept frames are at least about one period
/// apart on average, without bursts after a late frame and without dropping frames of a
/// camera that runs at the asked rate with jitter.
#[derive(Clone, Debug)]
pub struct Pacer {
    period_ns: u64,
    /// When the next frame is due; `None` before the first.
    due: Option<u64>,
    /// The previous frame's time (kept or not): the camera's own interval tells whether the
    /// next frame will be closer to the schedule than this one.
    last: Option<u64>,
}

impl Pacer {
    /// A pacer for `period_ns` between frames; 0 keeps every frame.
    pub fn new(period_ns: u64) -> Self {
        Pacer {
            period_ns,
            due: None,
            last: None,
        }
    }

    /// The period paced to (zero: none).
    pub fn period(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.period_ns)
    }

    /// Frame period from the frame rate (frames per second, at least 1).
    pub fn for_rate(fps: u32) -> Self {
        Pacer::new(1_000_000_000 / u64::from(fps.max(1)))
    }

    /// How long after the frame captured at `timestamp_ns` (just passed to [`Pacer::keep`]) a
    /// request given back for being early may go to the camera again: when the next frame is
    /// due, so that a camera that makes a frame per request (libcamera's virtual one renders
    /// it at once) makes one that is kept, and one that runs freely has a buffer for the next.
    /// Never sooner, or a camera of the first kind would be asked again and again for frames
    /// a little early. At most one period; zero when not pacing. Relative to the frame, so the
    /// camera's clock need not be this machine's.
    pub fn requeue_after(&self, timestamp_ns: u64) -> std::time::Duration {
        let at = self.due.unwrap_or(0);
        std::time::Duration::from_nanos(at.saturating_sub(timestamp_ns).min(self.period_ns))
    }

    /// True to keep the frame captured at `timestamp_ns`, false to give it back.
    pub fn keep(&mut self, timestamp_ns: u64) -> bool {
        let interval = self.last.map(|l| timestamp_ns.saturating_sub(l));
        self.last = Some(timestamp_ns);
        if self.period_ns == 0 {
            return true;
        }
        let Some(due) = self.due else {
            self.due = Some(timestamp_ns.saturating_add(self.period_ns));
            return true;
        };
        if timestamp_ns < due {
            let early = due - timestamp_ns;
            // A clock that went backwards (a restarted camera) starts over.
            if early > 4 * self.period_ns {
                self.due = Some(timestamp_ns.saturating_add(self.period_ns));
                return true;
            }
            // Early: kept only when within a quarter period (a camera at the asked rate has
            // jitter either way) and closer to the schedule than the next frame will be, by
            // the camera's own interval (a camera faster than asked has a better one coming).
            let next_late = interval.map(|i| i.saturating_sub(early));
            if early > self.period_ns / 4 || next_late.is_some_and(|late| late <= early) {
                return false;
            }
        }
        // Kept. The next is due a period after the schedule, or after this frame if it came
        // early: a camera slightly faster than asked (a sensor's frame length is quantised)
        // must not drift out of the slack and lose a frame every few seconds. Late by more than
        // a period: start from this frame rather than catch up with a burst.
        // The schedule moves back by at most 2% of a period per frame: enough for a sensor a
        // little fast, not enough for a camera at 4/3 of the rate to keep every frame.
        let next = due.saturating_add(self.period_ns);
        let after_this = timestamp_ns.saturating_add(self.period_ns);
        self.due = Some(if timestamp_ns >= next {
            after_this
        } else {
            next.min(after_this)
                .max(next.saturating_sub(self.period_ns / 50))
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Kept frames out of `n` frames every `every_ns`, with `jitter(i)` added to each.
    fn kept(fps: u32, every_ns: u64, n: u64, jitter: impl Fn(u64) -> i64) -> u64 {
        let mut p = Pacer::for_rate(fps);
        (0..n)
            .filter(|i| {
                let t = (1_000 * MS + i * every_ns) as i64 + jitter(*i);
                p.keep(t as u64)
            })
            .count() as u64
    }

    #[test]
    fn a_camera_at_the_asked_rate_keeps_every_frame_even_with_jitter() {
        let period = 1_000_000_000 / 30;
        assert_eq!(kept(30, period, 300, |_| 0), 300);
        // +-2 ms of jitter, alternating.
        let j = |i: u64| {
            if i % 2 == 0 {
                2 * MS as i64
            } else {
                -2 * MS as i64
            }
        };
        assert_eq!(kept(30, period, 300, j), 300);
        // Slightly faster than asked (a sensor's quantised frame length: 30.3 fps for 30):
        // every frame kept, however long it runs; the early time must not add up.
        assert_eq!(kept(30, period * 99 / 100, 3_000, |_| 0), 3_000);
        assert_eq!(kept(30, period * 996 / 1000, 3_000, j), 3_000);
    }

    #[test]
    fn a_faster_camera_is_paced_to_the_asked_rate() {
        // The virtual camera: ~90 fps for 30 asked; 10 s of frames.
        let k = kept(30, 1_000_000_000 / 90, 900, |_| 0);
        assert!(
            (295..=305).contains(&k),
            "kept {k} of 900 for 10 s at 30 fps"
        );
        // 45 fps for 30 asked: two of three.
        let k = kept(30, 1_000_000_000 / 45, 450, |_| 0);
        assert!((295..=305).contains(&k), "kept {k} of 450");
        // 40 fps for 30 (three of four), with 0.2 ms of jitter; 30 fps for 25.
        let j = |i: u64| if i % 2 == 0 { 200_000 } else { -200_000 };
        let k = kept(30, 25 * MS, 1_600, j);
        assert!(
            (1_190..=1_230).contains(&k),
            "kept {k} of 1600 for 40 s at 30 fps"
        );
        let k = kept(25, 1_000_000_000 / 30, 1_200, |_| 0);
        assert!(
            (995..=1_010).contains(&k),
            "kept {k} of 1200 for 40 s at 25 fps"
        );
        // 100 fps for 1 fps asked.
        let k = kept(1, 10 * MS, 1_000, |_| 0);
        assert!((10..=11).contains(&k), "kept {k} of 1000");
    }

    #[test]
    fn a_late_frame_brings_no_burst_and_a_clock_reset_no_stall() {
        let mut p = Pacer::for_rate(10); // 100 ms
        assert!(p.keep(1_000 * MS));
        // 350 ms late: kept; the next is due a period after it, not at the old schedule.
        assert!(p.keep(1_450 * MS));
        assert!(!p.keep(1_500 * MS));
        assert!(p.keep(1_550 * MS));
        // The camera restarted with a new clock near zero: not paced for ever.
        assert!(p.keep(5 * MS));
        assert!(!p.keep(10 * MS));
        assert!(p.keep(105 * MS));
        // A request given back for an early frame returns when the next is due, never
        // sooner (a camera that renders per request would make another early frame), and
        // never more than a period later.
        let mut p = Pacer::for_rate(10);
        assert!(p.keep(1_000 * MS)); // due at 1100 ms
        assert!(!p.keep(1_020 * MS));
        assert_eq!(p.requeue_after(1_020 * MS).as_millis(), 80);
        assert_eq!(p.requeue_after(0).as_millis(), 100);
        assert_eq!(Pacer::new(0).requeue_after(5), std::time::Duration::ZERO);
        // Period 0: everything kept.
        let mut all = Pacer::new(0);
        assert!((0..10).all(|_| all.keep(0)));
    }

    #[test]
    fn the_period_is_a_second_over_the_rate() {
        // (fps asked, period)
        let table = [
            (25, 40 * MS),
            (30, 33_333_333),
            (1, 1_000 * MS),
            (0, 1_000 * MS),
        ];
        for (fps, ns) in table {
            let p = Pacer::for_rate(fps);
            assert_eq!(p.period(), std::time::Duration::from_nanos(ns), "{fps} fps");
        }
        assert_eq!(Pacer::new(0).period(), std::time::Duration::ZERO);
    }

    /// The boundaries of `keep`, to the nanosecond: no recorded camera lands on them, so
    /// each is a frame placed on it (period 100 ms, the first frame at 1000 ms, due at 1100).
    #[test]
    fn each_boundary_of_keep_falls_on_the_documented_side() {
        // (frames before the one asked about, the frame, kept?)
        let table: [(&[u64], u64, bool); 9] = [
            // Early by exactly a quarter period, the camera's next frame later than that:
            // kept (the slack is inclusive).
            (&[1_000 * MS], 1_075 * MS, true),
            // A nanosecond more: given back.
            (&[1_000 * MS], 1_075 * MS - 1, false),
            // Within the slack, but the camera's next frame (its interval later) would be
            // exactly as far past the schedule as this one is before it: given back for it.
            (&[1_000 * MS, 1_040 * MS], 1_080 * MS, false),
            // The next a nanosecond further past: this one is closer, kept.
            (&[1_000 * MS, 1_040 * MS - 1], 1_080 * MS, true),
            // A clock gone back by exactly four periods is still this clock: early, given back.
            (&[1_000 * MS], 700 * MS, false),
            // A nanosecond more: a restarted camera, kept, the schedule starts over.
            (&[1_000 * MS], 700 * MS - 1, true),
            // On time to the nanosecond, or late: kept.
            (&[1_000 * MS], 1_100 * MS, true),
            (&[1_000 * MS], 1_350 * MS, true),
            // The first frame: kept.
            (&[], 3, true),
        ];
        for (before, t, want) in table {
            let mut p = Pacer::for_rate(10);
            for &b in before {
                p.keep(b);
            }
            assert_eq!(p.keep(t), want, "after {before:?}: frame at {t} ns");
        }
    }

    /// Where the next frame is due after each kind of kept frame, seen through
    /// `requeue_after` (a frame given back returns to the camera when the next is due).
    #[test]
    fn the_schedule_after_a_kept_frame() {
        // (frames kept, then: the time asked about, how long until the next is due)
        let table: [(&[u64], u64, u64); 5] = [
            // The first frame: due a period later.
            (&[1_000 * MS], 1_000 * MS, 100 * MS),
            // Kept 10 ms early: due a period after the schedule, moved back by at most 2% of a
            // period (2 ms), so at 1198 ms.
            (&[1_000 * MS, 1_090 * MS], 1_190 * MS, 8 * MS),
            // Kept 1 ms early: the schedule moves back by that 1 ms only (due at 1199 ms).
            (&[1_000 * MS, 1_099 * MS], 1_190 * MS, 9 * MS),
            // Late by less than a period: due a period after the old schedule (1200 ms).
            (&[1_000 * MS, 1_150 * MS], 1_150 * MS, 50 * MS),
            // Late by a whole period: due a period after this frame, no burst to catch up.
            (&[1_000 * MS, 1_200 * MS], 1_200 * MS, 100 * MS),
        ];
        for (kept, t, want) in table {
            let mut p = Pacer::for_rate(10);
            for &k in kept {
                assert!(p.keep(k), "{kept:?}: {k} kept");
            }
            assert_eq!(
                p.requeue_after(t),
                std::time::Duration::from_nanos(want),
                "after {kept:?}, at {t} ns"
            );
        }
        // Before any frame nothing is due: a request given back may go at once.
        assert_eq!(
            Pacer::for_rate(10).requeue_after(5),
            std::time::Duration::ZERO
        );
    }

    /// A camera clock at the end of its range: no overflow, and a frame repeated on the
    /// saturated schedule is on time, not early.
    #[test]
    fn timestamps_at_the_end_of_the_clock_neither_panic_nor_stall() {
        let mut p = Pacer::for_rate(10);
        assert!(p.keep(u64::MAX - 10));
        assert!(p.keep(u64::MAX));
        assert!(p.keep(u64::MAX));
        assert_eq!(p.requeue_after(u64::MAX), std::time::Duration::ZERO);
    }
}
