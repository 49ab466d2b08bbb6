//! Locked, non-dumpable memory for secrets.
//!
//! Each secret lives in its own anonymous private mapping that is
//! - locked into RAM (`mlock`), so it is never written to swap,
//! - excluded from core dumps (`MADV_DONTDUMP`),
//! - wiped in a child after `fork` (`MADV_WIPEONFORK`),
//! - overwritten with zeros before it is unmapped.
//!
//! `mlock` can fail when `RLIMIT_MEMLOCK` is small; the secret is still usable and
//! still wiped, and [`unlocked_regions`] counts such failures so that the boot report
//! can say so rather than pretend.
//!
//! This is the one module of `ihsm-crypto` that uses `unsafe`.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::mm::{Advice, MapFlags, ProtFlags};

use crate::CryptoError;

static UNLOCKED_REGIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE_REGIONS: AtomicUsize = AtomicUsize::new(0);

/// How many secret regions could not be locked into RAM since the process started.
#[must_use]
pub fn unlocked_regions() -> usize {
    UNLOCKED_REGIONS.load(Ordering::Relaxed)
}

/// How many secret regions are mapped right now.
#[must_use]
pub fn live_regions() -> usize {
    LIVE_REGIONS.load(Ordering::Relaxed)
}

/// Makes the whole process non-dumpable (`PR_SET_DUMPABLE = 0`): no core dumps, and
/// `/proc/PID/mem` and `ptrace` attach are refused to unprivileged peers.
///
/// # Errors
/// Returns the errno when the kernel refuses.
pub fn harden_process() -> Result<(), rustix::io::Errno> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
}

/// A page-granular mapping that holds one secret of `len` bytes.
pub(crate) struct LockedRegion {
    ptr: NonNull<u8>,
    len: usize,
    map_len: usize,
}

// SAFETY: the region is exclusively owned by this value (no aliasing pointer escapes
// except through `&self`/`&mut self` borrows), so moving it to another thread or
// sharing `&LockedRegion` between threads is as safe as for a `Box<[u8]>`.
unsafe impl Send for LockedRegion {}
// SAFETY: see above; shared access only hands out `&[u8]`.
unsafe impl Sync for LockedRegion {}

impl LockedRegion {
    /// Maps a zeroed region of at least `len` bytes (`len` > 0).
    pub(crate) fn new(len: usize) -> Result<Self, CryptoError> {
        let page = rustix::param::page_size();
        let map_len = len.max(1).div_ceil(page).saturating_mul(page);
        // SAFETY: a fresh anonymous private mapping with a null hint cannot alias any
        // existing Rust object; the kernel returns zero-filled pages.
        let raw = unsafe {
            rustix::mm::mmap_anonymous(
                core::ptr::null_mut(),
                map_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .map_err(CryptoError::SecretMemory)?;
        let ptr = NonNull::new(raw.cast::<u8>())
            .ok_or(CryptoError::SecretMemory(rustix::io::Errno::NOMEM))?;
        // SAFETY: `raw` and `map_len` describe exactly the mapping made above.
        // Advice failures are not fatal: older kernels lack WIPEONFORK.
        unsafe {
            let _ = rustix::mm::madvise(raw, map_len, Advice::LinuxDontDump);
            let _ = rustix::mm::madvise(raw, map_len, Advice::LinuxWipeOnFork);
        }
        // SAFETY: as above; mlock only pins the pages of our own mapping.
        if unsafe { rustix::mm::mlock(raw, map_len) }.is_err() {
            UNLOCKED_REGIONS.fetch_add(1, Ordering::Relaxed);
        }
        LIVE_REGIONS.fetch_add(1, Ordering::Relaxed);
        Ok(Self { ptr, len, map_len })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to a live mapping of `map_len >= len` readable bytes
        // owned by `self`; the borrow of `self` keeps it alive and unaliased by writers.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusive access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for LockedRegion {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self.as_mut_slice());
        let raw = self.ptr.as_ptr().cast::<c_void>();
        // SAFETY: `raw`/`map_len` is the mapping created in `new`, never unmapped
        // before; no reference into it outlives `self`. munmap also drops the lock.
        let _ = unsafe { rustix::mm::munmap(raw, self.map_len) };
        LIVE_REGIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_is_zeroed_and_writable() {
        let mut r = LockedRegion::new(48).unwrap();
        assert!(live_regions() >= 1);
        assert!(r.as_slice().iter().all(|&b| b == 0));
        r.as_mut_slice().fill(0xa5);
        assert!(r.as_slice().iter().all(|&b| b == 0xa5));
        assert_eq!(r.as_slice().len(), 48);
    }

    #[test]
    fn larger_than_a_page() {
        let mut r = LockedRegion::new(10_000).unwrap();
        r.as_mut_slice()[9_999] = 1;
        assert_eq!(r.as_slice()[9_999], 1);
    }

    #[test]
    fn region_is_marked_dontdump_in_smaps() {
        let mut r = LockedRegion::new(32).unwrap();
        r.as_mut_slice()[0] = 7;
        let addr = r.ptr.as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut in_region = false;
        let mut flags = None;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                in_region = lo <= addr && addr < hi;
                continue;
            }
            if in_region && line.starts_with("VmFlags:") {
                flags = Some(line.to_owned());
            }
        }
        let flags = flags.expect("mapping of the secret not found in smaps");
        assert!(flags.contains(" dd"), "not MADV_DONTDUMP: {flags}");
    }
}
