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
//! - `squashed`: good frames whose metadata reports the whole 16:9 sensor as the crop.
//!
//! Frames are uniform grey: 180 for a good frame, 60 startup, 0 error, so a published frame
//! that was not a good one would show.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::owner::{self, Completion, FrameStatus, Next, Pipeline};
use super::{
    Camera, CameraError, CameraInfo, CropState, FrameMut, PixelFormat, Rect, SourceKind, StreamInfo,
};
use crate::config::{Config, Crop};
use crate::frames::{now_timestamps, unix_us_now};

/// The environment variable that selects the fake pipeline.
pub const ENV: &str = "PICKER_TEST_PIPELINE";

/// Buffers (requests) the fake pipeline has, like a Pi's default of four.
const REQUESTS: usize = 4;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    Startup,
    Cancel { after: u64, recover: bool },
    Squashed,
}

/// The script named in `PICKER_TEST_PIPELINE`, if set.
pub fn from_env() -> Option<Result<Script, CameraError>> {
    let spec = std::env::var(ENV).ok()?;
    Some(parse(&spec).ok_or_else(|| CameraError::Failed {
        id: "fake".into(),
        what: format!(
            "{ENV}={spec:?}: expected \"startup\", \"cancel:N\", \"cancel-once:N\" or \"squashed\""
        ),
    }))
}

fn parse(spec: &str) -> Option<Script> {
    match spec.split_once(':') {
        None if spec == "startup" => Some(Script::Startup),
        None if spec == "squashed" => Some(Script::Squashed),
        Some(("cancel", n)) => Some(Script::Cancel {
            after: n.parse().ok()?,
            recover: false,
        }),
        Some(("cancel-once", n)) => Some(Script::Cancel {
            after: n.parse().ok()?,
            recover: true,
        }),
        _ => None,
    }
}

/// A completed fake request.
pub struct FakeRequest {
    completion: Completion,
}

struct FakePipeline {
    script: Script,
    /// Requests queued, in order; each completes one frame period after the previous.
    queued: VecDeque<()>,
    period: Duration,
    next_at: Instant,
    /// Frames the fake sensor produced (its sequence number).
    produced: u64,
    /// The frontend timed out: queued requests come back cancelled.
    timed_out: bool,
    /// Restarted into a dead camera: nothing comes any more.
    dead: bool,
    restarts: u32,
    video: (u32, u32),
    still: (u32, u32),
}

impl FakePipeline {
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
        if self.timed_out && self.queued.pop_front().is_some() {
            return Next::Request(FakeRequest {
                completion: Completion {
                    cancelled: true,
                    frame: FrameStatus::Cancelled,
                    sequence: None,
                    crop: None,
                },
            });
        }
        let now = Instant::now();
        if self.dead || self.timed_out || self.queued.is_empty() || self.next_at > now + timeout {
            std::thread::sleep(timeout);
            return Next::Timeout;
        }
        std::thread::sleep(self.next_at.saturating_duration_since(now));
        self.next_at += self.period;
        self.queued.pop_front();
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
                self.queued.push_back(());
                return self.next(timeout);
            }
        }
        let crop = match self.script {
            Script::Squashed => WHOLE,
            _ => SQUARE,
        };
        Next::Request(FakeRequest {
            completion: Completion {
                cancelled: false,
                frame,
                sequence: u32::try_from(sequence).ok(),
                crop: Some(crop),
            },
        })
    }

    fn completion(&self, req: &FakeRequest) -> Completion {
        req.completion
    }

    fn fill(&self, req: &FakeRequest, frame: &mut FrameMut) -> bool {
        let grey = match req.completion.frame {
            FrameStatus::Success => 180,
            FrameStatus::Startup => 60,
            FrameStatus::Error | FrameStatus::Cancelled => 0,
        };
        let (mono, unix) = now_timestamps();
        let f = &mut **frame;
        f.timestamp_ns = mono;
        f.unix_us = unix.max(unix_us_now());
        let (vw, vh) = self.video;
        f.video.reshape(vw, vh, PixelFormat::I420);
        let y = vw as usize * vh as usize;
        f.video.data[..y].fill(grey);
        f.video.data[y..].fill(128);
        let (sw, sh) = self.still;
        f.still.reshape(sw, sh, PixelFormat::Rgb24);
        f.still.data.fill(grey);
        true
    }

    fn requeue(&mut self, _req: FakeRequest) -> Result<(), FakeRequest> {
        self.queued.push_back(());
        Ok(())
    }

    fn disconnected(&self) -> bool {
        false
    }

    fn restart(&mut self, held: Vec<FakeRequest>) -> Result<(), String> {
        self.restarts += 1;
        // Stop returns every request; start queues them all again.
        self.queued.clear();
        self.queued.extend((0..REQUESTS).map(|_| ()));
        drop(held);
        self.timed_out = false;
        if let Script::Cancel { recover, .. } = self.script {
            self.dead = !recover;
        }
        self.next_at = Instant::now() + self.period;
        Ok(())
    }
}

/// Opens the fake pipeline at the configured sizes and rate.
pub fn open(config: &Config, script: Script) -> Result<Box<dyn Camera>, CameraError> {
    tracing::warn!("{ENV}: running the fake pipeline {script:?}, not a camera");
    let video = (config.stream.width, config.stream.height);
    let still = (config.still.width, config.still.height);
    let period = Duration::from_secs(1) / config.camera.framerate.max(1);
    let crop_wanted = config.camera.crop == Crop::CenterSquare;
    // Like a Pi: one ISP crop for both outputs, so their shapes must match (as libcamera.rs
    // checks after configure()).
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
            adjustments: Vec::new(),
        };
        let crop = if crop_wanted {
            CropState::Pending
        } else {
            CropState::Disabled
        };
        let mut p = FakePipeline {
            script,
            queued: (0..REQUESTS).map(|_| ()).collect(),
            period,
            next_at: Instant::now() + period,
            produced: 0,
            timed_out: false,
            dead: false,
            restarts: 0,
            video,
            still,
        };
        if !owner.opened(info, crop) {
            return Ok(());
        }
        let wait = owner::restart_wait(i64::try_from(period.as_micros()).unwrap_or(i64::MAX));
        owner.drive("fake", &mut p, crop_wanted.then_some(still), wait)
    })?;
    Ok(Box::new(camera))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse() {
        assert_eq!(parse("startup"), Some(Script::Startup));
        assert_eq!(
            parse("cancel:5"),
            Some(Script::Cancel {
                after: 5,
                recover: false
            })
        );
        assert_eq!(
            parse("cancel-once:0"),
            Some(Script::Cancel {
                after: 0,
                recover: true
            })
        );
        assert_eq!(parse("cancel:x"), None);
        assert_eq!(parse("nope"), None);
    }
}
