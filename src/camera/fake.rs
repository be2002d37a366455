//! A fake request-based pipeline behind the same owner loop as libcamera ([`super::owner`]),
//! so the real binary can be driven through what only a Raspberry Pi camera does: startup and
//! error frames before good ones, a frontend timeout that cancels every request, a crop the
//! ISP applied in the wrong shape. Chosen through the environment, never through the config
//! (`PICKER_TEST_PIPELINE`, like `PICKER_TEST_STALL`):
//!
//! - `startup`: `[Error, Error, Startup x6, Success...]`, with one gap of 2 in the sensor's
//!   frame sequence after the startup frames;
//! - `cancel:N`: N good frames, then every request comes back cancelled and the camera stays
//!   dead however often it is restarted;
//! - `cancel-once:N`: the same, but the first restart brings it back;
//! - `slow-restart:N`: the same, but only the last restart attempt brings it back;
//! - `import-refused`: the camera cancels every request on picker's (heap) buffers, as a Pi
//!   whose ISP will not queue an imported buffer; on its own buffers (after the owner's
//!   fallback) it streams;
//! - `import-silent`: the same, but nothing comes back at all on the heap's buffers;
//! - `sensor-drops`: good frames whose sequence numbers run on (a Pi's ISP jobs) while the
//!   sensor timestamps skip two frame periods once, after the eighth frame;
//! - `squashed`: good frames whose metadata reports the whole 16:9 sensor as the crop;
//! - `fast:K`: good frames at K times `camera.framerate` (a free-running camera faster than
//!   asked, as a USB camera with only faster modes);
//! - `on-demand`: a good frame the moment a request is queued, as libcamera's virtual camera
//!   renders one per request whatever rate is asked.
//!
//! Frames are uniform grey: 180 for a good frame, 60 startup, 0 error, so a published frame
//! that was not a good one would show. Their metadata is a Pi's (see `settings`). Like a real
//! camera's, the fake's buffers are lent to readers (see `Pipeline::lend`) and come back when
//! the last reader drops them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use super::owner::{self, Completion, FrameStatus, Next, Pipeline};
use super::{
    BufferSource, Camera, CameraError, CameraInfo, CropState, FrameMut, PixelFormat, Rect,
    SourceKind, StreamInfo,
};
use crate::config::{Buffers, Config, Crop};
use crate::frames::{Frame, Image, Pixels, Settings, now_timestamps, unix_us_now};

/// The environment variable that selects the fake pipeline.
pub const ENV: &str = "PICKER_TEST_PIPELINE";

/// Buffers (requests) the fake pipeline has, as picker asks of a Pi (the Pi's apps use six
/// for video).
const REQUESTS: usize = 6;

/// IMX708's active area and the centred square the plan gives it: what the fake's metadata
/// reports as the applied crop.
const SQUARE: Rect = Rect {
    x: 1008,
    y: 0,
    width: 2592,
    height: 2592,
};
const WHOLE: Rect = Rect {
    x: 0,
    y: 0,
    width: 4608,
    height: 2592,
};

/// IMX708's raw modes, as libcamera lists them: what `camera.sensor-mode` is checked against.
const IMX708_MODES: [super::plan::RawMode; 3] =
    [mode(1536, 864), mode(2304, 1296), mode(4608, 2592)];

const fn mode(width: u32, height: u32) -> super::plan::RawMode {
    super::plan::RawMode {
        width,
        height,
        bit_depth: 10,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    Startup,
    /// Dead after `after` good frames; restart number `recover_on` brings it back, none
    /// when `None`.
    Cancel {
        after: u64,
        recover_on: Option<u32>,
    },
    ImportRefused {
        silent: bool,
    },
    SensorDrops,
    Squashed,
    Fast {
        factor: u32,
    },
    OnDemand,
}

/// The script named in `PICKER_TEST_PIPELINE`, if set.
pub fn from_env() -> Option<Result<Script, CameraError>> {
    let spec = std::env::var(ENV).ok()?;
    Some(parse(&spec).ok_or_else(|| CameraError::Failed {
        id: "fake".into(),
        what: format!(
            "{ENV}={spec:?}: expected \"startup\", \"cancel:N\", \"cancel-once:N\", \"slow-restart:N\", \"import-refused\", \"import-silent\", \"sensor-drops\", \"squashed\", \"fast:K\" or \"on-demand\""
        ),
    }))
}

fn parse(spec: &str) -> Option<Script> {
    match spec.split_once(':') {
        None if spec == "startup" => Some(Script::Startup),
        None if spec == "squashed" => Some(Script::Squashed),
        None if spec == "on-demand" => Some(Script::OnDemand),
        None if spec == "import-refused" => Some(Script::ImportRefused { silent: false }),
        None if spec == "import-silent" => Some(Script::ImportRefused { silent: true }),
        None if spec == "sensor-drops" => Some(Script::SensorDrops),
        Some(("cancel", n)) => Some(Script::Cancel {
            after: n.parse().ok()?,
            recover_on: None,
        }),
        Some(("cancel-once", n)) => Some(Script::Cancel {
            after: n.parse().ok()?,
            recover_on: Some(1),
        }),
        Some(("slow-restart", n)) => Some(Script::Cancel {
            after: n.parse().ok()?,
            recover_on: Some(owner::MAX_RESTARTS),
        }),
        Some(("fast", k)) => Some(Script::Fast {
            factor: k.parse().ok().filter(|k| (1..=100).contains(k))?,
        }),
        _ => None,
    }
}

/// A completed fake request: which buffer slot it has.
pub struct FakeRequest {
    completion: Completion,
    slot: usize,
}

/// The pixels of one request: what the fake "sensor" wrote, lent to readers.
struct Slot {
    video: Arc<Vec<u8>>,
    still: Arc<Vec<u8>>,
    /// The request, while its buffers are lent.
    lent: Option<FakeRequest>,
}

struct FakePipeline {
    script: Script,
    /// Requests queued (their slots), in order; each completes one frame period after the
    /// previous.
    queued: VecDeque<usize>,
    slots: Vec<Slot>,
    released_tx: Sender<u64>,
    released: Receiver<u64>,
    period: Duration,
    next_at: Instant,
    /// Frames the fake sensor produced (its sequence number).
    produced: u64,
    /// The frontend timed out: queued requests come back cancelled.
    timed_out: bool,
    /// Restarted into a dead camera: nothing comes any more.
    dead: bool,
    restarts: u32,
    /// Where its buffers come from: picker's (heap) until the owner falls back.
    buffers: BufferSource,
    /// The sensor's clock for `sensor-drops` (ns), advanced a period per frame.
    sensor_ns: u64,
    video: (u32, u32),
    still: (u32, u32),
}

impl FakePipeline {
    /// The camera refuses picker's buffers (`import-refused`): every request comes back
    /// cancelled at once, or (`import-silent`) never.
    fn refusing(&self) -> Option<bool> {
        match self.script {
            Script::ImportRefused { silent } if self.buffers == BufferSource::Heap => Some(silent),
            _ => None,
        }
    }

    fn status(&self) -> FrameStatus {
        match (self.script, self.produced) {
            (Script::Startup, 0..=1) => FrameStatus::Error,
            (Script::Startup, 2..=7) => FrameStatus::Startup,
            _ => FrameStatus::Success,
        }
    }
}

impl Pipeline for FakePipeline {
    type Request = FakeRequest;

    fn next(&mut self, timeout: Duration) -> Next<FakeRequest> {
        if let Ok(slot) = self.released.try_recv() {
            return Next::Released(slot);
        }
        let refused = self.refusing() == Some(false);
        if self.timed_out || refused {
            if let Some(slot) = self.queued.pop_front() {
                return Next::Request(FakeRequest {
                    completion: Completion {
                        cancelled: true,
                        frame: FrameStatus::Cancelled,
                        sequence: None,
                        crop: None,
                        timestamp_ns: None,
                        frame_duration_us: None,
                        settings: Settings::default(),
                    },
                    slot,
                });
            }
        }
        let now = Instant::now();
        if self.script == Script::OnDemand {
            // No frame clock: the next queued request is a frame now.
            self.next_at = now;
        }
        let idle =
            self.dead || self.timed_out || self.refusing().is_some() || self.queued.is_empty();
        let wait = if idle || self.next_at > now + timeout {
            timeout
        } else {
            self.next_at.saturating_duration_since(now)
        };
        // A reader giving a buffer back ends the wait: the owner requeues it at once.
        match self.released.recv_timeout(wait) {
            Ok(slot) => return Next::Released(slot),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        if idle || self.next_at > Instant::now() {
            return Next::Timeout;
        }
        self.next_at += self.period;
        let Some(slot) = self.queued.pop_front() else {
            return Next::Timeout;
        };
        let frame = self.status();
        // One jump of 2 in the sequence right after the startup frames.
        let sequence = if self.script == Script::Startup && self.produced >= 8 {
            self.produced + 2
        } else {
            self.produced
        };
        self.produced += 1;
        if let Script::Cancel { after, .. } = self.script {
            if self.produced == after + 1 && self.restarts == 0 {
                // The frontend times out now: this and every queued request are cancelled.
                self.timed_out = true;
                self.queued.push_back(slot);
                return self.next(timeout);
            }
        }
        // The "sensor" writes the buffer: uniform grey by frame status.
        let grey = match frame {
            FrameStatus::Success => 180,
            FrameStatus::Startup => 60,
            FrameStatus::Error | FrameStatus::Cancelled => 0,
        };
        let s = &mut self.slots[slot];
        let y = self.video.0 as usize * self.video.1 as usize;
        // Only requeued buffers are written: one a reader still held would be a bug of the
        // owner (a request requeued while lent), and must not pass silently.
        let video = Arc::get_mut(&mut s.video).expect("the camera wrote a buffer a reader holds");
        video[..y].fill(grey);
        video[y..].fill(128);
        Arc::get_mut(&mut s.still)
            .expect("the camera wrote a buffer a reader holds")
            .fill(grey);
        let crop = match self.script {
            Script::Squashed => WHOLE,
            _ => SQUARE,
        };
        let period_us = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        let (timestamp_ns, frame_duration_us) = if self.script == Script::SensorDrops {
            // Two sensor frames lost before the "ISP", whose sequence shows nothing.
            let periods = if self.produced == 9 { 3 } else { 1 };
            self.sensor_ns += periods * period_us * 1_000;
            (self.sensor_ns, Some(period_us))
        } else {
            (now_timestamps().0, None)
        };
        Next::Request(FakeRequest {
            completion: Completion {
                cancelled: false,
                frame,
                sequence: u32::try_from(sequence).ok(),
                crop: Some(crop),
                timestamp_ns: Some(timestamp_ns),
                frame_duration_us,
                settings: settings(frame, sequence),
            },
            slot,
        })
    }

    fn completion(&self, req: &FakeRequest) -> Completion {
        req.completion
    }

    fn fill(&self, req: &FakeRequest, frame: &mut FrameMut) -> Option<usize> {
        let s = &self.slots[req.slot];
        let f = &mut **frame;
        stamp(f, req);
        let (vw, vh) = self.video;
        f.video.reshape(vw, vh, PixelFormat::I420);
        f.video.data.copy_from_slice(&s.video);
        let (sw, sh) = self.still;
        f.still.reshape(sw, sh, PixelFormat::Rgb24);
        f.still.data.copy_from_slice(&s.still);
        Some(s.video.len() + s.still.len())
    }

    fn lend(&mut self, req: FakeRequest, frame: &mut Frame) -> Result<(), FakeRequest> {
        let s = &mut self.slots[req.slot];
        let lease: crate::frames::Lease = Arc::new(owner::Release::new(
            self.released_tx.clone(),
            req.slot as u64,
            std::convert::identity,
        ));
        let lent = |region: &Arc<Vec<u8>>, (w, h): (u32, u32), format| {
            let mut image = Image::layout_only(w, h, format, &[]);
            let len = image.needed_len();
            let region: crate::frames::Region = region.clone();
            image.data = Pixels::lent(region, 0, len, lease.clone())?;
            Some(image)
        };
        let (Some(video), Some(still)) = (
            lent(&s.video, self.video, PixelFormat::I420),
            lent(&s.still, self.still, PixelFormat::Rgb24),
        ) else {
            return Err(req);
        };
        stamp(frame, &req);
        frame.video = video;
        frame.still = still;
        s.lent = Some(req);
        Ok(())
    }

    fn take_lent(&mut self, token: u64) -> Option<FakeRequest> {
        let slot = usize::try_from(token).ok()?;
        self.slots.get_mut(slot)?.lent.take()
    }

    fn buffers(&self) -> usize {
        self.slots.len()
    }

    fn requeue(&mut self, req: FakeRequest) -> Result<(), FakeRequest> {
        self.queued.push_back(req.slot);
        Ok(())
    }

    fn disconnected(&self) -> bool {
        false
    }

    fn buffer_source(&self) -> BufferSource {
        self.buffers
    }

    fn fall_back(&mut self, held: Vec<FakeRequest>) -> Result<(), String> {
        // New buffers, new requests: the same slots stand for them. Not a restart attempt.
        self.buffers = BufferSource::DriverFallback;
        let restarts = self.restarts;
        let r = self.restart(held);
        self.restarts = restarts;
        r
    }

    fn restart(&mut self, held: Vec<FakeRequest>) -> Result<(), String> {
        self.restarts += 1;
        // Stop returns every queued request; start queues them all again (lent ones come
        // back through take_lent).
        self.queued.clear();
        self.queued.extend(held.iter().map(|r| r.slot));
        let lent: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.slots[*i].lent.is_some())
            .collect();
        let all: Vec<usize> = (0..self.slots.len())
            .filter(|i| !lent.contains(i) && !self.queued.contains(i))
            .collect();
        self.queued.extend(all);
        self.timed_out = false;
        if let Script::Cancel { recover_on, .. } = self.script {
            self.dead = recover_on.is_none_or(|k| self.restarts < k);
        }
        self.next_at = Instant::now() + self.period;
        Ok(())
    }
}

/// What a Pi's metadata says of a frame (see `reportMetadata` in Raspberry Pi's IPA): every
/// frame its own exposure (here one microsecond more per camera frame, as an AGC that is
/// still moving), a Camera Module 3's lens where it starts (1 dioptre: manual at 1 m), and
/// startup frames a gain of their own, so that settings carried to the wrong frame show.
fn settings(frame: FrameStatus, sequence: u64) -> Settings {
    Settings {
        exposure_time: Some(10_000 + u32::try_from(sequence % 10_000).unwrap_or(0)),
        analogue_gain: Some(if frame == FrameStatus::Success {
            2.0
        } else {
            8.0
        }),
        digital_gain: Some(1.0),
        lens_position: Some(1.0),
        colour_gains: Some([1.75, 1.5]),
        colour_temperature: Some(4800),
    }
}

/// Stamps a frame with its capture time (the fake's clock: now).
fn stamp(f: &mut Frame, req: &FakeRequest) {
    let (mono, unix) = now_timestamps();
    f.timestamp_ns = req.completion.timestamp_ns.unwrap_or(mono);
    f.unix_us = unix.max(unix_us_now());
}

/// Opens the fake pipeline at the configured sizes and rate.
pub fn open(config: &Config, script: Script) -> Result<Box<dyn Camera>, CameraError> {
    tracing::warn!("{ENV}: running the fake pipeline {script:?}, not a camera");
    let video = (config.stream.width, config.stream.height);
    let still = (config.still.width, config.still.height);
    let asked = Duration::from_secs(1) / config.camera.framerate.max(1);
    let period = match script {
        Script::Fast { factor } => asked / factor,
        _ => asked,
    };
    let pacer = super::pace::Pacer::for_rate(config.camera.framerate);
    let crop_wanted = config.camera.crop == Crop::CenterSquare;
    // Like a Pi on `camera.buffers = "auto"`: picker's own buffers from a heap first.
    let buffers = match config.camera.buffers {
        Buffers::Auto => BufferSource::Heap,
        Buffers::Driver => BufferSource::Driver,
    };
    // Like a Pi with a Camera Module 3: `camera.sensor-mode` must name one of its modes (as
    // libcamera/negotiate.rs checks before configure()).
    let mut adjustments = Vec::new();
    if let Some(spec) = config.camera.sensor_mode {
        let mode = super::plan::forced_mode(&IMX708_MODES, spec).map_err(|source| {
            CameraError::Config {
                id: "fake".into(),
                source,
            }
        })?;
        adjustments.push(format!(
            "sensor mode {}x{}:{} from camera.sensor-mode",
            mode.width, mode.height, mode.bit_depth
        ));
    }
    // Like a Pi: one ISP crop for both outputs, so their shapes must match (as
    // libcamera/negotiate.rs checks after configure()).
    super::plan::check_aspects(still, video, true).map_err(|source| CameraError::Config {
        id: "fake".into(),
        source,
    })?;
    let camera = owner::spawn("fake", Duration::from_secs(5), move |owner| {
        let info = CameraInfo {
            source: SourceKind::Fake,
            id: "fake".to_string(),
            video: StreamInfo {
                width: video.0,
                height: video.1,
                format: PixelFormat::I420,
            },
            still: StreamInfo {
                width: still.0,
                height: still.1,
                format: PixelFormat::Rgb24,
            },
            adjustments,
        };
        let crop = if crop_wanted {
            CropState::Pending
        } else {
            CropState::Disabled
        };
        let (released_tx, released) = channel();
        let slot = || Slot {
            video: Arc::new(vec![0; video.0 as usize * video.1 as usize * 3 / 2]),
            still: Arc::new(vec![0; still.0 as usize * still.1 as usize * 3]),
            lent: None,
        };
        let mut p = FakePipeline {
            script,
            queued: (0..REQUESTS).collect(),
            slots: (0..REQUESTS).map(|_| slot()).collect(),
            released_tx,
            released,
            period,
            next_at: Instant::now() + period,
            produced: 0,
            timed_out: false,
            dead: false,
            restarts: 0,
            buffers,
            sensor_ns: 0,
            video,
            still,
        };
        if !owner.opened(info, crop) {
            return Ok(());
        }
        let wait = owner::restart_wait(i64::try_from(period.as_micros()).unwrap_or(i64::MAX));
        owner.drive("fake", &mut p, crop_wanted.then_some(still), wait, pacer)
    })?;
    Ok(Box::new(camera))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::StopFlag;
    use crate::frames::{FrameSink, Stats};

    /// Readers that keep every frame (a flood of slow snapshot jobs, say) hold at most
    /// `max_lent` of the camera's buffers: the owner copies every later frame instead, and the
    /// camera is never starved. The fake panics should it write a buffer a reader holds.
    #[test]
    fn readers_that_hold_every_frame_get_copies_beyond_the_lent_ones() {
        let config = Config::parse(
            "[camera]\nframerate = 100\n[stream]\nwidth = 64\nheight = 64\n[still]\nwidth = 64\nheight = 64\n",
            std::path::Path::new("/p.toml"),
        )
        .unwrap();
        let mut camera = open(&config, Script::Fast { factor: 1 }).unwrap();
        let stats = Arc::new(Stats::default());
        let sink = Arc::new(FrameSink::new(stats.clone(), CropState::Disabled));
        let stop = StopFlag::new();
        let runner = {
            let (sink, stop) = (sink.clone(), stop.clone());
            std::thread::spawn(move || camera.run(&sink, &stop))
        };
        let mut rx = sink.subscribe();
        let mut kept = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while kept.len() < 40 && Instant::now() < deadline {
            if rx.has_changed().unwrap_or(false) {
                if let Some(f) = rx.borrow_and_update().clone() {
                    kept.push(f);
                }
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        stop.stop();
        runner.join().unwrap().unwrap();
        assert!(kept.len() >= 40, "frames kept coming: {}", kept.len());
        let lent = kept.iter().filter(|f| f.is_lent()).count();
        assert_eq!(
            lent,
            owner::max_lent(REQUESTS),
            "lent while readers hold them all"
        );
        assert_eq!(stats.tally().lent as usize, owner::max_lent(REQUESTS));
        // The copied frames are whole and right: the fake's good grey.
        let frame_bytes = (64 * 64 * 3 / 2 + 64 * 64 * 3) as u64;
        let copied = stats.tally().bytes_copied;
        assert!(
            copied >= (kept.len() - lent) as u64 * frame_bytes,
            "{copied}"
        );
        assert_eq!(copied % frame_bytes, 0);
        assert!(kept.iter().all(|f| f.still.data.iter().all(|b| *b == 180)));
    }

    #[test]
    fn scripts_parse() {
        assert_eq!(parse("startup"), Some(Script::Startup));
        assert_eq!(
            parse("cancel:5"),
            Some(Script::Cancel {
                after: 5,
                recover_on: None
            })
        );
        assert_eq!(
            parse("cancel-once:0"),
            Some(Script::Cancel {
                after: 0,
                recover_on: Some(1)
            })
        );
        assert_eq!(
            parse("slow-restart:2"),
            Some(Script::Cancel {
                after: 2,
                recover_on: Some(owner::MAX_RESTARTS)
            })
        );
        assert_eq!(
            parse("import-refused"),
            Some(Script::ImportRefused { silent: false })
        );
        assert_eq!(
            parse("import-silent"),
            Some(Script::ImportRefused { silent: true })
        );
        assert_eq!(parse("sensor-drops"), Some(Script::SensorDrops));
        assert_eq!(parse("cancel:x"), None);
        assert_eq!(parse("fast:3"), Some(Script::Fast { factor: 3 }));
        assert_eq!(parse("fast:0"), None);
        assert_eq!(parse("on-demand"), Some(Script::OnDemand));
        assert_eq!(parse("nope"), None);
    }
}
