//! The start of an operation, kind by kind; and the starts that travel with their
//! data: a C_SignInit or C_EncryptInit the HSM accepted before is not asked again,
//! but sent with the first data (one round trip, not two).
//!
//! Each kind of operation keeps its own state ([`crate::state::OpState`]): a
//! deferred signature does not stand in the way of an encryption, and neither
//! loses the other's start or output.

use cryptoki_sys::*;
use ihsm_client::{Client, ClientError};
use ihsm_proto::mech::Mechanism;

use crate::R;
use crate::state::{Kind, Module, Session, Started};

/// The start of a kind of operation the HSM is always asked for (digest, verify,
/// decrypt): `CKR_OPERATION_ACTIVE` if the module knows one is under way (its
/// output waits to be fetched), else the HSM's answer.
pub(super) fn begin(
    m: &Module,
    s: &Session,
    kind: Kind,
    f: impl FnMut(&mut Client, u64) -> Result<(), ClientError>,
) -> R {
    if s.state()?.op(kind).active_here() {
        return Err(CKR_OPERATION_ACTIVE);
    }
    m.call(s, f)?;
    s.state()?.op(kind).remote = true;
    Ok(())
}

/// C_SignInit and C_EncryptInit: asks the HSM, unless it accepted the same start
/// before and no operation of this kind may be under way there, in which case
/// the start travels with the data (one round trip, not two). A key destroyed or
/// changed since, by this application, is forgotten; by another, its error comes
/// with the data, as it would from any HSM when a key goes between the start and
/// the data.
pub(super) fn start(
    m: &Module,
    s: &Session,
    kind: Kind,
    mech: Mechanism,
    key: CK_OBJECT_HANDLE,
) -> R {
    let slot = m.slot(s.slot)?;
    let started = Started::new(kind, key, &mech);
    {
        let mut st = s.state()?;
        let op = st.op(kind);
        if op.active_here() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        if !op.remote && slot.accepted(&started) {
            op.deferred = Some((mech, key));
            return Ok(());
        }
    }
    init(m, s, kind, mech, key)?;
    slot.accept(started);
    Ok(())
}

/// The start of `kind` made in the HSM.
fn init(m: &Module, s: &Session, kind: Kind, mech: Mechanism, key: CK_OBJECT_HANDLE) -> R {
    match kind {
        Kind::Sign => m.call(s, |c, r| c.sign_init(r, mech.clone(), key, false))?,
        Kind::Encrypt => m.call(s, |c, r| c.crypt_init(r, mech.clone(), key, true))?,
        _ => return Err(CKR_GENERAL_ERROR),
    }
    s.state()?.op(kind).remote = true;
    Ok(())
}

/// The deferred start of `kind`, if any, taken.
pub(super) fn deferred(s: &Session, kind: Kind) -> R<Option<(Mechanism, CK_OBJECT_HANDLE)>> {
    Ok(s.state()?.op(kind).deferred.take())
}

/// Before a multi-part call: a deferred start is made in the HSM now.
pub(super) fn materialize(m: &Module, s: &Session, kind: Kind) -> R {
    match deferred(s, kind)? {
        Some((mech, key)) => init(m, s, kind, mech, key),
        None => Ok(()),
    }
}

/// After a one-part call or a final of `kind`: nothing of it is under way in the
/// HSM.
pub(super) fn finished<T>(s: &Session, kind: Kind, r: R<T>) -> R<T> {
    if r.is_ok() {
        s.state()?.op(kind).remote = false;
    }
    r
}
