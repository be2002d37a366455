//! The "camera offline" picture: while the camera delivers nothing, stream clients stay
//! connected and are sent this frame once a second, so a browser's `<img>` (which never
//! reconnects by itself) shows why it is frozen and picks the live picture up again as soon
//! as frames return, without a reload.
//!
//! The picture is rendered here (dark grey, the words CAMERA OFFLINE in a small bitmap font
//! drawn by hand: ten letters do not justify a font-rendering crate) at the stream's size,
//! and encoded once at start.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::encoder::{EncodedFrame, PartStamp};
use crate::frames::{FrameSink, Image, PixelFormat};

/// How often an offline frame is sent.
pub const PERIOD: Duration = Duration::from_secs(1);

/// 5x7 glyphs, one row per byte, bit 4 the leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'C' => [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e],
        'E' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f],
        'F' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10],
        'I' => [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f],
        'M' => [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11],
        'O' => [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        _ => [0; 7],
    }
}

/// The offline picture as an I420 image of `width` x `height`: grey, no colour, the text
/// centred as large as fits.
pub fn render(width: u32, height: u32) -> Image {
    let mut image = Image::new(width, height, PixelFormat::I420);
    let (w, h) = (width as usize, height as usize);
    let lines = ["CAMERA", "OFFLINE"];
    // Each glyph is 5 columns plus 1 of spacing; 7 rows plus 3 between the lines.
    let cols = lines.iter().map(|l| l.len() * 6).max().unwrap_or(1);
    let rows = lines.len() * 10;
    let scale = (w / (cols + 2)).min(h / (rows + 2)).max(1);
    let y_stride = image.strides[0];
    let luma = image.plane_mut(0);
    luma.fill(40);
    let top = h.saturating_sub(rows * scale) / 2;
    for (li, line) in lines.iter().enumerate() {
        let left = w.saturating_sub(line.len() * 6 * scale) / 2;
        for (ci, c) in line.chars().enumerate() {
            for (gy, bits) in glyph(c).iter().enumerate() {
                for gx in 0..5 {
                    if bits & (0x10 >> gx) == 0 {
                        continue;
                    }
                    let x0 = left + (ci * 6 + gx) * scale;
                    let y0 = top + (li * 10 + gy) * scale;
                    for y in y0..(y0 + scale).min(h) {
                        let row = &mut luma[y * y_stride..y * y_stride + w];
                        for px in row.iter_mut().take((x0 + scale).min(w)).skip(x0) {
                            *px = 220;
                        }
                    }
                }
            }
        }
    }
    image.plane_mut(1).fill(128);
    image.plane_mut(2).fill(128);
    image
}

/// Whether the offline picture is due now (the camera being offline): on the tick while
/// somebody watches; off the tick (`arrival`: the demand changed) only for the first viewer
/// after nobody watched, who has no picture yet, and only once the camera has delivered a
/// frame (`started`): at start the first frame is usually under a second away, and a viewer
/// connecting then (a player reconnecting to a restarted picker) should not be shown an
/// outage. A publish goes to every watcher, so later arrivals (the stream route sends them
/// the latest picture) must not each cause one.
fn due(arrival: bool, was_watched: bool, watched: bool, started: bool) -> bool {
    watched && (!arrival || (!was_watched && started))
}

/// Publishes the offline frame into `out` once a second while the camera is offline
/// (no frame for `stall_limit`) and somebody watches, and at once when somebody comes while
/// nobody watched (see [`due`]; a client joining a watched outage is sent the latest one at
/// once by the stream route); stops at shutdown.
pub async fn run(
    sink: Arc<FrameSink>,
    stall_limit: Duration,
    jpeg: bytes::Bytes,
    mut demand: watch::Receiver<usize>,
    out: watch::Sender<Option<Arc<EncodedFrame>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watched = false;
    loop {
        let arrival = tokio::select! {
            _ = tick.tick() => false,
            Ok(()) = demand.changed() => true,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let was_watched = std::mem::replace(&mut watched, *demand.borrow_and_update() > 0);
        let started = sink.since_last_frame().is_some();
        if !due(arrival, was_watched, watched, started) || sink.online(stall_limit) {
            continue;
        }
        let (timestamp_ns, unix_us) = crate::frames::now_timestamps();
        let last = sink.subscribe().borrow().as_ref().map_or(0, |f| f.sequence);
        let stamp = PartStamp {
            sequence: last,
            timestamp_ns,
            unix_us,
            offline: true,
        };
        let (part, jpeg) = crate::encoder::part(&jpeg, stamp);
        // Sequence 0: never taken for a camera frame's JPEG by `/snapshot.jpg`.
        out.send_replace(Some(Arc::new(EncodedFrame {
            sequence: 0,
            part,
            jpeg,
        })));
        if arrival {
            // The next one a period after this one, not at the old tick, which may be a few
            // milliseconds away: the first viewer would be sent the picture twice at once.
            tick.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_picture_is_grey_with_light_text_in_the_middle() {
        for (w, h) in [(512, 512), (640, 480), (64, 48), (2, 2)] {
            let img = render(w, h);
            let luma = img.plane(0);
            assert_eq!(luma.len(), (w * h) as usize);
            assert!(luma.iter().all(|&v| v == 40 || v == 220));
            assert!(img.plane(1).iter().chain(img.plane(2)).all(|&v| v == 128));
            if w >= 64 {
                let lit = luma.iter().filter(|&&v| v == 220).count();
                assert!(lit > luma.len() / 50, "{w}x{h}: {lit} lit pixels");
                // Nothing drawn in the corners.
                assert_eq!(luma[0], 40);
                assert_eq!(luma[luma.len() - 1], 40);
            }
        }
    }

    #[test]
    fn due_on_the_tick_while_watched_and_off_it_for_the_first_viewer_only() {
        // (arrival, was watched, watched, started, due)
        let table = [
            (false, true, true, true, true),
            (false, false, true, true, true),
            (false, true, false, true, false),
            (false, false, false, true, false),
            (true, false, true, true, true),
            (true, true, true, true, false),
            (true, true, false, true, false),
            (true, false, false, true, false),
            // Before the first frame: on the tick only.
            (false, true, true, false, true),
            (true, false, true, false, false),
        ];
        for (arrival, was, now, started, want) in table {
            assert_eq!(
                due(arrival, was, now, started),
                want,
                "{arrival} {was} {now} {started}"
            );
        }
    }

    #[test]
    fn the_picture_encodes_as_jpeg() {
        let img = render(512, 512);
        let mut c = crate::jpeg::Compressor::new().unwrap();
        let jpeg = c.compress(&img, 80).unwrap();
        assert!(jpeg.starts_with(&[0xff, 0xd8]));
    }
}
