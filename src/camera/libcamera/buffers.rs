//! Frame buffers: where the pixels live and how they get out. Picker prefers its own buffers
//! from a cached DMA heap, imported into libcamera (a Pi's driver buffers are uncached, so
//! reading them in place is slow); the driver's own buffers are the fallback, their descriptors
//! duplicated so every request holds the same buffer type. When a frame cannot be lent in place,
//! its planes are copied out with the camera's strides. The layouts themselves are pure and
//! tested without libcamera in [`crate::camera::buffers`].

use std::sync::Arc;

use libcamera::camera::ActiveCamera;
use libcamera::framebuffer::{AsFrameBuffer, FrameBufferPlane, OwnedFrameBuffer};
use libcamera::framebuffer_allocator::{FrameBuffer, FrameBufferAllocator};
use libcamera::stream::Stream;

use super::negotiate::{Negotiated, Streams};
use super::{BUFFERS, failed};
use crate::camera::buffers::{Layout, Mapped};
use crate::camera::{BufferSource, CameraError};
use crate::config::Buffers;
use crate::dmabuf::{self, Heap, Mapping};

/// One stream's buffer of one request: as handed to libcamera, and mapped for picker's reads.
type Buffer = (OwnedFrameBuffer, Mapped);

/// The buffers of one request: video, and still when the camera gives two streams.
pub(super) type Set = (Buffer, Option<Buffer>);

/// Every request's buffers, and what must outlive them.
pub(super) struct Allocated {
    pub(super) sets: Vec<Set>,
    /// The driver's buffers, when those are used (their descriptors are imported, duplicated).
    pub(super) driver_buffers: Vec<FrameBuffer>,
    pub(super) alloc: FrameBufferAllocator,
    /// Frames may be lent: buffers from a cached heap, or a camera without an ISP.
    pub(super) lend_ok: bool,
    /// Heap or driver.
    pub(super) source: BufferSource,
}

/// Buffers: from a cached DMA heap where there is one, else the driver's; mapped once
/// (shared with the frames that lend them); one request per buffer pair, reused forever.
pub(super) fn allocate(
    active: &ActiveCamera<'_>,
    choice: Buffers,
    neg: &Negotiated,
    streams: &Streams,
    id: &str,
) -> Result<Allocated, CameraError> {
    let counts = |i: usize| {
        let c = neg.config.get(i).expect("stream exists");
        (c.get_buffer_count() as usize, c.get_frame_size() as usize)
    };
    let (video_count, video_frame_size) = counts(neg.video);
    let (still_count, still_frame_size) = if neg.still != neg.video {
        counts(neg.still)
    } else {
        (video_count, 0)
    };
    // What the camera settled on; picker's own (heap) buffers are never fewer than BUFFERS
    // (the virtual camera says 4 whatever it is asked): requests beyond those the camera
    // needs are what can be lent without starving it.
    let count = video_count.min(still_count).max(1);
    let heap_count = count.max(BUFFERS as usize);
    let mut alloc = FrameBufferAllocator::new(active);
    let mut driver_buffers: Vec<FrameBuffer> = Vec::new();
    let frame_sizes = (video_frame_size, still_frame_size);
    let from_heap = from_heap(choice, neg.has_sensor, heap_count, frame_sizes, streams, id);
    let lend_ok = from_heap.is_some() || !neg.has_sensor;
    let source = if from_heap.is_some() {
        BufferSource::Heap
    } else {
        BufferSource::Driver
    };
    if !lend_ok {
        tracing::warn!(camera = %id, "the driver's buffers are uncached: each frame is copied out once instead of read in place");
    }
    let sets = match from_heap {
        Some(sets) => sets,
        None => from_driver(&mut alloc, streams, &mut driver_buffers, id)?,
    };
    Ok(Allocated {
        sets,
        driver_buffers,
        alloc,
        lend_ok,
        source,
    })
}

/// `count` sets from the first DMA heap there is (the contiguous ones only behind a sensor),
/// or `None`, said in the log, when the config or the machine says the driver's.
fn from_heap(
    choice: Buffers,
    has_sensor: bool,
    count: usize,
    (video_frame_size, still_frame_size): (usize, usize),
    streams: &Streams,
    id: &str,
) -> Option<Vec<Set>> {
    let heaps: &[&str] = if has_sensor {
        &dmabuf::CONTIGUOUS_HEAPS
    } else {
        &[
            dmabuf::CONTIGUOUS_HEAPS[0],
            dmabuf::CONTIGUOUS_HEAPS[1],
            dmabuf::SYSTEM_HEAP,
        ]
    };
    let heap = match choice {
        Buffers::Auto => Heap::open_first(heaps),
        Buffers::Driver => None,
    };
    match heap {
        Some(heap) => {
            let sets = (0..count)
                .map(|_| {
                    let video = heap_buffer(&heap, streams.video.1, video_frame_size)?;
                    let still = match &streams.still {
                        Some((_, l)) => Some(heap_buffer(&heap, *l, still_frame_size)?),
                        None => None,
                    };
                    Ok::<_, std::io::Error>((video, still))
                })
                .collect::<Result<Vec<_>, _>>();
            match sets {
                Ok(sets) => {
                    tracing::info!(camera = %id, heap = %heap.path().display(), buffers = count, "frame buffers from a cached DMA heap, imported");
                    Some(sets)
                }
                Err(e) => {
                    tracing::warn!(camera = %id, heap = %heap.path().display(), "cannot allocate frame buffers from the DMA heap ({e}): using the driver's buffers");
                    None
                }
            }
        }
        None if choice == Buffers::Driver => {
            tracing::info!(camera = %id, "camera.buffers = \"driver\": using the driver's buffers");
            None
        }
        None => {
            tracing::warn!(camera = %id, "no DMA heap ({}): using the driver's buffers (uncached on a Raspberry Pi: CPU reads are slower)", heaps.join(", "));
            None
        }
    }
}

/// Sets from the driver's own buffers (kept in `driver_buffers`: their descriptors are
/// duplicated into the buffers of the requests); as many as the stream with fewer.
pub(super) fn from_driver(
    alloc: &mut FrameBufferAllocator,
    streams: &Streams,
    driver_buffers: &mut Vec<FrameBuffer>,
    id: &str,
) -> Result<Vec<Set>, CameraError> {
    let mut take = |stream: &Stream| -> Result<Vec<Buffer>, CameraError> {
        let bufs = alloc
            .alloc(stream)
            .map_err(|e| failed(id, format!("allocate buffers: {e}")))?;
        let out = bufs
            .iter()
            .map(|b| driver_buffer(b).map_err(|e| failed(id, format!("map buffer: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        driver_buffers.extend(bufs);
        Ok(out)
    };
    let video_bufs = take(&streams.video.0)?;
    let still_bufs = match &streams.still {
        Some((s, _)) => take(s)?.into_iter().map(Some).collect(),
        None => Vec::new(),
    };
    let mut still_bufs = still_bufs.into_iter();
    let mut sets = Vec::new();
    for v in video_bufs {
        let s = match &streams.still {
            // Fewer still buffers: that many requests.
            Some(_) => match still_bufs.next().flatten() {
                Some(b) => Some(b),
                None => break,
            },
            None => None,
        };
        sets.push((v, s));
    }
    Ok(sets)
}

/// A buffer from a DMA heap for one stream, described to libcamera for import (planes one
/// after the other in one buffer) and mapped for reading.
fn heap_buffer(
    heap: &Heap,
    layout: Layout,
    frame_size: usize,
) -> std::io::Result<(OwnedFrameBuffer, Mapped)> {
    use std::os::fd::AsFd;
    let len = layout.buffer_len(frame_size);
    let fd = heap.alloc(len)?;
    // SAFETY: read only while its request is in hand or lent (LcPipeline::fill, lend).
    let map = Arc::new(unsafe { Mapping::new(fd.as_fd(), len) }?);
    let planes = layout.planes();
    let described = planes
        .iter()
        .map(|&(offset, length)| import_plane(fd.try_clone()?, offset, length))
        .collect::<std::io::Result<Vec<_>>>()?;
    let fb = OwnedFrameBuffer::new(described, None)?;
    let mapped = Mapped {
        planes: planes
            .into_iter()
            .map(|(offset, length)| (map.clone(), offset, length))
            .collect(),
    };
    Ok((fb, mapped))
}

/// One of the driver's buffers: its descriptors duplicated into a buffer to import (so every
/// request has the same buffer type) and mapped for reading, each descriptor once.
fn driver_buffer(b: &FrameBuffer) -> std::io::Result<(OwnedFrameBuffer, Mapped)> {
    use std::os::fd::BorrowedFd;
    let planes: Vec<(i32, usize, usize)> = b
        .planes()
        .into_iter()
        .map(|p| {
            let offset = p.offset().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "plane without an offset")
            })?;
            Ok((p.fd(), offset, p.len()))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut maps: Vec<(i32, Arc<Mapping>)> = Vec::new();
    let mut described = Vec::new();
    let mut mapped = Vec::new();
    for &(fd, offset, len) in &planes {
        if fd < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "plane without a descriptor",
            ));
        }
        // SAFETY: the allocator's buffer `b` owns this open descriptor and outlives this call.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let map = match maps.iter().find(|(f, _)| *f == fd) {
            Some((_, m)) => m.clone(),
            None => {
                let whole = planes
                    .iter()
                    .filter(|(f, ..)| *f == fd)
                    .map(|(_, o, l)| o + l)
                    .max()
                    .unwrap_or(0);
                // SAFETY: read only while its request is in hand or lent.
                let m = Arc::new(unsafe { Mapping::new(borrowed, whole) }?);
                maps.push((fd, m.clone()));
                m
            }
        };
        described.push(import_plane(borrowed.try_clone_to_owned()?, offset, len)?);
        mapped.push((map, offset, len));
    }
    Ok((
        OwnedFrameBuffer::new(described, None)?,
        Mapped { planes: mapped },
    ))
}

/// One plane of a buffer to import: libcamera takes offsets and lengths as 32 bits.
fn import_plane(
    fd: std::os::fd::OwnedFd,
    offset: usize,
    length: usize,
) -> std::io::Result<FrameBufferPlane> {
    let too_big = |_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "buffer too large");
    Ok(FrameBufferPlane {
        fd,
        offset: u32::try_from(offset).map_err(too_big)?,
        length: u32::try_from(length).map_err(too_big)?,
    })
}
