//! Locked, non-dumpable memory for secrets.
//!
//! Secrets live in anonymous private mappings that are
//! - locked into RAM (`mlock`), so they are never written to swap,
//! - excluded from core dumps (`MADV_DONTDUMP`),
//! - wiped in a child after `fork` (`MADV_WIPEONFORK`),
//! - overwritten with zeros as soon as a secret is dropped.
//!
//! Small secrets (up to 4 KiB: keys, CDIs, seeds) share 64 KiB chunks carved into
//! power-of-two slots, so a partition with a million keys does not spend a locked
//! page and two system calls on each; a freed slot is wiped before it is reused.
//! Chunks are never unmapped. Larger secrets get a mapping of their own, unmapped
//! on drop.
//!
//! `mlock` can fail when `RLIMIT_MEMLOCK` is small; the secret is still usable and
//! still wiped, and [`unlocked_regions`] counts such failures so that the boot report
//! can say so rather than pretend.
//!
//! This is the one crate of the HSM core that uses `unsafe` (moved here from
//! `ihsm-crypto`, which re-exports it as `ihsm_crypto::memory`).

use core::ffi::c_void;
use core::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::io::Errno;
use rustix::mm::{Advice, MapFlags, ProtFlags};

static UNLOCKED_REGIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE_REGIONS: AtomicUsize = AtomicUsize::new(0);

/// Slot sizes of the shared chunks.
const CLASSES: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];
/// Size of a chunk of slots.
const CHUNK: usize = 64 * 1024;

/// How many secret mappings (chunks or dedicated) could not be locked into RAM.
#[must_use]
pub fn unlocked_regions() -> usize {
    UNLOCKED_REGIONS.load(Ordering::Relaxed)
}

/// How many secrets are alive right now.
#[must_use]
pub fn live_regions() -> usize {
    LIVE_REGIONS.load(Ordering::Relaxed)
}

/// Makes the whole process non-dumpable (`PR_SET_DUMPABLE = 0`): no core dumps, and
/// `/proc/PID/mem` and `ptrace` attach are refused to unprivileged peers.
///
/// Then, when the process may lock memory without limit (`CAP_IPC_LOCK`, or an
/// unlimited `RLIMIT_MEMLOCK`), locks all of it, now and to come, as it is touched
/// (`mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`): the secrets outside the
/// locked slots of this module (aws-lc's asymmetric keys and AES key schedules,
/// decoded objects, buffers) never reach swap either. Under a limit it does not:
/// with `MCL_FUTURE`, an allocation past the limit would fail and abort the
/// process. Returns whether all memory is locked.
///
/// # Errors
/// Returns the errno when the kernel refuses to make the process non-dumpable.
pub fn harden_process() -> Result<bool, rustix::io::Errno> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    if !may_lock_without_limit() {
        return Ok(false);
    }
    use rustix::mm::MlockAllFlags;
    Ok(rustix::mm::mlockall(
        MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT,
    )
    .is_ok())
}

/// `CAP_IPC_LOCK` in the effective set, or no `RLIMIT_MEMLOCK`.
fn may_lock_without_limit() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    if rustix::process::getrlimit(rustix::process::Resource::Memlock)
        .current
        .is_none()
    {
        return true;
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Maps `len` bytes (a multiple of the page size), marks them and locks them.
fn map_locked(len: usize) -> Result<NonNull<u8>, Errno> {
    // SAFETY: with a null address hint and without `MAP_FIXED` the kernel picks a
    // range that overlaps no existing mapping, so no memory that a Rust reference
    // (or the allocator) owns is replaced: rustix's precondition on `ptr` applies
    // only to a non-null hint. The new pages are anonymous, private and
    // zero-filled; nothing refers to them until this function returns their
    // address.
    let raw = unsafe {
        rustix::mm::mmap_anonymous(
            core::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }?;
    let ptr = NonNull::new(raw.cast::<u8>()).ok_or(Errno::NOMEM)?;
    // SAFETY: `raw..raw + len` is exactly the page-aligned mapping made above and
    // still private to this function. `MADV_DONTDUMP` changes only what a core
    // dump contains. `MADV_WIPEONFORK` changes no byte in this process; a child
    // made by `fork` sees zeros instead, and the only children ihsm makes are
    // `std::process::Command`s, which exec without touching a secret, so no
    // reference held across a fork observes the change. Either advice failing
    // (a kernel before 4.14 lacks WIPEONFORK) leaves the memory as it was.
    unsafe {
        let _ = rustix::mm::madvise(raw, len, Advice::LinuxDontDump);
        let _ = rustix::mm::madvise(raw, len, Advice::LinuxWipeOnFork);
    }
    // SAFETY: the same range, readable (PROT_READ) with `raw`'s provenance, as
    // `mlock` requires; locking changes residency, never contents.
    if unsafe { rustix::mm::mlock(raw, len) }.is_err() {
        UNLOCKED_REGIONS.fetch_add(1, Ordering::Relaxed);
    }
    Ok(ptr)
}

/// A free slot of a chunk.
struct Slot(NonNull<u8>);

// SAFETY: a `Slot` is only an address: the slot's bytes are read or written only
// through the `LockedRegion` that takes it out of the pool, and a slot is in the
// pool exactly while no region owns it (`take_slot` pops it, `Drop` pushes it back
// after wiping). Moving the address to another thread, under the pool's mutex,
// shares no access to memory.
unsafe impl Send for Slot {}

/// The free slots of each size class.
struct Pool {
    free: [Vec<Slot>; CLASSES.len()],
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: [const { Vec::new() }; CLASSES.len()],
});

/// The smallest size class that holds `len` bytes: its index and slot size.
fn class_of(len: usize) -> Option<(usize, usize)> {
    CLASSES.iter().copied().enumerate().find(|&(_, c)| len <= c)
}

/// A slot of `size` bytes (`CLASSES[class]`), out of the pool or a fresh chunk.
fn take_slot(class: usize, size: usize) -> Result<NonNull<u8>, Errno> {
    let mut pool = POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let free = pool.free.get_mut(class).ok_or(Errno::INVAL)?;
    if let Some(slot) = free.pop() {
        return Ok(slot.0);
    }
    let chunk = map_locked(CHUNK)?;
    // Slots 1.. go to the free list; slot 0 is returned.
    for i in 1..CHUNK / size {
        // SAFETY: `i < CHUNK / size`, so `i * size <= CHUNK - size`: the offset
        // stays inside the `CHUNK`-byte mapping just made (which is never unmapped),
        // and the `size` bytes from it do too; no offset overflows `isize`.
        let p = unsafe { chunk.add(i * size) };
        free.push(Slot(p));
    }
    Ok(chunk)
}

/// Where a region's memory came from.
#[derive(Debug, Clone, Copy)]
enum Backing {
    /// A slot of a shared chunk, of this class.
    Slot(usize),
    /// A mapping of its own.
    Mapping,
}

/// Memory that holds one secret of `len` bytes: locked, left out of core dumps,
/// wiped in a forked child, and wiped whole (slack included) on drop.
///
/// Invariant: `ptr..ptr + cap` is readable and writable memory that this value
/// alone may touch (a slot out of the pool, or a mapping nothing else knows), it
/// stays mapped for the value's life, and `len <= cap`.
pub struct LockedRegion {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    backing: Backing,
}

// SAFETY: by the invariant a `LockedRegion` owns its memory exclusively, like a
// `Box<[u8]>`: moving it to another thread moves that ownership, and freeing it
// from there is sound because the pool is behind a mutex and `munmap` may run on
// any thread.
unsafe impl Send for LockedRegion {}
// SAFETY: through `&LockedRegion` one gets only `&[u8]` (`as_slice`); writing needs
// `&mut` (`as_mut_slice`, `Drop`), so threads sharing a reference only read.
unsafe impl Sync for LockedRegion {}

impl LockedRegion {
    /// Zeroed locked memory for `len` bytes.
    ///
    /// # Errors
    /// The errno when no memory can be mapped.
    pub fn new(len: usize) -> Result<Self, Errno> {
        let (ptr, cap, backing) = match class_of(len) {
            Some((class, size)) => (take_slot(class, size)?, size, Backing::Slot(class)),
            None => {
                let page = rustix::param::page_size();
                let map_len = len.div_ceil(page).checked_mul(page).ok_or(Errno::NOMEM)?;
                (map_locked(map_len)?, map_len, Backing::Mapping)
            }
        };
        LIVE_REGIONS.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            ptr,
            len,
            cap,
            backing,
        })
    }

    /// The secret's bytes.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: by the invariant `ptr` is valid for reads of `cap >= len` bytes,
        // which are initialized (zero-filled by the kernel, wiped before reuse, or
        // written since as `u8`, for which every bit pattern is valid) and stay
        // mapped while `self` lives; the returned borrow of `self` excludes
        // `as_mut_slice` and `Drop`, the only writers, for its lifetime.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The secret's bytes, to write.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference
        // into the region; no other region's memory overlaps it (slots of a chunk
        // are disjoint, `size` bytes apart).
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Overwrites the whole slot or mapping, `cap` bytes, with zeros.
    fn wipe(&mut self) {
        // SAFETY: by the invariant the `cap` bytes from `ptr` belong to this region
        // alone and are mapped; `&mut self` rules out any outstanding slice of them.
        let all = unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) };
        zeroize::Zeroize::zeroize(all);
    }
}

impl core::fmt::Debug for LockedRegion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "LockedRegion<{}>([REDACTED])", self.len)
    }
}

impl Drop for LockedRegion {
    fn drop(&mut self) {
        self.wipe();
        match self.backing {
            Backing::Slot(class) => {
                let mut pool = POOL
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(free) = pool.free.get_mut(class) {
                    free.push(Slot(self.ptr));
                }
            }
            Backing::Mapping => {
                let raw = self.ptr.as_ptr().cast::<c_void>();
                // SAFETY: `raw..raw + cap` is the whole mapping `new` made for this
                // region (page-aligned, `cap` a multiple of the page size) and it is
                // unmapped only here, once; every slice into it borrowed `self`, so
                // none outlives this `drop`.
                let _ = unsafe { rustix::mm::munmap(raw, self.cap) };
            }
        }
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
    fn a_freed_slot_is_wiped_before_reuse() {
        // Fill a slot, drop it, and take slots of the same class until the same
        // address comes back: it must be all zeros.
        let mut r = LockedRegion::new(40).unwrap();
        r.as_mut_slice().fill(0xee);
        let addr = r.ptr;
        drop(r);
        let mut held = Vec::new();
        for _ in 0..10_000 {
            let r = LockedRegion::new(40).unwrap();
            if r.ptr == addr {
                assert!(
                    r.as_slice().iter().all(|&b| b == 0),
                    "reused slot not wiped"
                );
                // The slack beyond len was wiped too.
                let cap = r.cap;
                // SAFETY: the region owns `cap` bytes from `ptr` and is alive here.
                let all = unsafe { core::slice::from_raw_parts(r.ptr.as_ptr(), cap) };
                assert!(all.iter().all(|&b| b == 0));
                return;
            }
            held.push(r);
        }
        panic!("freed slot never came back");
    }

    #[test]
    fn every_size_class_and_the_boundaries() {
        for len in [0, 1, 31, 32, 33, 4095, 4096, 4097] {
            let mut r = LockedRegion::new(len).unwrap();
            assert_eq!(r.as_slice().len(), len);
            r.as_mut_slice().fill(7);
            assert!(r.cap >= len);
        }
    }

    /// The `VmFlags` line of the mapping that holds `addr`, from `/proc/self/smaps`.
    fn vm_flags(addr: usize) -> String {
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
                flags = Some(format!("{line} "));
            }
        }
        flags.expect("mapping of the secret not found in smaps")
    }

    /// What the module documents, checked on both kinds of backing: no core dump
    /// (`dd`), wiped in a forked child (`wf`), and locked (`lo`) unless `mlock`
    /// failed somewhere in this process (a small `RLIMIT_MEMLOCK`).
    #[test]
    fn regions_are_marked_in_smaps() {
        for len in [32, 10_000] {
            let mut r = LockedRegion::new(len).unwrap();
            r.as_mut_slice()[0] = 7;
            let flags = vm_flags(r.ptr.as_ptr().addr());
            assert!(flags.contains(" dd "), "not MADV_DONTDUMP: {flags}");
            assert!(flags.contains(" wf "), "not MADV_WIPEONFORK: {flags}");
            if unlocked_regions() == 0 {
                assert!(flags.contains(" lo "), "not mlocked: {flags}");
            }
        }
    }

    #[test]
    fn a_dedicated_mapping_is_whole_pages_and_debug_is_redacted() {
        let page = rustix::param::page_size();
        for len in [4097, 5000, 3 * page, 3 * page + 1] {
            let mut r = LockedRegion::new(len).unwrap();
            assert!(matches!(r.backing, Backing::Mapping));
            assert_eq!(r.cap % page, 0);
            assert!(r.cap >= len && r.cap < len + page);
            r.as_mut_slice().fill(0x5c);
            assert_eq!(format!("{r:?}"), format!("LockedRegion<{len}>([REDACTED])"));
        }
        // A length no mapping can have is an error, not an overflow.
        assert!(LockedRegion::new(usize::MAX).is_err());
    }

    #[test]
    fn live_regions_counts_and_slots_are_disjoint() {
        let before = live_regions();
        let mut rs: Vec<LockedRegion> = (0..64).map(|_| LockedRegion::new(64).unwrap()).collect();
        assert!(live_regions() >= before + 64);
        for (i, r) in rs.iter_mut().enumerate() {
            r.as_mut_slice().fill(i as u8);
        }
        for (i, r) in rs.iter().enumerate() {
            assert!(
                r.as_slice().iter().all(|&b| b == i as u8),
                "slot {i} overwritten"
            );
        }
    }
}
