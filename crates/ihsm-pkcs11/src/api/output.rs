//! Outputs handed out under PKCS#11's two-call convention.

use cryptoki_sys::*;
use zeroize::Zeroizing;

use crate::R;
use crate::convert::{give, out};
use crate::state::{Op, Pending, Session};

/// Produces an output once and hands it out under PKCS#11's two-call convention:
/// a length query or a short buffer keeps it for the next call, which must be the
/// same call with the same input.
pub(super) unsafe fn output(
    s: &Session,
    op: Op,
    buf: *mut CK_BYTE,
    len: *mut CK_ULONG,
    produce: impl FnOnce() -> R<Zeroizing<Vec<u8>>>,
) -> R {
    out(len)?;
    let data = {
        let mut st = s.state()?;
        match st.take_pending(op) {
            Some(p) => p.data,
            None => {
                drop(st);
                produce()?
            }
        }
    };
    // SAFETY: `len` is non-null (`out` above) and, by this function's contract,
    // readable and writable; `buf` is null or holds `*len` writable bytes: `give`'s
    // contract.
    match unsafe { give(&data, buf, len) } {
        Ok(()) if !buf.is_null() => Ok(()),
        r => {
            s.state()?.keep(Pending {
                op,
                data,
                handle: CK_INVALID_HANDLE,
            });
            r
        }
    }
}

pub(super) fn plain(v: Vec<u8>) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(v)
}
