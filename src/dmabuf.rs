//! Camera buffer memory: DMA-BUF mappings the readers share, CPU access bracketed with
//! `DMA_BUF_IOCTL_SYNC`, and buffers allocated from a cached DMA heap.
//!
//! Why not libcamera's own mapping (`MemoryMappedFrameBuffer`): it lives inside the request
//! and goes when the camera is torn down, while a reader (the encoder, a still) may still be
//! reading a lent frame. A [`Mapping`] maps its own duplicate of the buffer's descriptor and is
//! shared by `Arc`, so the memory stays valid for as long as any reader holds it, whatever
//! happens to the camera.
//!
//! Why a DMA heap: buffers the V4L2 driver exports are mapped uncached on a Raspberry Pi, and
//! CPU reads from them are many times slower than from cached memory. A cached heap buffer,
//! imported into libcamera, is as fast to read as normal memory, provided every CPU access is
//! bracketed with `DMA_BUF_IOCTL_SYNC` (cache maintenance around the device's writes).
//!
//! Written by hand over `libc`/`nix`: the two ioctls and one mmap are all there is, and no
//! maintained crate wraps DMA heaps.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// The heaps picker allocates from, in order: Raspberry Pi OS's cached video heap, then the
/// kernel's CMA heap, as rpicam-apps does. On a Pi 4 both are physically contiguous, as its ISP
/// needs; on a Pi 5 `vidbuf_cached` is the system heap, which its ISP (behind an IOMMU) takes.
pub const CONTIGUOUS_HEAPS: [&str; 2] = ["/dev/dma_heap/vidbuf_cached", "/dev/dma_heap/linux,cma"];
/// The kernel's system heap: cached but not contiguous, so only for cameras whose pipeline
/// does not DMA into the buffer through an ISP without an IOMMU (the virtual camera, which
/// writes it with the CPU).
pub const SYSTEM_HEAP: &str = "/dev/dma_heap/system";

/// A read-only shared mapping of a whole DMA-BUF (or any mappable descriptor).
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
    /// The descriptor answered `DMA_BUF_IOCTL_SYNC` (a DMA-BUF, not a memfd).
    syncs: bool,
}

// SAFETY: the mapping is read-only memory owned by this value until drop; sharing a pointer to
// it between threads is as safe as sharing a `&[u8]` under the contract of `Mapping::new`
// (nobody writes the buffer while it is read).
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of the buffer behind `fd` (duplicated: the caller keeps its
    /// own descriptor).
    ///
    /// # Safety
    ///
    /// The bytes are handed out as `&[u8]`: the caller reads them only while no device or
    /// process writes the buffer (for a camera buffer: while its request is completed and
    /// not queued again, see `camera::owner`), and the buffer must not shrink below `len`
    /// (a truncated memfd would fault).
    pub unsafe fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty buffer"));
        }
        let fd = fd.try_clone_to_owned()?;
        // SAFETY: a fresh shared read-only mapping of a descriptor we own; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        let mut m = Mapping {
            ptr,
            len,
            fd,
            syncs: false,
        };
        // A DMA-BUF answers the sync ioctl; anything else (a memfd) says ENOTTY and needs none.
        m.syncs = sync(m.fd.as_fd(), SyncPoint::Start).is_ok();
        if m.syncs {
            let _ = sync(m.fd.as_fd(), SyncPoint::End);
        }
        Ok(m)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when CPU reads are bracketed with `DMA_BUF_IOCTL_SYNC` (the buffer is a DMA-BUF).
    pub fn syncs(&self) -> bool {
        self.syncs
    }

    /// Brackets CPU reads: call `begin_read` before reading what the device wrote, and
    /// `end_read` before giving the buffer back to it. Errors are returned for the caller to
    /// log once; reading stays possible (the data may then be stale on a non-coherent cache).
    pub fn begin_read(&self) -> io::Result<()> {
        if self.syncs {
            sync(self.fd.as_fd(), SyncPoint::Start)
        } else {
            Ok(())
        }
    }

    pub fn end_read(&self) -> io::Result<()> {
        if self.syncs {
            sync(self.fd.as_fd(), SyncPoint::End)
        } else {
            Ok(())
        }
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` readable bytes at `ptr` for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the region mapped in `new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("len", &self.len)
            .field("fd", &self.fd.as_raw_fd())
            .field("syncs", &self.syncs)
            .finish()
    }
}

#[derive(Clone, Copy)]
enum SyncPoint {
    Start,
    End,
}

/// `struct dma_buf_sync` of `<linux/dma-buf.h>`.
#[repr(C)]
struct DmaBufSync {
    flags: u64,
}

const DMA_BUF_SYNC_READ: u64 = 1;
const DMA_BUF_SYNC_END: u64 = 1 << 2;

nix::ioctl_write_ptr!(dma_buf_ioctl_sync, b'b', 0, DmaBufSync);

fn sync(fd: BorrowedFd<'_>, what: SyncPoint) -> io::Result<()> {
    let flags = match what {
        SyncPoint::Start => DMA_BUF_SYNC_READ,
        SyncPoint::End => DMA_BUF_SYNC_READ | DMA_BUF_SYNC_END,
    };
    // The kernel may be interrupted by a signal here: then retry, as its documentation says.
    loop {
        // SAFETY: a valid descriptor and a properly laid-out argument.
        match unsafe { dma_buf_ioctl_sync(fd.as_raw_fd(), &DmaBufSync { flags }) } {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// `struct dma_heap_allocation_data` of `<linux/dma-heap.h>`.
#[repr(C)]
struct DmaHeapAllocation {
    len: u64,
    fd: u32,
    fd_flags: u32,
    heap_flags: u64,
}

nix::ioctl_readwrite!(dma_heap_ioctl_alloc, b'H', 0, DmaHeapAllocation);

/// An open DMA heap.
#[derive(Debug)]
pub struct Heap {
    file: File,
    path: PathBuf,
}

impl Heap {
    /// The first of `paths` that opens.
    pub fn open_first(paths: &[&str]) -> Option<Heap> {
        paths.iter().find_map(|p| Heap::open(Path::new(p)).ok())
    }

    pub fn open(path: &Path) -> io::Result<Heap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Heap {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new buffer of `len` bytes (rounded up to pages by the kernel).
    pub fn alloc(&self, len: usize) -> io::Result<OwnedFd> {
        let mut data = DmaHeapAllocation {
            len: len as u64,
            fd: 0,
            fd_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
            heap_flags: 0,
        };
        // SAFETY: a heap descriptor and a properly laid-out argument the kernel fills.
        unsafe { dma_heap_ioctl_alloc(self.file.as_raw_fd(), &mut data) }.map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("{}: {e}", self.path.display()),
            )
        })?;
        let fd = i32::try_from(data.fd).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "heap returned no descriptor")
        })?;
        // SAFETY: the kernel just created this descriptor for us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn memfd_with(bytes: &[u8]) -> OwnedFd {
        let fd = nix::sys::memfd::memfd_create(c"picker-test", nix::sys::memfd::MFdFlags::empty())
            .unwrap();
        let mut f = File::from(fd);
        f.write_all(bytes).unwrap();
        OwnedFd::from(f)
    }

    #[test]
    fn a_mapping_reads_the_buffer_and_outlives_the_callers_descriptor() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let fd = memfd_with(&bytes);
        // SAFETY: this test's memfd, written before and never after.
        let m = unsafe { Mapping::new(fd.as_fd(), bytes.len()) }.unwrap();
        drop(fd);
        assert_eq!(m.as_ref(), &bytes[..]);
        // A memfd is no DMA-BUF: no sync needed, and bracketing is a no-op, not an error.
        assert!(!m.syncs());
        m.begin_read().unwrap();
        m.end_read().unwrap();
        // Shared between threads.
        let m = std::sync::Arc::new(m);
        let other = m.clone();
        let sum = std::thread::spawn(move || {
            AsRef::<[u8]>::as_ref(&*other)
                .iter()
                .map(|b| *b as u64)
                .sum::<u64>()
        })
        .join()
        .unwrap();
        assert_eq!(sum, bytes.iter().map(|b| *b as u64).sum::<u64>());
    }

    #[test]
    fn an_empty_or_bad_buffer_is_an_error_not_a_panic() {
        let fd = memfd_with(b"x");
        // SAFETY: as above.
        assert!(unsafe { Mapping::new(fd.as_fd(), 0) }.is_err());
        let err = Heap::open(Path::new("/nonexistent/dma_heap/x")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dma_heap/x"), "{err}");
    }

    /// Where the machine has a DMA heap (the forky VM has the system heap; this development
    /// machine has none), a heap buffer maps, syncs and reads back zeroes.
    #[test]
    fn a_heap_buffer_is_a_dma_buf_that_syncs() {
        let Some(heap) = Heap::open_first(&[SYSTEM_HEAP, CONTIGUOUS_HEAPS[0], CONTIGUOUS_HEAPS[1]])
        else {
            eprintln!("no DMA heap on this machine: only the mapping tests ran");
            return;
        };
        let fd = heap.alloc(64 * 1024).unwrap();
        // SAFETY: a fresh heap buffer nobody else has.
        let m = unsafe { Mapping::new(fd.as_fd(), 64 * 1024) }.unwrap();
        assert!(m.syncs(), "a heap buffer is a DMA-BUF");
        m.begin_read().unwrap();
        assert!(m.as_ref().iter().all(|b| *b == 0));
        m.end_read().unwrap();
    }
}
