//! Camera planning: which camera, which sensor mode, which crop, which frame period and which
//! orientation, as plain functions of facts recorded from libcamera (no libcamera types), so
//! the Raspberry Pi logic is tested on any machine against recorded facts of real sensors
//! (see `pi_model`).
//!
//! The one rule that shapes this module: on the Raspberry Pi pipelines the limits that matter
//! (`ScalerCrop`, `FrameDurationLimits`) are placeholders until `configure()` (max
//! `(65535,65535,65535,65535)`, `ScalerCropMaximum` empty); the real values are the configured
//! sensor mode's analogue crop and frame durations. So the backend configures first, records
//! [`ModeLimits`], and only then asks this module for the crop and the frame period; limits
//! that still look like placeholders are refused instead of being turned into a crop.

use serde::Serialize;

use super::Rect;
pub use crate::config::ModeSpec;

/// One raw sensor mode as libcamera lists it (`StreamRole::Raw` formats and sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawMode {
    pub width: u32,
    pub height: u32,
    pub bit_depth: u32,
}

/// What a camera reported after `configure()`, for one candidate configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModeLimits {
    /// `ScalerCrop` control maximum; `None` when the camera has no `ScalerCrop` control.
    pub scaler_crop_max: Option<Rect>,
    /// The `ScalerCropMaximum` property (empty before configure on a Pi).
    pub scaler_crop_maximum: Option<Rect>,
    /// `FrameDurationLimits` (min, max) in microseconds, when the camera has the control.
    pub frame_duration: Option<(i64, i64)>,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "ScalerCrop limits {max:?} look like placeholders (active area {active:?}, ScalerCropMaximum {maximum:?}): read before configure?"
    )]
    Placeholder {
        max: Rect,
        active: (u32, u32),
        maximum: Option<Rect>,
    },
    #[error(
        "still {still_w}x{still_h} and stream {video_w}x{video_h} have different aspect ratios, \
         but the ISP applies one crop to both outputs: the stream would be squashed \
         (make still.width/height and stream.width/height the same shape)"
    )]
    AspectMismatch {
        still_w: u32,
        still_h: u32,
        video_w: u32,
        video_h: u32,
    },
    #[error("camera.sensor-mode = {asked:?}: the camera has no such mode; its modes: {have}")]
    NoSuchMode { asked: String, have: String },
}

/// The mode `camera.sensor-mode` names, among the camera's raw modes: the size exactly, and
/// the bit depth asked (or the deepest offered at that size). Refused, naming every mode the
/// camera has, when there is none such.
pub fn forced_mode(modes: &[RawMode], spec: ModeSpec) -> Result<RawMode, PlanError> {
    modes
        .iter()
        .filter(|m| (m.width, m.height) == (spec.width, spec.height))
        .filter(|m| spec.bits.is_none_or(|b| b == m.bit_depth))
        .max_by_key(|m| m.bit_depth)
        .copied()
        .ok_or_else(|| {
            let mut have: Vec<String> = modes
                .iter()
                .map(|m| format!("{}x{}:{}", m.width, m.height, m.bit_depth))
                .collect();
            have.dedup();
            PlanError::NoSuchMode {
                asked: spec.to_string(),
                have: if have.is_empty() {
                    "none (it lists no sensor modes)".to_string()
                } else {
                    have.join(", ")
                },
            }
        })
}

/// How to pick the camera, from the `[camera]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub id: Option<String>,
    /// Sensor model as libcamera's `Model` property says it ("imx708"); a model with a
    /// suffix ("imx708_wide") matches its base name too.
    pub model: Option<String>,
    pub index: Option<usize>,
}

/// The cameras libcamera lists, as (id, model).
pub fn choose_camera(cameras: &[(String, Option<String>)], sel: &Selector) -> Option<usize> {
    if let Some(id) = &sel.id {
        return cameras.iter().position(|(c, _)| c == id);
    }
    if let Some(model) = &sel.model {
        let want = model.to_ascii_lowercase();
        return cameras.iter().position(|(_, m)| {
            m.as_deref().is_some_and(|m| {
                let m = m.to_ascii_lowercase();
                m == want || m.strip_prefix(&want).is_some_and(|s| s.starts_with('_'))
            })
        });
    }
    let index = sel.index.unwrap_or(0);
    (index < cameras.len()).then_some(index)
}

/// Candidate raw modes for a full field of view, in the order to try them: the smallest mode
/// whose shorter side still covers the larger output comes first (binned modes are faster and
/// less noisy), then the bigger ones, then the smaller ones (used only when nothing is big
/// enough). One entry per size, with the deepest bit depth offered. Whether a mode really sees
/// the whole sensor is known only after configuring it ([`full_field_of_view`]): binned modes
/// can be cropped too.
pub fn candidate_modes(modes: &[RawMode], need: (u32, u32)) -> Vec<RawMode> {
    let mut by_size: Vec<RawMode> = Vec::new();
    for m in modes.iter().filter(|m| m.width > 0 && m.height > 0) {
        match by_size
            .iter_mut()
            .find(|b| (b.width, b.height) == (m.width, m.height))
        {
            Some(b) => b.bit_depth = b.bit_depth.max(m.bit_depth),
            None => by_size.push(*m),
        }
    }
    by_size.sort_by_key(|m| u64::from(m.width) * u64::from(m.height));
    let side = need.0.max(need.1);
    let big_enough = |m: &RawMode| m.width.min(m.height) >= side;
    let (mut ok, mut small): (Vec<RawMode>, Vec<RawMode>) =
        by_size.into_iter().partition(|m| big_enough(m));
    small.reverse();
    ok.extend(small);
    ok
}

/// Configures each candidate in turn (through `try_mode`, which returns the post-configure
/// limits) and keeps the first whose `ScalerCrop` maximum covers the whole active area. This is
/// what picamera2 does for its `crop_limits`; it asks libcamera instead of trusting the
/// binning factors, since some binned modes are cropped as well. `Ok(None)` when no mode sees
/// the whole sensor, or the camera has no pixel array or `ScalerCrop` (then libcamera
/// chooses). A mode the camera refuses is skipped.
pub fn choose_mode<E>(
    active: (u32, u32),
    modes: &[RawMode],
    need: (u32, u32),
    mut try_mode: impl FnMut(RawMode) -> Result<Option<ModeLimits>, E>,
) -> Result<Option<(RawMode, ModeLimits)>, E> {
    for mode in candidate_modes(modes, need) {
        let Some(limits) = try_mode(mode)? else {
            continue;
        };
        match crop_area(Some(active), &limits) {
            Ok(Some(area)) if full_field_of_view(active, area) => return Ok(Some((mode, limits))),
            _ => {}
        }
    }
    Ok(None)
}

/// True when the configured mode's crop limits (its analogue crop) cover the whole active
/// area: within 1% on each side, so a sensor losing a few border pixels in a binned mode
/// still counts.
pub fn full_field_of_view(active: (u32, u32), max: Rect) -> bool {
    let near = |got: u32, full: u32| u64::from(got) * 100 >= u64::from(full) * 99;
    let slack = |off: i32, full: u32| i64::from(off).unsigned_abs() * 100 <= u64::from(full);
    near(max.width, active.0)
        && near(max.height, active.1)
        && slack(max.x, active.0)
        && slack(max.y, active.1)
}

/// The area `ScalerCrop` may select from after configure, checked: a maximum larger than the
/// active area, or an empty `ScalerCropMaximum` next to it, is a placeholder and refused.
/// `Ok(None)` when the camera has no `ScalerCrop` at all.
pub fn crop_area(
    active: Option<(u32, u32)>,
    limits: &ModeLimits,
) -> Result<Option<Rect>, PlanError> {
    let Some(max) = limits.scaler_crop_max else {
        return Ok(None);
    };
    let Some(active) = active else {
        // No pixel array to check against (not a sensor camera): take the control as is.
        return Ok(Some(max).filter(|m| m.width > 0 && m.height > 0));
    };
    let placeholder = || PlanError::Placeholder {
        max,
        active,
        maximum: limits.scaler_crop_maximum,
    };
    // Placeholders: the IPA's 65535s before configure (a rectangle that starts beyond the
    // active area, or is larger than the whole of it), an empty one, or an empty
    // ScalerCropMaximum beside it.
    let beyond = |off: i32, size: u32, full: u32| {
        i64::from(off) >= i64::from(full) || u64::from(size) > 2 * u64::from(full)
    };
    if max.width == 0
        || max.height == 0
        || beyond(max.x, max.width, active.0)
        || beyond(max.y, max.height, active.1)
    {
        return Err(placeholder());
    }
    if limits
        .scaler_crop_maximum
        .is_some_and(|m| m.width == 0 || m.height == 0)
    {
        return Err(placeholder());
    }
    Ok(Some(clamp_to_active(max, active)).filter(|c| c.width > 0 && c.height > 0))
}

/// A real analogue crop that overhangs the active area (libcamera passes a driver's
/// selection through unchecked, `camera_sensor_raw.cpp`), clipped to it: the ISP can only
/// crop what the sensor delivers. The caller warns when this changed anything.
pub fn clamp_to_active(max: Rect, active: (u32, u32)) -> Rect {
    let x0 = i64::from(max.x).clamp(0, i64::from(active.0));
    let y0 = i64::from(max.y).clamp(0, i64::from(active.1));
    let x1 = (i64::from(max.x) + i64::from(max.width)).clamp(x0, i64::from(active.0));
    let y1 = (i64::from(max.y) + i64::from(max.height)).clamp(y0, i64::from(active.1));
    // Within 0..=u32::MAX (active sizes are u32), so the casts are exact.
    Rect {
        x: x0 as i32,
        y: y0 as i32,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    }
}

/// The crop for an output of `aspect` (width, height): the largest centred rectangle of that
/// shape inside `area`, so for a square output the centred square of the full sensor height
/// (on a landscape sensor). Even coordinates and sizes, as the ISP wants for 4:2:0 output.
pub fn centred_crop(area: Rect, aspect: (u32, u32)) -> Rect {
    let (aw, ah) = (u64::from(aspect.0.max(1)), u64::from(aspect.1.max(1)));
    let (w, h) = (u64::from(area.width), u64::from(area.height));
    let (mut cw, mut ch) = if w * ah >= h * aw {
        (h * aw / ah, h)
    } else {
        (w, w * ah / aw)
    };
    // Bounded, though it ends within a step or two: each step takes 2 pixels off a side no
    // longer than the larger of w and h, and an empty crop ends it.
    for _ in 0..=w.max(h) {
        cw &= !1;
        ch &= !1;
        if cw == 0 || ch == 0 {
            return Rect {
                x: area.x,
                y: area.y,
                width: 0,
                height: 0,
            };
        }
        if let (Some(x), Some(y)) = (even_start(area.x, w, cw), even_start(area.y, h, ch)) {
            return Rect {
                x,
                y,
                width: cw as u32,
                height: ch as u32,
            };
        }
        // Only when an odd offset leaves no room on an axis the crop fills: shrink a little,
        // keeping the shape.
        if w * ah >= h * aw {
            ch -= 2;
            cw = ch * aw / ah;
        } else {
            cw -= 2;
            ch = cw * ah / aw;
        }
    }
    Rect {
        x: area.x,
        y: area.y,
        width: 0,
        height: 0,
    }
}

/// An even start for `side` pixels centred in `len` pixels from `lo`, staying inside.
/// `centred` or the next one up: with 2 or more spare pixels both are inside, with 1 spare
/// pixel `centred` is `lo` and `lo + 1` is inside, and with none only `lo` is (so the one
/// below is never needed).
fn even_start(lo: i32, len: u64, side: u64) -> Option<i32> {
    let (lo, len, side) = (i64::from(lo), len as i64, side as i64);
    let centred = lo + (len - side) / 2;
    [centred, centred + 1]
        .into_iter()
        .find(|s| s % 2 == 0 && *s >= lo && s + side <= lo + len)
        .and_then(|s| i32::try_from(s).ok())
}

/// Outputs of different shapes cannot share one crop without one being squashed. Raspberry
/// Pi's vc4 has one ISP crop for both outputs; picker sets one `ScalerCrop` on every pipeline,
/// which the Pi applies to each output. So with a crop asked for (or on a one-crop ISP) the
/// shapes must match.
pub fn check_aspects(
    still: (u32, u32),
    video: (u32, u32),
    shared_crop: bool,
) -> Result<(), PlanError> {
    let same = u64::from(still.0) * u64::from(video.1) == u64::from(still.1) * u64::from(video.0);
    if same || !shared_crop {
        return Ok(());
    }
    Err(PlanError::AspectMismatch {
        still_w: still.0,
        still_h: still.1,
        video_w: video.0,
        video_h: video.1,
    })
}

/// Frame period in microseconds for `framerate`, clamped to the post-configure
/// `FrameDurationLimits` where known; true when clamping changed it.
pub fn frame_period(framerate: u32, limits: Option<(i64, i64)>) -> (i64, bool) {
    let want = 1_000_000 / i64::from(framerate.max(1));
    let Some((min, max)) = limits else {
        return (want, false);
    };
    // A minimum of 0 or less changes nothing (`want` is at least 1); a maximum of 0 or less,
    // or below the minimum, is no limit.
    let mut period = want.max(min);
    if max > 0 && max >= min {
        period = period.min(max);
    }
    (period, period != want)
}

/// How a sensor mode times its lines, and how close to the end of a frame its exposure may
/// run: what Raspberry Pi's IPA needs to cap a fixed exposure (`CamHelper::getBlanking`,
/// `src/ipa/rpi/cam_helper/cam_helper.cpp:82-131`). libcamera does not report the line length
/// to an application; the recorded driver facts do (`line_length`, `pixel_rate` in
/// `tests/fixtures/cameras/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LineTiming {
    /// The mode's minimum line length, blanking included, in pixels (width + HBLANK min).
    pub line_length: u32,
    /// The mode's pixel rate, Hz.
    pub pixel_rate: u64,
    /// The sensor's least gap between frame length and exposure, in lines.
    pub margin_lines: u32,
    /// Added to every exposure by the sensor's helper (IMX296 only), nanoseconds.
    pub offset_ns: u32,
    /// The mode's shortest frame, in lines (height + VBLANK min).
    pub frame_lines_min: u32,
}

/// Per sensor, the IPA's `frameIntegrationDiff` (lines between exposure and frame end) and
/// exposure offset, from Raspberry Pi's libcamera 0.7.0+rpt20260205. The kernel drivers clamp
/// the exposure by the same number of lines (`*_EXPOSURE_OFFSET`). Matched as the IPA matches
/// its helpers, by the model containing the name (`CamHelper::create`), so "imx708_wide" is
/// an IMX708.
const INTEGRATION_MARGINS: [(&str, u32, u32); 6] = [
    ("ov5647", 4, 0), // cam_helper_ov5647.cpp:30
    ("imx219", 4, 0), // cam_helper_imx219.cpp:55
    // cam_helper_imx296.cpp:36; exposure = lines x 14.815 us + 14.26 us (lines 58, 64).
    ("imx296", 4, 14_260),
    ("imx477", 22, 0), // cam_helper_imx477.cpp:61
    ("imx500", 22, 0), // cam_helper_imx500.cpp:68
    ("imx708", 48, 0), // cam_helper_imx708.cpp:67
];

/// The line timing of a mode of sensor `model`, when the sensor's margin is known.
/// `shortest_frame_us` is the mode's `FrameDurationLimits` minimum, which libcamera reports
/// truncated to a microsecond below a whole number of lines (less than one line, as every
/// line is longer than a microsecond): rounded up, it is that number.
pub fn line_timing(
    model: &str,
    line_length: u32,
    pixel_rate: u64,
    shortest_frame_us: i64,
) -> Option<LineTiming> {
    let model = model.to_ascii_lowercase();
    let &(_, margin_lines, offset_ns) = INTEGRATION_MARGINS
        .iter()
        .find(|(name, ..)| model.contains(name))?;
    if line_length == 0 || pixel_rate == 0 {
        return None;
    }
    let per_line = u128::from(line_length) * 1_000_000;
    let shortest = u128::from(shortest_frame_us.max(0).unsigned_abs()) * u128::from(pixel_rate);
    let frame_lines_min = u32::try_from(shortest.div_ceil(per_line)).ok()?;
    Some(LineTiming {
        line_length,
        pixel_rate,
        margin_lines,
        offset_ns,
        frame_lines_min,
    })
}

/// Line length (pixels, blanking included) and pixel rate (Hz) of each Raspberry Pi camera
/// mode, from the drivers (raspberrypi/linux `drivers/media/i2c/`: ov5647.c @00f710c4,
/// imx219.c @01a8e801 and the newer binned timing, imx477.c @00233bcd, imx708.c @02b9c86b,
/// imx296.c @03e1cd63, imx500.c @0a3ca5c2; `tests/fixtures/cameras/` records the same). A
/// size may have more than one: IMX219's binned modes doubled their rate with a longer line
/// in newer kernels, and IMX708's HDR mode shares its size with a normal one.
/// [`known_line_timing`] takes the one the camera's own limits agree with.
const DRIVER_LINES: [(&str, (u32, u32), u32, u64); 21] = [
    ("ov5647", (640, 480), 1852, 55_000_000),
    ("ov5647", (1296, 972), 1896, 81_666_700),
    ("ov5647", (1920, 1080), 2416, 81_666_700),
    ("ov5647", (2592, 1944), 2844, 87_500_000),
    ("imx219", (640, 480), 3448, 182_400_000),
    ("imx219", (640, 480), 3560, 364_800_000),
    ("imx219", (1640, 1232), 3448, 182_400_000),
    ("imx219", (1640, 1232), 3560, 364_800_000),
    ("imx219", (1920, 1080), 3448, 182_400_000),
    ("imx219", (3280, 2464), 3448, 182_400_000),
    ("imx477", (1332, 990), 6664, 840_000_000),
    ("imx477", (2028, 1080), 12740, 840_000_000),
    ("imx477", (2028, 1520), 12740, 840_000_000),
    ("imx477", (4056, 3040), 24000, 840_000_000),
    ("imx708", (1536, 864), 5216, 566_400_000),
    ("imx708", (2304, 1296), 7824, 585_600_000),
    ("imx708", (2304, 1296), 5216, 777_600_000), // HDR
    ("imx708", (4608, 2592), 15648, 595_200_000),
    ("imx296", (1456, 1088), 1760, 118_800_000),
    ("imx500", (4056, 3040), 17900, 744_000_000),
    ("imx500", (2028, 1520), 9398, 744_000_000),
];

/// The line timing of the configured mode (`size`) of sensor `model`, from `DRIVER_LINES`,
/// trusted only when the mode's `FrameDurationLimits` minimum read after configure is a whole
/// number of those lines, at least the mode's height (truncated to the microsecond as
/// libcamera reports it): a kernel with other timing, or an unknown sensor, gives `None`, and
/// the exposure is then bounded by the whole frame.
pub fn known_line_timing(
    model: &str,
    size: (u32, u32),
    shortest_frame_us: i64,
) -> Option<LineTiming> {
    let lower = model.to_ascii_lowercase();
    DRIVER_LINES
        .iter()
        .filter(|(name, s, ..)| lower.contains(name) && *s == size)
        .filter_map(|&(_, _, llp, rate)| line_timing(model, llp, rate, shortest_frame_us))
        .find(|line| {
            let whole = u128::from(line.frame_lines_min) * u128::from(line.line_length) * 1_000_000
                / u128::from(line.pixel_rate);
            line.frame_lines_min >= size.1
                && i64::try_from(whole).is_ok_and(|us| us == shortest_frame_us)
        })
}

/// The longest exposure, in microseconds, Raspberry Pi's IPA gives at a frame period of
/// `period_us` (min = max `FrameDurationLimits`): the period raised to the mode's exact
/// shortest frame (`IpaBase::applyFrameDurations` clamps to it, `ipa_base.cpp:1773-1778`),
/// the frame `period / line length` whole lines, and the exposure ending `margin_lines` before
/// it (`CamHelper::getBlanking`: `frameLength - frameIntegrationDiff` lines,
/// `cam_helper.cpp:103-128`). Exact integer arithmetic where libcamera uses doubles, truncated
/// to whole microseconds as libcamera reports `ExposureTime`. Periods past the mode's longest
/// frame (where the IPA stretches the line) are the caller's to clamp first.
pub fn longest_exposure_us(period_us: i64, line: LineTiming) -> i64 {
    let period = u128::from(period_us.max(0).unsigned_abs());
    let (llp, rate) = (u128::from(line.line_length), u128::from(line.pixel_rate));
    let frame_lines = (period * rate / (llp * 1_000_000)).max(u128::from(line.frame_lines_min));
    let lines = frame_lines.saturating_sub(u128::from(line.margin_lines));
    let ns = lines * llp * 1_000_000_000 / rate + u128::from(line.offset_ns);
    i64::try_from(ns / 1_000).unwrap_or(i64::MAX)
}

/// Sensors whose driver has no `V4L2_CID_HFLIP`/`V4L2_CID_VFLIP`: the Global Shutter camera's
/// IMX296 (`drivers/media/i2c/imx296.c`, `imx296_ctrls_init`: its REVERSE bits are never
/// used). libcamera then keeps the mounting orientation whatever is asked.
const CANNOT_FLIP: [&str; 1] = ["imx296"];

/// libcamera's `Orientation` (EXIF values), without libcamera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Orientation {
    Rotate0,
    Rotate0Mirror,
    Rotate180,
    Rotate180Mirror,
}

/// `camera.rotation` (0 or 180), `camera.hflip`, `camera.vflip` as one orientation: a 180°
/// rotation is both flips, and flips cancel in pairs.
pub fn orientation(rotation: u32, hflip: bool, vflip: bool) -> Orientation {
    let turned = rotation == 180;
    match (hflip ^ turned, vflip ^ turned) {
        (false, false) => Orientation::Rotate0,
        (true, false) => Orientation::Rotate0Mirror,
        (true, true) => Orientation::Rotate180,
        (false, true) => Orientation::Rotate180Mirror,
    }
}

/// The orientation to ask libcamera for, and what to report when the camera cannot give
/// `wanted`. `sensor` is the model of a sensor camera (a pixel array), `None` for one without
/// (libcamera's virtual camera accepts any orientation in `validate()` and then ignores it, so
/// asking it would claim a flip nobody does). A sensor whose driver cannot flip
/// (`CANNOT_FLIP`) is not asked either, and the report says why.
pub fn orientation_for(wanted: Orientation, sensor: Option<&str>) -> (Orientation, Option<String>) {
    if wanted == Orientation::Rotate0 {
        return (wanted, None);
    }
    let why = match sensor {
        None => "the camera has no sensor that can flip".to_string(),
        Some(model) => {
            let lower = model.to_ascii_lowercase();
            if !CANNOT_FLIP.iter().any(|name| lower.contains(name)) {
                return (wanted, None);
            }
            format!(
                "the {model} sensor cannot flip (its driver has no flip controls): \
                 turn the camera itself, or the picture where it is shown"
            )
        }
    };
    (
        Orientation::Rotate0,
        Some(format!(
            "orientation: asked {wanted:?}, got Rotate0 ({why})"
        )),
    )
}

/// Compares the crop the ISP reports for a frame with the one planned: the same shape as the
/// output (within 1%) is fine, anything else means a squashed picture.
pub fn crop_applied(applied: Rect, aspect: (u32, u32)) -> super::CropState {
    let lhs = u64::from(applied.width) * u64::from(aspect.1);
    let rhs = u64::from(applied.height) * u64::from(aspect.0);
    // `rhs > 0`: an empty rectangle is no crop (a zero width alone is already 100% off).
    if rhs > 0 && lhs.abs_diff(rhs) * 100 <= rhs {
        super::CropState::Applied(applied)
    } else {
        super::CropState::NotSquare(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: i32, y: i32, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn cameras_are_chosen_by_id_model_or_index() {
        let cams = vec![
            (
                "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a".to_string(),
                Some("imx708_wide".to_string()),
            ),
            (
                "/base/axi/pcie@120000/rp1/i2c@80000/imx219@10".to_string(),
                Some("imx219".to_string()),
            ),
        ];
        let by = |id: Option<&str>, model: Option<&str>, index: Option<usize>| {
            choose_camera(
                &cams,
                &Selector {
                    id: id.map(String::from),
                    model: model.map(String::from),
                    index,
                },
            )
        };
        assert_eq!(by(None, None, None), Some(0));
        assert_eq!(by(None, Some("IMX219"), None), Some(1));
        assert_eq!(by(None, Some("imx708"), None), Some(0));
        assert_eq!(by(None, Some("imx70"), None), None);
        assert_eq!(by(None, None, Some(1)), Some(1));
        assert_eq!(by(None, None, Some(2)), None);
        assert_eq!(by(Some(&cams[1].0), None, None), Some(1));
        assert_eq!(
            by(Some("/base/soc/i2c0mux/i2c@1/imx219@10"), None, None),
            None
        );
        assert_eq!(choose_camera(&[], &Selector::default()), None);
    }

    #[test]
    fn orientation_only_where_a_sensor_can_flip() {
        assert_eq!(
            orientation_for(Orientation::Rotate180, Some("imx708_wide")),
            (Orientation::Rotate180, None)
        );
        let (o, note) = orientation_for(Orientation::Rotate180, None);
        assert_eq!(o, Orientation::Rotate0);
        assert!(
            note.unwrap()
                .starts_with("orientation: asked Rotate180, got Rotate0")
        );
        assert_eq!(
            orientation_for(Orientation::Rotate0, None),
            (Orientation::Rotate0, None)
        );
    }

    /// Issue 20: the Global Shutter camera's IMX296 has no flip controls, so a rotation or
    /// flip is refused there with the reason, not claimed applied; every other Pi sensor
    /// flips, and asking nothing is no warning on any.
    #[test]
    fn the_imx296_cannot_flip_and_says_so() {
        let turned = [
            Orientation::Rotate180,
            Orientation::Rotate0Mirror,
            Orientation::Rotate180Mirror,
        ];
        for wanted in turned {
            for model in ["imx296", "IMX296"] {
                let (got, note) = orientation_for(wanted, Some(model));
                assert_eq!(got, Orientation::Rotate0, "{model} {wanted:?}");
                let note = note.unwrap_or_default();
                assert!(
                    note.starts_with(&format!("orientation: asked {wanted:?}, got Rotate0"))
                        && note.contains(&format!("the {model} sensor cannot flip")),
                    "{note}"
                );
            }
            for model in ["imx708", "imx477", "imx219", "ov5647", "imx500"] {
                assert_eq!(
                    orientation_for(wanted, Some(model)),
                    (wanted, None),
                    "{model}"
                );
            }
        }
        assert_eq!(
            orientation_for(Orientation::Rotate0, Some("imx296")),
            (Orientation::Rotate0, None)
        );
    }

    #[test]
    fn orientation_composes_rotation_and_flips() {
        assert_eq!(orientation(0, false, false), Orientation::Rotate0);
        assert_eq!(orientation(180, false, false), Orientation::Rotate180);
        assert_eq!(orientation(0, true, true), Orientation::Rotate180);
        assert_eq!(orientation(0, true, false), Orientation::Rotate0Mirror);
        assert_eq!(orientation(0, false, true), Orientation::Rotate180Mirror);
        assert_eq!(orientation(180, true, false), Orientation::Rotate180Mirror);
        assert_eq!(orientation(180, true, true), Orientation::Rotate0);
    }

    #[test]
    fn centred_crops_of_the_output_shape() {
        assert_eq!(
            centred_crop(r(0, 0, 4608, 2592), (512, 512)),
            r(1008, 0, 2592, 2592)
        );
        assert_eq!(
            centred_crop(r(0, 0, 4608, 2592), (640, 480)),
            r(576, 0, 3456, 2592)
        );
        // Portrait output on a landscape sensor: full height still.
        assert_eq!(centred_crop(r(0, 0, 3280, 2464), (480, 640)).height, 2464);
        // Wider output than the sensor: full width.
        assert_eq!(
            centred_crop(r(0, 0, 2592, 1944), (1920, 1080)),
            r(0, 244, 2592, 1458)
        );
        // Odd offsets stay even and inside.
        let c = centred_crop(r(1, 3, 4056, 3040), (1, 1));
        assert_eq!((c.x % 2, c.y % 2), (0, 0));
        assert!(c.y >= 3 && c.y + c.height as i32 <= 3043, "{c:?}");
        assert_eq!(centred_crop(r(0, 0, 1, 1), (1, 1)).width, 0);
    }

    #[test]
    fn placeholder_limits_are_refused() {
        let placeholder = ModeLimits {
            scaler_crop_max: Some(r(65535, 65535, 65535, 65535)),
            scaler_crop_maximum: Some(r(0, 0, 0, 0)),
            frame_duration: Some((33_333, 120_000)),
        };
        assert!(matches!(
            crop_area(Some((4608, 2592)), &placeholder),
            Err(PlanError::Placeholder { .. })
        ));
        // A real maximum but an empty ScalerCropMaximum: still before configure.
        let half = ModeLimits {
            scaler_crop_max: Some(r(0, 0, 4608, 2592)),
            scaler_crop_maximum: Some(r(0, 0, 0, 0)),
            frame_duration: None,
        };
        assert!(crop_area(Some((4608, 2592)), &half).is_err());
        let real = ModeLimits {
            scaler_crop_max: Some(r(0, 0, 4608, 2592)),
            scaler_crop_maximum: Some(r(0, 0, 4608, 2592)),
            frame_duration: None,
        };
        assert_eq!(
            crop_area(Some((4608, 2592)), &real),
            Ok(Some(r(0, 0, 4608, 2592)))
        );
        assert_eq!(
            crop_area(Some((4608, 2592)), &ModeLimits::default()),
            Ok(None)
        );
    }

    /// Issue 20 item 7: a real analogue crop a little outside the active area (a driver's
    /// selection libcamera passes through) is clipped to it, not refused as a placeholder.
    #[test]
    fn an_analogue_crop_overhanging_the_active_area_is_clipped() {
        let with = |max: Rect| ModeLimits {
            scaler_crop_max: Some(max),
            scaler_crop_maximum: Some(max),
            frame_duration: None,
        };
        let active = (2592, 1944);
        let table: &[(Rect, Rect)] = &[
            (r(-8, 0, 2600, 1944), r(0, 0, 2592, 1944)),
            (r(16, -6, 2592, 1950), r(16, 0, 2576, 1944)),
            (r(0, 0, 2608, 1960), r(0, 0, 2592, 1944)),
            (r(348, 434, 1928, 1080), r(348, 434, 1928, 1080)),
        ];
        for &(max, want) in table {
            assert_eq!(
                crop_area(Some(active), &with(max)),
                Ok(Some(want)),
                "{max:?}"
            );
        }
        // Clipped or not, a full-field mode still counts as one.
        assert!(full_field_of_view(active, r(0, 0, 2592, 1944)));
        // Still placeholders: the 65535s, and a crop wholly outside.
        for max in [
            r(65535, 65535, 65535, 65535),
            r(0, 0, 65535, 65535),
            r(2592, 0, 16, 16),
        ] {
            assert!(crop_area(Some(active), &with(max)).is_err(), "{max:?}");
        }
    }

    #[test]
    fn frame_period_within_limits() {
        assert_eq!(frame_period(30, None), (33_333, false));
        assert_eq!(frame_period(60, Some((8_333, 1_000_000))), (16_666, false));
        assert_eq!(frame_period(30, Some((100_000, 200_000))), (100_000, true));
        assert_eq!(frame_period(1, Some((1_000, 500_000))), (500_000, true));
        assert_eq!(frame_period(30, Some((40_000, 10))), (40_000, true));
        assert_eq!(frame_period(0, None), (1_000_000, false));
    }

    #[test]
    fn aspect_mismatch_refused_only_with_a_shared_crop() {
        assert!(check_aspects((512, 512), (256, 256), true).is_ok());
        assert!(check_aspects((640, 480), (512, 512), false).is_ok());
        let e = check_aspects((640, 480), (512, 512), true).unwrap_err();
        assert!(
            e.to_string().contains("still 640x480 and stream 512x512"),
            "{e}"
        );
    }

    #[test]
    fn applied_crop_is_checked_against_the_output_shape() {
        use super::super::CropState;
        let sq = r(1008, 0, 2592, 2592);
        assert_eq!(crop_applied(sq, (512, 512)), CropState::Applied(sq));
        let whole = r(0, 0, 4608, 2592);
        assert_eq!(crop_applied(whole, (512, 512)), CropState::NotSquare(whole));
        assert_eq!(
            crop_applied(r(0, 0, 0, 0), (1, 1)),
            CropState::NotSquare(r(0, 0, 0, 0))
        );
    }

    #[test]
    fn candidates_start_with_the_smallest_big_enough_mode() {
        let m = |width, height| RawMode {
            width,
            height,
            bit_depth: 10,
        };
        let modes = [m(1536, 864), m(2304, 1296), m(4608, 2592), m(2304, 1296)];
        let c = candidate_modes(&modes, (512, 512));
        assert_eq!(c, vec![m(1536, 864), m(2304, 1296), m(4608, 2592)]);
        let c = candidate_modes(&modes, (1024, 1024));
        assert_eq!(c, vec![m(2304, 1296), m(4608, 2592), m(1536, 864)]);
    }

    fn mode(width: u32, height: u32, bit_depth: u32) -> RawMode {
        RawMode {
            width,
            height,
            bit_depth,
        }
    }

    /// Candidates by area, whatever order the camera lists its modes in: on the recorded
    /// sensors listed back to front, and on a wide crop mode whose area and shape order the
    /// modes differently from its side lengths.
    #[test]
    fn candidates_are_ordered_by_area_not_by_listing_side_or_shape() {
        use super::super::pi_model::{IMX219, IMX477, raw_modes};
        // (sensor, need, candidates): for 1024x1024 on IMX219 the big-enough ones first, then
        // the rest, largest first; one entry per size, with its deepest bit depth (10 beside 8).
        let table = [
            (
                IMX477,
                (512, 512),
                vec![
                    mode(1332, 990, 10),
                    mode(2028, 1080, 12),
                    mode(2028, 1520, 12),
                    mode(4056, 3040, 12),
                ],
            ),
            (
                IMX219,
                (1024, 1024),
                vec![
                    mode(1640, 1232, 10),
                    mode(1920, 1080, 10),
                    mode(3280, 2464, 10),
                    mode(640, 480, 10),
                ],
            ),
        ];
        for (sensor, need, want) in table {
            let mut modes = raw_modes(&sensor);
            modes.reverse();
            assert_eq!(candidate_modes(&modes, need), want, "{}", sensor.model);
        }
        // 2560x720 has the smaller area but the larger sum of sides than 1640x1232.
        let modes = [
            mode(3280, 2464, 10),
            mode(1640, 1232, 10),
            mode(2560, 720, 10),
        ];
        assert_eq!(
            candidate_modes(&modes, (512, 512)),
            vec![
                mode(2560, 720, 10),
                mode(1640, 1232, 10),
                mode(3280, 2464, 10)
            ]
        );
    }

    /// A mode with a zero side is no mode: never configured.
    #[test]
    fn modes_with_a_zero_side_are_not_candidates() {
        let modes = [mode(0, 864, 10), mode(1536, 0, 10), mode(1536, 864, 10)];
        assert_eq!(
            candidate_modes(&modes, (512, 512)),
            vec![mode(1536, 864, 10)]
        );
        assert_eq!(candidate_modes(&modes[..2], (512, 512)), vec![]);
    }

    /// Full field of view: each side within 1% of the active area, each offset within 1%,
    /// the first step past each bound refused (active 4608x2592: 1% is 46.08 by 25.92).
    #[test]
    fn full_field_of_view_at_each_one_percent_bound() {
        let active = (4608, 2592);
        let table: &[(Rect, bool)] = &[
            (r(0, 0, 4608, 2592), true),
            (r(0, 0, 4562, 2592), true),
            (r(0, 0, 4561, 2592), false),
            (r(0, 0, 4608, 2567), true),
            (r(0, 0, 4608, 2566), false),
            (r(46, 0, 4608, 2592), true),
            (r(47, 0, 4608, 2592), false),
            (r(-46, 0, 4608, 2592), true),
            (r(-47, 0, 4608, 2592), false),
            (r(0, 25, 4608, 2592), true),
            (r(0, 26, 4608, 2592), false),
            (r(0, -26, 4608, 2592), false),
            // IMX708's 1536x864 mode: the centre of the sensor only.
            (r(768, 432, 3072, 1728), false),
        ];
        for &(max, want) in table {
            assert_eq!(full_field_of_view(active, max), want, "{max:?}");
        }
    }

    /// Each placeholder sign alone refuses the limits; the bounds are inclusive where a real
    /// crop may reach (an overhang up to twice the active area is clipped, not refused).
    #[test]
    fn each_sign_of_a_placeholder_alone_refuses_the_limits() {
        let active = (2592, 1944);
        let with = |max: Rect, maximum: Option<Rect>| ModeLimits {
            scaler_crop_max: Some(max),
            scaler_crop_maximum: maximum,
            frame_duration: None,
        };
        let whole = r(0, 0, 2592, 1944);
        let table: &[(ModeLimits, Result<Option<Rect>, ()>)] = &[
            (with(r(0, 0, 0, 1944), Some(whole)), Err(())),
            (with(r(0, 0, 2592, 0), Some(whole)), Err(())),
            (with(r(0, 1944, 16, 16), Some(whole)), Err(())),
            (with(r(0, 0, 5185, 1944), Some(whole)), Err(())),
            (with(r(0, 0, 5184, 1944), Some(whole)), Ok(Some(whole))),
            (with(r(0, 0, 2592, 3889), Some(whole)), Err(())),
            (with(r(0, 0, 2592, 3888), Some(whole)), Ok(Some(whole))),
            (
                with(r(0, 0, 2591, 1943), Some(whole)),
                Ok(Some(r(0, 0, 2591, 1943))),
            ),
            // An empty ScalerCropMaximum, either side.
            (with(whole, Some(r(0, 0, 0, 1944))), Err(())),
            (with(whole, Some(r(0, 0, 2592, 0))), Err(())),
            // No ScalerCropMaximum at all: the maximum alone decides (issue 24: a placeholder
            // maximum must not become the crop).
            (with(r(65535, 65535, 65535, 65535), None), Err(())),
            (with(r(0, 0, 65535, 65535), None), Err(())),
            (with(whole, None), Ok(Some(whole))),
            // Inside the bounds but nothing of the active area once clipped: no crop.
            (with(r(-100, 0, 50, 1944), Some(whole)), Ok(None)),
            (with(r(0, -100, 2592, 50), Some(whole)), Ok(None)),
        ];
        for (limits, want) in table {
            let got = crop_area(Some(active), limits);
            match want {
                Err(()) => assert!(
                    matches!(got, Err(PlanError::Placeholder { .. })),
                    "{limits:?}: {got:?}"
                ),
                Ok(want) => assert_eq!(got, Ok(*want), "{limits:?}"),
            }
        }
    }

    /// A camera without a pixel array (libcamera's virtual camera, a USB camera): nothing to
    /// check the control against, so it is taken as is, unless it is empty.
    #[test]
    fn without_a_pixel_array_the_control_is_taken_as_is_unless_empty() {
        let with = |max: Rect| ModeLimits {
            scaler_crop_max: Some(max),
            ..ModeLimits::default()
        };
        let table: &[(Rect, Option<Rect>)] = &[
            (r(0, 0, 1920, 1080), Some(r(0, 0, 1920, 1080))),
            (r(8, 4, 640, 480), Some(r(8, 4, 640, 480))),
            (r(0, 0, 0, 1080), None),
            (r(0, 0, 1920, 0), None),
        ];
        for &(max, want) in table {
            assert_eq!(crop_area(None, &with(max)), Ok(want), "{max:?}");
        }
        assert_eq!(crop_area(None, &ModeLimits::default()), Ok(None));
    }

    /// The exact crop, where the shrink for an odd offset runs on either axis and where the
    /// area's odd sides or an inexact shape leave rounding to decide: the largest even
    /// rectangle of the output's shape (rounded down) that fits, centred, on even coordinates.
    #[test]
    fn centred_crops_exactly_with_odd_offsets_odd_sides_and_inexact_shapes() {
        let table: &[(Rect, (u32, u32), Rect)] = &[
            // Full height, an odd offset on both axes: one step down keeps the shape.
            (r(1, 3, 4056, 3040), (1, 1), r(510, 4, 3038, 3038)),
            (r(1, 3, 4056, 3040), (4, 3), r(4, 4, 4050, 3038)),
            // Full width (a wider output), an odd offset: the step is taken off the width.
            (r(3, 1, 2592, 1944), (1920, 1080), r(4, 246, 2590, 1456)),
            // Odd sides: the shape from the whole side, then evened.
            (r(0, 0, 4056, 3039), (4, 3), r(2, 0, 4052, 3038)),
            (r(0, 0, 2591, 4000), (2, 3), r(0, 58, 2590, 3886)),
            // Shapes that do not divide the sensor: rounded down, then evened.
            (r(0, 0, 4056, 3040), (16, 9), r(0, 380, 4056, 2280)),
            (r(0, 0, 3280, 2464), (3, 2), r(0, 140, 3280, 2186)),
            (r(680, 692, 1920, 1080), (1, 1), r(1100, 692, 1080, 1080)),
            // Too thin for any even height: empty, at the area's origin.
            (r(0, 0, 4000, 1), (4000, 1), r(0, 0, 0, 0)),
            (r(6, 2, 1, 1), (1, 1), r(6, 2, 0, 0)),
        ];
        for &(area, aspect, want) in table {
            assert_eq!(centred_crop(area, aspect), want, "{area:?} {aspect:?}");
        }
    }

    /// A maximum of 0 (or below the minimum) is no limit, and a minimum of 0 or less none
    /// either: the framerate asked stands.
    #[test]
    fn frame_period_ignores_limits_that_are_no_limits() {
        assert_eq!(frame_period(30, Some((1_000, 0))), (33_333, false));
        assert_eq!(frame_period(30, Some((0, 0))), (33_333, false));
        assert_eq!(frame_period(30, Some((-5, 100_000))), (33_333, false));
        assert_eq!(frame_period(30, Some((0, 20_000))), (20_000, true));
        assert_eq!(frame_period(30, Some((33_333, 33_333))), (33_333, false));
    }

    /// The applied crop's shape within 1% of the output's either way, and not past it.
    #[test]
    fn applied_crop_shape_at_its_one_percent_bounds() {
        use super::super::CropState;
        let table: &[(Rect, (u32, u32), bool)] = &[
            (r(0, 0, 101, 100), (1, 1), true),
            (r(0, 0, 99, 100), (1, 1), true),
            (r(0, 0, 102, 100), (1, 1), false),
            (r(0, 0, 98, 100), (1, 1), false),
            (r(0, 0, 3456, 2592), (640, 480), true),
            (r(0, 0, 0, 100), (1, 1), false),
            (r(0, 0, 100, 0), (1, 1), false),
            (r(0, 0, 0, 0), (4, 3), false),
        ];
        for &(applied, aspect, fine) in table {
            let want = if fine {
                CropState::Applied(applied)
            } else {
                CropState::NotSquare(applied)
            };
            assert_eq!(
                crop_applied(applied, aspect),
                want,
                "{applied:?} {aspect:?}"
            );
        }
    }

    /// A line timing needs both a line length and a pixel rate; and only a size the driver
    /// table has gets one, even when the camera's limits would fit another of its modes' lines
    /// (a mode from a newer kernel is not guessed at). IMX219 3280x2464: 2496 lines of 3448
    /// pixels at 182.4 MHz, 47183 us.
    #[test]
    fn a_line_timing_needs_both_figures_and_a_size_the_driver_table_has() {
        let rate = 182_400_000;
        assert!(line_timing("imx219", 3448, rate, 47_183).is_some());
        assert_eq!(line_timing("imx219", 0, rate, 47_183), None);
        assert_eq!(line_timing("imx219", 3448, 0, 47_183), None);
        let full = known_line_timing("imx219", (3280, 2464), 47_183).unwrap();
        assert_eq!((full.line_length, full.frame_lines_min), (3448, 2496));
        assert_eq!(known_line_timing("imx219", (1000, 750), 47_183), None);
    }
}
