//! The stream encoder: turns the latest video frame into a ready-to-send MJPEG part, but
//! only while somebody watches.
//!
//! It runs on its own thread (encoding is CPU work that must not stall the async runtime)
//! and hands each part to [`publish`], a task on the runtime that puts it into the `watch`
//! channel the stream clients read: every client sends the same bytes, and a client that is
//! busy simply picks up whatever part is current when it is ready again.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::watch;

use crate::frames::{Frame, FrameSink};
use crate::jpeg::Compressor;

/// The multipart boundary of `/stream.mjpg`.
pub const BOUNDARY: &str = "picker-frame";

/// One encoded video frame.
#[derive(Debug)]
pub struct EncodedFrame {
    /// The camera frame's sequence; 0 for the "camera offline" picture (see `offline::run`).
    pub sequence: u64,
    /// A complete multipart part: headers, the JPEG, and the boundary that closes it.
    /// The boundary comes right after the JPEG so browsers show a frame as soon as it
    /// arrives, not when the next one starts.
    pub part: Bytes,
    /// The JPEG alone (a slice of `part`).
    pub jpeg: Bytes,
}

impl EncodedFrame {
    /// The "camera offline" picture rather than a camera frame.
    pub fn is_offline_picture(&self) -> bool {
        self.sequence == 0
    }
}

/// Counts who needs JPEGs; the encoder sleeps while this is zero.
#[derive(Clone)]
pub struct Demand(Arc<watch::Sender<usize>>);

/// Held by each stream client; dropping it releases the demand.
pub struct DemandGuard(Demand);

impl Demand {
    pub fn new() -> Self {
        Demand(Arc::new(watch::channel(0).0))
    }

    pub fn hold(&self) -> DemandGuard {
        self.0.send_modify(|n| *n += 1);
        DemandGuard(self.clone())
    }

    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
    }

    /// How many hold it now.
    pub fn count(&self) -> usize {
        *self.0.borrow()
    }
}

impl Default for Demand {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DemandGuard {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n -= 1);
    }
}

/// What a part says about its frame besides the JPEG.
#[derive(Clone, Copy, Debug)]
pub struct PartStamp {
    /// `X-Sequence`: the camera's frame count.
    pub sequence: u64,
    /// `X-Timestamp-Ns`: capture time on CLOCK_BOOTTIME, the clock of the stills' header,
    /// so a stream frame and a still can be compared.
    pub timestamp_ns: u64,
    /// `X-Timestamp`: capture time as Unix seconds with microseconds, the de-facto format
    /// of mjpg-streamer and ustreamer that clients already parse.
    pub unix_us: u64,
    /// The "camera offline" picture rather than a camera frame (`X-Camera: offline`; the
    /// times are then when it was sent).
    pub offline: bool,
}

impl PartStamp {
    /// `X-Timestamp`'s value: Unix seconds, a dot, six digits of microseconds.
    pub fn unix_time(&self) -> String {
        format!(
            "{}.{:06}",
            self.unix_us / 1_000_000,
            self.unix_us % 1_000_000
        )
    }

    pub fn of(frame: &Frame) -> Self {
        PartStamp {
            sequence: frame.sequence,
            timestamp_ns: frame.timestamp_ns,
            unix_us: frame.unix_us,
            offline: false,
        }
    }
}

/// Builds the multipart part for one JPEG.
pub fn part(jpeg: &[u8], stamp: PartStamp) -> (Bytes, Bytes) {
    let mut buf = BytesMut::with_capacity(jpeg.len() + 200);
    let head = format!(
        "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {}\r\n\
         X-Timestamp-Ns: {}\r\nX-Sequence: {}\r\n{}\r\n",
        jpeg.len(),
        stamp.unix_time(),
        stamp.timestamp_ns,
        stamp.sequence,
        if stamp.offline {
            "X-Camera: offline\r\n"
        } else {
            ""
        },
    );
    buf.put_slice(head.as_bytes());
    buf.put_slice(jpeg);
    buf.put_slice(b"\r\n--");
    buf.put_slice(BOUNDARY.as_bytes());
    buf.put_slice(b"\r\n");
    let part = buf.freeze();
    let jpeg = part.slice(head.len()..head.len() + jpeg.len());
    (part, jpeg)
}

/// What ends a stream body at shutdown: the latest part again, its boundary made the closing
/// one (`--picker-frame--`), then an epilogue of one `Content-Type: image/jpeg` line.
///
/// Why this shape (measured with ffmpeg 5.1, mpv 0.35, aiohttp 3.8 and GStreamer 1.22 against
/// a control server): every part already ends with its boundary, so the body cannot simply
/// close. libavformat's MJPEG demuxer (ffmpeg, mpv) takes any line starting with the boundary
/// as the next part's start, wants a `Content-Type: image/jpeg` header after it and only
/// accepts the end of input where that part's body starts; an empty part or a bare closing
/// boundary is "Invalid data found", an empty JPEG part a "Packet corrupt" warning. aiohttp
/// wants the closing boundary after a well-formed part (a bare one is "Reading after EOF").
/// A real JPEG part then the closing boundary satisfies aiohttp and GStreamer (end of
/// stream); MIME parsers ignore the epilogue after it, which is the header libavformat
/// wants before it meets the end of input. The repeated part costs a client one duplicate
/// frame (same `X-Sequence`). With no part yet, an empty part closes the body as RFC 2046
/// has it.
pub fn closing(latest: Option<&EncodedFrame>) -> Bytes {
    const EPILOGUE: &[u8] = b"--\r\nContent-Type: image/jpeg\r\n\r\n";
    let mut out = BytesMut::new();
    match latest {
        // The part ends with "\r\n--picker-frame\r\n": keep all but its last CRLF.
        Some(f) => out.put_slice(&f.part[..f.part.len() - 2]),
        None => {
            out.put_slice(b"\r\n\r\n--");
            out.put_slice(BOUNDARY.as_bytes());
        }
    }
    out.put_slice(EPILOGUE);
    out.freeze()
}

/// Forwards the encoder thread's parts to the stream clients until `shutdown` fires or the
/// encoder is gone; then drops `out`, which ends every stream body.
///
/// Why a hop through the runtime: publishing wakes every client task. Woken from the encoder
/// thread, each wake goes through the runtime's shared injection queue (a lock, and often a
/// worker unpark, per client); woken from a task on a worker, they go to that worker's local
/// run queue, and the other worker steals its share. One cross-thread wake per frame instead
/// of one per client and frame.
///
/// `offline` carries the "camera offline" frames (see `offline::run`), forwarded the same way.
pub async fn publish(
    mut parts: watch::Receiver<Option<Arc<EncodedFrame>>>,
    mut offline: watch::Receiver<Option<Arc<EncodedFrame>>>,
    out: watch::Sender<Option<Arc<EncodedFrame>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let part = tokio::select! {
            r = parts.changed() => {
                if r.is_err() { break }
                parts.borrow_and_update().clone()
            }
            Ok(()) = offline.changed() => offline.borrow_and_update().clone(),
            _ = shutdown.wait_for(|s| *s) => break,
        };
        out.send_replace(part);
    }
}

/// Runs the encoder on `sink`'s frames until the camera side is gone or `shutdown` fires.
/// `stall_limit`: how old the newest frame may be for the camera to count as online.
/// Blocking: call on a dedicated thread.
pub fn run(
    runtime: tokio::runtime::Handle,
    sink: Arc<FrameSink>,
    stall_limit: std::time::Duration,
    mut demand: watch::Receiver<usize>,
    out: watch::Sender<Option<Arc<EncodedFrame>>>,
    // Read per frame: a config reload (SIGHUP) changes it while we run.
    quality: Arc<std::sync::atomic::AtomicU8>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut frames = sink.subscribe();
    let stats = sink.stats().clone();
    let mut compressor = match Compressor::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("stream encoder unavailable: {e}");
            return;
        }
    };
    // Sequence of the last frame encoded during the current watching period (0 = none), to
    // count frames skipped while clients wait.
    let mut last: u64 = 0;
    loop {
        let next = runtime.block_on(async {
            if *demand.borrow_and_update() == 0 {
                last = 0;
                tokio::select! {
                    r = demand.wait_for(|n| *n > 0) => r.ok()?,
                    _ = shutdown.wait_for(|s| *s) => return None,
                };
                // Start from the newest frame at once instead of waiting for the next, unless
                // the camera is offline: that frame is then seconds or hours old, and a client
                // taking one frame (a grab, a dashboard's still) would keep it as the current
                // picture. Such clients get the offline picture (`offline::run`); this waits
                // for a frame captured from now on.
                if sink.online(stall_limit) {
                    frames.mark_changed();
                } else {
                    frames.mark_unchanged();
                }
            }
            tokio::select! {
                r = frames.changed() => { r.ok()?; }
                // Back to the top (to sleep, if nobody watches any more), without a frame: a
                // viewer coming or going is no new frame, and while the camera is offline the
                // newest one is stale (encoded here, it went to every watcher as a jump back).
                _ = demand.changed() => return Some(None),
                _ = shutdown.wait_for(|s| *s) => return None,
            }
            Some(Frame::consume(&frames.borrow_and_update()))
        });
        let Some(frame) = next else { return };
        let Some(frame) = frame else { continue };
        if last != 0 && frame.sequence > last + 1 {
            stats
                .dropped
                .fetch_add(frame.sequence - last - 1, Ordering::Relaxed);
        }
        if frame.sequence == last {
            continue;
        }
        last = frame.sequence;
        let started = std::time::Instant::now();
        // Straight from the camera's buffer when it lent it: the encoder's read is the only one.
        let encoded = compressor.compress(&frame.video, quality.load(Ordering::Relaxed));
        stats.encode_us.observe_since(started);
        match encoded {
            Ok(jpeg) => {
                let (part, jpeg) = part(jpeg, PartStamp::of(&frame));
                stats.encoded.fetch_add(1, Ordering::Relaxed);
                out.send_replace(Some(Arc::new(EncodedFrame {
                    sequence: frame.sequence,
                    part,
                    jpeg,
                })));
                // Let a lent buffer go back to the camera now, not when the next frame comes.
                drop(frame);
            }
            Err(e) => tracing::warn!(sequence = frame.sequence, "cannot encode frame: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: PartStamp = PartStamp {
        sequence: 17,
        timestamp_ns: 123_456_789_012,
        unix_us: 1_700_000_000_000_042,
        offline: false,
    };

    #[test]
    fn part_has_headers_jpeg_and_closing_boundary() {
        let stamp = STAMP;
        let (part, jpeg) = part(b"\xff\xd8abc\xff\xd9", stamp);
        let text = String::from_utf8_lossy(&part);
        assert!(text.starts_with("Content-Type: image/jpeg\r\nContent-Length: 7\r\n"));
        assert!(text.contains("X-Timestamp: 1700000000.000042\r\n"));
        assert!(text.contains("X-Timestamp-Ns: 123456789012\r\n"));
        assert!(text.contains("X-Sequence: 17\r\n\r\n"));
        assert!(part.ends_with(b"\xff\xd9\r\n--picker-frame\r\n"));
        assert_eq!(&jpeg[..], b"\xff\xd8abc\xff\xd9");
        let (offline, _) = super::part(
            b"x",
            PartStamp {
                offline: true,
                ..stamp
            },
        );
        assert!(
            String::from_utf8_lossy(&offline)
                .contains("X-Sequence: 17\r\nX-Camera: offline\r\n\r\n")
        );
    }

    #[test]
    fn closing_repeats_the_latest_part_with_the_closing_boundary_and_the_epilogue() {
        let (part, jpeg) = part(b"\xff\xd8x\xff\xd9", STAMP);
        let latest = EncodedFrame {
            sequence: 17,
            part: part.clone(),
            jpeg,
        };
        let end = closing(Some(&latest));
        // The same head and JPEG, then the closing delimiter in place of the boundary.
        assert_eq!(&end[..part.len() - 2], &part[..part.len() - 2]);
        assert!(
            end.ends_with(b"\xff\xd9\r\n--picker-frame--\r\nContent-Type: image/jpeg\r\n\r\n"),
            "{end:?}"
        );
        // No part yet: an empty part (no headers) and the closing delimiter.
        assert_eq!(
            &closing(None)[..],
            b"\r\n\r\n--picker-frame--\r\nContent-Type: image/jpeg\r\n\r\n"
        );
    }

    #[test]
    fn demand_counts_guards() {
        let d = Demand::new();
        let rx = d.subscribe();
        let a = d.hold();
        let b = d.hold();
        assert_eq!(*rx.borrow(), 2);
        drop(a);
        drop(b);
        assert_eq!(*rx.borrow(), 0);
    }
}
