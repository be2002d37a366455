//! JPEG encoding through libjpeg-turbo's TurboJPEG API.
//!
//! Hand-written over `turbojpeg-sys` 0.2 rather than the `turbojpeg` crate: the crate's safe
//! API (1.x) calls the TurboJPEG 3 functions (`tj3*`), and Debian trixie and Raspberry Pi OS
//! ship libjpeg-turbo 2.1, whose TurboJPEG 2 API (`tjCompressFromYUVPlanes`, `tjCompress2`)
//! is what we link here. Two calls and a handle are all we need.
//!
//! Video frames are compressed straight from their YUV planes (no RGB round trip): I420 as
//! is, NV12 and YUYV after splitting their interleaved chroma into planes.

use std::os::raw::{c_int, c_ulong};

use turbojpeg_sys as tj;

use crate::frames::{Image, PixelFormat};

#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    #[error("libjpeg-turbo: {0}")]
    Turbo(String),
    #[error("cannot create a libjpeg-turbo compressor")]
    Init,
}

/// A TurboJPEG compressor with its reusable output and chroma buffers.
pub struct Compressor {
    handle: tj::tjhandle,
    out: Vec<u8>,
    chroma: Vec<u8>,
}

// The handle is used by one thread at a time (`&mut self`); TurboJPEG handles are not tied
// to the thread that created them.
unsafe impl Send for Compressor {}

impl Drop for Compressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tjInitCompress and is destroyed once.
        unsafe { tj::tjDestroy(self.handle) };
    }
}

impl Compressor {
    pub fn new() -> Result<Self, JpegError> {
        // SAFETY: plain constructor; null means failure.
        let handle = unsafe { tj::tjInitCompress() };
        if handle.is_null() {
            return Err(JpegError::Init);
        }
        Ok(Compressor {
            handle,
            out: Vec::new(),
            chroma: Vec::new(),
        })
    }

    /// Compresses `image` (any [`PixelFormat`]) at `quality`; the JPEG is valid until the
    /// next call.
    pub fn compress(&mut self, image: &Image, quality: u8) -> Result<&[u8], JpegError> {
        match image.format {
            PixelFormat::I420 => {
                let planes = [image.plane(0), image.plane(1), image.plane(2)];
                let strides = [image.strides[0], image.strides[1], image.strides[2]];
                self.compress_planes(image, planes, strides, tj::TJSAMP_TJSAMP_420, quality)
            }
            PixelFormat::Nv12 => {
                let (cw, ch) = (
                    image.width.div_ceil(2) as usize,
                    image.height.div_ceil(2) as usize,
                );
                let mut chroma = std::mem::take(&mut self.chroma);
                chroma.resize(cw * ch * 2, 0);
                let (u, v) = chroma.split_at_mut(cw * ch);
                crate::convert::split_uv(image.plane(1), image.strides[1], cw, ch, u, v);
                let result = self
                    .compress_planes(
                        image,
                        [image.plane(0), u, v],
                        [image.strides[0], cw, cw],
                        tj::TJSAMP_TJSAMP_420,
                        quality,
                    )
                    .map(|jpeg| jpeg.len());
                self.chroma = chroma;
                result.map(|len| &self.out[..len])
            }
            PixelFormat::Yuyv => {
                let (w, h) = (image.width as usize, image.height as usize);
                let cw = w.div_ceil(2);
                let mut chroma = std::mem::take(&mut self.chroma);
                chroma.resize(w * h + cw * h * 2, 0);
                let (y, uv) = chroma.split_at_mut(w * h);
                let (u, v) = uv.split_at_mut(cw * h);
                crate::convert::split_yuyv(image.plane(0), image.strides[0], w, h, y, u, v);
                let result = self
                    .compress_planes(
                        image,
                        [y, u, v],
                        [w, cw, cw],
                        tj::TJSAMP_TJSAMP_422,
                        quality,
                    )
                    .map(|jpeg| jpeg.len());
                self.chroma = chroma;
                result.map(|len| &self.out[..len])
            }
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => {
                let pixel_format = if image.format == PixelFormat::Rgb24 {
                    tj::TJPF_TJPF_RGB
                } else {
                    tj::TJPF_TJPF_BGR
                };
                self.reserve(image, tj::TJSAMP_TJSAMP_420);
                let mut out_ptr = self.out.as_mut_ptr();
                let mut size = self.out.len() as c_ulong;
                // SAFETY: the source covers `height` rows of `stride` bytes (Image keeps its
                // planes in bounds); the output buffer has tjBufSize bytes and NOREALLOC
                // forbids the library from replacing it.
                let rc = unsafe {
                    tj::tjCompress2(
                        self.handle,
                        image.plane(0).as_ptr(),
                        image.width as c_int,
                        image.strides[0] as c_int,
                        image.height as c_int,
                        pixel_format,
                        &mut out_ptr,
                        &mut size,
                        tj::TJSAMP_TJSAMP_420 as c_int,
                        c_int::from(quality),
                        (tj::TJFLAG_NOREALLOC | tj::TJFLAG_FASTDCT) as c_int,
                    )
                };
                self.finish(rc, out_ptr, size)
            }
        }
    }

    fn reserve(&mut self, image: &Image, subsamp: tj::TJSAMP) {
        // SAFETY: pure size computation.
        let need = unsafe {
            tj::tjBufSize(
                image.width as c_int,
                image.height as c_int,
                subsamp as c_int,
            )
        } as usize;
        if self.out.len() < need {
            self.out.resize(need, 0);
        }
    }

    fn compress_planes(
        &mut self,
        image: &Image,
        planes: [&[u8]; 3],
        strides: [usize; 3],
        subsamp: tj::TJSAMP,
        quality: u8,
    ) -> Result<&[u8], JpegError> {
        let (w, h) = (image.width as usize, image.height as usize);
        let chroma_rows = if subsamp == tj::TJSAMP_TJSAMP_420 {
            h.div_ceil(2)
        } else {
            h
        };
        let chroma_width = w.div_ceil(2);
        // TurboJPEG reads `rows * stride` from each plane: check before handing it pointers.
        let fits = |plane: &[u8], stride: usize, rows: usize, width: usize| {
            stride >= width && plane.len() >= stride * (rows - 1) + width
        };
        if w == 0
            || h == 0
            || !fits(planes[0], strides[0], h, w)
            || !fits(planes[1], strides[1], chroma_rows, chroma_width)
            || !fits(planes[2], strides[2], chroma_rows, chroma_width)
        {
            return Err(JpegError::Turbo(format!(
                "{w}x{h} {:?} image has planes too small for its size",
                image.format
            )));
        }
        self.reserve(image, subsamp);
        let mut src = [planes[0].as_ptr(), planes[1].as_ptr(), planes[2].as_ptr()];
        let c_strides = [
            strides[0] as c_int,
            strides[1] as c_int,
            strides[2] as c_int,
        ];
        let mut out_ptr = self.out.as_mut_ptr();
        let mut size = self.out.len() as c_ulong;
        // SAFETY: plane bounds checked above; output as in `compress`.
        let rc = unsafe {
            tj::tjCompressFromYUVPlanes(
                self.handle,
                src.as_mut_ptr(),
                w as c_int,
                c_strides.as_ptr(),
                h as c_int,
                subsamp as c_int,
                &mut out_ptr,
                &mut size,
                c_int::from(quality),
                (tj::TJFLAG_NOREALLOC | tj::TJFLAG_FASTDCT) as c_int,
            )
        };
        self.finish(rc, out_ptr, size)
    }

    fn finish(&mut self, rc: c_int, out_ptr: *mut u8, size: c_ulong) -> Result<&[u8], JpegError> {
        if rc != 0 {
            // SAFETY: returns a pointer to a static or per-handle NUL-terminated string.
            let msg = unsafe { std::ffi::CStr::from_ptr(tj::tjGetErrorStr2(self.handle)) };
            return Err(JpegError::Turbo(msg.to_string_lossy().into_owned()));
        }
        debug_assert_eq!(out_ptr, self.out.as_mut_ptr());
        Ok(&self.out[..size as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(jpeg: &[u8]) -> (u16, u16, Vec<u8>) {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let pixels = d.decode().expect("decodes");
        let info = d.info().unwrap();
        (info.width, info.height, pixels)
    }

    fn solid(format: PixelFormat, rgb: [u8; 3]) -> Image {
        let mut img = Image::new(64, 48, PixelFormat::Rgb24);
        for px in img.data.chunks_mut(3) {
            px.copy_from_slice(&rgb);
        }
        let mut out = Image::new(64, 48, format);
        crate::convert::from_rgb(&img, &mut out);
        out
    }

    #[test]
    fn every_format_encodes_to_the_right_colour() {
        let mut c = Compressor::new().unwrap();
        for format in [
            PixelFormat::I420,
            PixelFormat::Nv12,
            PixelFormat::Yuyv,
            PixelFormat::Rgb24,
            PixelFormat::Bgr24,
        ] {
            let img = solid(format, [200, 40, 90]);
            let jpeg = c.compress(&img, 90).unwrap().to_vec();
            let (w, h, px) = decode(&jpeg);
            assert_eq!((w, h), (64, 48), "{format:?}");
            let mid = (24 * 64 + 32) * 3;
            for (got, want) in px[mid..mid + 3].iter().zip([200u8, 40, 90]) {
                assert!(
                    got.abs_diff(want) <= 6,
                    "{format:?}: {:?}",
                    &px[mid..mid + 3]
                );
            }
        }
    }

    #[test]
    fn strided_planes_are_honoured() {
        let mut img = Image::new(64, 48, PixelFormat::Rgb24);
        img.reshape_strided(64, 48, PixelFormat::Rgb24, &[256]);
        for row in img.data.chunks_mut(256) {
            for px in row[..192].chunks_mut(3) {
                px.copy_from_slice(&[10, 220, 30]);
            }
            row[192..].fill(255);
        }
        let mut c = Compressor::new().unwrap();
        let (_, _, px) = decode(c.compress(&img, 90).unwrap());
        assert!(
            px[189..192]
                .iter()
                .zip([10u8, 220, 30])
                .all(|(a, b)| a.abs_diff(b) <= 6)
        );
    }

    #[test]
    fn short_planes_are_an_error_not_a_read_overrun() {
        let mut img = Image::new(64, 48, PixelFormat::I420);
        img.data.truncate(100);
        let mut c = Compressor::new().unwrap();
        assert!(c.compress(&img, 80).is_err());
    }
}
