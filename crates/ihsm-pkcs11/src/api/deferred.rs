//! Starts that travel with their data: a C_SignInit or C_EncryptInit the HSM
//! accepted before is not asked again, but sent with the first data (one round
//! trip, not two).

use cryptoki_sys::*;
use ihsm_proto::mech::Mechanism;

use crate::R;
use crate::state::{Kind, Module, Session, Started};

/// C_SignInit and C_EncryptInit: asks the HSM, unless it accepted the same start
/// before, in which case the start travels with the data (one round trip, not
/// two). A key destroyed or changed since, by this application, is forgotten; by
/// another, its error comes with the data, as it would from any HSM when a key
/// goes between the start and the data.
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
        st.pending = None;
        if st.deferred.as_ref().is_some_and(|(k, ..)| *k == kind) {
            return Err(CKR_OPERATION_ACTIVE);
        }
        if !st.remote_active && slot.accepted(&started) {
            st.deferred = Some((kind, mech, key));
            return Ok(());
        }
    }
    match kind {
        Kind::Sign => m.call(s, |c, r| c.sign_init(r, mech, key, false))?,
        Kind::Encrypt => m.call(s, |c, r| c.crypt_init(r, mech, key, true))?,
    }
    s.state()?.remote_active = true;
    slot.accept(started);
    Ok(())
}

/// The deferred start of `kind`, if any, taken.
pub(super) fn deferred(s: &Session, kind: Kind) -> R<Option<(Mechanism, CK_OBJECT_HANDLE)>> {
    let mut st = s.state()?;
    Ok(match st.deferred.take() {
        Some((k, mech, key)) if k == kind => Some((mech, key)),
        other => {
            st.deferred = other;
            None
        }
    })
}

/// Before a multi-part call: a deferred start is made in the HSM now.
pub(super) fn materialize(m: &Module, s: &Session, kind: Kind) -> R {
    if let Some((mech, key)) = deferred(s, kind)? {
        match kind {
            Kind::Sign => m.call(s, |c, r| c.sign_init(r, mech, key, false))?,
            Kind::Encrypt => m.call(s, |c, r| c.crypt_init(r, mech, key, true))?,
        }
        s.state()?.remote_active = true;
    }
    Ok(())
}

/// After a one-part call or a final: nothing is under way in the HSM.
pub(super) fn finished<T>(s: &Session, r: R<T>) -> R<T> {
    if r.is_ok() {
        s.state()?.remote_active = false;
    }
    r
}
