//! Random numbers.

use cryptoki_sys::*;

use crate::R;
use crate::convert::{bytes, count};

use super::{ctx, sess};

pub(crate) unsafe fn seed_random(h: CK_SESSION_HANDLE, seed: *mut CK_BYTE, len: CK_ULONG) -> R {
    let m = ctx()?;
    sess(&m, h)?;
    // SAFETY: `seed` and `len` are C_SeedRandom's seed: null only with a length
    // of 0, else `len` bytes readable for the whole call, which is all `bytes` needs;
    // the slice does not outlive the call.
    unsafe { bytes(seed, len) }?;
    // The HSM's generator is seeded from its own entropy only.
    Err(CKR_RANDOM_SEED_NOT_SUPPORTED)
}

pub(crate) unsafe fn generate_random(h: CK_SESSION_HANDLE, buf: *mut CK_BYTE, len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    let len = count(len)?;
    if len == 0 {
        return Ok(());
    }
    if buf.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    const CHUNK: usize = 1 << 20;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK);
        let r = m.call(&s, |c, r| c.random(r, n as u32))?;
        if r.expose().len() != n {
            return Err(CKR_GENERAL_ERROR);
        }
        // SAFETY: `buf` is non-null (checked above) and C_GenerateRandom's pRandomData
        // then holds `len` writable bytes; `done + n` <= `len`, so the offset and the
        // `n` bytes written stay inside it. `r` is exactly `n` bytes (checked above) of
        // this module's own buffer, which cannot overlap the application's.
        unsafe { core::ptr::copy_nonoverlapping(r.expose().as_ptr(), buf.add(done), n) };
        done += n;
    }
    Ok(())
}
