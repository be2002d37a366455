//! When a stream client may be handed its next part: a pure decision over readings of the
//! connection's TCP state, so that a frame is chosen only when it can reach the viewer fresh.
//!
//! Bounding what picker's own socket holds unsent (`TCP_NOTSENT_LOWAT`) is not enough: frames
//! also wait in the network (a slow link's queue, which the congestion window lets grow to
//! 100+ KB) and in the client's receive buffer (an application reading one frame a second
//! leaves 100+ KB there, seconds of video). The kernel tells both: sent-but-unacknowledged
//! bytes are the first; the window the peer advertises shrinks by what its application has not
//! read, the second. So a part is handed over only once the previous one has nearly been
//! acknowledged, and only while the peer's window is (nearly) as large as it has ever been.
//!
//! A receiver reopens its window lazily (Linux advertises a read only once the window would
//! double), so a peer that has caught up may not say so; waiting for it to say so starves a
//! slow reader. And an application that takes a part, then sleeps, takes the next one only a
//! period later: a part sent as soon as it has taken the one before waits that whole period
//! in its buffer. So the decision keeps the reader's pace (time per part) and the phase of its
//! takes, and sends a part a margin before the take after those of the parts it holds. Each
//! part's acknowledgement says what the reader held when it came: nothing (it was waiting:
//! sent late, which sets the phase exactly and may shorten the pace), the part alone (sent
//! between two takes: the phase moves later by a growing step, so that an early phase is soon
//! found out by a late part, which costs the reader a short wait, not a period of age), or the
//! part before too (sent early: a longer pace). The rate it has been reading at (the right
//! edge of its window, net of the window's growth) bounds the pace. A peer that reads nothing
//! for `client-timeout` while it holds unread bytes or has bytes in flight is dropped,
//! whatever the size of its buffers; one whose readings do not change is looked at less often.
//!
//! The effects (reading `TCP_INFO`, sleeping) are in `stream.rs`. The tests replay a
//! never-reading client recorded at the server, and drive the decision against simulated
//! readers with Linux's lazy window.

use std::collections::VecDeque;
use std::time::Duration;

/// One reading of a client connection's TCP state (Linux `TCP_INFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When it was read, since the client arrived.
    pub at: Duration,
    /// Bytes the kernel holds not yet sent (`tcpi_notsent_bytes`).
    pub unsent: u32,
    /// Bytes sent and not yet acknowledged (`tcpi_unacked` segments times `tcpi_snd_mss`).
    pub unacked: u32,
    /// Bytes the peer has acknowledged since the connection began (`tcpi_bytes_acked`).
    pub acked: u64,
    /// The receive window the peer advertised last (`tcpi_snd_wnd`); `None` on kernels
    /// before 5.4, which do not say (then only the in-flight rule applies).
    pub window: Option<u32>,
    /// How long ago the last acknowledgement came (`tcpi_last_ack_recv`): the window above
    /// is as of then.
    pub since_ack: Duration,
    /// Bandwidth-delay product of the path (`tcpi_delivery_rate` times `tcpi_min_rtt`): what
    /// may be in flight without queueing anywhere.
    pub bdp: u32,
}

/// What to do with a client now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Hand it the newest part.
    Send,
    /// Read its state again after this long.
    Wait(Duration),
    /// It has read nothing for `client-timeout` while holding unread bytes: cut it off.
    Drop,
}

/// In flight (unsent + unacknowledged) at most this much, or the path's bandwidth-delay
/// product if larger, before the next part: the end of the previous part overlaps the next
/// one's start, and nothing queues in the network.
pub const IN_FLIGHT: u32 = 4 * 1024;
/// The peer counts as caught up while its window is within this of the largest seen (half a
/// part if parts are smaller): window rounding and the receiver's own bookkeeping move it by a
/// few segments.
const BACKLOG_OK: u32 = 4 * 1024;
/// How often a client that waits on the network is looked at again ...
pub const POLL: Duration = Duration::from_millis(5);
/// ... doubling up to this while its readings stay the same (a stalled peer, a full window):
/// 64 clients polled every 5 ms are ~12,800 `getsockopt` calls a second on a Pi Zero. A
/// reading that changes (an acknowledgement) brings it back to [`POLL`], so that a slow
/// link, whose acknowledgements come every few ms, is still looked at every 5 ms.
pub const POLL_BACKOFF: Duration = Duration::from_millis(40);
/// The longest wait between two looks while a reader is predicted to be busy.
const POLL_MAX: Duration = Duration::from_millis(50);
/// The longest a part is held back for a reader that holds unread bytes: then a part is sent
/// anyway, and its acknowledgement brings the reader's true window (the lazy update above).
const PREDICT_MAX: Duration = Duration::from_secs(2);
/// A part is due this long (at most a quarter of the pace) before the reader's next take.
const MARGIN: Duration = Duration::from_millis(50);
/// The least pace after a part that came early.
const PACE_MIN: Duration = Duration::from_millis(10);
/// Reading rates are measured over this span of the past.
const RATE_SPAN: Duration = Duration::from_secs(4);
/// ... and over no less than this, so that the first moments (a burst into empty buffers)
/// do not look like a fast reader.
const RATE_MIN_SPAN: Duration = Duration::from_secs(1);
/// One history point per this much time.
const HISTORY_STEP: Duration = Duration::from_millis(100);
/// History points kept (RATE_SPAN / HISTORY_STEP, and some).
const HISTORY: usize = 48;

/// The decision's memory for one client.
#[derive(Debug)]
pub struct Drain {
    timeout: Duration,
    /// The largest window the peer has advertised: its receive buffer, empty.
    max_window: u32,
    /// (when, bytes the peer's application has read so far), newest last.
    history: VecDeque<(Duration, i64)>,
    /// When what the peer has read last grew, and to what.
    progress: Option<(Duration, i64)>,
    /// What the peer had read as of the reading before.
    last_read: Option<i64>,
    /// Size of the part handed over last.
    last_part: u32,
    /// How long the reader takes per part, as far as the parts sent have shown.
    pace: Duration,
    /// A part was handed over whose acknowledgement has not been judged yet.
    judge: bool,
    /// When the reader took a part (seen or predicted): its takes are a pace apart from here.
    took: Option<Duration>,
    /// How much later the phase moves after the next part that arrives between two takes.
    drift: Duration,
    /// The part before came late too.
    late: bool,
    /// The reading before (unsent, unacked, acked, window), and the wait after it.
    reading: Option<(u32, u32, u64, Option<u32>)>,
    poll: Duration,
}

impl Drain {
    /// A client that is dropped once it reads nothing for `timeout` while holding unread bytes.
    pub fn new(timeout: Duration) -> Drain {
        Drain {
            timeout,
            max_window: 0,
            history: VecDeque::with_capacity(HISTORY),
            progress: None,
            last_read: None,
            last_part: 0,
            pace: Duration::ZERO,
            judge: false,
            took: None,
            drift: Duration::ZERO,
            late: false,
            reading: None,
            poll: POLL,
        }
    }

    /// Notes that a part of `len` bytes is being handed over.
    pub fn sent(&mut self, len: usize) {
        self.last_part = u32::try_from(len).unwrap_or(u32::MAX);
        self.judge = true;
    }

    /// What to do with the client, given a fresh reading of its connection.
    pub fn decide(&mut self, s: Sample) -> Decision {
        let in_flight = s.unsent.saturating_add(s.unacked);
        let reading = (s.unsent, s.unacked, s.acked, s.window);
        let unchanged = self.reading.replace(reading) == Some(reading);
        self.poll = if unchanged {
            (self.poll * 2).clamp(POLL, POLL_BACKOFF)
        } else {
            POLL
        };
        let Some(window) = s.window else {
            return if in_flight <= IN_FLIGHT.max(s.bdp) {
                Decision::Send
            } else {
                Decision::Wait(self.poll)
            };
        };
        self.max_window = self.max_window.max(window);
        let backlog = self.max_window - window;
        // What the peer's application has read: the right edge of its window, less the
        // buffer it has (the largest window), so the window growing is not counted as reading.
        // As of the last acknowledgement, which brought the window.
        let read = i64::try_from(s.acked).unwrap_or(i64::MAX) - i64::from(backlog);
        let seen = s.at.saturating_sub(s.since_ack);
        let ok = BACKLOG_OK.min((self.last_part / 2).max(1024));
        // Reading is counted when at least `ok` more has been read since the reading before:
        // the right edge of a window that nobody reads still creeps by a few hundred bytes a
        // part (the receiver's rounding and growth), which must not add up to "reading".
        let before = self.progress;
        self.note(seen, read, i64::from(ok));
        let progressed = self.progress != before;
        let since = self.progress.map_or(seen, |(t, _)| t);
        if (backlog > ok || in_flight > IN_FLIGHT.max(s.bdp))
            && s.at.saturating_sub(since) >= self.timeout
        {
            return Decision::Drop;
        }
        if in_flight > IN_FLIGHT.max(s.bdp) {
            return Decision::Wait(self.poll);
        }
        let part = self.last_part.max(1);
        // It took all it held just now (it was waiting for the part, or its window reopened):
        // its next take is one pace from here.
        if backlog <= ok && progressed {
            self.took = Some(seen);
        }
        if self.judge {
            self.judge = false;
            self.judge_pace(backlog, part, ok, seen);
        }
        // Parts it holds, taken one a pace from its next take; the next part is to arrive a
        // margin before the take after those.
        let held = backlog.saturating_sub(ok).div_ceil(part);
        let took = self.took.unwrap_or(seen);
        // Its first take after `seen`: whole paces on from the one known.
        let next = if self.pace.is_zero() {
            seen
        } else {
            let periods = seen.saturating_sub(took).as_nanos() / self.pace.as_nanos();
            took + self.pace * u32::try_from(periods).unwrap_or(u32::MAX).saturating_add(1)
        };
        let margin = MARGIN.min(self.pace / 2);
        let due = (next + self.pace * held).saturating_sub(margin);
        self.wait_until(s.at, due.min(seen + PREDICT_MAX))
    }

    /// [`Decision::Send`] at or after `due`, else a wait for it (looking again meanwhile).
    fn wait_until(&self, at: Duration, due: Duration) -> Decision {
        if at >= due {
            Decision::Send
        } else {
            Decision::Wait((due - at).min(POLL_MAX))
        }
    }

    /// Adjusts the pace and the phase once the part sent last has arrived, by what the peer
    /// held then (`backlog` bytes):
    /// - nothing: it was waiting for the part (sent late; `decide` has set the phase to its
    ///   take). It could go faster: the pace shortens, by an eighth when the part before came
    ///   late too, else by a sixteenth (one late part in a few is the phase probe below), and
    ///   to at most the time per part it has been reading at (it only reads what it is sent).
    /// - the part alone: sent between two takes, which the window does not tell apart, so the
    ///   phase moves later by a step that doubles while this goes on: a phase that is early
    ///   (a part waiting up to a period) is soon found out by a late part, which costs the
    ///   reader a short wait. The pace is at least 7/8 of the time per part it has read at,
    ///   once that rate spans [`RATE_MIN_SPAN`].
    /// - the part before as well: sent early. The pace lengthens by half, to at least the
    ///   time per part it has read at, and its next take is taken to be no sooner than now.
    fn judge_pace(&mut self, backlog: u32, part: u32, ok: u32, seen: Duration) {
        let per_part = self
            .rate()
            .filter(|r| *r > 0.0)
            .map_or(Duration::ZERO, |r| {
                Duration::from_secs_f64((f64::from(self.last_part) / r).min(60.0))
            });
        let step = MARGIN.min(self.pace / 2) / 4;
        let late = backlog <= ok;
        if late {
            let (n, d) = if self.late { (7, 8) } else { (15, 16) };
            self.pace = self.pace * n / d;
            if !per_part.is_zero() {
                self.pace = self.pace.min(per_part);
            }
            self.drift = step;
        } else if backlog <= part.saturating_add(ok) {
            let spanned = self
                .history
                .front()
                .is_some_and(|(t, _)| seen.saturating_sub(*t) >= RATE_MIN_SPAN);
            if spanned {
                self.pace = self.pace.max(per_part * 7 / 8).min(PREDICT_MAX);
            }
            if let Some(took) = &mut self.took {
                *took += self.drift;
            }
            self.drift = (self.drift * 2).clamp(step, self.pace / 4);
        } else {
            self.pace = (self.pace * 3 / 2)
                .max(per_part)
                .max(PACE_MIN)
                .min(PREDICT_MAX);
            self.took = Some(seen);
            self.drift = step;
        }
        self.late = late;
    }

    /// Records what the peer had read by `at`.
    fn note(&mut self, at: Duration, read: i64, step: i64) {
        match (self.progress, self.last_read) {
            (Some(_), Some(last)) if read < last + step => {}
            _ => self.progress = Some((at, read)),
        }
        self.last_read = Some(read);
        if self.history.back().is_some_and(|(t, _)| at < *t) {
            // An older acknowledgement than one already noted says nothing new.
            return;
        }
        // The first point stays (the rate needs two); later ones at least a step apart, the
        // newest reading moving the last point forward.
        let step = self
            .history
            .back()
            .is_none_or(|(t, _)| at.saturating_sub(*t) >= HISTORY_STEP);
        if self.history.len() < 2 || step {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back((at, read));
        } else if let Some(last) = self.history.back_mut() {
            *last = (at, read);
        }
    }

    /// Bytes per second the peer has read over the [`RATE_SPAN`] before the last
    /// acknowledgement (counted over at least [`RATE_MIN_SPAN`]).
    fn rate(&self) -> Option<f64> {
        let (now, newest) = *self.history.back()?;
        let &(t0, oldest) = self
            .history
            .iter()
            .find(|(t, _)| now.saturating_sub(*t) <= RATE_SPAN)?;
        let span = now.saturating_sub(t0).max(RATE_MIN_SPAN);
        Some((newest - oldest).max(0) as f64 / span.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A reading at `at` ms: unsent, unacked, acked, window, ms since the last ack.
    fn sample(at: u64, unsent: u32, unacked: u32, acked: u64, window: u32, since: u64) -> Sample {
        Sample {
            at: ms(at),
            unsent,
            unacked,
            acked,
            window: Some(window),
            since_ack: ms(since),
            bdp: 0,
        }
    }

    #[test]
    fn a_fast_reader_on_loopback_is_sent_every_part() {
        let mut d = Drain::new(Duration::from_secs(10));
        // Every part acknowledged at once, the window at its largest.
        for i in 0..300u64 {
            d.sent(10_900);
            let s = sample(i * 33, 0, 0, i * 10_900, 65_535, 0);
            assert_eq!(d.decide(s), Decision::Send, "part {i}");
        }
    }

    #[test]
    fn the_previous_part_must_have_left_the_network_first() {
        let mut d = Drain::new(Duration::from_secs(10));
        d.sent(10_900);
        // (unsent, unacked, decision): a slow link, the part leaving it segment by segment.
        for (unsent, unacked, want) in [
            (8_000, 2_896, Decision::Wait(POLL)),
            (0, 10_900, Decision::Wait(POLL)),
            (0, 5_792, Decision::Wait(POLL)),
            (0, 4_344, Decision::Wait(POLL)),
            (0, 4_097, Decision::Wait(POLL)),
            (0, 4_096, Decision::Send),
            (0, 2_896, Decision::Send),
            (0, 0, Decision::Send),
        ] {
            let s = sample(100, unsent, unacked, 0, 65_535, 0);
            assert_eq!(d.decide(s), want, "{unsent} unsent, {unacked} unacked");
        }
        // A path with a large bandwidth-delay product keeps that much in flight.
        let s = Sample {
            bdp: 64_000,
            ..sample(200, 0, 40_000, 0, 65_535, 0)
        };
        assert_eq!(d.decide(s), Decision::Send);
    }

    #[test]
    fn without_the_window_only_the_network_counts() {
        let mut d = Drain::new(Duration::from_secs(1));
        for (unacked, want) in [(9_000, Decision::Wait(POLL)), (1_000, Decision::Send)] {
            let s = Sample {
                window: None,
                ..sample(50_000, 0, unacked, 0, 0, 0)
            };
            assert_eq!(d.decide(s), want);
        }
    }

    /// Drives [`Drain`] against a simulated loopback client whose application takes one part
    /// every `period_ms` (blocking when none is there), with a 30 fps camera and 10 KB parts.
    /// The peer's window is reported as Linux does: as of the acknowledgement of our last
    /// part (1 ms after it is sent), never reopened by a read. Returns the ages (ms) of the
    /// parts the application took after the first 5 s, and how many it took in all.
    fn simulate(period_ms: u64, seconds: u64) -> (Vec<u64>, usize) {
        const PART: u64 = 10_000;
        const MAX: u64 = 64_000;
        let mut d = Drain::new(Duration::from_secs(10));
        let (mut queue, mut ages, mut taken) = (VecDeque::new(), Vec::new(), 0);
        let (mut acked, mut window, mut ack_at) = (0u64, MAX, 0u64);
        let mut pending_ack: Option<u64> = None;
        let (mut look_at, mut ready, mut last_frame) = (0u64, false, None);
        let mut next_read = 0u64;
        for t in 0..seconds * 1000 {
            if pending_ack == Some(t) {
                pending_ack = None;
                acked += PART;
                ack_at = t;
            }
            // The application: one part per period, or the next to arrive once it waits.
            if t >= next_read {
                if let Some(captured) = queue.pop_front() {
                    if t >= 5_000 {
                        ages.push(t - captured);
                    }
                    taken += 1;
                    next_read = t + period_ms;
                }
            }
            if pending_ack.is_none() && ack_at == t && acked > 0 {
                window = MAX.saturating_sub(queue.len() as u64 * PART);
            }
            if !ready && t >= look_at {
                let s = Sample {
                    at: ms(t),
                    unsent: 0,
                    unacked: if pending_ack.is_some() {
                        PART as u32
                    } else {
                        0
                    },
                    acked,
                    window: Some(window as u32),
                    since_ack: ms(t - ack_at),
                    bdp: 0,
                };
                match d.decide(s) {
                    Decision::Send => ready = true,
                    Decision::Wait(w) => look_at = t + w.as_millis() as u64,
                    Decision::Drop => panic!("a reader dropped at {t} ms"),
                }
            }
            // The newest frame, once one newer than the last sent exists.
            let frame = t * 30 / 1000;
            if ready && last_frame.is_none_or(|f| frame > f) {
                last_frame = Some(frame);
                ready = false;
                look_at = t;
                d.sent(PART as usize);
                queue.push_back(frame * 1000 / 30);
                pending_ack = Some(t + 1);
            }
        }
        ages.sort_unstable();
        (ages, taken)
    }

    #[test]
    fn readers_at_their_own_pace_are_sent_fresh_parts() {
        // (period ms, least parts a second it must get). The targets are p50 at most
        // two frame periods plus its own period, the worst at most twice that; the median
        // here is held to two frame periods plus a quarter period: a part sent once the
        // reader has taken the one before waits a whole period in its buffer (p50 ~500 ms at
        // 1 part/s, ~320 ms at 3), one sent a margin before its next take does not.
        for (period, least) in [(1000, 0.8), (333, 2.4), (100, 8.0), (0, 29.0)] {
            let (ages, taken) = simulate(period, 30);
            let target = 67 + period;
            let (p50, max) = (ages[ages.len() / 2], ages[ages.len() - 1]);
            assert!(p50 <= 67 + period / 4, "{period} ms reader: p50 {p50} ms");
            assert!(max <= 2 * target, "{period} ms reader: max {max} ms");
            let rate = taken as f64 / 30.0;
            assert!(rate >= least, "{period} ms reader: {rate:.1} parts/s");
        }
    }

    #[test]
    fn a_reader_that_catches_up_is_sent_the_next_part_a_pace_later() {
        let mut d = Drain::new(Duration::from_secs(10));
        assert_eq!(d.decide(sample(0, 0, 0, 0, 64_000, 0)), Decision::Send);
        d.sent(10_000);
        // Three parts unread: early, the pace at least PACE_MIN (nothing read yet, no rate).
        assert!(matches!(
            d.decide(sample(100, 0, 0, 30_000, 34_000, 0)),
            Decision::Wait(_)
        ));
        assert_eq!(d.pace, PACE_MIN);
        // The window reopened at 150 ms: it took everything then, and takes its next part a
        // pace later; the part is due a margin (half the pace, as it is short) before that.
        assert_eq!(
            d.decide(sample(150, 0, 0, 30_000, 63_000, 0)),
            Decision::Wait(ms(5))
        );
        assert_eq!(d.took, Some(ms(150)));
        assert_eq!(
            d.decide(sample(154, 0, 0, 30_000, 63_000, 4)),
            Decision::Wait(ms(1))
        );
        assert_eq!(
            d.decide(sample(155, 0, 0, 30_000, 63_000, 5)),
            Decision::Send
        );
    }

    /// A client that never reads, recorded at the server (`ss -ti`: ms, bytes acked, window)
    /// with 10 KB parts: its window shrinks by each part, though the right edge still creeps
    /// by several hundred bytes a part. Looked at every 50 ms in between, it is cut off
    /// `client-timeout` after the last byte it read.
    #[test]
    fn a_client_that_reads_nothing_is_dropped_after_the_timeout() {
        const RECORDED: [(u64, u64, u32); 6] = [
            (100, 14_248, 109_568),
            (600, 24_332, 100_352),
            (2_300, 34_205, 91_136),
            (4_600, 48_190, 77_824),
            (6_400, 62_125, 64_512),
            (8_400, 68_335, 58_368),
        ];
        let mut d = Drain::new(Duration::from_secs(3));
        d.sent(10_000);
        let mut drop_at = None;
        for t in (100..10_000u64).step_by(50) {
            let &(ack_at, acked, window) = RECORDED.iter().rev().find(|r| r.0 <= t).unwrap();
            if d.decide(sample(t, 0, 0, acked, window, t - ack_at)) == Decision::Drop {
                drop_at = Some(t);
                break;
            }
        }
        assert_eq!(drop_at, Some(3_100));
    }

    #[test]
    fn a_client_stuck_on_the_network_is_dropped_too() {
        let mut d = Drain::new(Duration::from_secs(2));
        d.sent(10_000);
        assert_eq!(
            d.decide(sample(0, 0, 10_000, 0, 64_000, 0)),
            Decision::Wait(POLL)
        );
        assert!(matches!(
            d.decide(sample(1_900, 0, 10_000, 0, 64_000, 0)),
            Decision::Wait(_)
        ));
        assert_eq!(
            d.decide(sample(2_000, 0, 10_000, 0, 64_000, 0)),
            Decision::Drop
        );
    }

    #[test]
    fn a_connection_whose_readings_stay_the_same_is_looked_at_less_often() {
        let mut d = Drain::new(Duration::from_secs(60));
        d.sent(10_000);
        // (unacked, acked, window, wait): the same reading again doubles the wait up to
        // POLL_BACKOFF; any change (an acknowledgement, a window) brings it back to POLL.
        let table = [
            (10_000, 0, 64_000, 5),
            (10_000, 0, 64_000, 10),
            (10_000, 0, 64_000, 20),
            (10_000, 0, 64_000, 40),
            (10_000, 0, 64_000, 40),
            (8_552, 1_448, 64_000, 5),
            (8_552, 1_448, 64_000, 10),
            (8_552, 1_448, 62_552, 5),
            (8_552, 1_448, 62_552, 10),
            (7_104, 1_448, 62_552, 5),
        ];
        for (i, (unacked, acked, window, want)) in table.into_iter().enumerate() {
            let s = sample(i as u64 * 50, 0, unacked, acked, window, 0);
            assert_eq!(d.decide(s), Decision::Wait(ms(want)), "reading {i}");
        }
        // Unsent bytes count as a change too; so does a window on kernels without one.
        assert_eq!(
            d.decide(sample(600, 1, 7_104, 1_448, 62_552, 0)),
            Decision::Wait(POLL)
        );
        let s = Sample {
            window: None,
            ..sample(650, 1, 7_104, 1_448, 0, 0)
        };
        assert_eq!(d.decide(s), Decision::Wait(POLL));
        assert_eq!(
            d.decide(Sample { at: ms(700), ..s }),
            Decision::Wait(ms(10))
        );
    }

    #[test]
    fn an_idle_client_that_has_read_everything_is_kept() {
        let mut d = Drain::new(Duration::from_secs(1));
        // The camera is slow; nothing to send, nothing unread, for a long time.
        for t in [0, 5_000, 60_000] {
            assert_eq!(d.decide(sample(t, 0, 0, 50_000, 64_000, t)), Decision::Send);
        }
    }

    /// A reader with a pace of 200 ms that took a part at 0 ms, behind by `backlog` bytes
    /// at 100 ms (50 KB read by then) after a part of `part` bytes: what the decision says.
    fn behind(part: usize, backlog: u32) -> Decision {
        behind_drain(part, backlog).1
    }

    /// [`behind`], with the decision's memory after it.
    fn behind_drain(part: usize, backlog: u32) -> (Drain, Decision) {
        let mut d = Drain::new(Duration::from_secs(10));
        assert_eq!(d.decide(sample(0, 0, 0, 0, 64_000, 0)), Decision::Send);
        assert_eq!(d.took, Some(ms(0)));
        d.pace = ms(200);
        d.sent(part);
        let decision = d.decide(sample(100, 0, 0, 50_000, 64_000 - backlog, 0));
        (d, decision)
    }

    #[test]
    fn a_part_came_early_only_when_more_than_a_part_and_ok_is_unread() {
        // 10 KB parts, ok 4 KiB: up to part + ok unread, the part alone: the pace stays, the
        // take stays (the phase step starts at zero). The next part is due a margin before
        // the take after the one at 200 ms: 350 ms.
        let (d, decision) = behind_drain(10_000, 14_096);
        assert_eq!((d.pace, d.took), (ms(200), Some(ms(0))));
        assert_eq!(decision, Decision::Wait(POLL_MAX));
        // A byte more: early. The pace grows by half (the ~280 ms a part it has read at is
        // less); its next take is no sooner than now, and the part after the two it holds is
        // due a margin before its third take.
        let (d, _) = behind_drain(10_000, 14_097);
        assert_eq!(d.pace, ms(300));
        assert_eq!(d.took, Some(ms(100)));
        let pace = d.pace;
        let mut d = d;
        let due = ms(100) + pace * 3 - MARGIN;
        let s = sample(0, 0, 0, 50_000, 64_000 - 14_097, 0);
        let at = |t: Duration| Sample {
            at: t,
            since_ack: t - ms(100),
            ..s
        };
        assert_eq!(d.decide(at(due - ms(1))), Decision::Wait(ms(1)));
        assert_eq!(d.decide(at(due)), Decision::Send);
    }

    #[test]
    fn caught_up_means_within_half_a_part_between_1_and_4_kib() {
        // (part, the largest backlog still caught up): half the part, at least 1 KiB, at most
        // 4 KiB. Caught up, the reader took all it held when the acknowledgement came (100
        // ms): its phase moves there. One byte more and it holds the part: the phase stays.
        for (part, ok) in [
            (20_000, 4_096),
            (10_000, 4_096),
            (4_000, 2_000),
            (1_000, 1_024),
        ] {
            let (d, _) = behind_drain(part, ok);
            assert_eq!(d.took, Some(ms(100)), "{part} B part, {ok} B behind");
            let (d, _) = behind_drain(part, ok + 1);
            assert_eq!(d.took, Some(ms(0)), "{part} B part, {} B behind", ok + 1);
        }
    }

    #[test]
    fn dropped_only_when_behind_by_more_than_caught_up_allows() {
        // A reader that has read nothing for the timeout, exactly `ok` behind (4 KiB with
        // 10 KB parts): caught up, kept; a byte more: dropped.
        // So is one with exactly IN_FLIGHT bytes in flight.
        for (backlog, unacked, want) in [
            (4_096, 0, Decision::Send),
            (4_097, 0, Decision::Drop),
            (0, 4_096, Decision::Send),
            (0, 4_097, Decision::Drop),
        ] {
            let mut d = Drain::new(Duration::from_secs(1));
            assert_eq!(d.decide(sample(0, 0, 0, 0, 64_000, 0)), Decision::Send);
            d.sent(10_000);
            let s = sample(
                1_000,
                0,
                unacked,
                u64::from(backlog),
                64_000 - backlog,
                1_000,
            );
            assert_eq!(
                d.decide(s),
                want,
                "{backlog} B behind, {unacked} B in flight"
            );
        }
    }

    #[test]
    fn the_rate_is_read_over_the_last_four_seconds_and_at_least_one() {
        let s = Duration::from_secs;
        // (history points, rate in bytes a second)
        type Row = (Vec<(Duration, i64)>, Option<f64>);
        let table: [Row; 6] = [
            (vec![], None),
            // One point: nothing read over the least span.
            (vec![(s(5), 100)], Some(0.0)),
            // Over less than a second: counted over one.
            (vec![(ms(0), 0), (ms(500), 1_000)], Some(1_000.0)),
            (vec![(ms(0), 0), (s(2), 4_000)], Some(2_000.0)),
            // A point exactly four seconds back is the oldest counted; older ones are not.
            (
                vec![(ms(0), 0), (s(1), 1_000), (s(5), 9_000)],
                Some(2_000.0),
            ),
            // Less read than before (the window grew): no negative rate.
            (vec![(ms(0), 5_000), (s(2), 1_000)], Some(0.0)),
        ];
        for (points, want) in table {
            let mut d = Drain::new(s(10));
            d.history.extend(points.iter().copied());
            assert_eq!(d.rate(), want, "{points:?}");
        }
    }

    #[test]
    fn the_pace_and_phase_after_each_judgement() {
        let s = Duration::from_secs;
        let none: &[(Duration, i64)] = &[];
        let reading = &[(ms(0), 0), (s(1), 10_000)][..]; // one part a second
        let slow = &[(ms(0), 0), (s(1), 1_000)][..]; // ten seconds a part
        let still = &[(ms(0), 0), (s(1), 0)][..]; // reading nothing
        let (late, part, early) = (4_096, 14_096, 14_097);
        // (history, pace, late before, drift, backlog, seen ms) -> (pace, drift, took ms,
        // late), parts of 10 KB (ok 4 KiB), the last take at 500 ms; the phase step is a
        // quarter of the margin (half the pace, at most 50 ms).
        type Row<'a> = (&'a [(Duration, i64)], Duration, bool, Duration, u32, u64);
        let us = Duration::from_micros;
        let table: [(Row<'_>, (Duration, Duration, u64, bool)); 17] = [
            // Late once: a sixteenth off the pace; twice running: an eighth; at most the time
            // per part it has read at; the step back to its least.
            (
                (none, ms(100), false, ms(40), late, 900),
                (us(93_750), us(12_500), 500, true),
            ),
            (
                (none, ms(100), true, ms(0), 0, 900),
                (us(87_500), us(12_500), 500, true),
            ),
            (
                (reading, s(2), false, ms(0), 0, 900),
                (s(1), us(12_500), 500, true),
            ),
            (
                (still, ms(100), false, ms(0), 0, 900),
                (us(93_750), us(12_500), 500, true),
            ),
            (
                (none, ms(40), false, ms(0), 0, 900),
                (us(37_500), ms(5), 500, true),
            ),
            // The part alone: the take moves on by the step, which doubles, from a quarter of
            // the margin to a quarter of the pace.
            (
                (none, ms(100), true, ms(10), part, 900),
                (ms(100), ms(20), 510, false),
            ),
            (
                (none, ms(100), false, ms(0), 5_000, 900),
                (ms(100), us(12_500), 500, false),
            ),
            (
                (none, ms(100), false, ms(20), part, 900),
                (ms(100), ms(25), 520, false),
            ),
            // ... and the pace is at least 7/8 of the time per part read, once that spans a
            // second (not yet at 999 ms), at most PREDICT_MAX.
            (
                (reading, ms(100), false, ms(0), part, 1_000),
                (ms(875), us(12_500), 500, false),
            ),
            (
                (reading, ms(100), false, ms(0), part, 999),
                (ms(100), us(12_500), 500, false),
            ),
            (
                (reading, s(1), false, ms(0), part, 1_000),
                (s(1), us(12_500), 500, false),
            ),
            (
                (slow, ms(100), false, ms(0), part, 1_000),
                (PREDICT_MAX, us(12_500), 500, false),
            ),
            // Early: half as long again, at least the time per part read and PACE_MIN, at most
            // PREDICT_MAX; its next take no sooner than now.
            (
                (none, ms(100), true, ms(20), early, 900),
                (ms(150), us(12_500), 900, false),
            ),
            (
                (none, ms(0), false, ms(0), early, 900),
                (PACE_MIN, ms(0), 900, false),
            ),
            (
                (reading, ms(100), false, ms(0), early, 900),
                (s(1), us(12_500), 900, false),
            ),
            (
                (still, ms(0), false, ms(0), early, 900),
                (PACE_MIN, ms(0), 900, false),
            ),
            (
                (none, ms(1_900), false, ms(0), early, 900),
                (PREDICT_MAX, us(12_500), 900, false),
            ),
        ];
        for ((points, pace, late_before, drift, backlog, seen), want) in table {
            let mut d = Drain::new(s(10));
            d.history.extend(points.iter().copied());
            d.last_part = 10_000;
            (d.pace, d.late, d.drift, d.took) = (pace, late_before, drift, Some(ms(500)));
            d.judge_pace(backlog, 10_000, 4_096, ms(seen));
            let got = (d.pace, d.drift, d.took, d.late);
            let want = (want.0, want.1, Some(ms(want.2)), want.3);
            assert_eq!(
                got, want,
                "{points:?}, {pace:?}, {backlog} B unread at {seen} ms"
            );
        }
        // Without a take known, the part alone leaves it unknown.
        let mut d = Drain::new(s(10));
        d.judge_pace(part, 10_000, 4_096, ms(900));
        assert_eq!(d.took, None);
    }

    #[test]
    fn progress_needs_a_step_and_history_keeps_points_a_step_apart() {
        let mut d = Drain::new(Duration::from_secs(10));
        // (at ms, read): (progress after, history after)
        type Row = ((u64, i64), (u64, i64), &'static [(u64, i64)]);
        let table: &[Row] = &[
            ((0, 0), (0, 0), &[(0, 0)]),
            // The second point is kept however close; read creeping by less than a step is
            // no progress, even when it adds up.
            ((50, 500), (0, 0), &[(0, 0), (50, 500)]),
            ((100, 1_000), (0, 0), &[(0, 0), (100, 1_000)]),
            // Exactly a step more than the reading before: progress.
            ((150, 2_000), (150, 2_000), &[(0, 0), (150, 2_000)]),
            // A step (100 ms) after the last point: a new point.
            (
                (250, 2_500),
                (150, 2_000),
                &[(0, 0), (150, 2_000), (250, 2_500)],
            ),
            // The same time again: the newest reading replaces the last point.
            (
                (250, 3_600),
                (250, 3_600),
                &[(0, 0), (150, 2_000), (250, 3_600)],
            ),
            // An older acknowledgement: the history is unchanged.
            (
                (200, 9_000),
                (200, 9_000),
                &[(0, 0), (150, 2_000), (250, 3_600)],
            ),
        ];
        for &((at, read), (pt, pr), history) in table {
            d.note(ms(at), read, 1_000);
            assert_eq!(d.progress, Some((ms(pt), pr)), "note at {at} ms");
            let want: Vec<_> = history.iter().map(|&(t, r)| (ms(t), r)).collect();
            assert_eq!(Vec::from(d.history.clone()), want, "note at {at} ms");
        }
        // At most HISTORY points, the oldest dropped.
        let mut d = Drain::new(Duration::from_secs(10));
        for i in 0..60u64 {
            d.note(ms(i * 100), i as i64 * 1_000, 1_000);
        }
        assert_eq!(d.history.len(), HISTORY);
        assert_eq!(d.history.front(), Some(&(ms(1_200), 12_000)));
    }
}
