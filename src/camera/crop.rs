//! Crop and sensor-mode geometry, kept free of libcamera types so it is unit-tested on every
//! machine against real sensor sizes.

use super::Rect;

/// The largest square centred in `max` (the `ScalerCrop` maximum, i.e. the sensor area the
/// ISP can read), with even coordinates and an even side as the ISP wants for 4:2:0 output.
/// Centred to within one pixel: an odd margin or an odd offset of `max` moves the square by
/// one pixel, never out of `max`.
pub fn center_square(max: Rect) -> Rect {
    let mut side = max.width.min(max.height) & !1;
    loop {
        match (
            even_start(max.x, max.width, side),
            even_start(max.y, max.height, side),
        ) {
            (Some(x), Some(y)) => {
                return Rect {
                    x,
                    y,
                    width: side,
                    height: side,
                };
            }
            // Only when an odd offset leaves no room on an axis exactly `side` long.
            _ if side >= 2 => side -= 2,
            _ => {
                return Rect {
                    x: max.x,
                    y: max.y,
                    width: 0,
                    height: 0,
                };
            }
        }
    }
}

/// An even start for `side` pixels centred in `len` pixels from `lo`, staying inside.
fn even_start(lo: i32, len: u32, side: u32) -> Option<i32> {
    let (lo, len, side) = (i64::from(lo), i64::from(len), i64::from(side));
    let centred = lo + (len - side) / 2;
    [centred, centred + 1, centred - 1]
        .into_iter()
        .find(|s| s % 2 == 0 && *s >= lo && s + side <= lo + len)
        .and_then(|s| i32::try_from(s).ok())
}

/// Picks the sensor mode for streaming: among `modes` (sizes the sensor outputs), those that
/// cover the whole pixel array (same aspect ratio as `full`, within 1%: binned or full
/// resolution, not cropped), the smallest that is still at least `need` in both
/// directions after the centre-square crop. Binned modes are faster and less noisy; a
/// cropped mode would lose field of view. `None` when no mode covers the full field.
pub fn full_fov_mode(
    modes: &[(u32, u32)],
    full: (u32, u32),
    need: (u32, u32),
) -> Option<(u32, u32)> {
    let covers = |(w, h): (u32, u32)| {
        // w/h == full.w/full.h within 1%.
        let lhs = u64::from(w) * u64::from(full.1);
        let rhs = u64::from(h) * u64::from(full.0);
        lhs.abs_diff(rhs) * 100 <= rhs
    };
    let side_ok = |(w, h): (u32, u32)| w.min(h) >= need.0.max(need.1);
    let mut full_fov: Vec<(u32, u32)> = modes.iter().copied().filter(|m| covers(*m)).collect();
    full_fov.sort_by_key(|(w, h)| u64::from(*w) * u64::from(*h));
    full_fov
        .iter()
        .copied()
        .find(|m| side_ok(*m))
        .or_else(|| full_fov.last().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(w: u32, h: u32) -> Rect {
        Rect {
            x: 0,
            y: 0,
            width: w,
            height: h,
        }
    }

    #[test]
    fn imx708_wide_sensor_gives_a_centred_height_square() {
        // Raspberry Pi Camera Module 3.
        assert_eq!(
            center_square(full(4608, 2592)),
            Rect {
                x: 1008,
                y: 0,
                width: 2592,
                height: 2592
            }
        );
    }

    #[test]
    fn imx219_4_3_sensor() {
        // Camera Module 2: 3280x2464 -> side 2464, offset (3280-2464)/2 = 408.
        assert_eq!(
            center_square(full(3280, 2464)),
            Rect {
                x: 408,
                y: 0,
                width: 2464,
                height: 2464
            }
        );
    }

    #[test]
    fn imx477_hq_camera() {
        // 4056x3040 -> 3040 square at x = 508.
        assert_eq!(
            center_square(full(4056, 3040)),
            Rect {
                x: 508,
                y: 0,
                width: 3040,
                height: 3040
            }
        );
    }

    #[test]
    fn ov5647_camera_v1() {
        // 2592x1944 -> 1944 square at x = 324.
        assert_eq!(
            center_square(full(2592, 1944)),
            Rect {
                x: 324,
                y: 0,
                width: 1944,
                height: 1944
            }
        );
    }

    #[test]
    fn offsets_of_the_active_area_are_kept_and_results_stay_even() {
        // An active area that does not start at the origin, with odd dimensions.
        let r = center_square(Rect {
            x: 16,
            y: 8,
            width: 4057,
            height: 3041,
        });
        assert_eq!(r.width, 3040);
        assert_eq!(r.height, 3040);
        assert_eq!((r.x - 16) % 2, 0);
        assert_eq!((r.y - 8) % 2, 0);
        // Centred: equal margins within the 2-pixel alignment.
        let left = r.x - 16;
        let right = 16 + 4057 - (r.x + 3040_i32);
        assert!((left - right).abs() <= 2, "{left} vs {right}");
        // Portrait sensors work too.
        assert_eq!(
            center_square(full(1080, 1920)),
            Rect {
                x: 0,
                y: 420,
                width: 1080,
                height: 1080
            }
        );
    }

    #[test]
    fn odd_offsets_are_moved_to_even_coordinates_inside_the_area() {
        // IMX477-sized area starting at odd coordinates: x moves one pixel right; y has no
        // room on a 3040 side, so the square shrinks by 2 to stay inside and even.
        let max = Rect {
            x: 1,
            y: 3,
            width: 4056,
            height: 3040,
        };
        let r = center_square(max);
        assert_eq!(
            r,
            Rect {
                x: 510,
                y: 4,
                width: 3038,
                height: 3038
            }
        );
        assert_eq!((r.x % 2, r.y % 2), (0, 0));
        assert!(r.x >= max.x && r.x + r.width as i32 <= max.x + max.width as i32);
        assert!(r.y >= max.y && r.y + r.height as i32 <= max.y + max.height as i32);
        // An odd margin: (2592 - 1944) / 2 = 324 from an odd x = 7 -> 331 -> 332.
        let r = center_square(Rect {
            x: 7,
            y: 0,
            width: 2592,
            height: 1944,
        });
        assert_eq!((r.x, r.y, r.width), (332, 0, 1944));
        // Degenerate areas do not panic.
        assert_eq!(center_square(full(1, 1)).width, 0);
        assert_eq!(center_square(full(0, 480)).width, 0);
    }

    #[test]
    fn square_input_is_unchanged() {
        assert_eq!(center_square(full(512, 512)), full(512, 512));
    }

    #[test]
    fn picks_the_smallest_binned_full_fov_mode_that_is_big_enough() {
        // IMX708 modes: 1536x864 (2x2 binned), 2304x1296 (binned), 4608x2592 (full).
        let modes = [(1536, 864), (2304, 1296), (4608, 2592)];
        assert_eq!(
            full_fov_mode(&modes, (4608, 2592), (512, 512)),
            Some((1536, 864))
        );
        assert_eq!(
            full_fov_mode(&modes, (4608, 2592), (1024, 1024)),
            Some((2304, 1296))
        );
        // Nothing is big enough: take the largest full-FOV mode.
        assert_eq!(
            full_fov_mode(&modes, (4608, 2592), (4000, 4000)),
            Some((4608, 2592))
        );
    }

    #[test]
    fn cropped_modes_are_never_chosen() {
        // IMX219: 640x480 and 1920x1080 are cropped (1080p is a centre crop of a 4:3 sensor).
        let modes = [(640, 480), (1640, 1232), (1920, 1080), (3280, 2464)];
        assert_eq!(
            full_fov_mode(&modes, (3280, 2464), (512, 512)),
            Some((1640, 1232))
        );
        // A cropped mode alone: no full-field-of-view mode to offer.
        assert_eq!(
            full_fov_mode(&[(1920, 1080)], (3280, 2464), (512, 512)),
            None
        );
    }
}
