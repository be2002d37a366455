//! The owner thread of a request-based camera pipeline (libcamera, or the fake beside it),
//! written once against the small [`Pipeline`] trait so tests drive the same code a Pi runs.
//!
//! Ownership: libcamera's objects borrow one another and may not move between threads, while
//! [`Camera`] must be `Send`. So [`spawn`] starts one dedicated thread, the *owner*, which
//! builds the pipeline, reports [`Opened`] (or the error) through a channel before any socket is
//! bound, and then runs [`Owner::drive`]. The [`OwnerCamera`] handle holds only channels and
//! the join handle.
//!
//! Per completed request the owner decides: only buffers with status *success* are copied
//! and published; *startup* frames (exposure and white balance not settled yet) and *error*
//! frames go straight back to the camera, counted; gaps in the camera's frame sequence are
//! counted; a frame that finds no empty buffer (the publisher is behind) is counted as lost.
//! READY therefore follows the first good frame (the service waits for the first published
//! one).
//!
//! Recovery: a request cancelled while running (the Pi's "Camera frontend has timed out!"
//! cancels everything and stays in error) or the camera's `disconnected` signal makes the
//! owner stop, start and requeue, up to [`MAX_RESTARTS`] times with a doubling backoff, each
//! attempt logged; an attempt fails when it is refused, cancelled again, or brings no good
//! frame within [`restart_wait`]. Then the owner ends with an error at once, the service exits
//! non-zero and systemd restarts it, instead of the watchdog killing a wedged process later.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::controls::ControlsHandle;
use super::pace::Pacer;
use super::{
    BufferSource, Camera, CameraError, CameraInfo, CropState, FrameMut, FrameSink, Rect, StopFlag,
};
use crate::frames::{Frame, Recovery, Stats};

/// Empty frames lent to the owner thread at a time: one being filled while the previous one
/// is on its way to the sink.
pub const FRAMES_LENT: usize = 2;
/// Requests the camera keeps queued at least: fewer, and a frame can find no buffer to go
/// to (the sensor drops it). Beyond this, requests are lent to readers; when readers hold
/// more, the owner copies instead (see [`max_lent`]).
pub const MIN_QUEUED: usize = 3;
/// Requests lent to readers at most, whatever the buffer count.
const MAX_LENT: usize = 4;

/// How many of `buffers` requests may be lent to readers at once: the newest frame (kept for
/// stills), the one the encoder reads, one on its way; the camera keeps [`MIN_QUEUED`].
pub fn max_lent(buffers: usize) -> usize {
    buffers.saturating_sub(MIN_QUEUED).min(MAX_LENT)
}
/// Wake-up period of both loops, so `stop` is honoured promptly even when no frame comes.
pub const TICK: Duration = Duration::from_millis(100);
/// How long `run` waits for the owner to stop the camera after `stop` was set. Stopping a Pi
/// camera under load can take a while; the service's own join waits longer than this.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// Restart attempts after the camera stops delivering, before giving up.
pub const MAX_RESTARTS: u32 = 3;
/// Added to each restart attempt's own bound (backoff and [`restart_wait`]) for the time
/// stopping and starting the camera take: the watchdog is fed no longer than that per attempt.
pub const RECOVERY_MARGIN: Duration = Duration::from_secs(2);
/// Added to [`restart_wait`] for the first start's good frame before the owner gives up on
/// picker's heap buffers (a first start also opens the IPA, loads tuning, runs emulated in the
/// VM): 14 s at 1 fps, still well within the service's 30 s wait for a first frame after the
/// fallback's own start.
pub const START_SLACK: Duration = Duration::from_secs(6);
/// Backoff before the first restart; doubled for each further one.
pub const RESTART_BACKOFF: Duration = Duration::from_millis(200);
/// How long a restarted camera may take at least to deliver its first good frame (the Pi's
/// startup frames come first); longer at slow frame rates, see [`restart_wait`].
pub const RESTART_WAIT: Duration = Duration::from_secs(2);
/// Frame periods a restarted camera gets for its first good frame: a Pi flags several
/// startup frames first, so at 1-2 fps a fixed [`RESTART_WAIT`] would fail every restart.
const RESTART_FRAMES: u32 = 8;
/// The longest frame period taken into account (the config allows 1 fps at the slowest; a
/// camera reporting more is not believed), so the wait stays bounded.
const MAX_FRAME_PERIOD: Duration = Duration::from_secs(2);

/// How long a restarted camera may take to deliver its first good frame, from its frame
/// period in microseconds: `RESTART_FRAMES` periods, at least [`RESTART_WAIT`]. A period
/// that is not positive counts as none; one above `MAX_FRAME_PERIOD` as that.
pub fn restart_wait(frame_period_us: i64) -> Duration {
    let period = u64::try_from(frame_period_us)
        .map(Duration::from_micros)
        .unwrap_or(Duration::ZERO)
        .min(MAX_FRAME_PERIOD);
    (period * RESTART_FRAMES).max(RESTART_WAIT)
}

/// What a buffer's metadata says about the frame in it (libcamera `FrameMetadata::Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameStatus {
    Success,
    /// Since libcamera 0.5.1 the Pi flags the first frames after start: exposure and white
    /// balance are not settled.
    Startup,
    /// Hidden or corrupt sensor frames.
    Error,
    Cancelled,
}

/// What the owner needs to know about one completed request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Completion {
    /// The request itself was cancelled (stop, or a pipeline in error).
    pub cancelled: bool,
    pub frame: FrameStatus,
    /// The camera's frame sequence number, when it reports one.
    pub sequence: Option<u32>,
    /// The `ScalerCrop` the ISP applied, from the request's metadata.
    pub crop: Option<Rect>,
    /// Capture time (CLOCK_BOOTTIME ns), when the camera reports it: for pacing.
    pub timestamp_ns: Option<u64>,
    /// The sensor's frame period for this frame (libcamera `FrameDuration`, microseconds),
    /// when reported: with `timestamp_ns` it gives the frames the sensor dropped (see
    /// [`dropped_between`]).
    pub frame_duration_us: Option<u64>,
    /// What the frame was taken with, from the request's metadata: goes with the frame to
    /// its stills.
    pub settings: crate::frames::Settings,
}

/// A result of waiting for the next completed request.
pub enum Next<R> {
    Request(R),
    /// The last reader of a lent request's buffers dropped them (token from [`Pipeline::lend`]).
    Released(u64),
    Timeout,
    /// The pipeline can deliver nothing more (its completion channel is gone).
    Closed,
}

/// A request-based camera, as the owner drives it. Implemented over libcamera in
/// `libcamera/pipeline.rs` and by the fake in `fake.rs`.
pub trait Pipeline {
    type Request;

    /// Waits up to `timeout` for a completed request.
    fn next(&mut self, timeout: Duration) -> Next<Self::Request>;
    fn completion(&self, req: &Self::Request) -> Completion;
    /// Copies the request's buffers into `frame` and stamps its time (the owner numbers
    /// it). Returns the bytes copied out of the camera's buffers; `None` when a plane is
    /// missing or short.
    fn fill(&self, req: &Self::Request, frame: &mut FrameMut) -> Option<usize>;
    /// Lends the request's buffers instead of copying them: `frame`'s images become the
    /// camera's buffers (stamped like `fill`), and the pipeline keeps the request until
    /// [`Next::Released`] says the last reader dropped them, then hands it out again through
    /// [`Pipeline::take_lent`]. Gives the request back when it cannot lend (then the owner copies).
    fn lend(&mut self, req: Self::Request, frame: &mut Frame) -> Result<(), Self::Request>;
    /// The lent request whose readers are done, ready to be requeued.
    fn take_lent(&mut self, token: u64) -> Option<Self::Request>;
    /// How many requests (buffer sets) the camera has in all.
    fn buffers(&self) -> usize;
    /// Reuses the request and queues it again, with the controls every request carries (see
    /// `request_controls` in the libcamera pipeline). Gives the request back when the camera refuses it.
    fn requeue(&mut self, req: Self::Request) -> Result<(), Self::Request>;
    /// True once the camera reported it was disconnected (cleared by a restart).
    fn disconnected(&self) -> bool;
    /// Stops the camera, takes back every request (those in `held` and those still queued),
    /// starts it again and queues them all.
    fn restart(&mut self, held: Vec<Self::Request>) -> Result<(), String>;
    /// Where the frame buffers come from now.
    fn buffer_source(&self) -> BufferSource {
        BufferSource::None
    }
    /// Stops the camera, drops every request (`held` and those still queued) with picker's
    /// own buffers, and starts again on the camera's own (libcamera's allocator), all
    /// requests queued. Called at most once, on [`BufferSource::Heap`], before any frame
    /// was lent. After it, [`Pipeline::buffer_source`] says [`BufferSource::DriverFallback`]
    /// whether it worked or not.
    fn fall_back(&mut self, held: Vec<Self::Request>) -> Result<(), String> {
        drop(held);
        Err("no other buffers to fall back to".to_string())
    }
}

/// Frames the sensor dropped between two frames `prev_ns` and `now_ns` apart (sensor
/// timestamps, ns) at a frame period of `period_us`: on a Pi the buffers' sequence numbers
/// count ISP jobs, not sensor frames, so a frame lost before the ISP leaves no gap there, only
/// a longer step between sensor timestamps. A step of more than 1.5 periods counts as
/// `round(step / period) - 1` frames; a step backwards, or no period, as none.
pub fn dropped_between(prev_ns: u64, now_ns: u64, period_us: u64) -> u64 {
    let period_ns = u128::from(period_us) * 1_000;
    let step = u128::from(now_ns.saturating_sub(prev_ns));
    if period_ns == 0 || step * 2 <= period_ns * 3 {
        return 0;
    }
    let frames = (step + period_ns / 2) / period_ns;
    u64::try_from(frames.saturating_sub(1)).unwrap_or(u64::MAX)
}

/// The lease a pipeline puts in a lent frame's images (see [`Pipeline::lend`]): when the last
/// image drops, `message(token)` goes to the pipeline's channel, which its `next` reports as
/// [`Next::Released`]. Errors are ignored: a pipeline gone needs nothing back. The message is
/// made on drop, so the lease is `Sync` whatever the channel carries (libcamera's requests are
/// not).
pub struct Release<M: Send> {
    tx: Sender<M>,
    token: u64,
    message: fn(u64) -> M,
}

impl<M: Send> Release<M> {
    pub fn new(tx: Sender<M>, token: u64, message: fn(u64) -> M) -> Self {
        Release { tx, token, message }
    }
}

impl<M: Send> Drop for Release<M> {
    fn drop(&mut self) {
        let _ = self.tx.send((self.message)(self.token));
    }
}

/// Requeues a request; one the camera refuses is held for the next restart, which it asks for.
fn requeue_or_hold<P: Pipeline>(
    p: &mut P,
    req: P::Request,
    held: &mut Vec<P::Request>,
    broken: &mut Option<String>,
) {
    if let Err(req) = p.requeue(req) {
        held.push(req);
        broken.get_or_insert_with(|| "the camera refused a request".to_string());
    }
}

/// Messages from the owner thread.
pub enum Event {
    /// The camera is configured and streaming (frames are requeued unread until `run`).
    Opened(Box<Opened>),
    /// A filled frame, and the crop state it showed when that changed. `copied`: it is one
    /// of the empty frames `run` lent, filled with this many bytes (else the camera's buffers
    /// are lent to it).
    Frame {
        frame: FrameMut,
        crop: Option<CropState>,
        copied: Option<u64>,
    },
    /// The owner stopped the camera and released everything (or never got it).
    Ended(Result<(), CameraError>),
}

/// What `open` learns from the owner.
pub struct Opened {
    pub info: CameraInfo,
    pub crop: CropState,
}

fn failed(id: &str, what: impl std::fmt::Display) -> CameraError {
    CameraError::Failed {
        id: id.to_string(),
        what: what.to_string(),
    }
}

/// The owner's ends of the channels.
pub struct Owner {
    start: Receiver<(StopFlag, Arc<Stats>)>,
    empty: Receiver<FrameMut>,
    events: SyncSender<Event>,
}

/// Starts the owner thread running `body` and waits up to `open_timeout` for it to report
/// [`Opened`] (through [`Owner::opened`]) or fail.
pub fn spawn(
    what: &str,
    open_timeout: Duration,
    body: impl FnOnce(&Owner) -> Result<(), CameraError> + Send + 'static,
) -> Result<OwnerCamera, CameraError> {
    let (start_tx, start_rx) = sync_channel(1);
    let (empty_tx, empty_rx) = sync_channel(FRAMES_LENT);
    // Frame events never exceed the empty frames lent plus the requests lent; plus Opened
    // and Ended.
    let (event_tx, event_rx) = sync_channel(FRAMES_LENT + MAX_LENT + 2);
    let owner = Owner {
        start: start_rx,
        empty: empty_rx,
        events: event_tx,
    };
    let thread = std::thread::Builder::new()
        .name("camera-owner".into())
        .spawn(move || {
            let result = body(&owner);
            let _ = owner.events.try_send(Event::Ended(result));
        })
        .map_err(|e| failed(what, format!("cannot start the camera thread: {e}")))?;
    match event_rx.recv_timeout(open_timeout) {
        Ok(Event::Opened(opened)) => Ok(OwnerCamera {
            info: opened.info,
            crop: opened.crop,
            start: Some(start_tx),
            empty: empty_tx,
            events: event_rx,
            thread: Some(thread),
            controls: None,
        }),
        Ok(Event::Ended(Err(e))) => {
            let _ = thread.join();
            Err(e)
        }
        Ok(_) => Err(failed(what, "the camera thread ended while opening")),
        Err(RecvTimeoutError::Timeout) => Err(failed(
            what,
            format!(
                "the camera did not open within {} s",
                open_timeout.as_secs()
            ),
        )),
        Err(RecvTimeoutError::Disconnected) => {
            let _ = thread.join();
            Err(failed(what, "the camera thread panicked while opening"))
        }
    }
}

/// Counts kept by the owner, written into [`Stats`] once the service runs.
#[derive(Debug, Default)]
struct Counts {
    startup: u64,
    error: u64,
    gaps: u64,
    lost: u64,
    restarts: u64,
    paced: u64,
    buffers: BufferSource,
    /// The restart in progress, for the watchdog.
    recovery: Option<Recovery>,
}

impl Counts {
    fn flush(&self, stats: &Stats) {
        stats.frames_paced.store(self.paced, Ordering::Relaxed);
        stats.frames_startup.store(self.startup, Ordering::Relaxed);
        stats.frames_error.store(self.error, Ordering::Relaxed);
        stats.sequence_gaps.store(self.gaps, Ordering::Relaxed);
        stats.frames_lost.store(self.lost, Ordering::Relaxed);
        stats
            .camera_restarts
            .store(self.restarts, Ordering::Relaxed);
        stats
            .buffer_source
            .store(self.buffers.to_u8(), Ordering::Relaxed);
        if stats.recovery() != self.recovery {
            stats.set_recovery(self.recovery);
        }
    }
}

impl Owner {
    /// Reports a camera that opened; false when `open` gave up waiting (then stop).
    pub fn opened(&self, info: CameraInfo, crop: CropState) -> bool {
        self.events
            .send(Event::Opened(Box::new(Opened { info, crop })))
            .is_ok()
    }

    /// Runs the camera until stopped, or until it fails beyond recovery. `crop_aspect` is
    /// the output shape the planned crop has, to check the crop the ISP reports; `pacer`
    /// gives back the frames beyond the configured rate.
    pub fn drive<P: Pipeline>(
        &self,
        id: &str,
        p: &mut P,
        crop_aspect: Option<(u32, u32)>,
        restart_wait: Duration,
        mut pacer: Pacer,
    ) -> Result<(), CameraError> {
        let mut max_lent = max_lent(p.buffers());
        // Requests lent to readers now.
        let mut lent = 0usize;
        // Requests of frames paced out, held until the next frame is due: a camera
        // that makes a frame per request (libcamera's virtual one) would otherwise render
        // frames as fast as they are requeued, all in this process, to have them thrown away.
        let mut deferred: VecDeque<P::Request> = VecDeque::new();
        // When the next deferred request goes back (set by the latest paced frame).
        let mut release_at = Instant::now();
        let mut running: Option<(StopFlag, Arc<Stats>)> = None;
        // A lent frame kept for the next request after a failed copy.
        let mut spare: Option<FrameMut> = None;
        // Requests the camera refused or cancelled, for the next restart.
        let mut held: Vec<P::Request> = Vec::new();
        let mut counts = Counts::default();
        let mut sequence = 0u64;
        let mut last_seq: Option<u32> = None;
        // The sensor timestamp of the last frame, for drops (see `dropped_between`).
        let mut last_ts: Option<u64> = None;
        let mut last_crop: Option<CropState> = None;
        let (mut warned_short, mut warned_crop) = (false, false);
        // Consecutive restarts since the last good frame, and when the last one was made.
        let mut restarts = 0u32;
        let mut restarted_at: Option<Instant> = None;
        let mut broken: Option<String> = None;
        // No good frame yet since opening: a camera refusing picker's heap buffers gives none
        // (every request cancelled, or nothing at all), and gets libcamera's own instead.
        let started_at = Instant::now();
        let start_budget = restart_wait + START_SLACK;
        let mut seen_good = false;
        loop {
            counts.buffers = p.buffer_source();
            if running.is_none() {
                match self.start.try_recv() {
                    Ok(r) => running = Some(r),
                    Err(TryRecvError::Empty) => {}
                    // Dropped without running.
                    Err(TryRecvError::Disconnected) => return Ok(()),
                }
            }
            if let Some((stop, stats)) = &running {
                counts.flush(stats);
                if stop.is_stopped() {
                    return Ok(());
                }
            }
            if broken.is_none() && p.disconnected() {
                broken = Some("the camera was disconnected".to_string());
            }
            if broken.is_none() && restarted_at.is_some_and(|t| t.elapsed() > restart_wait) {
                broken = Some(format!(
                    "no good frame within {restart_wait:?} of restarting"
                ));
            }
            let on_heap = counts.buffers == BufferSource::Heap;
            if broken.is_none() && !seen_good && on_heap && started_at.elapsed() > start_budget {
                broken = Some(format!("no good frame within {start_budget:?} of starting"));
            }
            if let Some(why) = (!seen_good && on_heap).then(|| broken.take()).flatten() {
                // Once: after it the pipeline is on its own buffers.
                tracing::warn!(
                    camera = %id,
                    "{why} on picker's DMA-heap buffers: the camera does not take them (\"Failed to queue buffer\" in libcamera's log?); starting again on libcamera's own buffers. To start on those directly, set camera.buffers = \"driver\""
                );
                held.extend(deferred.drain(..));
                match p.fall_back(std::mem::take(&mut held)) {
                    Ok(()) => {
                        max_lent = self::max_lent(p.buffers());
                        tracing::info!(camera = %id, buffers = p.buffers(), "restarted on libcamera's own buffers");
                    }
                    Err(e) => {
                        tracing::error!(camera = %id, "starting on libcamera's own buffers failed: {e}");
                    }
                }
                restarted_at = Some(Instant::now());
                last_seq = None;
                last_ts = None;
                continue;
            }
            if let Some(why) = broken.take() {
                if restarts >= MAX_RESTARTS {
                    tracing::error!(camera = %id, "{why}; giving up after {MAX_RESTARTS} restarts");
                    return Err(failed(
                        id,
                        format!("{why}; {MAX_RESTARTS} restarts brought no frames back"),
                    ));
                }
                restarts += 1;
                counts.restarts += 1;
                let backoff = RESTART_BACKOFF * 2u32.pow(restarts - 1);
                // Announced before the backoff, bounded: the watchdog is fed for this long at
                // most (see `notify`), however the attempt goes.
                counts.recovery = Some(Recovery {
                    attempt: restarts,
                    of: MAX_RESTARTS,
                    until: Instant::now() + backoff + restart_wait + RECOVERY_MARGIN,
                });
                if let Some((_, stats)) = &running {
                    counts.flush(stats);
                }
                tracing::warn!(
                    camera = %id,
                    "{why}: restarting the camera in {backoff:?} (attempt {restarts} of {MAX_RESTARTS})"
                );
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if running.as_ref().is_some_and(|(s, _)| s.is_stopped()) {
                        return Ok(());
                    }
                    std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
                }
                held.extend(deferred.drain(..));
                if let Err(e) = p.restart(std::mem::take(&mut held)) {
                    tracing::warn!(camera = %id, "restart attempt {restarts} failed: {e}");
                }
                restarted_at = Some(Instant::now());
                last_seq = None;
                last_ts = None;
                continue;
            }

            // One deferred request back to the camera once the next frame is due; the wait for
            // the camera ends then at the latest.
            let mut wait = TICK;
            if !deferred.is_empty() {
                let now = Instant::now();
                if release_at > now {
                    wait = wait.min(release_at - now);
                } else {
                    // Should that frame be lost, the next request goes a period later.
                    release_at = now + pacer.period();
                    if let Some(req) = deferred.pop_front() {
                        requeue_or_hold(p, req, &mut held, &mut broken);
                    }
                    continue;
                }
            }
            let mut req = match p.next(wait) {
                Next::Request(r) => r,
                Next::Released(token) => {
                    // A lease of a lend that failed has nothing to give back.
                    if let Some(req) = p.take_lent(token) {
                        lent = lent.saturating_sub(1);
                        requeue_or_hold(p, req, &mut held, &mut broken);
                    }
                    continue;
                }
                Next::Timeout => continue,
                Next::Closed => return Err(failed(id, "the camera's completion channel closed")),
            };
            let c = p.completion(&req);
            if c.cancelled || c.frame == FrameStatus::Cancelled {
                // Not by us: we only stop when leaving. The pipeline is in error.
                held.push(req);
                broken.get_or_insert_with(|| "the camera cancelled its requests".to_string());
                continue;
            }
            if let (Some(t), Some(period)) = (c.timestamp_ns, c.frame_duration_us) {
                // Sensor time: what a Pi's ISP sequence numbers cannot show.
                if let Some(prev) = last_ts {
                    counts.gaps += dropped_between(prev, t, period);
                }
                last_ts = Some(t);
            } else if let Some(s) = c.sequence {
                if let Some(prev) = last_seq {
                    let jump = s.wrapping_sub(prev);
                    if jump > 1 && jump < u32::MAX / 2 {
                        counts.gaps += u64::from(jump - 1);
                    }
                }
                last_seq = Some(s);
            }
            match c.frame {
                FrameStatus::Success => {
                    seen_good = true;
                    counts.recovery = None;
                    if restarts > 0 {
                        tracing::info!(camera = %id, "camera delivers again after {restarts} restart(s)");
                        restarts = 0;
                    }
                    restarted_at = None;
                    if let Some((_, stats)) = &running {
                        let started = Instant::now();
                        let keep = c.timestamp_ns.is_none_or(|t| pacer.keep(t));
                        if let Some(t) = c.timestamp_ns {
                            release_at = started + pacer.requeue_after(t);
                        }
                        let crop = c.crop.map(|applied| match crop_aspect {
                            Some(a) => super::plan::crop_applied(applied, a),
                            None => CropState::Applied(applied),
                        });
                        if let Some(CropState::NotSquare(applied)) = crop {
                            if !warned_crop {
                                tracing::error!(camera = %id, ?applied, "the ISP applied a crop of another shape than the output: the picture is squashed");
                                warned_crop = true;
                            }
                        }
                        let mut publish =
                            |mut frame: FrameMut, sequence: u64, copied: Option<u64>| {
                                frame.sequence = sequence;
                                frame.settings = c.settings;
                                let crop = crop.filter(|c| last_crop != Some(*c));
                                if crop.is_some() {
                                    last_crop = crop;
                                }
                                // Never full: at most FRAMES_LENT + max_lent frames exist to send.
                                let _ = self.events.try_send(Event::Frame {
                                    frame,
                                    crop,
                                    copied,
                                });
                            };
                        if !keep {
                            // Beyond the configured rate: back untouched when the next frame
                            // is due (above). A free-running sensor meanwhile drops
                            // frames for want of a buffer: the surplus, which nobody wanted.
                            counts.paced += 1;
                            deferred.push_back(req);
                            continue;
                        }
                        if lent < max_lent {
                            // Lent, not copied: the readers give it back (Next::Released).
                            let mut frame = Frame::empty();
                            match p.lend(req, &mut frame) {
                                Ok(()) => {
                                    lent += 1;
                                    sequence += 1;
                                    publish(FrameMut::new(frame), sequence, None);
                                    stats.camera_us.observe_since(started);
                                    continue;
                                }
                                Err(r) => {
                                    req = r;
                                }
                            }
                        }
                        // Kept, and not lent: copied.
                        match spare.take().or_else(|| self.empty.try_recv().ok()) {
                            Some(mut frame) => {
                                if let Some(bytes) = p.fill(&req, &mut frame) {
                                    sequence += 1;
                                    publish(frame, sequence, Some(bytes as u64));
                                    stats.camera_us.observe_since(started);
                                } else {
                                    if !warned_short {
                                        tracing::warn!(camera = %id, sequence, "frame with missing or short planes dropped");
                                        warned_short = true;
                                    }
                                    spare = Some(frame);
                                }
                            }
                            // `run` is behind: this frame is skipped.
                            None => counts.lost += 1,
                        }
                    }
                }
                FrameStatus::Startup => counts.startup += 1,
                FrameStatus::Error | FrameStatus::Cancelled => counts.error += 1,
            }
            // Back to the camera at once: the data is copied, or not wanted.
            requeue_or_hold(p, req, &mut held, &mut broken);
        }
    }
}

/// Handle on the owner thread; see the module docs.
pub struct OwnerCamera {
    info: CameraInfo,
    crop: CropState,
    /// Sends the stop flag, which starts delivery; dropped unsent, it stops the owner.
    start: Option<SyncSender<(StopFlag, Arc<Stats>)>>,
    empty: SyncSender<FrameMut>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
    controls: Option<Arc<ControlsHandle>>,
}

impl OwnerCamera {
    /// The `[controls]` handle the owner applies, for `/controls` and `/state`.
    pub fn with_controls(mut self, controls: Arc<ControlsHandle>) -> Self {
        self.controls = Some(controls);
        self
    }
}

impl Camera for OwnerCamera {
    fn info(&self) -> CameraInfo {
        self.info.clone()
    }

    fn controls(&self) -> Option<Arc<ControlsHandle>> {
        self.controls.clone()
    }

    fn run(&mut self, sink: &FrameSink, stop: &StopFlag) -> Result<(), CameraError> {
        let id = self.info.id.clone();
        let start = self
            .start
            .take()
            .ok_or_else(|| failed(&id, "the camera can run only once"))?;
        sink.set_crop(self.crop);
        for _ in 0..FRAMES_LENT {
            let _ = self.empty.try_send(sink.acquire());
        }
        if start.send((stop.clone(), sink.stats().clone())).is_err() {
            return Err(self.ended(&id));
        }
        let mut stopping: Option<Instant> = None;
        loop {
            match self.events.recv_timeout(TICK) {
                Ok(Event::Frame {
                    frame,
                    crop,
                    copied,
                }) => {
                    if let Some(crop) = crop {
                        sink.set_crop(crop);
                    }
                    sink.publish(frame, copied.unwrap_or(0));
                    // One back for the one returned: FRAMES_LENT stay lent. Fails only when
                    // the owner is gone, which the next recv reports.
                    if copied.is_some() {
                        let _ = self.empty.try_send(sink.acquire());
                    }
                }
                Ok(Event::Ended(result)) => {
                    if let Some(t) = self.thread.take() {
                        let _ = t.join();
                    }
                    return result;
                }
                Ok(Event::Opened(_)) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.ended(&id)),
            }
            if stop.is_stopped() {
                let since = *stopping.get_or_insert_with(Instant::now);
                if since.elapsed() > STOP_GRACE {
                    tracing::warn!(camera = %id, "the camera did not stop within {STOP_GRACE:?}; leaving it");
                    return Ok(());
                }
            }
        }
    }
}

impl OwnerCamera {
    /// The owner thread is gone without saying why: it panicked.
    fn ended(&mut self, id: &str) -> CameraError {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        failed(id, "the camera thread panicked")
    }
}

impl Drop for OwnerCamera {
    /// Not run (or run gave up waiting): tell the owner to release the camera, and give it a
    /// moment, so libcamera is not torn down by process exit under its feet.
    fn drop(&mut self) {
        self.start = None;
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                match self
                    .events
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok(Event::Ended(_)) | Err(RecvTimeoutError::Disconnected) => {
                        let _ = thread.join();
                        return;
                    }
                    Ok(_) => {}
                    Err(RecvTimeoutError::Timeout) => return,
                }
            }
        }
    }
}

impl std::fmt::Debug for OwnerCamera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerCamera")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_drops_follow_timestamp_steps_against_the_period() {
        let ms = |m: u64| m * 1_000_000;
        // (previous ns, this ns, period us, frames dropped between)
        let table: &[(u64, u64, u64, u64)] = &[
            (0, ms(33), 33_333, 0),                   // one period
            (0, ms(49), 33_333, 0),                   // 1.47 periods: jitter, not a drop
            (0, ms(51), 33_333, 1),                   // 1.53 periods: one lost
            (0, ms(100), 33_333, 2),                  // three periods: two lost
            (ms(10), ms(5), 33_333, 0),               // backwards: none
            (0, ms(1_000), 0, 0),                     // no period
            (0, u64::MAX, 1, 18_446_744_073_709_551), // rounded, no overflow
            (0, ms(3_000), 1_000_000, 2),             // 1 fps
        ];
        for &(prev, now, period, want) in table {
            assert_eq!(
                dropped_between(prev, now, period),
                want,
                "{prev} -> {now} at {period} us"
            );
        }
    }

    #[test]
    fn restart_wait_covers_several_frames_at_slow_rates_and_stays_bounded() {
        let s = Duration::from_secs;
        let table: &[(i64, Duration)] = &[
            (33_333, RESTART_WAIT),  // 30 fps
            (250_000, RESTART_WAIT), // 4 fps: 8 frames fit in 2 s
            (500_000, s(4)),         // 2 fps
            (1_000_000, s(8)),       // 1 fps, the slowest the config allows
            (5_000_000, s(16)),      // not believed: capped at 2 s a frame
            (i64::MAX, s(16)),       // no overflow
            (0, RESTART_WAIT),       // no period
            (-1, RESTART_WAIT),      // nonsense
        ];
        for &(us, want) in table {
            assert_eq!(restart_wait(us), want, "period {us} us");
        }
    }
}
