//! Camera buffers as picker reads them, without libcamera: where each plane of a configured
//! stream lies (to allocate buffers for import), and an [`Image`] over a mapped buffer lent by
//! the camera (no copy), or a copy of such a buffer into picker's own [`Image`] (keeping the
//! camera's strides). Pure layout logic, so it is tested here with recorded layouts, in every
//! build; the libcamera side (`libcamera/buffers.rs`) only gathers descriptors and mappings.

use std::sync::Arc;

use crate::dmabuf::Mapping;
use crate::frames::{Image, Lease, PixelFormat, Pixels, Region};

/// The size, format and row stride of one configured stream, as libcamera reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Bytes per row of the first plane; chroma planes of planar YUV 4:2:0 have half.
    pub stride: usize,
}

impl Layout {
    /// Row strides per plane, the way libcamera lays its formats out.
    pub fn strides(&self) -> [usize; 3] {
        let chroma = match self.format {
            PixelFormat::I420 => self.stride / 2,
            _ => self.stride,
        };
        [self.stride, chroma, chroma]
    }

    /// (offset, length) of each plane in one buffer, planes one after the other: how a buffer
    /// picker allocates for this stream is described to libcamera on import.
    pub fn planes(&self) -> Vec<(usize, usize)> {
        let rows = self.height as usize;
        let chroma_rows = rows.div_ceil(2);
        let [s0, s1, _] = self.strides();
        let sizes: Vec<usize> = match self.format {
            PixelFormat::I420 => vec![s0 * rows, s1 * chroma_rows, s1 * chroma_rows],
            PixelFormat::Nv12 => vec![s0 * rows, s1 * chroma_rows],
            PixelFormat::Yuyv | PixelFormat::Rgb24 | PixelFormat::Bgr24 => vec![s0 * rows],
        };
        let mut offset = 0;
        sizes
            .into_iter()
            .map(|len| {
                let plane = (offset, len);
                offset += len;
                plane
            })
            .collect()
    }

    /// Bytes one buffer needs: the planes, or libcamera's frame size when that is larger.
    pub fn buffer_len(&self, frame_size: usize) -> usize {
        let planes: usize = self.planes().iter().map(|(_, len)| len).sum();
        planes.max(frame_size)
    }
}

/// One stream's buffer of one request: each plane's mapping and its (offset, length) there.
#[derive(Clone, Debug)]
pub struct Mapped {
    pub planes: Vec<(Arc<Mapping>, usize, usize)>,
}

impl Mapped {
    /// The plane bytes, for copying (`None` when a plane lies outside its mapping).
    pub fn slices(&self) -> Option<Vec<&[u8]>> {
        self.planes
            .iter()
            .map(|(m, offset, len)| (**m).as_ref().get(*offset..offset.checked_add(*len)?))
            .collect()
    }

    /// The distinct mappings (one, usually), for `DMA_BUF_IOCTL_SYNC` around CPU reads.
    pub fn mappings(&self) -> Vec<&Arc<Mapping>> {
        let mut out: Vec<&Arc<Mapping>> = Vec::new();
        for (m, _, _) in &self.planes {
            if !out.iter().any(|o| Arc::ptr_eq(o, m)) {
                out.push(m);
            }
        }
        out
    }

    /// The buffer as an image, no copy: `None` when its planes are not all in one mapping or
    /// do not hold the layout (then the camera's frame is copied instead).
    pub fn lend(&self, layout: Layout, lease: &Lease) -> Option<Image> {
        let (first, ..) = self.planes.first()?;
        if !self.planes.iter().all(|(m, ..)| Arc::ptr_eq(m, first)) {
            return None;
        }
        // The layout alone: no pixels allocated (they are the camera's).
        let mut image = Image::layout_only(
            layout.width,
            layout.height,
            layout.format,
            &layout.strides(),
        );
        let planes = image.planes;
        if self.planes.len() >= planes {
            for i in 0..planes {
                image.offsets[i] = self.planes[i].1;
            }
        } else if self.planes.len() == 1 {
            // All planes in one buffer plane, one after the other, from its offset.
            let base = self.planes[0].1;
            for i in 0..planes {
                image.offsets[i] += base;
            }
        } else {
            return None;
        }
        let needed = image.needed_len();
        let region: Region = first.clone();
        image.data = Pixels::lent(region, 0, needed, lease.clone())?;
        // Every plane inside the lent bytes (offsets may be out of order).
        let sizes_ok = (0..planes).all(|i| image.plane(i).len() == plane_len(&image, i));
        sizes_ok.then_some(image)
    }
}

fn plane_len(image: &Image, i: usize) -> usize {
    let rows = match (image.format, i) {
        (PixelFormat::I420 | PixelFormat::Nv12, 1 | 2) => (image.height as usize).div_ceil(2),
        _ => image.height as usize,
    };
    image.strides[i] * rows
}

/// Copies a camera buffer's planes into `dst`, keeping the camera's strides (so rows need no
/// repacking). False when the buffer is shorter than the layout needs.
pub fn copy_planes(src: &[&[u8]], layout: Layout, dst: &mut Image) -> bool {
    dst.reshape_strided(
        layout.width,
        layout.height,
        layout.format,
        &layout.strides(),
    );
    let planes = dst.planes;
    if src.len() >= planes {
        for (i, plane) in src.iter().enumerate().take(planes) {
            if !copy_prefix(plane, dst.plane_mut(i)) {
                return false;
            }
        }
        true
    } else if let [one] = src {
        // All planes in one buffer plane, one after the other.
        copy_prefix(one, &mut dst.data)
    } else {
        false
    }
}

/// Fills `out` from the start of `src`; false when `src` is too short.
fn copy_prefix(src: &[u8], out: &mut [u8]) -> bool {
    match src.get(..out.len()) {
        Some(data) => {
            out.copy_from_slice(data);
            true
        }
        None => false,
    }
}

/// `dst` becomes a copy of `src`, reusing its allocation (the derived `clone_from` would not).
pub fn copy_image(src: &Image, dst: &mut Image) {
    dst.reshape_strided(
        src.width,
        src.height,
        src.format,
        &src.strides[..src.planes],
    );
    dst.data.copy_from_slice(&src.data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::{AsFd, OwnedFd};

    fn mapping(bytes: &[u8]) -> Arc<Mapping> {
        let fd = nix::sys::memfd::memfd_create(c"picker-test", nix::sys::memfd::MFdFlags::empty())
            .unwrap();
        let mut f = std::fs::File::from(fd);
        f.write_all(bytes).unwrap();
        let fd = OwnedFd::from(f);
        // SAFETY: this test's memfd, written before and never after.
        Arc::new(unsafe { Mapping::new(fd.as_fd(), bytes.len()) }.unwrap())
    }

    fn lease() -> Lease {
        Arc::new(())
    }

    #[test]
    fn plane_layouts_for_import() {
        // The Pi's 512x512 outputs: YUV420 with a 512 stride, RGB888 at 1536.
        let yuv = Layout {
            width: 512,
            height: 512,
            format: PixelFormat::I420,
            stride: 512,
        };
        assert_eq!(
            yuv.planes(),
            vec![(0, 262_144), (262_144, 65_536), (327_680, 65_536)]
        );
        assert_eq!(yuv.buffer_len(0), 393_216);
        assert_eq!(yuv.buffer_len(400_000), 400_000);
        let rgb = Layout {
            width: 512,
            height: 512,
            format: PixelFormat::Bgr24,
            stride: 1536,
        };
        assert_eq!(rgb.planes(), vec![(0, 786_432)]);
        // The virtual camera's NV12, odd height: chroma rows round up.
        let nv12 = Layout {
            width: 6,
            height: 5,
            format: PixelFormat::Nv12,
            stride: 8,
        };
        assert_eq!(nv12.planes(), vec![(0, 40), (40, 24)]);
    }

    #[test]
    fn a_lent_image_reads_the_buffer_in_place() {
        // NV12 4x2, stride 8, planes at 0 and 16 of one buffer.
        let bytes: Vec<u8> = (0..32u8).collect();
        let m = mapping(&bytes);
        let layout = Layout {
            width: 4,
            height: 2,
            format: PixelFormat::Nv12,
            stride: 8,
        };
        let mapped = Mapped {
            planes: vec![(m.clone(), 0, 16), (m.clone(), 16, 8)],
        };
        let img = mapped.lend(layout, &lease()).expect("lendable");
        assert!(img.data.is_lent());
        assert_eq!(img.plane(0), &bytes[..16]);
        assert_eq!(img.plane(1), &bytes[16..24]);
        // The same data through the copy path.
        assert_eq!(mapped.slices().unwrap(), vec![&bytes[..16], &bytes[16..24]]);
        assert_eq!(mapped.mappings().len(), 1);
    }

    #[test]
    fn all_planes_in_one_buffer_plane_and_at_an_offset() {
        // I420 4x2 stride 4 after 8 bytes of something else: Y 8, U 2, V 2.
        let bytes: Vec<u8> = (0..20u8).collect();
        let m = mapping(&bytes);
        let layout = Layout {
            width: 4,
            height: 2,
            format: PixelFormat::I420,
            stride: 4,
        };
        let mapped = Mapped {
            planes: vec![(m, 8, 12)],
        };
        let img = mapped.lend(layout, &lease()).expect("lendable");
        assert_eq!(img.plane(0), &bytes[8..16]);
        assert_eq!(img.plane(1), &bytes[16..18]);
        assert_eq!(img.plane(2), &bytes[18..20]);
    }

    #[test]
    fn buffers_that_cannot_be_lent_are_refused_not_misread() {
        let layout = Layout {
            width: 4,
            height: 2,
            format: PixelFormat::Nv12,
            stride: 8,
        };
        let a = mapping(&[0; 16]);
        let b = mapping(&[0; 8]);
        // Planes in two buffers: copied instead.
        let split = Mapped {
            planes: vec![(a.clone(), 0, 16), (b, 0, 8)],
        };
        assert!(split.lend(layout, &lease()).is_none());
        assert_eq!(split.mappings().len(), 2);
        // A buffer too short for the layout.
        let short = Mapped {
            planes: vec![(a.clone(), 0, 16), (a.clone(), 12, 8)],
        };
        assert!(short.lend(layout, &lease()).is_none());
        assert!(short.slices().is_none());
        // No planes at all.
        assert!(Mapped { planes: vec![] }.lend(layout, &lease()).is_none());
    }

    #[test]
    fn the_lease_lives_as_long_as_any_image_of_it() {
        let m = mapping(&[7; 48]);
        let layout = Layout {
            width: 4,
            height: 4,
            format: PixelFormat::Rgb24,
            stride: 12,
        };
        let lease: Lease = Arc::new(());
        let img = Mapped {
            planes: vec![(m, 0, 48)],
        }
        .lend(layout, &lease)
        .unwrap();
        let copy = img.clone();
        drop(img);
        assert_eq!(Arc::strong_count(&lease), 2, "the clone still holds it");
        let owned = copy.to_owned_image();
        drop(copy);
        assert_eq!(Arc::strong_count(&lease), 1, "an owned copy holds nothing");
        assert!(owned.data.iter().all(|b| *b == 7));
    }

    #[test]
    fn recorded_streams_fit_the_frame_size_libcamera_reported() {
        // `picker probe` records each configured stream's size, format, stride and
        // libcamera's frame size (tests/fixtures/cameras/). The planes laid out from the first
        // three fit in the last, which is then the length of a buffer picker allocates: the
        // buffer libcamera would have handed out itself.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cameras");
        let formats = [
            PixelFormat::I420,
            PixelFormat::Nv12,
            PixelFormat::Yuyv,
            PixelFormat::Rgb24,
            PixelFormat::Bgr24,
        ];
        let mut streams = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let f: crate::camera::fixture::Fixture =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for s in &f.streams {
                let at = format!("{} {} stream", path.display(), s.role);
                let format = formats
                    .into_iter()
                    .find(|p| format!("{p:?}") == s.format)
                    .unwrap_or_else(|| panic!("{at}: format {}", s.format));
                let layout = Layout {
                    width: s.size.0,
                    height: s.size.1,
                    format,
                    stride: s.stride,
                };
                let (offset, len) = *layout.planes().last().unwrap();
                assert!(offset + len <= s.frame_size, "{at}: {layout:?}");
                assert_eq!(layout.buffer_len(s.frame_size), s.frame_size, "{at}");
                streams += 1;
            }
        }
        // The virtual camera's two NV12 streams (512x512, stride 512: 393216 bytes), at least.
        assert!(streams >= 2, "{streams} recorded streams");
    }

    // Moved from libcamera/buffers.rs, where they ran only in a build with libcamera.
    #[test]
    fn nv12_planes_are_copied_with_their_stride() {
        let (w, h, stride) = (6u32, 4u32, 8usize);
        let y: Vec<u8> = (0..stride * 4).map(|i| i as u8).collect();
        let uv: Vec<u8> = (0..stride * 2).map(|i| 100 + i as u8).collect();
        let mut img = Image::new(0, 0, PixelFormat::I420);
        let layout = Layout {
            width: w,
            height: h,
            format: PixelFormat::Nv12,
            stride,
        };
        assert!(copy_planes(&[&y, &uv], layout, &mut img));
        assert_eq!(img.format, PixelFormat::Nv12);
        assert_eq!(img.strides[..2], [8, 8]);
        assert_eq!(img.plane(0), &y[..]);
        assert_eq!(img.plane(1), &uv[..]);
        // A plane far too short is refused.
        assert!(!copy_planes(&[&y[..8], &uv], layout, &mut img));
    }

    #[test]
    fn i420_in_one_buffer_plane_and_chroma_at_half_stride() {
        let (w, h, stride) = (4u32, 2u32, 4usize);
        let all: Vec<u8> = (0..(4 * 2 + 2 + 2)).map(|i| i as u8).collect();
        let mut img = Image::new(0, 0, PixelFormat::I420);
        let layout = Layout {
            width: w,
            height: h,
            format: PixelFormat::I420,
            stride,
        };
        assert!(copy_planes(&[&all], layout, &mut img));
        assert_eq!(img.strides, [4, 2, 2]);
        assert_eq!(img.plane(0), &all[..8]);
        assert_eq!(img.plane(1), &all[8..10]);
        assert_eq!(img.plane(2), &all[10..12]);
    }

    #[test]
    fn one_stream_still_is_a_copy_without_reallocation() {
        let mut video = Image::new(0, 0, PixelFormat::Nv12);
        video.reshape_strided(4, 2, PixelFormat::Nv12, &[8, 8]);
        video
            .data
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        let mut still = Image::new(4, 2, PixelFormat::Rgb24);
        if let crate::frames::Pixels::Owned(v) = &mut still.data {
            v.reserve(1024);
        }
        let ptr = still.data.as_ptr();
        copy_image(&video, &mut still);
        assert_eq!(still.format, PixelFormat::Nv12);
        assert_eq!(still.strides, video.strides);
        assert_eq!(still.data, video.data);
        assert_eq!(still.data.as_ptr(), ptr);
    }
}
