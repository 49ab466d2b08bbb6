//! The one module of this crate with `unsafe`: mapping a memfd, viewing the
//! mapping as atomics, and unmapping it.
//!
//! The mapping is shared with another process that may write any byte at any
//! time. It is therefore only ever seen as slices of atomic integers (never as
//! plain bytes, never as `&mut`): every access is an atomic load or store, so a
//! concurrent write by the peer is a race in the data, never undefined
//! behaviour in this process.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::os::fd::AsFd;

use rustix::mm::{Advice, MapFlags, ProtFlags};

/// A shared, read-write mapping of a whole memfd, page-aligned, of `len` bytes.
pub(crate) struct Mapping {
    ptr: NonNull<c_void>,
    len: usize,
    /// The process that mapped it: a child forked after does not have it
    /// (`MADV_DONTFORK`) and must not touch or unmap the address range.
    pid: rustix::process::Pid,
}

// SAFETY: the mapping is plain memory reached only through atomics (see the
// module's note); moving its owner to another thread moves nothing that is
// tied to a thread.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` (which the caller has checked is at least that
    /// long and sealed against shrinking) shared and read-write, not inherited
    /// by a child process.
    pub(crate) fn new(fd: impl AsFd, len: usize) -> rustix::io::Result<Self> {
        if len == 0 || !len.is_multiple_of(page()) {
            return Err(rustix::io::Errno::INVAL);
        }
        // SAFETY: a fresh mapping at an address of the kernel's choice (null
        // hint, no MAP_FIXED) replaces nothing of this process; the caller
        // checked the file is `len` bytes and cannot shrink (F_SEAL_SHRINK), so
        // no access to the mapping can fault past the file's end.
        let ptr = unsafe {
            rustix::mm::mmap(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }?;
        let ptr = NonNull::new(ptr).ok_or(rustix::io::Errno::NOMEM)?;
        let map = Self {
            ptr,
            len,
            pid: rustix::process::getpid(),
        };
        // SAFETY: the range is exactly the mapping just made, and only its
        // inheritance by a future child changes: a forked child never sees the
        // ring (nor the replies in it), and cannot write into it.
        unsafe { rustix::mm::madvise(map.ptr.as_ptr(), len, Advice::LinuxDontFork) }?;
        Ok(map)
    }

    /// Whether this process is the one that mapped it (not a forked child).
    pub(crate) fn is_own(&self) -> bool {
        rustix::process::getpid() == self.pid
    }

    /// The first `words` 32-bit words, as atomics.
    pub(crate) fn words32(&self, words: usize) -> &[AtomicU32] {
        let words = words.min(self.len / 4);
        // SAFETY: the pointer is page-aligned (so aligned for AtomicU32) and the
        // first `words * 4 <= len` bytes are mapped read-write for as long as
        // `self` lives (the borrow ties the slice to it; `Drop` unmaps). The
        // memory is only ever reached through atomics in this process.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU32>(), words) }
    }

    /// The 64-bit words from byte `offset` (a multiple of 8) to the end.
    pub(crate) fn words64_from(&self, offset: usize) -> &[AtomicU64] {
        let offset = (offset.min(self.len)) & !7;
        let words = (self.len - offset) / 8;
        // SAFETY: `offset <= len` is a multiple of 8 from a page-aligned base,
        // so the pointer is aligned for AtomicU64 and inside (or one past) the
        // mapping; `words * 8 <= len - offset` bytes from it are mapped for as
        // long as `self` lives. Atomics only, as above.
        unsafe {
            core::slice::from_raw_parts(
                self.ptr
                    .as_ptr()
                    .cast::<u8>()
                    .add(offset)
                    .cast::<AtomicU64>(),
                words,
            )
        }
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if !self.is_own() {
            // A forked child: the range is not mapped here (MADV_DONTFORK), and
            // may since hold another mapping of the child's.
            return;
        }
        // Wiped before it is let go: the replies in it are the tenant's
        // secrets, the requests its PINs and key values.
        for w in self.words64_from(0) {
            w.store(0, Ordering::Relaxed);
        }
        core::sync::atomic::fence(Ordering::SeqCst);
        // SAFETY: the range is exactly this mapping, made by `new` in this
        // process; no slice of it outlives `self` (they all borrow it).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr(), self.len) };
    }
}

/// The page size.
pub(crate) fn page() -> usize {
    rustix::param::page_size()
}
