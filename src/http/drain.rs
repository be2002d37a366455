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
//! slow reader. And the part sent last does not show at all: a Linux receiver advertises
//! the smaller of its free space and a threshold that grows with use, and one part fits in
//! the slack between the two (on loopback and over a 1500-byte link alike, measured: a
//! `requests` reader's window at its largest while it held one part, short by a part while
//! it held two). So the decision assumes the reader holds the part sent last until its pace
//! says it has read it, and sends once it will have read that and what its window shows:
//! the time per part its earlier parts showed, made longer when a part's acknowledgement
//! shows the part before still unread (sent early), shorter when not, and bounded by the
//! rate at which it has been reading (the right edge of its window, net of the window's
//! growth). A reader that keeps up has a pace near zero and is sent every part; a reader
//! of a part a second is sent a part about when it takes the one it holds, so the part it
//! takes next is at most about one of its periods old. (Sending whenever the window showed
//! it caught up, as before, left it two parts to hold: 1.2-1.6 s old at a part a second.)
//!
//! A pause (a robot at work) makes every part sent meanwhile come early, and so the pace
//! long; after it, a window that shows the reader caught up cannot say whether it is fast
//! again. So a reader held back by its pace while its window shows it caught up is tried
//! with two parts a quarter of its pace apart: both found taken, its pace is at most the time
//! between them, and the next trial may follow (a reader of every frame is back at every
//! frame within a second); the second found unread (a slow reader), the pace stays, and the
//! next trial waits 8 s, twice that after each further failure, up to 32 s (see [`Trial`]).
//!
//! A peer that reads nothing for `client-timeout` while it holds unread
//! bytes or has bytes in flight is dropped, whatever the size of its buffers. One whose
//! window stays closed, its readings the same, is looked at less and less often. One that
//! has taken every part at once for a while is looked at only every few parts: a look is a
//! system call per client and part, a tenth of the fan-out's CPU with 200 such readers.
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
/// ... doubling up to this while the peer's window is closed (it reads nothing: a stalled
/// viewer, a full buffer) and its readings stay the same: 64 clients polled every 5 ms are
/// ~12,800 `getsockopt` calls a second on a Pi Zero. A reading that changes (a window update,
/// an acknowledgement) brings it back to [`POLL`]. Only a closed window backs off: behind an
/// open one the wait is for the network, whose acknowledgements may come in bursts (Wi-Fi
/// power save, a long round trip), and a late look there would make every part later.
pub const POLL_BACKOFF: Duration = Duration::from_millis(40);
/// The longest wait between two looks while a reader is predicted to be busy.
const POLL_MAX: Duration = Duration::from_millis(50);
/// The longest a part is held back for a reader that holds unread bytes: then a part is sent
/// anyway, and its acknowledgement brings the reader's true window (the lazy update above).
const PREDICT_MAX: Duration = Duration::from_secs(2);
/// How long the acknowledgement of a part sent to a peer that showed no reading for the
/// timeout may take (see [`Drain::stalled`]): a part's time on a slow link and a round trip.
const PROBE_WAIT: Duration = Duration::from_secs(1);
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

/// Looks are skipped only while more than this many stream clients are connected: with few,
/// a look per part costs nothing that matters, and a reader that pauses (a robot at work) is
/// best looked at every part (see [`SKIP`]).
const CROWD: usize = 16;
/// Parts in a row a reader must have been sent at its first look (all read, nothing waiting
/// in the network) before looks are skipped ...
const STEADY: u32 = 8;
/// ... and how many parts in a row may then go without a look. A reader that stops then
/// holds at most this many parts more than it would have before the next look sees it: 100
/// ms of video at 30 fps, a reader of the camera's pace, shown stale when it reads again.
const SKIP: u32 = 3;
/// After a trial that found the reader slower than its window looked (see [`Trial`]), the
/// next waits this long, twice as long after each further one that fails, up to
/// [`TRIAL_MAX`]: each failed trial costs a slow reader two parts read up to two of its
/// periods late (a trial every 8 s left a quarter of a 1 part/s reader's parts older than
/// its target), and one that reads slowly for long is seldom asked. A trial that finds the
/// reader fast starts it again at this.
const TRIAL_EVERY: Duration = Duration::from_secs(8);
/// The longest wait between two trials.
const TRIAL_MAX: Duration = Duration::from_secs(32);
/// No trial while the pace is this short or shorter: the part is due within a frame anyway.
const TRIAL_PACE: Duration = Duration::from_millis(50);

/// Whether a reader held back by its pace reads faster now, asked with parts ahead of the
/// pace. A pause (a robot at work) teaches the pace that the reader is slow: every part sent
/// while it pauses comes early. After it, the reader's window shows it caught up, but a
/// caught-up window does not tell a reader that has taken the part sent last from one that
/// holds it (the slack, above), so only two parts in a row, the second a quarter of the pace
/// after the first, both found taken when acknowledged, show a reader faster than its pace:
/// its pace is then at most the time between them, and the next trial may follow at once
/// (a reader of every frame back from a 2 s pause is tried at 500, 125 and 31 ms: back at
/// every frame within a second). A slow reader shows the second still unread, and only the
/// next trial, [`TRIAL_EVERY`] later or more, asks again. A trial's parts teach the pace
/// nothing else: they went ahead of it on purpose. (Two parts a frame apart, tried first,
/// failed a reader of 10-15 parts a second for ever, left at 2-4 a second by the pace.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trial {
    /// None under way.
    Idle,
    /// The first part of a trial was decided on at this time; its acknowledgement is not
    /// judged yet.
    First(Duration),
    /// The first part, decided on at this time, was found taken: the second may go a quarter
    /// of the pace after it (if the reader is caught up then too).
    FirstTaken(Duration),
    /// The second part went, this long after the first.
    Second(Duration),
}

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
    /// The reading before (unsent, unacked, acked, window), and the wait on the network
    /// after it.
    reading: Option<(u32, u32, u64, Option<u32>)>,
    poll: Duration,
    /// Parts in a row sent at their first look, caught up.
    steady: u32,
    /// Parts sent without a look since the last one.
    skipped: u32,
    /// No look has been taken since the part handed over last.
    unlooked: bool,
    /// A part sent to a peer that showed no reading for the timeout, to learn its true window:
    /// when, and what had been acknowledged then. Cleared by progress.
    probe: Option<(Duration, u64)>,
    /// The trial under way, if any: see [`Trial`].
    trial: Trial,
    /// No trial before this.
    trial_after: Duration,
    /// The wait after the next trial that fails.
    trial_wait: Duration,
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
            reading: None,
            poll: POLL,
            steady: 0,
            skipped: 0,
            unlooked: false,
            probe: None,
            trial: Trial::Idle,
            trial_after: Duration::ZERO,
            trial_wait: TRIAL_EVERY,
        }
    }

    /// Asked when a new part could go, before the first look at the connection for it, with
    /// the number of stream clients: whether it may go without one. Yes, while there are more
    /// than [`CROWD`] clients, for a reader that has been caught up at the first look for
    /// each of its last [`STEADY`] parts, for up to [`SKIP`] parts in a row; the next look
    /// ([`Drain::decide`]) starts the count again, and any look that does not find it caught
    /// up ends the run.
    pub fn skip_look(&mut self, clients: usize) -> bool {
        let skip = clients > CROWD && self.steady >= STEADY && self.skipped < SKIP;
        if skip {
            self.skipped += 1;
        }
        skip
    }

    /// Notes that a part of `len` bytes is being handed over.
    pub fn sent(&mut self, len: usize) {
        self.last_part = u32::try_from(len).unwrap_or(u32::MAX);
        self.judge = true;
        self.unlooked = true;
    }

    /// What to do with the client, given a fresh reading of its connection.
    pub fn decide(&mut self, s: Sample) -> Decision {
        let first = std::mem::take(&mut self.unlooked);
        let (decision, caught_up) = self.judge_and_decide(s);
        self.skipped = 0;
        self.steady = if first && caught_up {
            self.steady.saturating_add(1)
        } else {
            0
        };
        decision
    }

    /// [`Drain::decide`], and whether the peer was found caught up: all read, the previous
    /// part out of the network.
    fn judge_and_decide(&mut self, s: Sample) -> (Decision, bool) {
        let in_flight = s.unsent.saturating_add(s.unacked);
        let reading = (s.unsent, s.unacked, s.acked, s.window);
        let unchanged = self.reading.replace(reading) == Some(reading);
        self.poll = if unchanged && s.window == Some(0) {
            (self.poll * 2).clamp(POLL, POLL_BACKOFF)
        } else {
            POLL
        };
        let Some(window) = s.window else {
            // No window said, so none closed: never a backoff here.
            return if in_flight <= IN_FLIGHT.max(s.bdp) {
                (Decision::Send, true)
            } else {
                (Decision::Wait(POLL), false)
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
        self.note(seen, read, i64::from(ok));
        let since = self.progress.map_or(seen, |(t, _)| t);
        if (backlog > ok || in_flight > IN_FLIGHT.max(s.bdp))
            && s.at.saturating_sub(since) >= self.timeout
        {
            return (self.stalled(s, in_flight, window, ok), false);
        }
        if in_flight > IN_FLIGHT.max(s.bdp) {
            return (Decision::Wait(self.poll), false);
        }
        let part = self.last_part.max(1);
        // The part sent last is unread when its acknowledgement comes, but a receiver's
        // window does not show it: it fits in the slack between the buffer's free space and
        // the largest window the receiver advertises. So a window short by most of a part
        // means one more unread: the one before (`early`).
        let early = backlog > (part / 4 * 3).max(ok);
        if self.judge {
            self.judge = false;
            self.judge_trial(s.at, early);
        }
        // Send once it will have read what it holds, at its pace: the part sent last (which
        // its window does not show), and what its window does.
        let behind = if backlog <= ok { 0 } else { backlog };
        let wait = self
            .pace
            .mul_f64(1.0 + f64::from(behind) / f64::from(part))
            .min(PREDICT_MAX);
        let due = seen + wait;
        if s.at >= due {
            self.trial = Trial::Idle;
            (Decision::Send, behind == 0)
        } else if let Some(trial) = self.next_trial(s.at, !early) {
            self.trial = trial;
            (Decision::Send, false)
        } else {
            (Decision::Wait((due - s.at).min(POLL_MAX)), false)
        }
    }

    /// Judges the acknowledgement of the part sent last (`early`: the reader still held
    /// the one before it), as part of a trial or of the pace.
    fn judge_trial(&mut self, now: Duration, early: bool) {
        match (self.trial, early) {
            // A part sent ahead of the pace on purpose says nothing of the pace when it
            // comes early: no trial for a while.
            (Trial::First(_) | Trial::Second(_), true) => {
                self.trial = Trial::Idle;
                self.trial_after = now + self.trial_wait;
                self.trial_wait = (self.trial_wait * 2).min(TRIAL_MAX);
            }
            (Trial::First(at), false) => self.trial = Trial::FirstTaken(at),
            (Trial::Second(gap), false) => {
                self.trial = Trial::Idle;
                self.trial_wait = TRIAL_EVERY;
                self.pace = self.pace.min(gap);
            }
            (Trial::Idle | Trial::FirstTaken(_), _) => {
                self.trial = Trial::Idle;
                self.judge_pace(early);
            }
        }
    }

    /// The trial part to send now, if one may go: the reader's window shows it `caught_up`
    /// though its pace says a part is not due. Caught up here is the window short by less
    /// than most of a part (not `early`), not within the few KB the sending rule asks: the
    /// receiver's largest window moves by up to 8 KB from one acknowledgement to the next
    /// (109568, 113664, 117760 bytes on loopback), and a reader back from a pause whose
    /// window stayed 8 KB short of the largest was never tried.
    fn next_trial(&self, now: Duration, caught_up: bool) -> Option<Trial> {
        if !caught_up || self.pace <= TRIAL_PACE {
            return None;
        }
        match self.trial {
            Trial::Idle if now >= self.trial_after => Some(Trial::First(now)),
            Trial::FirstTaken(first) if now >= first + self.pace / 4 => {
                Some(Trial::Second(now - first))
            }
            _ => None,
        }
    }

    /// What to do with a peer that has shown no reading for the timeout. With nothing in
    /// flight and its window open, it may have read everything while parts were held back
    /// for it without saying so (a receiver announces a reopened window only once it would
    /// double): one more part goes, whose acknowledgement brings its true window, and it is
    /// cut off only if that shows no reading either (or if none comes within [`PROBE_WAIT`]).
    /// A peer with bytes stuck in the network, or a closed window (whose reopening it would
    /// announce), is cut off at once.
    fn stalled(&mut self, s: Sample, in_flight: u32, window: u32, ok: u32) -> Decision {
        match self.probe {
            None if in_flight <= IN_FLIGHT.max(s.bdp) && window > ok => {
                self.probe = Some((s.at, s.acked));
                Decision::Send
            }
            Some((at, acked)) if s.acked <= acked && s.at.saturating_sub(at) < PROBE_WAIT => {
                Decision::Wait(POLL)
            }
            _ => Decision::Drop,
        }
    }

    /// Adjusts the pace once the part sent last has arrived: `early` when the reader still
    /// held the part before it. The rate it has been reading at bounds the pace from below
    /// when the part came early, and to half of it when not, so that a reader that could
    /// go faster is soon sent parts faster (it only reads what it is sent); a part on time
    /// never lengthens it (a reader that keeps up stays at zero, sent every part). Early
    /// lengthens it by a quarter, on time shortens it by an eighth: held there, about three
    /// parts in eight come early (a quarter more than the eighth, in proportion), and the
    /// others after the reader took the one before. (By a half, as before, a 10 parts/s
    /// reader was sent 6.6 parts a second, by a quarter 8.6.)
    fn judge_pace(&mut self, early: bool) {
        let per_part = self
            .rate()
            .filter(|r| *r > 0.0)
            .map_or(Duration::ZERO, |r| {
                Duration::from_secs_f64((f64::from(self.last_part) / r).min(60.0))
            });
        self.pace = if early {
            (self.pace * 5 / 4).max(per_part).max(PACE_MIN)
        } else {
            self.pace.min((self.pace * 7 / 8).max(per_part / 2))
        }
        .min(PREDICT_MAX);
    }

    /// Records what the peer had read by `at`.
    fn note(&mut self, at: Duration, read: i64, step: i64) {
        match (self.progress, self.last_read) {
            (Some(_), Some(last)) if read < last + step => {}
            _ => {
                self.progress = Some((at, read));
                self.probe = None;
            }
        }
        self.last_read = Some(read);
        if self.history.back().is_some_and(|(t, _)| at < *t) {
            // An older acknowledgement than one already noted says nothing new.
            return;
        }
        // Points a step apart, and the newest reading: it moves the last point forward
        // until that is a step after the point before it, and is kept from then on. (Measured
        // from the last point itself, which every reading moves, readings closer than a step
        // - a reader of every frame, 33 ms apart - never made a new point: after RATE_SPAN
        // its rate read as nothing, and the first pause made its pace the longest.)
        let len = self.history.len();
        let moving = len >= 2
            && self.history[len - 1]
                .0
                .saturating_sub(self.history[len - 2].0)
                < HISTORY_STEP;
        if moving {
            self.history[len - 1] = (at, read);
        } else {
            if len == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back((at, read));
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
    /// part (1 ms after it is sent), never reopened by a read, and short only by the parts
    /// unread before the newest (which fits in the slack: see the module doc). Under a
    /// model without that slack, the old rule's 1 s reader met its target here; with it,
    /// as on a real loopback, it got p50 1568 ms. Returns the ages (ms) of the
    /// parts the application took after the first 5 s, how many it took in all, and how
    /// many looks at the connection were taken. The first look after a part is skipped
    /// when [`Drain::skip_look`] says so, as the stream does.
    fn simulate(period_ms: u64, seconds: u64) -> (Vec<u64>, usize, usize) {
        const PART: u64 = 10_000;
        const MAX: u64 = 64_000;
        let mut d = Drain::new(Duration::from_secs(10));
        let (mut queue, mut ages, mut taken) = (VecDeque::new(), Vec::new(), 0);
        let (mut acked, mut window, mut ack_at) = (0u64, MAX, 0u64);
        let mut pending_ack: Option<u64> = None;
        let (mut look_at, mut ready, mut last_frame) = (0u64, false, None);
        let mut next_read = 0u64;
        let (mut first_look, mut looks) = (false, 0);
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
                // The newest part does not show: it fits in the slack (see the module doc).
                window = MAX.saturating_sub(queue.len().saturating_sub(1) as u64 * PART);
            }
            if !ready && t >= look_at && std::mem::take(&mut first_look) && d.skip_look(CROWD + 1) {
                ready = true;
            }
            if !ready && t >= look_at {
                looks += 1;
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
                first_look = true;
            }
        }
        ages.sort_unstable();
        (ages, taken, looks)
    }

    #[test]
    fn readers_at_their_own_pace_are_sent_fresh_parts() {
        // (period ms, least parts a second it must get): the targets, p50 at most
        // two frame periods plus its own period, the worst at most twice that.
        for (period, least) in [(1000, 0.8), (333, 2.4), (100, 8.0), (0, 29.0)] {
            let (ages, taken, looks) = simulate(period, 30);
            let target = 67 + period;
            let (p50, max) = (ages[ages.len() / 2], ages[ages.len() - 1]);
            assert!(p50 <= target, "{period} ms reader: p50 {p50} ms");
            assert!(max <= 2 * target, "{period} ms reader: max {max} ms");
            let rate = taken as f64 / 30.0;
            assert!(rate >= least, "{period} ms reader: {rate:.1} parts/s");
            // Only the reader of the camera's pace is looked at less than once a part.
            if period == 0 {
                assert!(looks * 3 < taken, "{looks} looks for {taken} parts");
            } else {
                assert!(
                    looks >= taken,
                    "{period} ms reader: {looks} looks, {taken} parts"
                );
            }
        }
    }

    /// Which of `parts` parts (one a frame period) had a look first, for a reader whose look
    /// at part `i` finds it `caught_up(i)` (else a part unread), on a kernel that says the
    /// window or (`window: false`) one that does not (then the part is still in flight).
    fn looked(parts: u64, window: bool, caught_up: impl Fn(u64) -> bool) -> Vec<u64> {
        looked_among(CROWD + 1, parts, window, caught_up)
    }

    /// [`looked`] with `clients` stream clients.
    fn looked_among(
        clients: usize,
        parts: u64,
        window: bool,
        caught_up: impl Fn(u64) -> bool,
    ) -> Vec<u64> {
        let mut d = Drain::new(Duration::from_secs(10));
        let mut looked = Vec::new();
        for i in 0..parts {
            if !d.skip_look(clients) {
                looked.push(i);
                let (unacked, unread) = if caught_up(i) {
                    (0, 0)
                } else {
                    (10_000, 10_000)
                };
                // Acknowledged as the part went, a frame period before the look.
                let s = sample(i * 33, 0, 0, i * 10_000, 64_000 - unread, 33);
                d.decide(if window {
                    s
                } else {
                    Sample {
                        window: None,
                        unacked,
                        ..s
                    }
                });
            }
            d.sent(10_000);
        }
        looked
    }

    #[test]
    fn a_reader_caught_up_at_every_look_is_looked_at_every_fourth_part() {
        // The first part has nothing before it to judge; then STEADY parts caught up at their
        // first look; then SKIP parts go without one, and every look starts that again.
        let want: Vec<u64> = (0..=8).chain((12..40).step_by(4)).collect();
        assert_eq!(looked(40, true, |_| true), want);
        assert_eq!(looked(40, false, |_| true), want);
    }

    #[test]
    fn with_few_clients_every_part_is_looked_at() {
        let all: Vec<u64> = (0..40).collect();
        assert_eq!(looked_among(CROWD, 40, true, |_| true), all);
        assert_eq!(looked_among(1, 40, true, |_| true), all);
        assert_ne!(looked_among(CROWD + 1, 40, true, |_| true), all);
    }

    #[test]
    fn a_reader_that_stops_is_looked_at_again_within_four_parts_and_then_at_every_part() {
        // It stops reading after part 17: parts 17-19 went without a look; from the look at
        // 20, which finds it behind, every part has one.
        let want: Vec<u64> = (0..=8).chain([12, 16]).chain(20..40).collect();
        assert_eq!(looked(40, true, |i| i < 18), want);
        assert_eq!(looked(40, false, |i| i < 18), want);
        // Behind once (a second and more in, its rate known): the count starts again.
        let want: Vec<u64> = (0..=8)
            .chain((12..=40).step_by(4))
            .chain(41..=48)
            .chain([52, 56])
            .collect();
        assert_eq!(looked(60, true, |i| i != 40), want);
    }

    #[test]
    fn only_the_first_look_after_a_part_counts_for_skipping() {
        // Each part's first look finds the one before still in flight, the second look
        // finds it gone: that reader never has a look skipped.
        let mut d = Drain::new(Duration::from_secs(10));
        for i in 0..40u64 {
            assert!(!d.skip_look(CROWD + 1), "part {i}");
            let t = i * 33;
            d.decide(sample(t, 0, 10_000, i * 10_000, 64_000, 0));
            assert_eq!(
                d.decide(sample(t + 5, 0, 0, (i + 1) * 10_000, 64_000, 0)),
                Decision::Send
            );
            d.sent(10_000);
        }
    }

    #[test]
    fn a_reader_that_catches_up_says_so_with_its_window() {
        let mut d = Drain::new(Duration::from_secs(10));
        assert_eq!(d.decide(sample(0, 0, 0, 0, 64_000, 0)), Decision::Send);
        d.sent(10_000);
        assert!(matches!(
            d.decide(sample(100, 0, 0, 30_000, 34_000, 0)),
            Decision::Wait(_)
        ));
        // The window reopened: it may still hold the part sent last, which no window shows,
        // so that part's time at its pace (the least, nothing read before) and no more,
        // whatever it held before.
        assert_eq!(
            d.decide(sample(150, 0, 0, 30_000, 63_000, 0)),
            Decision::Wait(PACE_MIN)
        );
        assert_eq!(
            d.decide(sample(160, 0, 0, 30_000, 63_000, 10)),
            Decision::Send
        );
    }

    /// A client that never reads, recorded at the server (`ss -ti`: ms, bytes acked, window)
    /// with 10 KB parts: its window shrinks by each part, though the right edge still creeps
    /// by several hundred bytes a part. Looked at every 50 ms in between, it is sent one more
    /// part `client-timeout` after the last byte it read, acknowledged 1 ms later with the
    /// window shrunk by it, and cut off at the look after that.
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
        let (mut drop_at, mut probe_ack, mut probes) = (None, None, vec![]);
        for t in (100..10_000u64).step_by(50) {
            let recorded = *RECORDED.iter().rev().find(|r| r.0 <= t).unwrap();
            let (ack_at, acked, window) = probe_ack.unwrap_or(recorded);
            match d.decide(sample(t, 0, 0, acked, window, t - ack_at)) {
                Decision::Drop => {
                    drop_at = Some(t);
                    break;
                }
                // The recording has the acknowledgements of the parts its server sent; the
                // part sent to learn the true window is modelled.
                Decision::Send if d.probe.is_some() => {
                    probes.push(t);
                    probe_ack = Some((t + 1, acked + 10_000, window - 10_000));
                }
                Decision::Send | Decision::Wait(_) => {}
            }
        }
        assert_eq!(probes, [3_100]);
        assert_eq!(drop_at, Some(3_150));
    }

    /// A reader that held parts, then read them all while parts were held back for it,
    /// without its window saying so: at the timeout it is sent one part, whose acknowledgement
    /// shows the window it had reopened, and it is kept. Had it read nothing, or had the part
    /// not been acknowledged within PROBE_WAIT, it would have been cut off.
    #[test]
    fn a_reader_whose_reading_went_unsaid_is_sent_a_part_before_it_is_dropped() {
        // (window the part's acknowledgement shows, or none within PROBE_WAIT; decision after)
        for (after, want) in [
            (Some(64_000), Decision::Wait(POLL)),
            (Some(14_000), Decision::Drop),
            (None, Decision::Drop),
        ] {
            let mut d = Drain::new(Duration::from_secs(3));
            assert_eq!(d.decide(sample(0, 0, 0, 0, 64_000, 0)), Decision::Send);
            d.sent(10_000);
            // 30 KB held unread at 100 ms; at 1.5 s a part held too (the window shrunk by
            // it); then silence, the reader's reading unsaid.
            let held = sample(100, 0, 0, 40_000, 34_000, 0);
            assert!(matches!(d.decide(held), Decision::Wait(_)));
            d.sent(10_000);
            let silent = |t| sample(t, 0, 0, 50_000, 24_000, t - 1_500);
            assert!(matches!(d.decide(silent(1_500)), Decision::Wait(_)));
            // The timeout after the last reading: one part, not a drop.
            assert!(matches!(d.decide(silent(3_050)), Decision::Wait(_)));
            assert_eq!(d.decide(silent(3_100)), Decision::Send);
            // Until it is acknowledged, a wait.
            assert_eq!(d.decide(silent(3_150)), Decision::Wait(POLL));
            d.sent(10_000);
            let s = match after {
                Some(window) => sample(3_200, 0, 0, 60_000, window, 0),
                None => silent(4_100),
            };
            let decision = d.decide(s);
            if want == Decision::Drop {
                assert_eq!(decision, want, "{after:?}");
            } else {
                // Kept, the question answered (its next part at its pace, or at once as a
                // trial of whether it reads faster: its window shows it caught up).
                assert_ne!(decision, Decision::Drop);
                assert_eq!(d.probe, None);
            }
        }
    }

    #[test]
    fn a_silent_reader_with_its_window_closed_or_bytes_in_flight_is_cut_off_at_once() {
        // (window, bytes in flight, decision) at the timeout, 10 KB parts: a window of at most
        // half a part and 4 KiB is closed (its reopening would be announced), and bytes in
        // flight bring an acknowledgement of their own; otherwise a part goes first.
        for (window, unacked, want) in [
            (4_096, 0, Decision::Drop),
            (4_097, 0, Decision::Send),
            (30_000, 4_097, Decision::Drop),
            (30_000, 4_096, Decision::Send),
        ] {
            let mut d = Drain::new(Duration::from_secs(3));
            assert_eq!(d.decide(sample(0, 0, 0, 0, 64_000, 0)), Decision::Send);
            d.sent(10_000);
            let s = sample(3_000, 0, unacked, 0, window, 0);
            assert_eq!(d.decide(s), want, "window {window}, {unacked} B in flight");
        }
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
    fn a_closed_window_whose_readings_stay_the_same_is_looked_at_less_often() {
        let mut d = Drain::new(Duration::from_secs(60));
        d.sent(10_000);
        // (unsent, unacked, acked, window, wait): behind a closed window, the same reading
        // again doubles the wait up to POLL_BACKOFF; any change (an acknowledgement, the
        // window opening) brings it back to POLL. Behind an open window the wait is for the
        // network, and stays POLL however long the readings repeat.
        let table = [
            (10_000, 0, 0, 0, 5),
            (10_000, 0, 0, 0, 10),
            (10_000, 0, 0, 0, 20),
            (10_000, 0, 0, 0, 40),
            (10_000, 0, 0, 0, 40),
            (9_000, 1_000, 0, 0, 5),
            (9_000, 1_000, 0, 0, 10),
            (9_000, 0, 1_000, 0, 5),
            (9_000, 0, 1_000, 0, 10),
            (9_000, 0, 1_000, 64_000, 5),
            (9_000, 0, 1_000, 64_000, 5),
            (9_000, 0, 1_000, 64_000, 5),
            (9_000, 0, 1_000, 1, 5),
            (9_000, 0, 1_000, 1, 5),
            (9_000, 0, 1_000, 0, 5),
            (9_000, 0, 1_000, 0, 10),
        ];
        for (i, (unsent, unacked, acked, window, want)) in table.into_iter().enumerate() {
            let s = sample(i as u64 * 50, unsent, unacked, acked, window, 0);
            assert_eq!(d.decide(s), Decision::Wait(ms(want)), "reading {i}");
        }
        // A kernel that does not say the window never backs off.
        let s = Sample {
            window: None,
            ..sample(900, 9_000, 0, 1_000, 0, 0)
        };
        assert_eq!(d.decide(s), Decision::Wait(POLL));
        assert_eq!(d.decide(Sample { at: ms(950), ..s }), Decision::Wait(POLL));
    }

    #[test]
    fn an_idle_client_that_has_read_everything_is_kept() {
        let mut d = Drain::new(Duration::from_secs(1));
        // The camera is slow; nothing to send, nothing unread, for a long time.
        for t in [0, 5_000, 60_000] {
            assert_eq!(d.decide(sample(t, 0, 0, 50_000, 64_000, t)), Decision::Send);
        }
    }

    /// A reader with a pace of its own (50 KB read in the first 100 ms), behind by `backlog`
    /// bytes after a part of `part` bytes: what the decision says at once.
    fn behind(part: usize, backlog: u32) -> Decision {
        behind_drain(part, backlog).1
    }

    /// [`behind`], with the decision's memory after it.
    fn behind_drain(part: usize, backlog: u32) -> (Drain, Decision) {
        let mut d = Drain::new(Duration::from_secs(10));
        assert_eq!(d.decide(sample(0, 0, 0, 0, 64_000, 0)), Decision::Send);
        d.sent(part);
        let decision = d.decide(sample(100, 0, 0, 50_000, 64_000 - backlog, 0));
        (d, decision)
    }

    #[test]
    fn a_part_came_early_when_its_window_is_short_by_most_of_a_part() {
        // 10 KB parts: the reader has read ~43 KB a second, ~235 ms a part. Its window short
        // by more than three quarters of a part, it still held the part before (the part
        // itself does not show): the pace is the time per part. Not so: the pace stays (a
        // part on time never lengthens it).
        let (d, _) = behind_drain(10_000, 7_500);
        assert_eq!(d.pace, Duration::ZERO, "on time");
        let (d, _) = behind_drain(10_000, 7_501);
        assert!(d.pace > ms(220) && d.pace < ms(250), "early: {:?}", d.pace);
        // With small parts, early means more than `ok` short. The wait is for what it holds
        // (the part and what shows) at that pace, the time left, not rounded up to the next
        // look: 1 KB a ~20.4 ms (49 KB read a second), times 2.025, from the acknowledgement.
        assert_eq!(behind_drain(1_000, 1_024).0.pace, Duration::ZERO);
        assert!(
            matches!(behind(1_000, 1_025), Decision::Wait(w) if w > ms(41) && w < ms(42)),
            "{:?}",
            behind(1_000, 1_025)
        );
    }

    /// What a reader with a pace of 20 ms says, behind by `backlog` bytes 100 ms after a
    /// part of `part` bytes was sent, acknowledged at once (the pace kept, not judged).
    fn with_pace(part: usize, backlog: u32) -> Decision {
        let mut d = Drain::new(Duration::from_secs(10));
        assert_eq!(d.decide(sample(0, 0, 0, 0, 64_000, 0)), Decision::Send);
        d.sent(part);
        d.pace = ms(20);
        d.judge = false;
        d.decide(sample(10, 0, 0, 0, 64_000 - backlog, 10))
    }

    #[test]
    fn caught_up_means_within_half_a_part_between_1_and_4_kib() {
        // (part, the largest backlog still caught up): half the part, at least 1 KiB, at most
        // 4 KiB. Caught up, it holds only the part sent last: one pace after that part's
        // acknowledgement. One byte more counts too: a longer wait.
        for (part, ok) in [
            (20_000, 4_096),
            (10_000, 4_096),
            (4_000, 2_000),
            (1_000, 1_024),
        ] {
            assert_eq!(
                with_pace(part, ok),
                Decision::Wait(ms(10)),
                "{part} B part, {ok} B behind"
            );
            assert!(
                matches!(with_pace(part, ok + 1), Decision::Wait(w) if w > ms(10)),
                "{part} B part, {} B behind: {:?}",
                ok + 1,
                with_pace(part, ok + 1)
            );
        }
        // Without a pace, caught up is sent at once.
        assert_eq!(behind(10_000, 4_096), Decision::Send);
    }

    #[test]
    fn dropped_only_when_behind_by_more_than_caught_up_allows() {
        // A reader that has read nothing for the timeout, exactly `ok` behind (4 KiB with
        // 10 KB parts): caught up, kept; a byte more: sent the one part that asks its true
        // window (see the test above). One with exactly IN_FLIGHT bytes in flight is kept; a
        // byte more: dropped.
        for (backlog, unacked, want) in [
            (4_096, 0, Decision::Send),
            (4_097, 0, Decision::Send),
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
            // Only the reader behind is sent its part as a question.
            assert_eq!(d.probe.is_some(), backlog == 4_097, "{backlog} B behind");
            if backlog == 4_097 {
                // That part acknowledged and the window shrunk by it: no reading, dropped.
                d.sent(10_000);
                let s = sample(1_100, 0, 0, 14_097, 54_000 - backlog, 0);
                assert_eq!(d.decide(s), Decision::Drop);
            }
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
    fn the_pace_after_each_judgement() {
        let s = Duration::from_secs;
        // (history, pace before, early, pace after), parts of 10 KB.
        let none: &[(Duration, i64)] = &[];
        let reading = &[(ms(0), 0), (s(1), 10_000)][..]; // one part a second
        let still = &[(ms(0), 0), (s(1), 0)][..]; // reading nothing
        let table = [
            // No rate yet: early lengthens by a quarter (at least PACE_MIN); on time
            // shortens by an eighth.
            (none, Duration::ZERO, true, PACE_MIN),
            (none, Duration::ZERO, false, Duration::ZERO),
            (none, ms(100), true, ms(125)),
            (none, ms(100), false, ms(87) + Duration::from_micros(500)),
            (none, ms(1_700), true, PREDICT_MAX),
            // The rate bounds it from below: the time per part when early; half that when
            // on time, which never lengthens it.
            (reading, Duration::ZERO, true, s(1)),
            (reading, Duration::ZERO, false, Duration::ZERO),
            (reading, ms(300), false, ms(300)),
            (reading, ms(800), false, ms(700)),
            // A rate of zero is no rate.
            (still, Duration::ZERO, true, PACE_MIN),
            (still, Duration::ZERO, false, Duration::ZERO),
        ];
        for (points, before, early, want) in table {
            let mut d = Drain::new(s(10));
            d.history.extend(points.iter().copied());
            d.last_part = 10_000;
            d.pace = before;
            d.judge_pace(early);
            assert_eq!(d.pace, want, "{points:?}, {before:?}, early {early}");
        }
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
            // Less than a step after the point before it: the newest reading moves it.
            ((100, 1_000), (0, 0), &[(0, 0), (100, 1_000)]),
            // Now a step after the point before it, it stays; exactly a step more than the
            // reading before: progress.
            (
                (150, 2_000),
                (150, 2_000),
                &[(0, 0), (100, 1_000), (150, 2_000)],
            ),
            (
                (250, 2_500),
                (150, 2_000),
                &[(0, 0), (100, 1_000), (250, 2_500)],
            ),
            // The newest point stays once it is a step after the one before, even when the
            // next reading is as old (the same acknowledgement seen again): it moves on.
            (
                (250, 3_600),
                (250, 3_600),
                &[(0, 0), (100, 1_000), (250, 2_500), (250, 3_600)],
            ),
            (
                (300, 3_700),
                (250, 3_600),
                &[(0, 0), (100, 1_000), (250, 2_500), (300, 3_700)],
            ),
            // An older acknowledgement: the history is unchanged.
            (
                (200, 9_000),
                (200, 9_000),
                &[(0, 0), (100, 1_000), (250, 2_500), (300, 3_700)],
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

    /// A reader whose pace holds its parts back, caught up at `at` ms as of an
    /// acknowledgement just then, with a part sent and not yet judged: the decision.
    fn held_back(d: &mut Drain, at: u64, window: u32) -> Decision {
        d.sent(10_000);
        d.decide(sample(at, 0, 0, at * 10, window, 0))
    }

    #[test]
    fn a_reader_held_back_by_its_pace_is_tried_with_two_parts_a_quarter_of_it_apart() {
        let mut d = Drain::new(Duration::from_secs(10));
        d.pace = ms(400);
        d.max_window = 64_000;
        // Caught up, not due (the pace, an eighth shorter for the part on time, is 350 ms):
        // the first part of a trial.
        assert_eq!(held_back(&mut d, 1_000, 64_000), Decision::Send);
        assert_eq!((d.trial, d.pace), (Trial::First(ms(1_000)), ms(350)));
        // It shows taken: the second goes a quarter of the pace after the first (87.5 ms),
        // the pace as it was.
        assert_eq!(held_back(&mut d, 1_033, 64_000), Decision::Wait(POLL_MAX));
        assert_eq!((d.trial, d.pace), (Trial::FirstTaken(ms(1_000)), ms(350)));
        let look = |t| sample(t, 0, 0, 10_330, 64_000, t - 1_033);
        assert!(matches!(d.decide(look(1_087)), Decision::Wait(_)));
        assert_eq!(d.decide(look(1_088)), Decision::Send);
        assert_eq!(d.trial, Trial::Second(ms(88)));
        // Taken too: the pace is at most the time between them; still over TRIAL_PACE, so
        // at once the first part of the next trial.
        assert_eq!(held_back(&mut d, 1_100, 64_000), Decision::Send);
        assert_eq!((d.trial, d.pace), (Trial::First(ms(1_100)), ms(88)));
    }

    #[test]
    fn a_trial_that_finds_a_part_unread_teaches_nothing_and_the_next_waits_eight_seconds() {
        for early_at in [0, 1] {
            let mut d = Drain::new(Duration::from_secs(10));
            d.pace = ms(400);
            d.max_window = 64_000;
            assert_eq!(held_back(&mut d, 1_000, 64_000), Decision::Send);
            if early_at == 1 {
                assert_eq!(held_back(&mut d, 1_033, 64_000), Decision::Wait(POLL_MAX));
                let look = sample(1_100, 0, 0, 10_330, 64_000, 67);
                assert_eq!(d.decide(look), Decision::Send);
            }
            // The part before still unread when this one's acknowledgement comes: the pace
            // as it was, no trial for TRIAL_EVERY.
            let pace = d.pace;
            let at = 1_033 + 100 * early_at;
            let d1 = held_back(&mut d, at, 56_000);
            assert!(matches!(d1, Decision::Wait(_)), "{d1:?}");
            assert_eq!(
                (d.trial, d.pace),
                (Trial::Idle, pace),
                "early at {early_at}"
            );
            assert_eq!(d.trial_after, ms(at) + TRIAL_EVERY);
            // Caught up again, not due: no trial until then.
            let s = |t: u64| sample(t, 0, 0, at * 10 + 10_000, 64_000, 0);
            assert!(matches!(d.decide(s(at + 7_999)), Decision::Wait(_)));
            d.pace = ms(400);
            assert_eq!(
                d.decide(s(at + 8_000)),
                Decision::Send,
                "early at {early_at}"
            );
            assert_eq!(d.trial, Trial::First(ms(at + 8_000)));
        }
    }

    #[test]
    fn each_failed_trial_doubles_the_wait_for_the_next_up_to_32_s_and_a_fast_reader_resets_it() {
        let mut d = Drain::new(Duration::from_secs(10));
        let s = Duration::from_secs;
        // (failure at, no trial before)
        for (at, after) in [(10, 18), (20, 36), (40, 72), (80, 112), (150, 182)] {
            d.trial = Trial::Second(ms(33));
            d.judge_trial(s(at), true);
            assert_eq!(
                (d.trial, d.trial_after),
                (Trial::Idle, s(after)),
                "at {at} s"
            );
        }
        // Both parts of a trial taken: the next failure waits 8 s again.
        d.trial = Trial::Second(ms(33));
        d.judge_trial(s(400), false);
        d.trial = Trial::First(s(500));
        d.judge_trial(s(500), true);
        assert_eq!(d.trial_after, s(508));
    }

    #[test]
    fn no_trial_for_a_reader_behind_or_due_within_a_frame_or_two() {
        // (pace ms, window: decision): behind by a part, no trial; short by less than three
        // quarters of one (the largest window's rounding), a trial; a pace of at most
        // TRIAL_PACE, none either (the part is due within that anyway).
        for (pace, window, trial) in [
            (400, 54_000, false),
            (400, 56_400, false),
            (400, 56_500, true),
            (51, 64_000, true),
            (50, 64_000, false),
        ] {
            let mut d = Drain::new(Duration::from_secs(10));
            d.max_window = 64_000;
            d.pace = ms(pace);
            d.sent(10_000);
            d.judge = false;
            let decision = d.decide(sample(1_000, 0, 0, 10_000, window, 0));
            assert_eq!(decision == Decision::Send, trial, "{pace} ms, {window}");
            assert_eq!(d.trial != Trial::Idle, trial, "{pace} ms, {window}");
        }
        // Due: sent as any part, and a trial under way ends.
        let mut d = Drain::new(Duration::from_secs(10));
        d.max_window = 64_000;
        d.pace = ms(400);
        d.trial = Trial::FirstTaken(ms(500));
        let s = sample(1_000, 0, 0, 10_000, 64_000, 400);
        assert_eq!(d.decide(s), Decision::Send);
        assert_eq!(d.trial, Trial::Idle);
    }

    #[test]
    fn a_reader_looked_at_more_often_than_a_step_still_has_its_rate() {
        // A reader of every frame: a reading every 33 ms, 10 KB read each, for 10 s. Its
        // rate (about 300 KB/s) must not fade once the first point is RATE_SPAN old.
        let mut d = Drain::new(Duration::from_secs(10));
        for i in 0..300u64 {
            d.note(ms(i * 33), i as i64 * 10_000, 1_000);
        }
        let rate = d.rate().expect("a rate");
        assert!((290_000.0..=310_000.0).contains(&rate), "{rate} bytes/s");
        // Its points are a step apart or more (the newest aside), at most 2 steps.
        let points: Vec<_> = d.history.iter().map(|(t, _)| *t).collect();
        for w in points[..points.len() - 1].windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= HISTORY_STEP && gap < 2 * HISTORY_STEP, "{points:?}");
        }
    }
}
