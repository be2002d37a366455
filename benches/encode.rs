//! Encode cost: one 512x512 4:2:0 test-pattern frame at quality 80 through our path
//! (`picker::jpeg::Compressor::compress` on the I420 `Image` the camera publishes), beside
//! libjpeg-turbo's own floor: the same planes through a bare `tjCompressFromYUVPlanes` call
//! (same flags: fast DCT, no realloc), and Debian's `tjbench` ("Comp from YUV") on the same
//! picture as a PPM. Times are medians of single encodes, the two in-process paths
//! interleaved in blocks so that machine noise hits both alike.
//!
//! For instruction counts (deterministic, unlike wall time on a shared machine):
//! `--only ours|direct --iters N` encodes N times and exits; `benches/run.sh` runs that under
//! `valgrind --tool=callgrind` for two values of N and divides the difference.
//!
//! cargo bench --bench encode -- --blocks 20 --per-block 100

#[path = "common/mod.rs"]
mod common;

use std::os::raw::{c_int, c_ulong};
use std::time::Instant;

use common::{Args, median_f64};
use picker::frames::Image;
use turbojpeg_sys as tj;

const QUALITY: u8 = 80;

fn main() {
    let args = Args::parse();
    let frame = common::test_frame();
    let image = &frame.video;
    let mut ours = picker::jpeg::Compressor::new().unwrap();
    let mut direct = Direct::new(image);

    if let Some(only) = args.value("--only") {
        let iters: usize = args.get("--iters", 100);
        let mut total = 0usize;
        for _ in 0..iters {
            total += match only {
                "ours" => ours.compress(image, QUALITY).unwrap().len(),
                "direct" => direct.compress(image),
                other => panic!("--only ours|direct, not {other}"),
            };
        }
        println!("{only}: {iters} encodes, {total} bytes");
        return;
    }

    let blocks: usize = args.get("--blocks", 20);
    let per_block: usize = args.get("--per-block", 100);
    let ours_len = ours.compress(image, QUALITY).unwrap().len();
    let direct_len = direct.compress(image);
    assert_eq!(
        ours_len, direct_len,
        "both paths must produce the same JPEG"
    );
    let mut t_ours = Vec::new();
    let mut t_direct = Vec::new();
    let mut t_tjbench = Vec::new();
    for block in 0..blocks {
        // tjbench in between, a few times, so that it sees the same machine weather.
        if block % (blocks / 4).max(1) == 0 {
            t_tjbench.extend(tjbench(&frame.still));
        }
        for _ in 0..per_block {
            let t = Instant::now();
            std::hint::black_box(ours.compress(image, QUALITY).unwrap());
            t_ours.push(t.elapsed().as_secs_f64() * 1e3);
        }
        for _ in 0..per_block {
            let t = Instant::now();
            std::hint::black_box(direct.compress(image));
            t_direct.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (m_ours, m_direct) = (median_f64(&t_ours), median_f64(&t_direct));
    let tjbench = (!t_tjbench.is_empty()).then(|| median_f64(&t_tjbench));
    println!(
        "# encode 512x512 I420 -> JPEG 4:2:0 q{QUALITY} (fast DCT), {} encodes per path, {ours_len} bytes",
        blocks * per_block
    );
    println!("| path | median ms per frame | ratio to bare tjCompressFromYUVPlanes |");
    println!("|---|---|---|");
    println!(
        "| picker::jpeg::Compressor::compress | {m_ours:.3} | {:.3} |",
        m_ours / m_direct
    );
    println!("| bare tjCompressFromYUVPlanes (same planes, same flags) | {m_direct:.3} | 1.000 |");
    match tjbench {
        Some(ms) => println!(
            "| tjbench -yuv -fastdct -subsamp 420 (Comp from YUV, same picture; median of {} runs) | {ms:.3} | {:.3} |",
            t_tjbench.len(),
            ms / m_direct
        ),
        None => println!("| tjbench | not available (apt-get install libjpeg-turbo-progs) | |"),
    }
}

/// libjpeg-turbo with nothing of ours in between.
struct Direct {
    handle: tj::tjhandle,
    out: Vec<u8>,
}

impl Direct {
    fn new(image: &Image) -> Self {
        // SAFETY: plain constructor and size query.
        let handle = unsafe { tj::tjInitCompress() };
        assert!(!handle.is_null());
        let size = unsafe {
            tj::tjBufSize(
                image.width as c_int,
                image.height as c_int,
                tj::TJSAMP_TJSAMP_420 as c_int,
            )
        };
        Direct {
            handle,
            out: vec![0; size as usize],
        }
    }

    fn compress(&mut self, image: &Image) -> usize {
        let mut planes = [0, 1, 2].map(|i| image.data[image.offsets[i]..].as_ptr());
        let strides = image.strides.map(|s| s as c_int);
        let mut out = self.out.as_mut_ptr();
        let mut size = self.out.len() as c_ulong;
        // SAFETY: an I420 image from the test pattern: planes hold height (or height / 2)
        // rows of their stride; the output buffer is tjBufSize bytes and NOREALLOC is set.
        let rc = unsafe {
            tj::tjCompressFromYUVPlanes(
                self.handle,
                planes.as_mut_ptr(),
                image.width as c_int,
                strides.as_ptr(),
                image.height as c_int,
                tj::TJSAMP_TJSAMP_420 as c_int,
                &mut out,
                &mut size,
                c_int::from(QUALITY),
                (tj::TJFLAG_NOREALLOC | tj::TJFLAG_FASTDCT) as c_int,
            )
        };
        assert_eq!(rc, 0);
        size as usize
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        // SAFETY: created by tjInitCompress, destroyed once.
        unsafe { tj::tjDestroy(self.handle) };
    }
}

/// tjbench's "Comp from YUV" time per frame in ms, on the still image (same picture, RGB) as
/// a PPM; tjbench converts it to 4:2:0 planes first and times compression from them alone.
fn tjbench(still: &Image) -> Option<f64> {
    let dir = tempfile::tempdir().ok()?;
    let ppm = dir.path().join("frame.ppm");
    let (w, h) = (still.width as usize, still.height as usize);
    let mut data = format!("P6\n{w} {h}\n255\n").into_bytes();
    for row in 0..h {
        data.extend_from_slice(&still.data[still.offsets[0] + row * still.strides[0]..][..w * 3]);
    }
    std::fs::write(&ppm, data).ok()?;
    let out = std::process::Command::new("tjbench")
        .arg(&ppm)
        .arg(QUALITY.to_string())
        .args([
            "-rgb",
            "-subsamp",
            "420",
            "-yuv",
            "-fastdct",
            "-componly",
            "-nowrite",
        ])
        .args(["-benchtime", "2", "-warmup", "0.5"])
        .current_dir(dir.path())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Comp from YUV --> Frame rate:"))?
        .trim()
        .trim_end_matches("fps")
        .trim()
        .parse()
        .ok()?;
    Some(1e3 / fps)
}
