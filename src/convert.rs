//! Pixel conversions done in software: splitting interleaved chroma for the JPEG encoder,
//! and YUV -> RGB for stills when the camera could not give RGB itself.
//!
//! Hand-written: these are a few tight loops over known layouts, and the crates that offer
//! them (dcv-color-primitives, yuvutils-rs) bring much more than we need. YUV here is
//! full-range BT.601 (JFIF), the same convention libjpeg uses.

use crate::frames::{Image, PixelFormat};

/// Splits an NV12 UV plane (`rows` rows of `stride` bytes) into separate U and V planes of
/// `width` x `rows`.
pub fn split_uv(uv: &[u8], stride: usize, width: usize, rows: usize, u: &mut [u8], v: &mut [u8]) {
    for row in 0..rows {
        let src = &uv[row * stride..][..width * 2];
        let (du, dv) = (
            &mut u[row * width..][..width],
            &mut v[row * width..][..width],
        );
        for (i, pair) in src.chunks_exact(2).enumerate() {
            du[i] = pair[0];
            dv[i] = pair[1];
        }
    }
}

/// Splits packed YUYV into Y (`width` x `height`) and 4:2:2 U, V planes (`width/2` x `height`).
pub fn split_yuyv(
    src: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
) {
    let cw = width.div_ceil(2);
    for row in 0..height {
        let line = &src[row * stride..][..cw * 4];
        for (i, quad) in line.chunks_exact(4).enumerate() {
            y[row * width + 2 * i] = quad[0];
            if 2 * i + 1 < width {
                y[row * width + 2 * i + 1] = quad[2];
            }
            u[row * cw + i] = quad[1];
            v[row * cw + i] = quad[3];
        }
    }
}

#[inline]
fn clamp(x: i32) -> u8 {
    x.clamp(0, 255) as u8
}

/// Full-range BT.601 YCbCr -> RGB in 16.16 fixed point.
#[inline]
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let (y, u, v) = (i32::from(y) << 16, i32::from(u) - 128, i32::from(v) - 128);
    [
        clamp((y + 91881 * v + 32768) >> 16),
        clamp((y - 22554 * u - 46802 * v + 32768) >> 16),
        clamp((y + 116130 * u + 32768) >> 16),
    ]
}

/// Full-range BT.601 RGB -> YCbCr.
#[inline]
pub fn rgb_to_yuv(rgb: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (i32::from(rgb[0]), i32::from(rgb[1]), i32::from(rgb[2]));
    [
        clamp((19595 * r + 38470 * g + 7471 * b + 32768) >> 16),
        clamp(((-11059 * r - 21709 * g + 32768 * b + 32768) >> 16) + 128),
        clamp(((32768 * r - 27439 * g - 5329 * b + 32768) >> 16) + 128),
    ]
}

/// Writes `src` as tightly packed 3-byte pixels into `out` (resized to width*height*3):
/// R, G, B order, or B, G, R with `bgr`.
pub fn to_rgb(src: &Image, bgr: bool, out: &mut Vec<u8>) {
    let (w, h) = (src.width as usize, src.height as usize);
    out.resize(w * h * 3, 0);
    let order = |px: [u8; 3]| if bgr { [px[2], px[1], px[0]] } else { px };
    match src.format {
        PixelFormat::Rgb24 | PixelFormat::Bgr24 => {
            let swap = (src.format == PixelFormat::Bgr24) != bgr;
            for row in 0..h {
                let line = &src.plane(0)[row * src.strides[0]..][..w * 3];
                let dst = &mut out[row * w * 3..][..w * 3];
                if swap {
                    for (d, s) in dst.chunks_exact_mut(3).zip(line.chunks_exact(3)) {
                        d.copy_from_slice(&[s[2], s[1], s[0]]);
                    }
                } else {
                    dst.copy_from_slice(line);
                }
            }
        }
        PixelFormat::I420 | PixelFormat::Nv12 => {
            let (yp, s0) = (src.plane(0), src.strides[0]);
            for row in 0..h {
                for col in 0..w {
                    let (u, v) = if src.format == PixelFormat::I420 {
                        let i = (row / 2) * src.strides[1] + col / 2;
                        (
                            src.plane(1)[i],
                            src.plane(2)[(row / 2) * src.strides[2] + col / 2],
                        )
                    } else {
                        let i = (row / 2) * src.strides[1] + (col / 2) * 2;
                        (src.plane(1)[i], src.plane(1)[i + 1])
                    };
                    let px = yuv_to_rgb(yp[row * s0 + col], u, v);
                    out[(row * w + col) * 3..][..3].copy_from_slice(&order(px));
                }
            }
        }
        PixelFormat::Yuyv => {
            for row in 0..h {
                let line = &src.plane(0)[row * src.strides[0]..];
                for col in 0..w {
                    let quad = &line[(col / 2) * 4..][..4];
                    let y = if col % 2 == 0 { quad[0] } else { quad[2] };
                    let px = yuv_to_rgb(y, quad[1], quad[3]);
                    out[(row * w + col) * 3..][..3].copy_from_slice(&order(px));
                }
            }
        }
    }
}

/// Converts a tightly packed RGB24 image into `dst`'s format and size (sizes must match).
/// Chroma is taken from the top-left pixel of each block: the callers draw flat areas.
pub fn from_rgb(src: &Image, dst: &mut Image) {
    assert_eq!(src.format, PixelFormat::Rgb24);
    assert_eq!((src.width, src.height), (dst.width, dst.height));
    let (w, h) = (src.width as usize, src.height as usize);
    let px = |x: usize, y: usize| -> [u8; 3] {
        let i = y * src.strides[0] + x * 3;
        [src.data[i], src.data[i + 1], src.data[i + 2]]
    };
    match dst.format {
        PixelFormat::Rgb24 | PixelFormat::Bgr24 => {
            let bgr = dst.format == PixelFormat::Bgr24;
            let mut packed = Vec::new();
            to_rgb(src, bgr, &mut packed);
            let stride = dst.strides[0];
            for row in 0..h {
                dst.plane_mut(0)[row * stride..][..w * 3]
                    .copy_from_slice(&packed[row * w * 3..][..w * 3]);
            }
        }
        PixelFormat::I420 | PixelFormat::Nv12 => {
            let (s0, s1, s2) = (dst.strides[0], dst.strides[1], dst.strides[2]);
            for y in 0..h {
                for x in 0..w {
                    let yuv = rgb_to_yuv(px(x, y));
                    dst.plane_mut(0)[y * s0 + x] = yuv[0];
                    if x % 2 == 0 && y % 2 == 0 {
                        if dst.format == PixelFormat::I420 {
                            dst.plane_mut(1)[(y / 2) * s1 + x / 2] = yuv[1];
                            dst.plane_mut(2)[(y / 2) * s2 + x / 2] = yuv[2];
                        } else {
                            let uv = dst.plane_mut(1);
                            uv[(y / 2) * s1 + x] = yuv[1];
                            uv[(y / 2) * s1 + x + 1] = yuv[2];
                        }
                    }
                }
            }
        }
        PixelFormat::Yuyv => {
            let s0 = dst.strides[0];
            for y in 0..h {
                for x in (0..w).step_by(2) {
                    let a = rgb_to_yuv(px(x, y));
                    let b = rgb_to_yuv(px((x + 1).min(w - 1), y));
                    dst.plane_mut(0)[y * s0 + x * 2..][..4]
                        .copy_from_slice(&[a[0], a[1], b[0], a[2]]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_round_trip_is_close() {
        for rgb in [
            [0, 0, 0],
            [255, 255, 255],
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [12, 200, 99],
        ] {
            let yuv = rgb_to_yuv(rgb);
            let back = yuv_to_rgb(yuv[0], yuv[1], yuv[2]);
            for (a, b) in rgb.iter().zip(back) {
                assert!(a.abs_diff(b) <= 2, "{rgb:?} -> {yuv:?} -> {back:?}");
            }
        }
    }

    #[test]
    fn every_format_converts_back_to_rgb() {
        let mut src = Image::new(6, 4, PixelFormat::Rgb24);
        for (i, px) in src.data.chunks_mut(3).enumerate() {
            // 2x2 blocks of one colour, so chroma subsampling loses nothing.
            let (x, y) = (i % 6, i / 6);
            px.copy_from_slice(&[(x / 2 * 80) as u8, (y / 2 * 200) as u8, 60]);
        }
        let mut want = Vec::new();
        to_rgb(&src, false, &mut want);
        for format in [
            PixelFormat::I420,
            PixelFormat::Nv12,
            PixelFormat::Yuyv,
            PixelFormat::Bgr24,
        ] {
            let mut dst = Image::new(6, 4, format);
            from_rgb(&src, &mut dst);
            let mut got = Vec::new();
            to_rgb(&dst, false, &mut got);
            for (a, b) in want.iter().zip(&got) {
                assert!(a.abs_diff(*b) <= 2, "{format:?}: {want:?} vs {got:?}");
            }
        }
    }

    #[test]
    fn bgr_swaps_channels() {
        let mut src = Image::new(2, 2, PixelFormat::Rgb24);
        src.data
            .copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let mut out = Vec::new();
        to_rgb(&src, true, &mut out);
        assert_eq!(out, [3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
    }
}
