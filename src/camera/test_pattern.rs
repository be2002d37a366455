//! The built-in test pattern: colour bars that scroll sideways (so a frozen stream is
//! obvious) with the frame number drawn on top, at the configured sizes and rate. It is
//! what the service shows with no camera, and what every test and benchmark runs against.
//!
//! It advertises no camera controls (every `[controls]` key is reported unsupported), unless
//! `PICKER_TEST_CONTROLS` names a recorded Pi camera ([`super::controls::fixtures`], e.g.
//! `imx708`): it then plans, reports and takes runtime changes exactly as a real camera's
//! owner thread does, so `/controls` and `/state` are tested through the binary. The pixels do
//! not change with the controls; the frames' settings (the stills' `X-Exposure-Time` and
//! kin) show the manual values in force, as a camera's metadata would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::controls::{ControlFacts, ControlsHandle, Echo, fixtures};
use super::{
    Camera, CameraError, CameraInfo, FrameSink, PixelFormat, SourceKind, StopFlag, StreamInfo,
};
use crate::config::Config;
use crate::frames::{Image, now_timestamps};

/// 75% colour bars, as in the SMPTE/EBU patterns: white, yellow, cyan, green, magenta, red,
/// blue, black.
const BARS: [[u8; 3]; 8] = [
    [191, 191, 191],
    [191, 191, 0],
    [0, 191, 191],
    [0, 191, 0],
    [191, 0, 191],
    [191, 0, 0],
    [0, 0, 191],
    [0, 0, 0],
];

/// 5x7 digit glyphs, one byte per row, low 5 bits used (bit 4 = leftmost pixel).
const DIGITS: [[u8; 7]; 10] = [
    [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
    [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
    [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
    [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
    [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
    [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
    [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
    [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
    [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
    [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
];

/// Pixels the bars move per frame, as a fraction of the width (1/128).
const SCROLL_DIVISOR: usize = 128;

pub struct TestPattern {
    framerate: u32,
    video: (u32, u32),
    still: (u32, u32),
    stall: Option<Stall>,
    controls: Arc<ControlsHandle>,
    facts: ControlFacts,
    /// The still's byte order: RGB, or a Raspberry Pi camera's B,G,R (libcamera's `RGB888`)
    /// when a test asks (`PICKER_TEST_STILL_FORMAT=bgr24`).
    still_format: PixelFormat,
}

/// Fault injection for tests of stall handling: after `after` frames, deliver nothing for
/// `duration`, then carry on, like a camera whose cable was wiggled. Set through the
/// environment (`PICKER_TEST_STALL=<frames>:<milliseconds>`), never through the config.
#[derive(Clone, Copy, Debug)]
struct Stall {
    after: u64,
    duration: Duration,
}

/// The longest stall `PICKER_TEST_STALL` may ask for: an hour, far beyond any test, and
/// far from overflowing an `Instant`.
const MAX_STALL_MS: u64 = 3_600_000;

impl Stall {
    /// `<frames>:<milliseconds>`, the milliseconds at most [`MAX_STALL_MS`].
    fn parse(spec: &str) -> Option<Stall> {
        let (after, ms) = spec.split_once(':')?;
        let ms: u64 = ms.trim().parse().ok()?;
        (ms <= MAX_STALL_MS).then_some(())?;
        Some(Stall {
            after: after.trim().parse().ok()?,
            duration: Duration::from_millis(ms),
        })
    }

    fn from_env() -> Option<Stall> {
        let spec = std::env::var("PICKER_TEST_STALL").ok()?;
        let Some(stall) = Stall::parse(&spec) else {
            tracing::warn!(
                "PICKER_TEST_STALL={spec:?} ignored: expected <frames>:<milliseconds>, \
                 at most {MAX_STALL_MS} ms"
            );
            return None;
        };
        tracing::warn!(
            "PICKER_TEST_STALL: the test pattern will stall for {:?} after frame {}",
            stall.duration,
            stall.after
        );
        Some(stall)
    }
}

impl TestPattern {
    pub fn new(config: &Config) -> Self {
        TestPattern {
            framerate: config.camera.framerate,
            video: (config.stream.width, config.stream.height),
            still: (config.still.width, config.still.height),
            stall: Stall::from_env(),
            controls: Arc::new(ControlsHandle::new(&config.controls)),
            facts: facts_from_env(config.camera.framerate),
            still_format: still_format_from_env(),
        }
    }
}

/// `PICKER_TEST_STILL_FORMAT=bgr24` (tests only): the still in the byte order a Raspberry Pi
/// camera delivers it, so that the paths a Pi takes for it run without one.
fn still_format_from_env() -> PixelFormat {
    match std::env::var("PICKER_TEST_STILL_FORMAT").as_deref() {
        Err(_) => PixelFormat::Rgb24,
        Ok("bgr24") => {
            tracing::warn!(
                "PICKER_TEST_STILL_FORMAT: the test pattern's still is B,G,R, as a Pi camera's"
            );
            PixelFormat::Bgr24
        }
        Ok(other) => {
            tracing::warn!("PICKER_TEST_STILL_FORMAT={other:?} ignored: expected \"bgr24\"");
            PixelFormat::Rgb24
        }
    }
}

/// The controls the pattern pretends to have: `PICKER_TEST_CONTROLS=<fixture>` (tests only),
/// with the frame period pinned at `framerate`, as picker pins a Pi camera's.
fn facts_from_env(framerate: u32) -> ControlFacts {
    let Ok(name) = std::env::var("PICKER_TEST_CONTROLS") else {
        return ControlFacts::none();
    };
    match fixtures::by_name(&name) {
        Some(f) => {
            tracing::warn!(
                "PICKER_TEST_CONTROLS: the test pattern advertises the controls of {name}"
            );
            f.with_frame_period(Some(1_000_000 / i64::from(framerate.max(1))))
        }
        None => {
            tracing::warn!("PICKER_TEST_CONTROLS={name:?}: no such fixture; no controls");
            ControlFacts::none()
        }
    }
}

impl Camera for TestPattern {
    fn info(&self) -> CameraInfo {
        CameraInfo {
            source: SourceKind::TestPattern,
            id: "test-pattern".to_string(),
            video: StreamInfo {
                width: self.video.0,
                height: self.video.1,
                format: PixelFormat::I420,
            },
            still: StreamInfo {
                width: self.still.0,
                height: self.still.1,
                format: self.still_format,
            },
            adjustments: Vec::new(),
        }
    }

    fn controls(&self) -> Option<Arc<ControlsHandle>> {
        Some(self.controls.clone())
    }

    fn run(&mut self, sink: &FrameSink, stop: &StopFlag) -> Result<(), CameraError> {
        let bgr = self.still_format == PixelFormat::Bgr24;
        let still_rows = BarRows::new(self.still.0 as usize, bgr);
        let video_rows = BarRows::new(self.video.0 as usize, false);
        let period = Duration::from_secs(1) / self.framerate;
        let mut next = Instant::now();
        let mut sequence = 0u64;
        // As a camera's owner thread does: the start values once, then changes per frame.
        // What its frames say they were taken with: the manual values in force (see
        // `controls::Echo`), from the frame after the change, as a camera reports them.
        let mut echo = Echo::default();
        echo.apply(&self.controls.start(&self.facts).values);
        while !stop.is_stopped() {
            if let Some(change) = self.controls.take_change() {
                echo.apply(&change.values);
            }
            sequence += 1;
            let mut frame = sink.acquire();
            frame.settings = echo.settings();
            let (mono, unix) = now_timestamps();
            frame.sequence = sequence;
            frame.timestamp_ns = mono;
            frame.unix_us = unix;
            frame
                .still
                .reshape(self.still.0, self.still.1, self.still_format);
            frame
                .video
                .reshape(self.video.0, self.video.1, PixelFormat::I420);
            still_rows.draw_rgb(&mut frame.still, sequence);
            video_rows.draw_i420(&mut frame.video, sequence);
            sink.publish(frame, 0);

            next += period;
            if let Some(stall) = self.stall.filter(|s| s.after == sequence) {
                // Bounded by MAX_STALL_MS; checked all the same, an Instant overflow panics.
                next = next.checked_add(stall.duration).unwrap_or(next);
            }
            let now = Instant::now();
            if next > now {
                // Sleep in slices so a stop request is seen within 50 ms even at 1 fps.
                let mut left = next - now;
                while !left.is_zero() && !stop.is_stopped() {
                    let slice = left.min(Duration::from_millis(50));
                    std::thread::sleep(slice);
                    left -= slice;
                }
            } else {
                // Behind (a slow machine): don't try to catch up with a burst.
                next = now;
            }
        }
        Ok(())
    }
}

/// One row of bars, twice as wide as the image so any scroll offset is one slice.
struct BarRows {
    width: usize,
    rgb: Vec<u8>,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl BarRows {
    /// Rows `width` wide; the packed ones in B,G,R order when `bgr`.
    fn new(width: usize, bgr: bool) -> Self {
        let colour = |x: usize| BARS[(x % width) * BARS.len() / width];
        let rgb: Vec<u8> = (0..2 * width)
            .map(colour)
            .flat_map(|[r, g, b]| if bgr { [b, g, r] } else { [r, g, b] })
            .collect();
        let yuv: Vec<[u8; 3]> = (0..2 * width)
            .map(|x| crate::convert::rgb_to_yuv(colour(x)))
            .collect();
        BarRows {
            width,
            rgb,
            y: yuv.iter().map(|p| p[0]).collect(),
            u: yuv.iter().step_by(2).map(|p| p[1]).collect(),
            v: yuv.iter().step_by(2).map(|p| p[2]).collect(),
        }
    }

    fn offset(&self, sequence: u64) -> usize {
        // Even, so the chroma rows (half width) shift by whole samples.
        let step = (self.width / SCROLL_DIVISOR).max(2) & !1;
        (sequence as usize * step) % self.width
    }

    fn draw_rgb(&self, img: &mut Image, sequence: u64) {
        let (w, h, stride) = (self.width, img.height as usize, img.strides[0]);
        let off = self.offset(sequence);
        let plane = img.plane_mut(0);
        for row in 0..h {
            plane[row * stride..][..w * 3].copy_from_slice(&self.rgb[off * 3..][..w * 3]);
        }
        let label = Label::new(sequence, w, h);
        label.draw(plane, stride, 3, &[16, 16, 16], &[235, 235, 235]);
    }

    fn draw_i420(&self, img: &mut Image, sequence: u64) {
        let (w, h) = (self.width, img.height as usize);
        let off = self.offset(sequence);
        let strides = img.strides;
        {
            let y = img.plane_mut(0);
            for row in 0..h {
                y[row * strides[0]..][..w].copy_from_slice(&self.y[off..][..w]);
            }
        }
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        for (plane, src) in [(1, &self.u), (2, &self.v)] {
            let p = img.plane_mut(plane);
            for row in 0..ch {
                p[row * strides[plane]..][..cw].copy_from_slice(&src[off / 2..][..cw]);
            }
        }
        let label = Label::new(sequence, w, h);
        label.draw(img.plane_mut(0), strides[0], 1, &[16], &[235]);
        // Neutral chroma under the label box.
        let half = label.halved();
        for plane in [1, 2] {
            half.fill(img.plane_mut(plane), strides[plane], 1, &[128]);
        }
    }
}

/// The frame number in a dark box at the top left.
struct Label {
    text: Vec<usize>,
    scale: usize,
    x: usize,
    y: usize,
    width: usize,
    height: usize,
}

impl Label {
    fn new(sequence: u64, width: usize, height: usize) -> Self {
        let text: Vec<usize> = sequence
            .to_string()
            .bytes()
            .map(|b| usize::from(b - b'0'))
            .collect();
        let scale = (height / 64).max(1);
        let margin = scale * 2;
        let box_w = (text.len() * 6 * scale + margin * 2).min(width);
        let box_h = (7 * scale + margin * 2).min(height);
        Label {
            text,
            scale,
            x: margin,
            y: margin,
            width: box_w,
            height: box_h,
        }
    }

    /// The box in half resolution (for chroma planes).
    fn halved(&self) -> Label {
        Label {
            text: Vec::new(),
            scale: 0,
            x: self.x / 2,
            y: self.y / 2,
            width: self.width.div_ceil(2),
            height: self.height.div_ceil(2),
        }
    }

    fn fill(&self, plane: &mut [u8], stride: usize, bpp: usize, colour: &[u8]) {
        let max_x = stride / bpp;
        for row in self.y..self.y + self.height {
            paint_run(
                plane,
                row * stride,
                self.x,
                (self.x + self.width).min(max_x),
                bpp,
                colour,
            );
        }
    }

    fn draw(&self, plane: &mut [u8], stride: usize, bpp: usize, bg: &[u8], fg: &[u8]) {
        self.fill(plane, stride, bpp, bg);
        let margin = self.scale * 2;
        for (i, digit) in self.text.iter().enumerate() {
            for (gy, bits) in DIGITS[*digit].iter().enumerate() {
                for gx in 0..5 {
                    if bits & (0x10 >> gx) == 0 {
                        continue;
                    }
                    let x0 = self.x + margin + (i * 6 + gx) * self.scale;
                    let y0 = self.y + margin + gy * self.scale;
                    if x0 + self.scale > self.x + self.width {
                        continue;
                    }
                    for y in y0..y0 + self.scale {
                        paint_run(plane, y * stride, x0, x0 + self.scale, bpp, fg);
                    }
                }
            }
        }
    }
}

/// Paints pixels `x0..x1` of the row starting at byte `row_start` with `colour`, skipping
/// those that don't fit in `plane`. A whole run at once: per-pixel `copy_from_slice` of a
/// runtime-sized colour was a `memcpy` call per pixel, most of the idle service's CPU.
fn paint_run(plane: &mut [u8], row_start: usize, x0: usize, x1: usize, bpp: usize, colour: &[u8]) {
    let start = row_start + x0 * bpp;
    if x1 <= x0 || start >= plane.len() {
        return;
    }
    let pixels = (x1 - x0).min((plane.len() - start) / bpp);
    let run = &mut plane[start..start + pixels * bpp];
    match *colour {
        [c] => run.fill(c),
        [a, b, c] => {
            for px in run.chunks_exact_mut(3) {
                px[0] = a;
                px[1] = b;
                px[2] = c;
            }
        }
        _ => {
            for px in run.chunks_exact_mut(bpp) {
                px.copy_from_slice(colour);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_specs_are_range_checked() {
        let table: &[(&str, Option<(u64, u64)>)] = &[
            ("20:6000", Some((20, 6000))),
            (" 3 : 0 ", Some((3, 0))),
            ("1:3600000", Some((1, 3_600_000))),
            ("1:3600001", None),
            ("1:18446744073709551615", None),
            ("1:18446744073709551616", None),
            ("1:-5", None),
            ("x:5", None),
            ("5", None),
        ];
        for &(spec, want) in table {
            let got = Stall::parse(spec).map(|s| (s.after, s.duration.as_millis() as u64));
            assert_eq!(got, want, "{spec:?}");
        }
    }
    use crate::camera::CropState;
    use crate::frames::Stats;
    use std::sync::Arc;

    #[test]
    fn paint_run_matches_per_pixel_painting_including_clipping() {
        for (bpp, colour) in [(1, &[7u8][..]), (3, &[1u8, 2, 3][..])] {
            for len in [0, 5, 29, 30, 31, 64] {
                for (row_start, x0, x1) in [(0, 0, 10), (4, 2, 9), (12, 3, 40), (30, 0, 3)] {
                    let mut fast = vec![0u8; len];
                    paint_run(&mut fast, row_start, x0, x1, bpp, colour);
                    let mut slow = vec![0u8; len];
                    for x in x0..x1 {
                        let at = row_start + x * bpp;
                        if let Some(px) = slow.get_mut(at..at + bpp) {
                            px.copy_from_slice(colour);
                        }
                    }
                    assert_eq!(fast, slow, "bpp {bpp} len {len} {row_start} {x0}..{x1}");
                }
            }
        }
    }

    #[test]
    fn frames_move_and_have_configured_sizes() {
        let mut config = Config::defaults();
        config.stream.width = 320;
        config.stream.height = 240;
        config.still.width = 640;
        config.still.height = 480;
        config.camera.framerate = 100;
        let sink = FrameSink::new(Arc::new(Stats::default()), CropState::Disabled);
        let mut rx = sink.subscribe();
        let stop = StopFlag::new();
        let mut pattern = TestPattern::new(&config);
        std::thread::scope(|s| {
            s.spawn(|| pattern.run(&sink, &stop).unwrap());
            let mut seen = Vec::new();
            while seen.len() < 3 {
                if rx.has_changed().unwrap() {
                    let f = rx.borrow_and_update().clone().unwrap();
                    assert_eq!((f.video.width, f.video.height), (320, 240));
                    assert_eq!((f.still.width, f.still.height), (640, 480));
                    assert_eq!(f.still.data.len(), 640 * 480 * 3);
                    seen.push(f);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            stop.stop();
            assert!(seen[0].sequence < seen[1].sequence);
            // The bars scrolled: a row below the label differs between frames.
            let row =
                |f: &crate::frames::Frame| f.still.data[400 * 640 * 3..401 * 640 * 3].to_vec();
            assert_ne!(row(&seen[0]), row(&seen[2]));
        });
    }
}
