//! libcamera's names for what picker reads: the fourcc of each pixel format picker can take
//! (and which to fall back to when validation hands back one it cannot), its rectangles and its
//! orientations. They change when libcamera or picker learns a format, not when negotiation or
//! the pipeline does.

use libcamera::camera::Orientation as LcOrientation;
use libcamera::geometry::Rectangle;
use libcamera::pixel_format::PixelFormat as LcFormat;

use crate::camera::plan::Orientation;
use crate::camera::{PixelFormat, Rect};

const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

pub(super) const YUV420: u32 = fourcc(b"YU12");
const NV12: u32 = fourcc(b"NV12");
const YUYV: u32 = fourcc(b"YUYV");
/// DRM RGB888: a little-endian 24-bit word R:G:B, i.e. bytes B, G, R.
pub(super) const RGB888: u32 = fourcc(b"RG24");
/// DRM BGR888: bytes R, G, B.
const BGR888: u32 = fourcc(b"BG24");

/// Formats we can read, in order of preference, when validation gave us one we cannot.
pub(super) const VIDEO_PREFERENCE: [u32; 3] = [YUV420, NV12, YUYV];
pub(super) const STILL_PREFERENCE: [u32; 5] = [RGB888, BGR888, YUV420, NV12, YUYV];

pub(super) fn our_format(fourcc: u32) -> Option<PixelFormat> {
    Some(match fourcc {
        YUV420 => PixelFormat::I420,
        NV12 => PixelFormat::Nv12,
        YUYV => PixelFormat::Yuyv,
        RGB888 => PixelFormat::Bgr24,
        BGR888 => PixelFormat::Rgb24,
        _ => return None,
    })
}

/// The first of `preference` that the stream offers.
pub(super) fn pick_format(offered: &[u32], preference: &[u32]) -> Option<u32> {
    preference.iter().copied().find(|f| offered.contains(f))
}

pub(super) fn format_name(fourcc: u32) -> String {
    LcFormat::new(fourcc, 0)
        .info()
        .map(|i| i.name)
        .unwrap_or_else(|| format!("{fourcc:08x}"))
}

pub(super) fn rect(r: Rectangle) -> Rect {
    Rect {
        x: r.x,
        y: r.y,
        width: r.width,
        height: r.height,
    }
}

pub(super) fn rectangle(r: Rect) -> Rectangle {
    Rectangle {
        x: r.x,
        y: r.y,
        width: r.width,
        height: r.height,
    }
}

pub(super) fn lc_orientation(o: Orientation) -> LcOrientation {
    match o {
        Orientation::Rotate0 => LcOrientation::Rotate0,
        Orientation::Rotate0Mirror => LcOrientation::Rotate0Mirror,
        Orientation::Rotate180 => LcOrientation::Rotate180,
        Orientation::Rotate180Mirror => LcOrientation::Rotate180Mirror,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_names_follow_libcamera() {
        // libcamera RGB888 is bytes B, G, R.
        assert_eq!(our_format(RGB888), Some(PixelFormat::Bgr24));
        assert_eq!(our_format(BGR888), Some(PixelFormat::Rgb24));
        assert_eq!(our_format(fourcc(b"MJPG")), None);
    }

    #[test]
    fn unreadable_formats_are_replaced_by_preference() {
        let mjpg = fourcc(b"MJPG");
        assert_eq!(
            pick_format(&[mjpg, YUYV, NV12], &VIDEO_PREFERENCE),
            Some(NV12)
        );
        assert_eq!(pick_format(&[mjpg, YUYV], &STILL_PREFERENCE), Some(YUYV));
        assert_eq!(pick_format(&[mjpg], &VIDEO_PREFERENCE), None);
    }
}
