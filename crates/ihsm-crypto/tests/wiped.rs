//! Secrets that pass through a plain heap buffer are wiped before the buffer is
//! freed, on error paths too: regression tests for the paths that used to drop
//! plaintext or key bytes as they were.
//!
//! A global allocator zero-fills every allocation (so that every byte it frees is
//! initialized) and, while a test watches a byte pattern, looks for the pattern in
//! each block before handing it back to the system allocator. Reallocation goes
//! through the same check, so a buffer that grows and leaves a copy behind is
//! caught too. Memory aws-lc allocates itself (C `malloc`) is not seen: these tests
//! are about the crate's own buffers.
//!
//! Not here, because no input reaches them: the error paths of `SealKey::seal`,
//! `aes::gcm_encrypt`, key wrap and the streaming ciphers, which fail only inside
//! aws-lc after its own length checks (they wipe all the same).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use ihsm_crypto::aes::{self, AesKey};
use ihsm_crypto::ec::EccP384PrivateKey;
use ihsm_crypto::{CryptoError, Secret};

const MAX_PATTERN: usize = 64;

static PATTERN: [AtomicU8; MAX_PATTERN] = [const { AtomicU8::new(0) }; MAX_PATTERN];
/// The pattern's length; 0 while nothing is watched.
static PATTERN_LEN: AtomicUsize = AtomicUsize::new(0);
static SEEN: AtomicBool = AtomicBool::new(false);

struct Scanning;

/// Records whether the `len` bytes at `ptr` contain the watched pattern.
///
/// # Safety
/// `ptr..ptr + len` must be a live block of this allocator (so, initialized).
unsafe fn scan(ptr: *const u8, len: usize) {
    let n = PATTERN_LEN.load(Ordering::Acquire);
    if n == 0 || len < n {
        return;
    }
    let mut pattern = [0u8; MAX_PATTERN];
    for (p, a) in pattern.iter_mut().zip(&PATTERN).take(n) {
        *p = a.load(Ordering::Relaxed);
    }
    // SAFETY: the caller guarantees a live block of `len` bytes, and `alloc`
    // zero-filled it, so every byte is initialized.
    let block = unsafe { core::slice::from_raw_parts(ptr, len) };
    if block.windows(n).any(|w| w == &pattern[..n]) {
        SEEN.store(true, Ordering::Release);
    }
}

// SAFETY: every method forwards to `System` with the layout it was given;
// `alloc` zero-fills (so `scan` reads initialized bytes), `dealloc` scans a block
// that is still allocated, and `realloc` is alloc + copy + dealloc, which is what
// the trait's contract allows it to be.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `layout` comes from the caller, as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller hands back a live block of `layout.size()` bytes.
        unsafe {
            scan(ptr, layout.size());
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `layout` describes the live block at `ptr`
        // and that `new_size` with its alignment is a valid layout.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[global_allocator]
static ALLOC: Scanning = Scanning;

/// Watches for `pattern` in freed memory until the guard is dropped; one watcher at
/// a time.
struct Watch(#[allow(dead_code)] MutexGuard<'static, ()>);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn watch(pattern: &[u8]) -> Watch {
    assert!((8..=MAX_PATTERN).contains(&pattern.len()));
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    for (a, b) in PATTERN.iter().zip(pattern) {
        a.store(*b, Ordering::Relaxed);
    }
    SEEN.store(false, Ordering::Release);
    PATTERN_LEN.store(pattern.len(), Ordering::Release);
    Watch(guard)
}

impl Watch {
    /// Stops watching; true when a freed block held the pattern.
    fn seen(self) -> bool {
        PATTERN_LEN.store(0, Ordering::Release);
        SEEN.load(Ordering::Acquire)
    }
}

/// A plaintext no other test uses, in static memory (never freed).
///
/// Each test watches a pattern of its own: the tests run on parallel threads, and
/// one test's set-up (outside the watch) must not free what another is watching.
const MARKER: [u8; 24] = *b"ihsm-wipe-test-plaintext";

/// The key material of the refused PEM, distinct from [`MARKER`].
const PEM_MARKER: [u8; 24] = *b"ihsm-wipe-test-pem-bytes";

/// The allocator does see what a plain buffer leaves behind (so the tests below
/// can fail).
#[test]
fn the_scanner_sees_an_unwiped_buffer() {
    let w = watch(&MARKER);
    drop(std::hint::black_box(MARKER.to_vec()));
    assert!(w.seen());
    let w = watch(&MARKER);
    drop(std::hint::black_box(zeroize::Zeroizing::new(
        MARKER.to_vec(),
    )));
    assert!(!w.seen());
}

/// CBC without padding refused a length that is not whole blocks after it had
/// copied the plaintext into its output buffer, and dropped that buffer as it was.
#[test]
fn cbc_encrypt_of_a_partial_block_leaves_no_plaintext() {
    let key = AesKey::from_bytes(&[7; 32]).unwrap();
    let w = watch(&MARKER);
    let r = aes::cbc_encrypt(&key, &[0; 16], false, &MARKER);
    assert!(matches!(r, Err(CryptoError::WrongLength { .. })));
    assert!(!w.seen(), "plaintext left in freed memory");
    // The success paths hand out ciphertext only.
    let w = watch(&MARKER);
    for mode in [true, false] {
        let ct = aes::cbc_encrypt(&key, &[0; 16], mode, &MARKER[..16]).unwrap();
        drop(ct);
    }
    drop(aes::gcm_encrypt(&key, &[0; 12], b"", &MARKER, 16).unwrap());
    drop(aes::ctr_crypt(&key, &[0; 16], &MARKER).unwrap());
    assert!(!w.seen(), "plaintext left in freed memory");
}

/// A PEM private key with the wrong label was parsed into a buffer that was
/// dropped unwiped.
#[test]
fn a_refused_private_pem_leaves_no_key_material() {
    let text = pem::encode(&pem::Pem::new("EC PRIVATE KEY", PEM_MARKER.to_vec()));
    let text = zeroize::Zeroizing::new(text);
    let w = watch(&PEM_MARKER);
    assert!(EccP384PrivateKey::from_pem(&text).is_err());
    assert!(!w.seen(), "key material left in freed memory");
}

/// Writing and reading a private PEM made copies of the key (the DER handed to the
/// `pem` crate, its base64 text, the growing output string) that were freed as
/// they were.
#[test]
fn private_pem_leaves_no_copy_of_the_key() {
    const SCALAR: [u8; 48] = [0x5a; 48];
    let key = EccP384PrivateKey::from_scalar(&Secret::from_slice(&SCALAR).unwrap()).unwrap();
    let w = watch(&SCALAR);
    let pem = key.to_pem().unwrap();
    assert!(!w.seen(), "the DER of the key left in freed memory");
    // The first line of base64 is the key's encoding too.
    let line: Vec<u8> = pem.lines().nth(1).unwrap().as_bytes().to_vec();
    let line = zeroize::Zeroizing::new(line);
    let w = watch(&line);
    drop(key.to_pem().unwrap());
    let back = EccP384PrivateKey::from_pem(&pem).unwrap();
    assert!(!w.seen(), "base64 of the key left in freed memory");
    assert_eq!(back.public_key(), key.public_key());
}
