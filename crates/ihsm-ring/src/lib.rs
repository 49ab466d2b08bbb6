//! Shared-memory submission and completion rings between `ihsmd` and a local
//! client, as a PCIe device's queues are: the client writes requests into the
//! submission ring, the daemon replies into the completion ring, and the side
//! that waits spins briefly and then sleeps on a futex in the region.
//!
//! The daemon makes the region ([`Region::create`]): a memfd sealed against
//! growing and shrinking (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`), passed
//! to the client over the partition socket with `SCM_RIGHTS`, which maps it with
//! [`Region::attach`] after checking the seals and the size. Because the file
//! cannot shrink, the daemon's accesses never fault, whatever the client does.
//!
//! # Layout
//!
//! ```text
//! page 0 (control), u32 words:
//!   0 magic "IHRG"  1 version  2 slots per ring  3 bytes per slot
//!   submission: 16 head   32 tail   48 waiting
//!   completion: 64 head   80 tail   96 waiting
//!   (each word in a 64-byte line of its own)
//! then the submission ring's slots, then the completion ring's, each slot:
//!   u64 (length | flags << 32), u64 sequence, payload (bytes per slot - 16)
//! ```
//!
//! `head` counts entries published by the producer, `tail` entries taken by the
//! consumer; both run freely and wrap. The producer writes a slot, then stores
//! `head + 1` (release); the consumer reads `head` (acquire), copies the slot
//! out, then stores `tail + 1`.
//!
//! # The other side is hostile
//!
//! The peer may write any byte of the region at any time. So:
//! - each side keeps its own counters privately and never reads back the
//!   shared copy of an index it owns;
//! - every shared word is read once, atomically; a length over the slot's
//!   payload, a sequence that is not the expected one, or more entries than
//!   slots is [`RingError::Corrupt`] (the connection's error: the caller closes
//!   it), never a panic or an access outside the region;
//! - a consumer copies the payload into its own buffer before anything looks
//!   at it, and zeroes the slot before releasing it;
//! - the whole region is zeroed before it is unmapped ([`Region`]'s drop).
//!
//! # Waiting
//!
//! A consumer that finds its ring empty calls [`Ring::arm`] (sets `waiting`,
//! then looks again), then [`Ring::wait`] (`FUTEX_WAIT` on `head`, bounded by a
//! timeout so a dead peer is noticed). A producer that publishes an entry calls
//! [`Ring::push`], which says whether the consumer was waiting; then it wakes
//! it ([`Ring::wake`], `FUTEX_WAKE`, or another doorbell the two sides agreed).
//! `head` is stored and `waiting` read sequentially consistently on one side,
//! and `waiting` stored and `head` read so on the other, so a wake-up is never
//! lost. The futexes are shared (not `FUTEX_PRIVATE_FLAG`): the two sides are
//! different processes.
//!
//! # Fork
//!
//! The mapping is `MADV_DONTFORK`: a child forked after it was made does not
//! inherit it (nor the secrets in it), and a [`Region`] dropped in such a child
//! touches nothing. [`Region::is_own`] tells a caller whether it is in the
//! process that made it.
//!
//! # Unsafe
//!
//! DESIGN.md keeps `unsafe` to the PKCS#11 module and the locked-memory
//! module; this crate is a third place, because mapping shared memory needs
//! it. It is confined to the private `map` module (mmap, madvise, munmap and
//! the view of the mapping as atomics), each block with its `SAFETY:` reason;
//! the rest of the crate denies `unsafe`.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod map;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};

/// The first word of the region.
pub const MAGIC: u32 = u32::from_le_bytes(*b"IHRG");
/// The layout's version.
pub const VERSION: u32 = 1;
/// Bytes of a slot's header (length and flags, sequence).
pub const SLOT_HEADER: usize = 16;
/// Most slots in a ring.
pub const MAX_SLOTS: u32 = 64;
/// Largest slot.
pub const MAX_SLOT_BYTES: u32 = 1 << 20;
/// Smallest slot.
pub const MIN_SLOT_BYTES: u32 = 64;

/// Slot flag: the reply is on the socket, not in this slot (it did not fit).
pub const FLAG_ON_SOCKET: u32 = 1;

const W_MAGIC: usize = 0;
const W_VERSION: usize = 1;
const W_SLOTS: usize = 2;
const W_SLOT_BYTES: usize = 3;
/// Control words in use: the control page's first 128 (512 bytes).
const CONTROL_WORDS: usize = 128;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The peer wrote something no honest peer would: the ring is unusable.
    #[error("the shared ring is corrupt: {0}")]
    Corrupt(&'static str),
    /// The ring has no free slot (the peer does not drain it).
    #[error("the shared ring is full")]
    Full,
    /// The payload does not fit a slot.
    #[error("{len} bytes do not fit a ring slot of {max}")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// A slot's payload capacity.
        max: usize,
    },
    /// The geometry is out of bounds, or a received region does not match it.
    #[error("unacceptable ring region: {0}")]
    Region(String),
    /// A system call failed.
    #[error("ring system call failed: {0}")]
    Sys(#[from] rustix::io::Errno),
}

/// How many slots, of what size, each ring has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Slots per ring (a power of two, at most [`MAX_SLOTS`]).
    pub slots: u32,
    /// Bytes per slot, header included (a multiple of 64, between
    /// [`MIN_SLOT_BYTES`] and [`MAX_SLOT_BYTES`]).
    pub slot_bytes: u32,
}

impl Default for Geometry {
    /// Four slots of 8 KiB: a 4 KiB encryption and its reply fit, and one
    /// connection has one request in flight.
    fn default() -> Self {
        Self {
            slots: 4,
            slot_bytes: 8 << 10,
        }
    }
}

impl Geometry {
    /// Checks the bounds.
    ///
    /// # Errors
    /// [`RingError::Region`].
    pub fn check(self) -> Result<Self, RingError> {
        if self.slots == 0 || self.slots > MAX_SLOTS || !self.slots.is_power_of_two() {
            return Err(RingError::Region(format!(
                "{} slots (a power of two up to {MAX_SLOTS} is needed)",
                self.slots
            )));
        }
        if !(MIN_SLOT_BYTES..=MAX_SLOT_BYTES).contains(&self.slot_bytes)
            || !self.slot_bytes.is_multiple_of(64)
        {
            return Err(RingError::Region(format!(
                "slots of {} bytes (a multiple of 64 from {MIN_SLOT_BYTES} to {MAX_SLOT_BYTES} is needed)",
                self.slot_bytes
            )));
        }
        Ok(self)
    }

    /// A slot's payload capacity.
    #[must_use]
    pub fn capacity(self) -> usize {
        self.slot_bytes as usize - SLOT_HEADER
    }

    /// The region's size: the control page and both rings, in whole pages.
    #[must_use]
    pub fn region_len(self) -> usize {
        let page = map::page();
        let rings = 2 * self.slots as usize * self.slot_bytes as usize;
        page + rings.div_ceil(page) * page
    }
}

/// Which ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Client to daemon: requests.
    Submission,
    /// Daemon to client: replies.
    Completion,
}

impl Which {
    fn words(self) -> (usize, usize, usize) {
        match self {
            Self::Submission => (16, 32, 48),
            Self::Completion => (64, 80, 96),
        }
    }
}

/// One side's view of a mapped region.
pub struct Region {
    map: map::Mapping,
    geo: Geometry,
    /// Submission counter this side owns (the client's head, the daemon's
    /// tail), and the completion one (the daemon's head, the client's tail).
    own: [core::cell::Cell<u32>; 2],
}

impl core::fmt::Debug for Region {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Region")
            .field("geometry", &self.geo)
            .field("len", &self.map.len())
            .finish_non_exhaustive()
    }
}

impl Region {
    /// The daemon's side: a new region (a sealed memfd, mapped), and the fd to
    /// send to the client.
    ///
    /// # Errors
    /// [`RingError::Region`] for a bad geometry; system call failures.
    pub fn create(geo: Geometry) -> Result<(Self, OwnedFd), RingError> {
        let geo = geo.check()?;
        let len = geo.region_len();
        let fd =
            rustix::fs::memfd_create("ihsm-ring", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let map = map::Mapping::new(&fd, len)?;
        let r = Self {
            map,
            geo,
            own: Default::default(),
        };
        let c = r.control();
        c[W_SLOTS].store(geo.slots, Ordering::Relaxed);
        c[W_SLOT_BYTES].store(geo.slot_bytes, Ordering::Relaxed);
        c[W_VERSION].store(VERSION, Ordering::Relaxed);
        c[W_MAGIC].store(MAGIC, Ordering::Release);
        Ok((r, fd))
    }

    /// The client's side: maps a region received from the daemon, after
    /// checking that it is a sealed memfd of the size `geo` implies, and then
    /// that its header says `geo`.
    ///
    /// # Errors
    /// [`RingError::Region`] naming what does not match.
    pub fn attach(fd: impl AsFd, geo: Geometry) -> Result<Self, RingError> {
        let geo = geo.check()?;
        let len = geo.region_len();
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        let want = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
        if !seals.contains(want) {
            return Err(RingError::Region(format!(
                "the region is not sealed against resizing (seals {seals:?})"
            )));
        }
        let size = rustix::fs::fstat(&fd)?.st_size;
        if u64::try_from(size).ok() != Some(len as u64) {
            return Err(RingError::Region(format!(
                "the region has {size} bytes, not the {len} its geometry needs"
            )));
        }
        let map = map::Mapping::new(&fd, len)?;
        let r = Self {
            map,
            geo,
            own: Default::default(),
        };
        let c = r.control();
        let header = (
            c[W_MAGIC].load(Ordering::Acquire),
            c[W_VERSION].load(Ordering::Relaxed),
            c[W_SLOTS].load(Ordering::Relaxed),
            c[W_SLOT_BYTES].load(Ordering::Relaxed),
        );
        if header != (MAGIC, VERSION, geo.slots, geo.slot_bytes) {
            return Err(RingError::Region(format!(
                "the region's header {header:?} is not (magic, version {VERSION}, {}, {})",
                geo.slots, geo.slot_bytes
            )));
        }
        Ok(r)
    }

    /// The geometry.
    #[must_use]
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// A slot's payload capacity.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.geo.capacity()
    }

    /// Whether this process made or attached the region (not a child forked
    /// since, which must not use it).
    #[must_use]
    pub fn is_own(&self) -> bool {
        self.map.is_own()
    }

    /// One ring of the region.
    #[must_use]
    pub fn ring(&self, which: Which) -> Ring<'_> {
        let ring_bytes = self.geo.slots as usize * self.geo.slot_bytes as usize;
        let start = match which {
            Which::Submission => map::page(),
            Which::Completion => map::page() + ring_bytes,
        };
        let all = self.map.words64_from(start);
        let slots = &all[..(ring_bytes / 8).min(all.len())];
        Ring {
            control: self.control(),
            slots,
            which,
            geo: self.geo,
            own: &self.own[which as usize],
        }
    }

    /// Writes `bytes` at `offset` of the region, as a hostile peer could at any
    /// moment: for tests and fuzzing of the reader, which must survive it. Out
    /// of range bytes are dropped.
    pub fn hostile_write(&self, offset: usize, bytes: &[u8]) {
        let words = self.map.words32(self.map.len() / 4);
        for (i, b) in bytes.iter().enumerate() {
            let at = offset.saturating_add(i);
            let Some(w) = words.get(at / 4) else {
                return;
            };
            let shift = (at % 4) * 8;
            let mask = !(0xffu32 << shift);
            // One byte of a word, atomically (the peer's own race with us).
            let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some((v & mask) | (u32::from(*b) << shift))
            });
        }
    }

    /// The region's size in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never: a region has at least its control page.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether every byte of the region is zero (the hygiene tests' check).
    #[must_use]
    pub fn is_zeroed(&self) -> bool {
        self.map
            .words64_from(0)
            .iter()
            .all(|w| w.load(Ordering::Relaxed) == 0)
    }

    fn control(&self) -> &[AtomicU32] {
        self.map.words32(CONTROL_WORDS)
    }
}

/// One ring of a [`Region`], from one side.
#[derive(Debug)]
pub struct Ring<'a> {
    control: &'a [AtomicU32],
    slots: &'a [AtomicU64],
    which: Which,
    geo: Geometry,
    own: &'a core::cell::Cell<u32>,
}

impl Ring<'_> {
    fn word(&self, i: usize) -> Result<&AtomicU32, RingError> {
        self.control
            .get(i)
            .ok_or(RingError::Corrupt("control word outside the region"))
    }

    fn slot(&self, counter: u32) -> Result<&[AtomicU64], RingError> {
        let words = self.geo.slot_bytes as usize / 8;
        let start = (counter % self.geo.slots) as usize * words;
        self.slots
            .get(start..start + words)
            .ok_or(RingError::Corrupt("slot outside the region"))
    }

    /// The producer's side: publishes `payload` with `flags`. Returns whether
    /// the consumer said it was waiting (then wake it).
    ///
    /// # Errors
    /// [`RingError::TooLarge`], [`RingError::Full`]; [`RingError::Corrupt`]
    /// when the consumer's tail is not one an honest consumer could have.
    pub fn push(&self, payload: &[u8], flags: u32) -> Result<bool, RingError> {
        let cap = self.geo.capacity();
        if payload.len() > cap {
            return Err(RingError::TooLarge {
                len: payload.len(),
                max: cap,
            });
        }
        let (head_w, tail_w, wait_w) = self.which.words();
        let head = self.own.get();
        let tail = self.word(tail_w)?.load(Ordering::Acquire);
        let used = head.wrapping_sub(tail);
        if used > self.geo.slots {
            return Err(RingError::Corrupt("the consumer's tail is past the head"));
        }
        if used == self.geo.slots {
            return Err(RingError::Full);
        }
        let slot = self.slot(head)?;
        let (hdr, body) = slot.split_at(2);
        let mut words = payload.chunks_exact(8);
        let mut slots = body.iter();
        // The payload's words first: zip asks it before the slot's, so the
        // slot word after the last whole one is left for the remainder.
        for (chunk, w) in words.by_ref().zip(slots.by_ref()) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        let rest = words.remainder();
        if !rest.is_empty()
            && let Some(w) = slots.next()
        {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        hdr[0].store(
            payload.len() as u64 | (u64::from(flags) << 32),
            Ordering::Relaxed,
        );
        hdr[1].store(u64::from(head), Ordering::Relaxed);
        let next = head.wrapping_add(1);
        self.own.set(next);
        self.word(head_w)?.store(next, Ordering::SeqCst);
        Ok(self.word(wait_w)?.swap(0, Ordering::SeqCst) != 0)
    }

    /// The consumer's side: takes the next entry, if there is one, into `out`
    /// (cleared first; its old bytes are overwritten), zeroes its slot and
    /// releases it. Returns the entry's flags.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] for anything an honest producer would not
    /// write.
    pub fn pop(&self, out: &mut Vec<u8>) -> Result<Option<u32>, RingError> {
        let (head_w, tail_w, _) = self.which.words();
        let tail = self.own.get();
        let head = self.word(head_w)?.load(Ordering::Acquire);
        let avail = head.wrapping_sub(tail);
        if avail == 0 {
            return Ok(None);
        }
        if avail > self.geo.slots {
            return Err(RingError::Corrupt("more entries than slots"));
        }
        let slot = self.slot(tail)?;
        let (hdr, body) = slot.split_at(2);
        let first = hdr[0].load(Ordering::Relaxed);
        let seq = hdr[1].load(Ordering::Relaxed);
        if seq != u64::from(tail) {
            return Err(RingError::Corrupt("an entry out of sequence"));
        }
        let len = (first & 0xffff_ffff) as usize;
        let flags = (first >> 32) as u32;
        if len > self.geo.capacity() {
            return Err(RingError::Corrupt("an entry longer than its slot"));
        }
        let words = len.div_ceil(8);
        let body = body
            .get(..words)
            .ok_or(RingError::Corrupt("an entry longer than its slot"))?;
        out.clear();
        out.reserve(words * 8);
        // Plain loads, then plain stores of zero: a swap would be a locked
        // instruction per word (microseconds over a 4 KiB request).
        for w in body {
            out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        for w in body {
            w.store(0, Ordering::Relaxed);
        }
        out.truncate(len);
        hdr[0].store(0, Ordering::Relaxed);
        hdr[1].store(0, Ordering::Relaxed);
        let next = tail.wrapping_add(1);
        self.own.set(next);
        self.word(tail_w)?.store(next, Ordering::Release);
        Ok(Some(flags))
    }

    /// Whether an entry is waiting (the consumer's cheap look, for spinning).
    #[must_use]
    pub fn ready(&self) -> bool {
        let (head_w, _, _) = self.which.words();
        self.word(head_w)
            .is_ok_and(|h| h.load(Ordering::Acquire) != self.own.get())
    }

    /// The consumer's side, before sleeping: says it waits, then looks again.
    /// `false`: an entry came meanwhile (not armed; take it).
    #[must_use]
    pub fn arm(&self) -> bool {
        let (head_w, _, wait_w) = self.which.words();
        let (Ok(head), Ok(wait)) = (self.word(head_w), self.word(wait_w)) else {
            return false;
        };
        wait.store(1, Ordering::SeqCst);
        if head.load(Ordering::SeqCst) != self.own.get() {
            wait.store(0, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The consumer's side, after waking: no longer waiting.
    pub fn disarm(&self) {
        let (_, _, wait_w) = self.which.words();
        if let Ok(w) = self.word(wait_w) {
            w.store(0, Ordering::SeqCst);
        }
    }

    /// The consumer's side, armed: sleeps until the producer wakes it, an entry
    /// is there, or `timeout` passes (a dead peer wakes no one).
    ///
    /// # Errors
    /// System call failures other than a timeout, an interruption or a head
    /// that already moved.
    pub fn wait(&self, timeout: Duration) -> Result<(), RingError> {
        let (head_w, _, _) = self.which.words();
        let ts = rustix::time::Timespec::try_from(timeout)
            .map_err(|_| RingError::Sys(rustix::io::Errno::INVAL))?;
        match rustix::thread::futex::wait(
            self.word(head_w)?,
            rustix::thread::futex::Flags::empty(),
            self.own.get(),
            Some(&ts),
        ) {
            Ok(())
            | Err(
                rustix::io::Errno::TIMEDOUT | rustix::io::Errno::AGAIN | rustix::io::Errno::INTR,
            ) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The producer's side: wakes a consumer sleeping in [`Ring::wait`].
    ///
    /// # Errors
    /// System call failures.
    pub fn wake(&self) -> Result<(), RingError> {
        let (head_w, _, _) = self.which.words();
        rustix::thread::futex::wake(self.word(head_w)?, rustix::thread::futex::Flags::empty(), 1)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
