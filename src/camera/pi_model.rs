//! A Raspberry Pi-faithful model of the camera for tests: recorded facts of the Pi cameras
//! (IMX708 Camera Module 3, IMX477 HQ, IMX219 Module 2, OV5647 Module 1: raw modes with their
//! analogue crops and frame rates as `rpicam-hello --list-cameras` prints them, the controls
//! each advertises) and a small Rust model of what Raspberry Pi's libcamera does with them
//! (0.7.0+rpt20260205, `src/libcamera/pipeline/rpi/`): the mode choice (`findBestFormat`), the
//! per-output ISP crops set at configure (`vc4.cpp` one crop from the largest output, `pisp.cpp`
//! one per output), the control limits before configure (ipa_base.cpp placeholders) and after
//! (the mode's analogue crop and frame durations), and the crop clamping of every request
//! (`applyScalerCrop`, `scaleIspCrop`). Written from reading that source; no code copied.
//!
//! The virtual camera in the VM has none of this, so these tests are where the Pi path of
//! [`super::plan`] is shown right, and where today's old logic is shown wrong.

use super::Rect;
use super::plan::{self, ModeLimits, ModeSpec, PlanError, RawMode};

const fn r(x: i32, y: i32, width: u32, height: u32) -> Rect {
    Rect {
        x,
        y,
        width,
        height,
    }
}

/// One sensor mode: output size, bit depth, analogue crop (active-area coordinates), the
/// fastest frame rate of the mode (from `rpicam-hello --list-cameras`), and the driver's
/// timing it follows from.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub size: (u32, u32),
    pub bits: u32,
    pub crop: Rect,
    pub fps: f64,
    pub timing: Timing,
}

/// A mode's timing as the driver sets it: pixel rate (Hz), line length (pixels, blanking
/// included: min, max) and frame length (lines: height + VBLANK min, height + VBLANK max).
/// libcamera's limits follow from it (`camera_sensor_raw.cpp:1044-1049`, `ipa_base.cpp`
/// setMode): FrameDurationLimits from min x min to max x max over the pixel rate.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub rate: u64,
    pub line: (u32, u32),
    pub frame: (u32, u32),
}

/// A mode's timing; `line_max` where HBLANK is writable beyond the mode's own.
const fn t(rate: u64, line: u32, line_max: u32, frame: u32, frame_max: u32) -> Timing {
    Timing {
        rate,
        line: (line, line_max),
        frame: (frame, frame_max),
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Sensor {
    pub model: &'static str,
    pub active: (u32, u32),
    pub modes: &'static [Mode],
    /// Has a lens driver: the IPA then adds AfMode, AfRange, LensPosition (after configure the
    /// tuning's focus map: 0-15 dioptres on IMX708, 0-35 on its wide variant, default 1.0;
    /// 0-32 is only the placeholder before configure).
    /// For the controls tests (pi-controls).
    #[allow(dead_code)]
    pub autofocus: bool,
}

const fn m(w: u32, h: u32, bits: u32, crop: Rect, fps: f64, timing: Timing) -> Mode {
    Mode {
        size: (w, h),
        bits,
        crop,
        fps,
        timing,
    }
}

// Frame lengths the drivers allow at most (VBLANK max + height).
/// imx708.c: VBLANK max = 128 x 0xffff - height (long-exposure shift 7).
const IMX708_FL_MAX: u32 = 128 * 0xffff;
/// imx477.c, imx500.c: 128 x IMX*_FRAME_LENGTH_MAX (0xffdc).
const IMX477_FL_MAX: u32 = 128 * 0xffdc;
/// imx477.c: HBLANK writable up to 0xfff0, so the line runs to width + 0xfff0.
const IMX477_HBLANK_MAX: u32 = 0xfff0;

// imx708.c @02b9c86b: HBLANK fixed, one pixel rate per mode.
const IMX708_1536: Timing = t(566_400_000, 5216, 5216, 904, IMX708_FL_MAX);
const IMX708_2304: Timing = t(585_600_000, 7824, 7824, 1336, IMX708_FL_MAX);
const IMX708_4608: Timing = t(595_200_000, 15648, 15648, 2650, IMX708_FL_MAX);

pub const IMX708: Sensor = Sensor {
    model: "imx708",
    active: (4608, 2592),
    modes: &[
        m(1536, 864, 10, r(768, 432, 3072, 1728), 120.13, IMX708_1536),
        m(2304, 1296, 10, r(0, 0, 4608, 2592), 56.03, IMX708_2304),
        m(4608, 2592, 10, r(0, 0, 4608, 2592), 14.35, IMX708_4608),
    ],
    autofocus: true,
};

/// imx477.c @00233bcd: 840 MHz in every mode.
const fn imx477(width: u32, line: u32, frame: u32) -> Timing {
    t(
        840_000_000,
        line,
        width + IMX477_HBLANK_MAX,
        frame,
        IMX477_FL_MAX,
    )
}

#[rustfmt::skip] // A table: one mode a line.
pub const IMX477: Sensor = Sensor {
    model: "imx477",
    active: (4056, 3040),
    modes: &[
        m(1332, 990, 10, r(696, 528, 2664, 1980), 120.05, imx477(1332, 6664, 1050)),
        m(2028, 1080, 12, r(0, 440, 4056, 2160), 50.03, imx477(2028, 12740, 1318)),
        m(2028, 1520, 12, r(0, 0, 4056, 3040), 40.01, imx477(2028, 12740, 1648)),
        m(4056, 3040, 12, r(0, 0, 4056, 3040), 10.00, imx477(4056, 24000, 3500)),
    ],
    autofocus: false,
};

/// imx219.c @01a8e801: 182.4 MHz, LLP fixed at 3448, VTS up to 0xffff (a newer driver
/// doubles the binned modes' rate: record it from a probe).
const fn imx219(frame: u32) -> Timing {
    t(182_400_000, 3448, 3448, frame, 0xffff)
}

pub const IMX219: Sensor = Sensor {
    model: "imx219",
    active: (3280, 2464),
    modes: &[
        m(640, 480, 10, r(1000, 752, 1280, 960), 103.33, imx219(512)),
        m(1640, 1232, 10, r(0, 0, 3280, 2464), 41.85, imx219(1264)),
        m(1920, 1080, 10, r(680, 692, 1920, 1080), 47.57, imx219(1112)),
        m(3280, 2464, 10, r(0, 0, 3280, 2464), 21.19, imx219(2496)),
        // The same sizes as 8-bit formats.
        m(640, 480, 8, r(1000, 752, 1280, 960), 103.33, imx219(512)),
        m(1640, 1232, 8, r(0, 0, 3280, 2464), 41.85, imx219(1264)),
        m(1920, 1080, 8, r(680, 692, 1920, 1080), 47.57, imx219(1112)),
        m(3280, 2464, 8, r(0, 0, 3280, 2464), 21.19, imx219(2496)),
    ],
    autofocus: false,
};

/// ov5647.c @00f710c4: HTS fixed per mode, VTS up to 32767.
const fn ov5647(rate: u64, line: u32, frame: u32) -> Timing {
    t(rate, line, line, frame, 32767)
}

#[rustfmt::skip] // A table: one mode a line.
pub const OV5647: Sensor = Sensor {
    model: "ov5647",
    active: (2592, 1944),
    modes: &[
        m(640, 480, 10, r(16, 0, 2560, 1920), 58.92, ov5647(55_000_000, 1852, 504)),
        // 81.67 MHz in these two modes (ov5647.c), not the 87.5 MHz of 2592x1944.
        m(1296, 972, 10, r(0, 0, 2592, 1944), 43.25, ov5647(81_666_700, 1896, 996)),
        m(1920, 1080, 10, r(348, 434, 1928, 1080), 30.62, ov5647(81_666_700, 2416, 1104)),
        m(2592, 1944, 10, r(0, 0, 2592, 1944), 15.63, ov5647(87_500_000, 2844, 1968)),
    ],
    autofocus: false,
};

/// Camera Module 3 with HDR on: the driver's other mode table (`imx708.c`
/// `get_mode_table`, `V4L2_CID_WIDE_DYNAMIC_RANGE`), one mode, 777.6 MHz, LLP 5216.
const IMX708_HDR_2304: Timing = t(777_600_000, 5216, 5216, 4969, IMX708_FL_MAX);

pub const IMX708_HDR: Sensor = Sensor {
    model: "imx708-hdr",
    active: (4608, 2592),
    modes: &[m(
        2304,
        1296,
        10,
        r(0, 0, 4608, 2592),
        30.00,
        IMX708_HDR_2304,
    )],
    autofocus: true,
};

/// Global Shutter camera (colour IMX296LQ and mono IMX296LL alike, `imx296.c`): one frame
/// size, active area = native array, 118.8 MHz, HMAX 1100 (LLP 1760), VBLANK 30 to
/// 1048575 - 1088. The stored driver creates no HFLIP/VFLIP controls: the sensor cannot flip.
const IMX296_1456: Timing = t(118_800_000, 1760, 1760, 1118, 1_048_575);

pub const IMX296: Sensor = Sensor {
    model: "imx296",
    active: (1456, 1088),
    modes: &[m(1456, 1088, 10, r(0, 0, 1456, 1088), 60.38, IMX296_1456)],
    autofocus: false,
};

/// AI Camera (`imx500.c` @0a3ca5c2, `imx500_supported_modes`): 744 MHz, VBLANK min 1117 in
/// both modes, HBLANK fixed; full resolution at LLP 17900 and 2x2 binned 2028x1520 at LLP
/// 9398, both seeing the whole sensor. The binned mode's comment says 40 fps; its registers
/// give 744 MHz / (9398 x 2637) = 30.02.
#[rustfmt::skip] // A table: one mode a line.
pub const IMX500: Sensor = Sensor {
    model: "imx500",
    active: (4056, 3040),
    modes: &[
        m(4056, 3040, 10, r(0, 0, 4056, 3040), 10.00, imx500(17900, 4157)),
        m(2028, 1520, 10, r(0, 0, 4056, 3040), 30.02, imx500(9398, 2637)),
    ],
    autofocus: false,
};

const fn imx500(line: u32, frame: u32) -> Timing {
    t(744_000_000, line, line, frame, IMX477_FL_MAX)
}

pub const SENSORS: [Sensor; 7] = [IMX708, IMX477, IMX219, OV5647, IMX708_HDR, IMX296, IMX500];

/// Raspberry Pi 4 / Zero 2 W (`rpi/vc4`) or Pi 5 (`rpi/pisp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isp {
    Vc4,
    Pisp,
}

/// The IPA's limits before `configure()` (ipa_base.cpp): ScalerCrop max
/// (65535,65535,65535,65535), no ScalerCropMaximum yet, FrameDurationLimits from the default
/// frame durations (1/30 s .. 120 ms as the issue recorded).
pub fn limits_before_configure() -> ModeLimits {
    ModeLimits {
        scaler_crop_max: Some(r(65535, 65535, 65535, 65535)),
        scaler_crop_maximum: Some(r(0, 0, 0, 0)),
        frame_duration: Some((33_333, 120_000)),
    }
}

/// A configured camera, as the pipeline holds it.
#[derive(Clone, Debug)]
pub struct Configured {
    pub mode: Mode,
    /// One ISP crop per output on pisp, one for all on vc4, in mode pixels.
    pub isp_crops: Vec<Rect>,
    pub min_crops: Vec<(u32, u32)>,
    pub outputs: Vec<(u32, u32)>,
}

fn score(desired: f64, actual: f64) -> f64 {
    let mut s = desired - actual;
    if s < 0.0 {
        s = -s / 8.0;
    }
    if actual != desired {
        s *= 2.0;
    }
    s
}

/// `findBestFormat`: the mode closest to `req` in size and aspect ratio, penalising other
/// bit depths; ties go to the later mode.
pub fn find_best_format(sensor: &Sensor, req: (u32, u32), bits: u32) -> Mode {
    let mut best = sensor.modes[0];
    let mut best_score = f64::MAX;
    for mode in sensor.modes {
        let req_ar = f64::from(req.0) / f64::from(req.1);
        let fmt_ar = f64::from(mode.size.0) / f64::from(mode.size.1);
        let s = score(f64::from(req.0), f64::from(mode.size.0))
            + score(f64::from(req.1), f64::from(mode.size.1))
            + 1500.0 * score(req_ar, fmt_ar)
            + f64::from(mode.bits.abs_diff(bits)) * 500.0;
        if s <= best_score {
            best_score = s;
            best = *mode;
        }
    }
    best
}

/// Size::boundedToAspectRatio.
fn bounded_to_aspect(size: (u32, u32), ratio: (u32, u32)) -> (u32, u32) {
    let r1 = u64::from(size.0) * u64::from(ratio.1);
    let r2 = u64::from(ratio.0) * u64::from(size.1);
    if r1 > r2 {
        ((r2 / u64::from(ratio.1)) as u32, size.1)
    } else {
        (size.0, (r1 / u64::from(ratio.0)) as u32)
    }
}

/// Size::expandedToAspectRatio.
fn expanded_to_aspect(size: (u32, u32), ratio: (u32, u32)) -> (u32, u32) {
    let r1 = u64::from(size.0) * u64::from(ratio.1);
    let r2 = u64::from(ratio.0) * u64::from(size.1);
    if r1 < r2 {
        ((r2 / u64::from(ratio.1)) as u32, size.1)
    } else {
        (size.0, (r1 / u64::from(ratio.0)) as u32)
    }
}

/// Size::centeredTo(Rectangle(size).center()) and friends.
fn centred_to(size: (u32, u32), centre: (i32, i32)) -> Rect {
    r(
        centre.0 - (size.0 / 2) as i32,
        centre.1 - (size.1 / 2) as i32,
        size.0,
        size.1,
    )
}

fn centre(rc: Rect) -> (i32, i32) {
    (rc.x + (rc.width / 2) as i32, rc.y + (rc.height / 2) as i32)
}

/// Rectangle::scaledBy(numerator, denominator).
fn scaled_by(rc: Rect, num: (u32, u32), den: (u32, u32)) -> Rect {
    r(
        (i64::from(rc.x) * i64::from(num.0) / i64::from(den.0)) as i32,
        (i64::from(rc.y) * i64::from(num.1) / i64::from(den.1)) as i32,
        (u64::from(rc.width) * u64::from(num.0) / u64::from(den.0)) as u32,
        (u64::from(rc.height) * u64::from(num.1) / u64::from(den.1)) as u32,
    )
}

/// Rectangle::enclosedIn(boundary at the origin).
fn enclosed_in(rc: Rect, bound: (u32, u32)) -> Rect {
    let (w, h) = (rc.width.min(bound.0), rc.height.min(bound.1));
    let clamp = |v: i32, hi: i64| i64::from(v).clamp(0, hi.max(0)) as i32;
    r(
        clamp(rc.x, i64::from(bound.0) - i64::from(w)),
        clamp(rc.y, i64::from(bound.1) - i64::from(h)),
        w,
        h,
    )
}

/// `configure()`: the sensor configuration must name a mode exactly (size and bit depth),
/// else the configuration is invalid; without one the largest output picks the mode at the
/// default 12-bit depth. Then the ISP crops are set from the outputs' shapes.
pub fn configure(
    sensor: &Sensor,
    isp: Isp,
    sensor_config: Option<RawMode>,
    outputs: &[(u32, u32)],
) -> Result<Configured, &'static str> {
    let largest = *outputs.iter().max().ok_or("no outputs")?;
    let mode = match sensor_config {
        Some(sc) => {
            let mode = find_best_format(sensor, (sc.width, sc.height), sc.bit_depth);
            if mode.size != (sc.width, sc.height) || mode.bits != sc.bit_depth {
                return Err("Invalid sensor configuration: bitDepth/size mismatch");
            }
            mode
        }
        None => find_best_format(sensor, largest, 12),
    };
    let whole = r(0, 0, mode.size.0, mode.size.1);
    let (isp_crops, min_crops) = match isp {
        Isp::Vc4 => {
            let size = bounded_to_aspect(mode.size, largest);
            // The smallest selection the ISP allows (the driver's answer to a 1x1 crop).
            (vec![centred_to(size, centre(whole))], vec![(32, 32)])
        }
        Isp::Pisp => outputs
            .iter()
            .map(|out| {
                let size = bounded_to_aspect(mode.size, *out);
                let min = (
                    ((out.0 - 1) / 16 + 2).max(32),
                    ((out.1 - 1) / 16 + 2).max(32),
                );
                (centred_to(size, centre(whole)), min)
            })
            .unzip(),
    };
    Ok(Configured {
        mode,
        isp_crops,
        min_crops,
        outputs: outputs.to_vec(),
    })
}

impl Configured {
    /// The limits the camera advertises after configure: ScalerCrop up to the mode's analogue
    /// crop, ScalerCropMaximum the same, FrameDurationLimits of the mode (shortest line x
    /// shortest frame to longest x longest, over the pixel rate, truncated to microseconds as
    /// `IpaBase::configure` reports them).
    pub fn limits(&self) -> ModeLimits {
        let us = |line: u32, frame: u32| {
            let rate = u128::from(self.mode.timing.rate);
            let whole = u128::from(line) * u128::from(frame) * 1_000_000 / rate;
            i64::try_from(whole).unwrap_or(i64::MAX)
        };
        let Timing { line, frame, .. } = self.mode.timing;
        ModeLimits {
            scaler_crop_max: Some(self.mode.crop),
            scaler_crop_maximum: Some(self.mode.crop),
            frame_duration: Some((us(line.0, frame.0), us(line.1, frame.1))),
        }
    }

    /// The configured mode's line timing, as the controls plan takes it.
    pub fn line_timing(&self, model: &str) -> Option<plan::LineTiming> {
        let shortest = self.limits().frame_duration?.0;
        plan::line_timing(
            model,
            self.mode.timing.line.0,
            self.mode.timing.rate,
            shortest,
        )
    }

    /// scaleIspCrop: mode pixels to sensor (active-area) coordinates.
    pub fn native(&self, isp_crop: Rect) -> Rect {
        let c = scaled_by(isp_crop, self.mode.crop_size(), self.mode.size);
        r(
            c.x + self.mode.crop.x,
            c.y + self.mode.crop.y,
            c.width,
            c.height,
        )
    }

    /// applyScalerCrop with one `ScalerCrop` for every output.
    pub fn apply_scaler_crop(&mut self, native: Rect) {
        let native = if native.width == 0 || native.height == 0 {
            r(0, 0, 1, 1)
        } else {
            native
        };
        for i in 0..self.isp_crops.len() {
            let moved = r(
                native.x - self.mode.crop.x,
                native.y - self.mode.crop.y,
                native.width,
                native.height,
            );
            let isp = scaled_by(moved, self.mode.size, self.mode.crop_size());
            let min = expanded_to_aspect(self.min_crops[i], (native.width, native.height));
            let size = (isp.width.max(min.0), isp.height.max(min.1));
            self.isp_crops[i] = enclosed_in(centred_to(size, centre(isp)), self.mode.size);
        }
    }

    /// The sensor area each output shows, in sensor coordinates.
    pub fn output_crops(&self) -> Vec<Rect> {
        (0..self.outputs.len())
            .map(|i| self.native(self.isp_crops[i.min(self.isp_crops.len() - 1)]))
            .collect()
    }

    /// The `ScalerCrop` reported in each request's metadata (the first output's crop).
    pub fn reported_crop(&self) -> Rect {
        self.native(self.isp_crops[0])
    }
}

impl Mode {
    fn crop_size(&self) -> (u32, u32) {
        (self.crop.width, self.crop.height)
    }
}

pub fn raw_modes(sensor: &Sensor) -> Vec<RawMode> {
    sensor
        .modes
        .iter()
        .map(|m| RawMode {
            width: m.size.0,
            height: m.size.1,
            bit_depth: m.bits,
        })
        .collect()
}

/// What the camera ends up doing with a plan.
#[derive(Debug)]
pub struct Outcome {
    pub configured: Configured,
    /// The crop each output shows, in sensor coordinates.
    pub output_crops: Vec<Rect>,
    pub reported: Rect,
    pub frame_period: i64,
}

/// The backend's steps, against the model: choose the mode by configuring candidates, read the
/// limits after configure, plan the crop and frame period from them, configure, apply.
pub fn new_logic(
    sensor: &Sensor,
    isp: Isp,
    still: (u32, u32),
    video: (u32, u32),
    framerate: u32,
) -> Result<Outcome, PlanError> {
    let outputs = [still, video];
    plan::check_aspects(still, video, true)?;
    let need = (still.0.max(video.0), still.1.max(video.1));
    let chosen = plan::choose_mode(sensor.active, &raw_modes(sensor), need, |mode| {
        Ok::<_, PlanError>(
            configure(sensor, isp, Some(mode), &outputs)
                .ok()
                .map(|c| c.limits()),
        )
    })?;
    let mode = chosen.map(|(m, _)| m);
    let mut configured = configure(sensor, isp, mode, &outputs).expect("a chosen mode configures");
    let limits = configured.limits();
    let area = plan::crop_area(Some(sensor.active), &limits)?.expect("the Pi has ScalerCrop");
    let crop = plan::centred_crop(area, still);
    configured.apply_scaler_crop(crop);
    let (frame_period, _) = plan::frame_period(framerate, limits.frame_duration);
    Ok(Outcome {
        output_crops: configured.output_crops(),
        reported: configured.reported_crop(),
        configured,
        frame_period,
    })
}

/// Today's logic before this change, kept here to show where it goes wrong: a mode of the
/// sensor's aspect ratio (`full_fov_mode`), the crop from the limits read *before*
/// configure, the frame period from the placeholder `FrameDurationLimits`.
pub fn old_logic(
    sensor: &Sensor,
    isp: Isp,
    still: (u32, u32),
    video: (u32, u32),
    framerate: u32,
) -> Outcome {
    let outputs = [still, video];
    let before = limits_before_configure();
    let need = (still.0.max(video.0), still.1.max(video.1));
    let sizes: Vec<(u32, u32)> = sensor.modes.iter().map(|m| m.size).collect();
    let mode = old_full_fov_mode(&sizes, sensor.active, need).map(|(w, h)| {
        let bit_depth = sensor
            .modes
            .iter()
            .filter(|m| m.size == (w, h))
            .map(|m| m.bits)
            .max()
            .unwrap_or(0);
        RawMode {
            width: w,
            height: h,
            bit_depth,
        }
    });
    let crop = plan::centred_crop(before.scaler_crop_max.unwrap(), (1, 1));
    let mut configured = configure(sensor, isp, mode, &outputs).expect("configures");
    configured.apply_scaler_crop(crop);
    let (min, max) = before.frame_duration.unwrap();
    let want = 1_000_000 / i64::from(framerate);
    Outcome {
        output_crops: configured.output_crops(),
        reported: configured.reported_crop(),
        configured,
        frame_period: want.max(min).min(max),
    }
}

/// `crop::full_fov_mode` as it was: any mode of the sensor's aspect ratio counts as full field.
fn old_full_fov_mode(
    modes: &[(u32, u32)],
    full: (u32, u32),
    need: (u32, u32),
) -> Option<(u32, u32)> {
    let covers = |(w, h): (u32, u32)| {
        let lhs = u64::from(w) * u64::from(full.1);
        let rhs = u64::from(h) * u64::from(full.0);
        lhs.abs_diff(rhs) * 100 <= rhs
    };
    let mut full_fov: Vec<(u32, u32)> = modes.iter().copied().filter(|m| covers(*m)).collect();
    full_fov.sort_by_key(|(w, h)| u64::from(*w) * u64::from(*h));
    full_fov
        .iter()
        .copied()
        .find(|(w, h)| *w.min(h) >= need.0.max(need.1))
        .or_else(|| full_fov.last().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUTS: [((u32, u32), (u32, u32)); 4] = [
        ((512, 512), (512, 512)),
        ((480, 480), (480, 480)),
        ((1024, 1024), (512, 512)),
        ((640, 480), (640, 480)),
    ];
    const ISPS: [Isp; 2] = [Isp::Vc4, Isp::Pisp];

    /// Every camera, pipeline and output size of the issue.
    fn cases() -> impl Iterator<Item = (Sensor, Isp, (u32, u32), (u32, u32))> {
        SENSORS.into_iter().flat_map(|s| {
            ISPS.into_iter()
                .flat_map(move |isp| OUTPUTS.into_iter().map(move |(st, v)| (s, isp, st, v)))
        })
    }

    /// What a right outcome is: the mode sees the whole active area; every output shows a
    /// crop of its own shape (nothing squashed), as tall as the sensor (or as wide, for an
    /// output wider than the sensor); the reported crop is the planned one.
    fn check(o: &Outcome, sensor: &Sensor, still: (u32, u32), video: (u32, u32)) -> Vec<String> {
        let mut wrong = Vec::new();
        let crop = o.configured.mode.crop;
        if !plan::full_field_of_view(sensor.active, crop) {
            wrong.push(format!(
                "mode {:?} sees only {:?} of {:?}",
                o.configured.mode.size, crop, sensor.active
            ));
        }
        for (c, out) in o.output_crops.iter().zip([still, video]) {
            let lhs = u64::from(c.width) * u64::from(out.1);
            let rhs = u64::from(c.height) * u64::from(out.0);
            if lhs.abs_diff(rhs) * 100 > rhs {
                wrong.push(format!("output {out:?} shows {c:?}: squashed"));
            }
            let tall = u64::from(c.height) * 100 >= u64::from(sensor.active.1) * 99;
            let wide = u64::from(c.width) * 100 >= u64::from(sensor.active.0) * 99;
            if !(tall || wide) {
                wrong.push(format!(
                    "output {out:?} shows {c:?}: not the full sensor height"
                ));
            }
        }
        wrong
    }

    #[test]
    fn every_pi_camera_gets_a_full_height_crop_of_the_output_shape() {
        let mut failures = Vec::new();
        for (sensor, isp, still, video) in cases() {
            let o = new_logic(&sensor, isp, still, video, 30).expect("plans");
            for w in check(&o, &sensor, still, video) {
                failures.push(format!("{} {isp:?} {still:?}: {w}", sensor.model));
            }
            assert_eq!(o.reported, o.output_crops[0], "{} {isp:?}", sensor.model);
            assert_eq!(
                plan::crop_applied(o.reported, still),
                super::super::CropState::Applied(o.reported)
            );
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn the_smallest_full_field_mode_is_chosen() {
        let want = [
            ("imx708", (2304, 1296)),
            ("imx477", (2028, 1520)),
            ("imx219", (1640, 1232)),
            ("ov5647", (1296, 972)),
            ("imx708-hdr", (2304, 1296)),
            ("imx296", (1456, 1088)),
            ("imx500", (2028, 1520)),
        ];
        for (sensor, isp, still, video) in cases() {
            let o = new_logic(&sensor, isp, still, video, 30).unwrap();
            let mut expected = want.iter().find(|(m, _)| *m == sensor.model).unwrap().1;
            if sensor.model == "ov5647" && still.1 > 972 {
                // 1296x972 is too small for a 1024x1024 still: the full-resolution mode.
                expected = (2592, 1944);
            }
            assert_eq!(
                o.configured.mode.size, expected,
                "{} {isp:?} {still:?}",
                sensor.model
            );
        }
    }

    /// Issue 20 item 6: every mode's fastest rate is the driver's arithmetic, as libcamera
    /// works it out: pixel rate / (line length x (height + VBLANK min)) (`camera_sensor_raw.cpp`,
    /// `ipa_base.cpp` setMode). OV5647's 1296x972 and 1920x1080 run at 81.67 MHz (the issue
    /// named 2592x1944, which runs at 87.5 MHz); IMX219's binned modes are those of the
    /// stored driver (a newer one doubles the pixel rate: record it from a probe).
    #[test]
    fn every_mode_s_rate_is_the_driver_s_arithmetic() {
        // (model, size, pixel rate Hz, line length, frame length min)
        type Row = (&'static str, (u32, u32), f64, f64, f64);
        let table: &[Row] = &[
            ("ov5647", (640, 480), 55e6, 1852.0, 504.0),
            ("ov5647", (1296, 972), 81_666_700.0, 1896.0, 996.0),
            ("ov5647", (1920, 1080), 81_666_700.0, 2416.0, 1104.0),
            ("ov5647", (2592, 1944), 87.5e6, 2844.0, 1968.0),
            ("imx219", (640, 480), 182.4e6, 3448.0, 512.0),
            ("imx219", (1640, 1232), 182.4e6, 3448.0, 1264.0),
            ("imx219", (1920, 1080), 182.4e6, 3448.0, 1112.0),
            ("imx219", (3280, 2464), 182.4e6, 3448.0, 2496.0),
            ("imx477", (1332, 990), 840e6, 6664.0, 1050.0),
            ("imx477", (2028, 1080), 840e6, 12740.0, 1318.0),
            ("imx477", (2028, 1520), 840e6, 12740.0, 1648.0),
            ("imx477", (4056, 3040), 840e6, 24000.0, 3500.0),
            ("imx708", (1536, 864), 566.4e6, 5216.0, 904.0),
            ("imx708", (2304, 1296), 585.6e6, 7824.0, 1336.0),
            ("imx708", (4608, 2592), 595.2e6, 15648.0, 2650.0),
            ("imx708-hdr", (2304, 1296), 777.6e6, 5216.0, 4969.0),
            ("imx296", (1456, 1088), 118.8e6, 1760.0, 1118.0),
            ("imx500", (4056, 3040), 744e6, 17900.0, 4157.0),
            ("imx500", (2028, 1520), 744e6, 9398.0, 2637.0),
        ];
        let mut seen = 0;
        for sensor in SENSORS {
            for mode in sensor.modes {
                let Some(&(_, _, rate, llp, fl)) = table
                    .iter()
                    .find(|(m, size, ..)| *m == sensor.model && *size == mode.size)
                else {
                    panic!("{} {:?} not in the table", sensor.model, mode.size);
                };
                let fps = rate / (llp * fl);
                let t = mode.timing;
                assert_eq!(
                    (t.rate as f64, f64::from(t.line.0), f64::from(t.frame.0)),
                    (rate.round(), llp, fl),
                    "{} {:?}: the model's timing",
                    sensor.model,
                    mode.size
                );
                assert!(
                    (fps - mode.fps).abs() < 0.015,
                    "{} {:?}: model {} fps, driver {fps:.3}",
                    sensor.model,
                    mode.size,
                    mode.fps
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 23, "every mode of every sensor checked");
    }

    use super::super::fixture::{self, Fixture};

    fn fixtures() -> Vec<(String, Fixture)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cameras");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                let f: Fixture = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((path.display().to_string(), f));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every recorded camera: picker's plan, fed the limits recorded after configuring each
    /// mode, chooses the mode recorded, sees the whole sensor through it, crops each output to
    /// its own shape at full height, and plans a frame period within the mode's limits.
    #[test]
    fn every_recorded_camera_is_planned_as_recorded() {
        let all = fixtures();
        let models: Vec<&str> = all.iter().map(|(_, f)| f.model.as_str()).collect();
        for want in [
            "imx219",
            "imx296",
            "imx477",
            "imx500",
            "imx708",
            "imx708-hdr",
            "ov5647",
        ] {
            assert!(models.contains(&want), "no fixture for {want}: {models:?}");
        }
        for (path, f) in &all {
            assert_eq!(f.format, fixture::FORMAT, "{path}");
            // A camera without a pixel array (the virtual one): libcamera chooses; nothing
            // of the Pi's plan to check.
            let Some(active_area) = f.active_area else {
                assert!(f.modes.is_empty() && f.chosen.mode.is_none(), "{path}");
                continue;
            };
            let raw: Vec<RawMode> = f
                .modes
                .iter()
                .map(|m| RawMode {
                    width: m.size.0,
                    height: m.size.1,
                    bit_depth: m.bit_depth,
                })
                .collect();
            let limits_of = |mode: RawMode| {
                let m = f.modes.iter().find(|m| {
                    m.size == (mode.width, mode.height) && m.bit_depth == mode.bit_depth
                })?;
                let crop = m.scaler_crop_maximum.map(|(x, y, w, h)| r(x, y, w, h));
                Some(ModeLimits {
                    scaler_crop_max: crop,
                    scaler_crop_maximum: crop,
                    frame_duration: m
                        .frame_duration_limits
                        .map(|(min, max)| (min, max.unwrap_or(1_000_000_000))),
                })
            };
            let need = (
                f.outputs.still.0.max(f.outputs.video.0),
                f.outputs.still.1.max(f.outputs.video.1),
            );
            let (mode, limits) =
                plan::choose_mode(active_area, &raw, need, |m| Ok::<_, ()>(limits_of(m)))
                    .unwrap()
                    .unwrap_or_else(|| panic!("{path}: no mode sees the whole sensor"));
            assert_eq!(Some((mode.width, mode.height)), f.chosen.mode, "{path}");
            let area = plan::crop_area(Some(active_area), &limits)
                .unwrap()
                .unwrap();
            let crop = plan::centred_crop(area, f.outputs.still);
            assert_eq!(
                plan::crop_applied(crop, f.outputs.still),
                super::super::CropState::Applied(crop),
                "{path}"
            );
            assert!(
                u64::from(crop.height) * 100 >= u64::from(active_area.1) * 99,
                "{path}: {crop:?} is not the full height"
            );
            let (min, max) = limits.frame_duration.unwrap();
            for fps in [1, 30, 120] {
                let (period, _) = plan::frame_period(fps, limits.frame_duration);
                assert!(
                    (min..=max).contains(&period),
                    "{path} at {fps} fps: {period}"
                );
            }
        }
    }

    /// The fixtures written from the drivers and the model's table agree, mode for mode.
    #[test]
    fn the_driver_fixtures_agree_with_the_model() {
        for (path, f) in fixtures().iter().filter(|(_, f)| f.model != "virtual") {
            let Some(sensor) = SENSORS.iter().find(|s| s.model == f.model) else {
                continue;
            };
            assert_eq!(Some(sensor.active), f.active_area, "{path}");
            assert_eq!(sensor.modes.len(), f.modes.len(), "{path}");
            for (m, fm) in sensor.modes.iter().zip(&f.modes) {
                assert_eq!((m.size, m.bits), (fm.size, fm.bit_depth), "{path}");
                let (x, y, w, h) = fm.scaler_crop_maximum.unwrap();
                assert_eq!(m.crop, r(x, y, w, h), "{path} {:?}", m.size);
                let fps = 1e6 / fm.frame_duration_limits.unwrap().0 as f64;
                assert!((fps - m.fps).abs() < 0.015, "{path} {:?}: {fps}", m.size);
                // The limits after configure, both ends (truncated to microseconds, as the
                // IPA reports them), and the line timing.
                let c = configure(sensor, Isp::Pisp, Some(raw_of(m)), &[(512, 512)]).unwrap();
                let (min, max) = c.limits().frame_duration.unwrap();
                let (fmin, fmax) = fm.frame_duration_limits.unwrap();
                let fmax = fmax.unwrap_or_else(|| panic!("{path} {:?}: no maximum", m.size));
                assert_eq!(
                    (min, max),
                    (fmin, fmax),
                    "{path} {:?}: the model's FrameDurationLimits",
                    m.size
                );
                assert_eq!(
                    (fm.line_length, fm.pixel_rate),
                    (Some(m.timing.line.0), Some(m.timing.rate)),
                    "{path} {:?}",
                    m.size
                );
            }
        }
    }

    fn raw_of(m: &Mode) -> RawMode {
        RawMode {
            width: m.size.0,
            height: m.size.1,
            bit_depth: m.bits,
        }
    }

    /// A live camera's line timing is found from its model, mode and limits for every mode
    /// of every Pi sensor, and only where the limits agree with the driver's timing: a newer
    /// IMX219 kernel's binned modes (rate doubled, line 3560) are told apart, an unknown
    /// sensor or a mode whose limits fit no known timing get none.
    #[test]
    fn a_live_mode_s_line_timing_is_found_only_where_its_limits_agree() {
        for sensor in SENSORS {
            for mode in sensor.modes {
                let c = configure(&sensor, Isp::Pisp, Some(raw_of(mode)), &[(512, 512)]).unwrap();
                let shortest = c.limits().frame_duration.unwrap().0;
                let found = plan::known_line_timing(sensor.model, mode.size, shortest);
                assert_eq!(found, c.line_timing(sensor.model), "{}", sensor.model);
                assert!(found.is_some(), "{} {:?}", sensor.model, mode.size);
                // One microsecond off: not this driver's timing.
                assert_eq!(
                    plan::known_line_timing(sensor.model, mode.size, shortest + 1),
                    None,
                    "{} {:?}",
                    sensor.model,
                    mode.size
                );
            }
        }
        // Newer IMX219 driver, 1640x1232: 1264 lines of 3560 pixels at 364.8 MHz.
        let newer = plan::known_line_timing("imx219", (1640, 1232), 12_335).unwrap();
        assert_eq!((newer.line_length, newer.pixel_rate), (3560, 364_800_000));
        assert_eq!(plan::longest_exposure_us(33_333, newer), 33_287);
        // The wide Camera Module 3 is an IMX708; an unknown sensor has no timing.
        assert!(plan::known_line_timing("imx708_wide", (2304, 1296), 17_849).is_some());
        assert_eq!(
            plan::known_line_timing("imx999", (2304, 1296), 17_849),
            None
        );
    }

    /// Issue 20 item 3: the longest frame is the mode's own (VTS max x HTS / pixel rate),
    /// not 1000 s for every sensor. A frame rate below the mode's slowest is clamped to it,
    /// as every other limit is: OV5647's 1296x972 lasts at most 0.761 s, so 1 fps becomes
    /// 1.31 fps.
    #[test]
    fn a_frame_rate_below_the_mode_s_slowest_is_clamped_to_it() {
        let o = new_logic(&OV5647, Isp::Vc4, (512, 512), (512, 512), 1).unwrap();
        assert_eq!(o.configured.mode.size, (1296, 972));
        assert_eq!(o.frame_period, 760_729);
        let (period, clamped) = plan::frame_period(1, o.configured.limits().frame_duration);
        assert_eq!((period, clamped), (760_729, true));
        // Every recorded mode: 1 fps is clamped exactly where the mode's longest frame is
        // shorter than a second, and lands on that longest frame.
        for (path, f) in fixtures().iter().filter(|(_, f)| !f.modes.is_empty()) {
            let sensor = SENSORS.iter().find(|s| s.model == f.model).unwrap();
            for (m, fm) in sensor.modes.iter().zip(&f.modes) {
                let c = configure(sensor, Isp::Pisp, Some(raw_of(m)), &[(512, 512)]).unwrap();
                let limits = c.limits().frame_duration;
                let (period, clamped) = plan::frame_period(1, limits);
                let longest = fm.frame_duration_limits.unwrap().1.unwrap();
                assert_eq!(clamped, longest < 1_000_000, "{path} {:?}", m.size);
                assert_eq!(
                    period,
                    limits.unwrap().1.min(1_000_000),
                    "{path} {:?}",
                    m.size
                );
            }
        }
    }

    /// Issue 20 item 7: a fixed exposure longer than the frame allows is reported as the
    /// IPA will run it: the frame's whole lines less the sensor's margin (4 lines on OV5647,
    /// IMX219, IMX296; 22 on IMX477, IMX500; 48 on IMX708), not the whole frame period. From
    /// each recorded mode's line timing, at 30 fps and at the mode's fastest rate (the
    /// truncated microseconds picker pins, which the IPA raises to the whole shortest frame).
    /// The expected figures were worked out apart from this code, in exact fractions from the
    /// drivers' figures; they agree with notes/issue20-facts.md §7 to its rounding.
    #[test]
    fn a_fixed_exposure_longer_than_the_frame_is_capped_where_the_ipa_caps_it() {
        use crate::camera::controls::{self, ControlsConfig, Id, Status, Value};
        // (model, mode, frame period us, longest exposure us)
        let table: &[(&str, (u32, u32), i64, i64)] = &[
            ("ov5647", (1296, 972), 33_333, 33_222),
            ("ov5647", (1296, 972), 23_123, 23_030),
            ("imx219", (1640, 1232), 33_333, 33_251),
            ("imx219", (1640, 1232), 23_894, 23_818),
            ("imx477", (2028, 1520), 33_333, 32_987),
            ("imx477", (2028, 1520), 24_994, 24_661),
            ("imx708", (2304, 1296), 33_333, 32_680),
            ("imx708", (2304, 1296), 17_849, 17_208),
            ("imx708-hdr", (2304, 1296), 33_331, 33_009),
            ("imx296", (1456, 1088), 33_333, 33_273),
            ("imx296", (1456, 1088), 16_562, 16_517),
            ("imx500", (4056, 3040), 100_013, 99_484),
            ("imx500", (2028, 1520), 33_333, 33_044),
            ("imx500", (2028, 1520), 33_309, 33_031),
        ];
        let all = fixtures();
        for &(model, size, period, want) in table {
            let (path, f) = all.iter().find(|(_, f)| f.model == model).unwrap();
            let fm = f.modes.iter().find(|m| m.size == size).unwrap();
            let shortest = fm.frame_duration_limits.unwrap().0;
            let (l, rate) = (fm.line_length.unwrap(), fm.pixel_rate.unwrap());
            let line = plan::line_timing(model, l, rate, shortest)
                .unwrap_or_else(|| panic!("{path}: no margin for {model}"));
            assert_eq!(
                plan::longest_exposure_us(period, line),
                want,
                "{path} {size:?} at {period} us"
            );
            // The model's own configured mode says the same.
            let sensor = SENSORS.iter().find(|s| s.model == model).unwrap();
            let mode = sensor.modes.iter().find(|m| m.size == size).unwrap();
            let c = configure(sensor, Isp::Pisp, Some(raw_of(mode)), &[(512, 512)]).unwrap();
            assert_eq!(c.line_timing(model), Some(line), "{path} {size:?}");
            // What picker finds on a live camera from its model, mode and limits.
            assert_eq!(
                plan::known_line_timing(model, size, shortest),
                Some(line),
                "{path} {size:?}"
            );
            // And the controls plan reports it, adjusted, and sets it.
            let facts = controls::fixtures::imx477()
                .with_frame_period(Some(period))
                .with_line_timing(Some(line));
            let asked: ControlsConfig = toml::from_str("exposure-time = 600000000").unwrap();
            let p = controls::plan(&asked, &facts);
            assert_eq!(
                p.value(Id::ExposureTime),
                Some(Value::Int(want as i32)),
                "{path} {size:?}"
            );
            let r = &p.reports["exposure-time"];
            assert_eq!(r.status, Status::Adjusted, "{path}");
            assert_eq!(r.value, Some(serde_json::json!(want)), "{path}");
            let note = r.note.as_deref().unwrap_or("");
            assert!(
                note.contains(&format!("{period} us per frame"))
                    && note.contains(&format!("at most {want} us")),
                "{path}: {note}"
            );
            // One microsecond within the cap: applied as asked.
            let asked: ControlsConfig = toml::from_str(&format!("exposure-time = {want}")).unwrap();
            let p = controls::plan(&asked, &facts);
            assert_eq!(p.reports["exposure-time"].status, Status::Applied, "{path}");
        }
        // Every recorded sensor's modes have a margin.
        for (path, f) in &all {
            for fm in &f.modes {
                if let (Some(l), Some(r)) = (fm.line_length, fm.pixel_rate) {
                    let shortest = fm.frame_duration_limits.unwrap().0;
                    assert!(
                        plan::line_timing(&f.model, l, r, shortest).is_some(),
                        "{path}"
                    );
                }
            }
        }
    }

    #[test]
    fn frame_durations_come_from_the_configured_mode() {
        // 60 fps is possible in IMX708's 2304x1296 mode? No: 56 fps; 50 fps is.
        let o = new_logic(&IMX708, Isp::Pisp, (512, 512), (512, 512), 50).unwrap();
        assert_eq!(o.frame_period, 20_000);
        let o = new_logic(&IMX708, Isp::Pisp, (512, 512), (512, 512), 60).unwrap();
        // 1336 lines x 7824 pixels / 585.6 MHz, truncated: 56.02 fps.
        assert_eq!(o.frame_period, 17_849);
        // Slow rates are allowed by the mode (the placeholder stopped at 120 ms).
        let o = new_logic(&IMX219, Isp::Vc4, (512, 512), (512, 512), 2).unwrap();
        assert_eq!(o.frame_period, 500_000);
    }

    #[test]
    fn placeholder_limits_before_configure_are_refused() {
        for sensor in SENSORS {
            assert!(matches!(
                plan::crop_area(Some(sensor.active), &limits_before_configure()),
                Err(PlanError::Placeholder { .. })
            ));
            // After configure they are real.
            let c = configure(&sensor, Isp::Pisp, None, &[(512, 512)]).unwrap();
            assert!(plan::crop_area(Some(sensor.active), &c.limits()).is_ok());
        }
    }

    #[test]
    fn outputs_of_different_shapes_are_refused() {
        for sensor in SENSORS {
            for isp in ISPS {
                let e = new_logic(&sensor, isp, (640, 480), (512, 512), 30).unwrap_err();
                assert!(matches!(e, PlanError::AspectMismatch { .. }), "{e}");
            }
        }
        // Why: on vc4 one crop serves both, so the square video of a 4:3 still is squashed.
        let c = configure(&IMX219, Isp::Vc4, None, &[(640, 480), (512, 512)]).unwrap();
        let video = c.output_crops()[1];
        assert_ne!(video.width, video.height, "{video:?}");
    }

    /// Issue 20: `camera.sensor-mode` is the way around a driver bug in the mode picker
    /// chooses (IMX219 1640x1232 on 6.18.29+rpt): it picks the named mode on every camera,
    /// configurable in the model, and refuses a mode the camera has not, naming those it has.
    #[test]
    fn sensor_mode_picks_the_named_mode_and_refuses_others_naming_the_modes() {
        let spec = |w, h, bits| ModeSpec {
            width: w,
            height: h,
            bits,
        };
        // IMX219 lists each mode at 8 and 10 bits: the deepest unless told.
        let modes = raw_modes(&IMX219);
        let auto_choice = new_logic(&IMX219, Isp::Pisp, (512, 512), (512, 512), 30)
            .unwrap()
            .configured
            .mode;
        assert_eq!(auto_choice.size, (1640, 1232), "what the bug hit");
        let got = plan::forced_mode(&modes, spec(3280, 2464, None)).unwrap();
        assert_eq!((got.width, got.height, got.bit_depth), (3280, 2464, 10));
        let got = plan::forced_mode(&modes, spec(1640, 1232, Some(8))).unwrap();
        assert_eq!(got.bit_depth, 8);
        for sensor in SENSORS {
            let modes = raw_modes(&sensor);
            for m in &modes {
                let got =
                    plan::forced_mode(&modes, spec(m.width, m.height, Some(m.bit_depth))).unwrap();
                assert_eq!(got, *m, "{}", sensor.model);
                // The model's libcamera configures it exactly.
                configure(&sensor, Isp::Pisp, Some(got), &[(512, 512)])
                    .unwrap_or_else(|e| panic!("{}: {e}", sensor.model));
            }
        }
        let err = plan::forced_mode(&modes, spec(1920, 1080, Some(12))).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("camera.sensor-mode = \"1920x1080:12\""),
            "{msg}"
        );
        assert!(
            msg.contains("640x480:10") && msg.contains("3280x2464:8"),
            "names the modes it has: {msg}"
        );
        let none = plan::forced_mode(&[], spec(640, 480, None)).unwrap_err();
        assert!(none.to_string().contains("lists no sensor modes"), "{none}");
    }

    #[test]
    fn a_sensor_configuration_must_name_a_mode_exactly() {
        let bad = RawMode {
            width: 2304,
            height: 1296,
            bit_depth: 12,
        };
        assert!(configure(&IMX708, Isp::Pisp, Some(bad), &[(512, 512)]).is_err());
    }

    #[test]
    fn the_model_reproduces_the_squashed_whole_mode_of_the_issue() {
        // Asking the placeholder-derived crop gives the whole mode on IMX708: (0,0,2304,1296)
        // in mode pixels, i.e. the whole sensor squeezed into 512x512.
        let mut c = configure(
            &IMX708,
            Isp::Pisp,
            Some(RawMode {
                width: 2304,
                height: 1296,
                bit_depth: 10,
            }),
            &[(512, 512), (512, 512)],
        )
        .unwrap();
        c.apply_scaler_crop(plan::centred_crop(r(65535, 65535, 65535, 65535), (1, 1)));
        assert_eq!(c.isp_crops[0], r(0, 0, 2304, 1296));
    }

    /// Today's logic on the same table: the list of what goes wrong. This is the record of
    /// the bug; `every_pi_camera_gets_...` fails with the same list if the old logic comes back.
    #[test]
    fn old_logic_is_wrong_on_every_pi_camera() {
        let mut right = Vec::new();
        for (sensor, isp, still, video) in cases() {
            let o = old_logic(&sensor, isp, still, video, 30);
            if check(&o, &sensor, still, video).is_empty() {
                right.push(format!("{} {isp:?} {still:?}", sensor.model));
            }
        }
        // Only a 4:3 output on a 4:3 sensor came out right (the whole mode was the right
        // crop by chance); every square output, the default, was squashed or cropped.
        assert_eq!(
            right,
            [
                "imx219 Vc4 (640, 480)",
                "imx219 Pisp (640, 480)",
                "ov5647 Vc4 (640, 480)",
                "ov5647 Pisp (640, 480)",
                "imx296 Vc4 (640, 480)",
                "imx296 Pisp (640, 480)",
                "imx500 Vc4 (640, 480)",
                "imx500 Pisp (640, 480)",
            ]
        );
        // 60 fps was clamped to 30 by the placeholder limits.
        assert_eq!(
            old_logic(&IMX708, Isp::Pisp, (512, 512), (512, 512), 60).frame_period,
            33_333
        );
    }
}
