//! Slot and token management: the slots and their tokens, the mechanisms, and
//! the PINs (C_InitToken, C_InitPIN, C_SetPIN).

use core::ffi::c_void;

use cryptoki_sys::*;
use ihsm_client::Client;

use crate::R;
use crate::convert::{bytes, give_list, out, padded, put};

use super::general::{MANUFACTURER, version};
use super::{ctx, sess};

pub(crate) unsafe fn get_slot_list(
    _present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    n: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    // Sorted by partition name; each id is its partition's.
    let ids: Vec<CK_SLOT_ID> = m.slots.iter().map(|s| s.id).collect();
    // SAFETY: `n` is C_GetSlotList's pulCount (`give_list` refuses it null, else
    // readable and writable) and `list` null or room for `*n` slot ids: `give_list`'s
    // contract.
    unsafe { give_list(&ids, list, n) }
}

pub(crate) unsafe fn get_slot_info(id: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> R {
    let m = ctx()?;
    let slot = m.slot(id)?;
    // SAFETY: `info` is C_GetSlotInfo's pInfo: null, which `put` refuses, or a writable
    // CK_SLOT_INFO.
    unsafe {
        put(
            info,
            CK_SLOT_INFO {
                slotDescription: padded(&format!("ihsm partition {}", slot.name)),
                manufacturerID: padded(MANUFACTURER),
                flags: CKF_TOKEN_PRESENT | CKF_HW_SLOT,
                hardwareVersion: version(),
                firmwareVersion: version(),
            },
        )
    }
}

pub(crate) unsafe fn get_token_info(id: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> R {
    let m = ctx()?;
    out(info)?;
    let slot = m.slot(id)?;
    let p = slot.call(Client::info)?;
    let (sessions, rw) = m.slot_sessions(id)?;
    let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED;
    if p.user_pin_initialized {
        flags |= CKF_USER_PIN_INITIALIZED;
    }
    flags |= pin_flags(
        p.user_pin_failures,
        p.user_pin_locked,
        p.max_pin_failures,
        [
            CKF_USER_PIN_COUNT_LOW,
            CKF_USER_PIN_FINAL_TRY,
            CKF_USER_PIN_LOCKED,
        ],
    );
    flags |= pin_flags(
        p.so_pin_failures,
        p.so_pin_locked,
        p.max_pin_failures,
        [
            CKF_SO_PIN_COUNT_LOW,
            CKF_SO_PIN_FINAL_TRY,
            CKF_SO_PIN_LOCKED,
        ],
    );
    // SAFETY: `info` is C_GetTokenInfo's CK_TOKEN_INFO out-pointer, checked non-null by
    // `out` above; PKCS#11 makes it writable for one.
    unsafe {
        put(
            info,
            CK_TOKEN_INFO {
                label: padded(&p.name),
                manufacturerID: padded(MANUFACTURER),
                model: padded("ihsm partition"),
                serialNumber: padded(&format!("{:016}", p.id)),
                flags,
                ulMaxSessionCount: CK_ULONG::from(p.quotas.max_sessions),
                ulSessionCount: sessions,
                ulMaxRwSessionCount: CK_ULONG::from(p.quotas.max_sessions),
                ulRwSessionCount: rw,
                ulMaxPinLen: ihsm_proto::layout::MAX_PIN_LEN as CK_ULONG,
                ulMinPinLen: ihsm_proto::layout::MIN_PIN_LEN as CK_ULONG,
                ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
                ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
                ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
                ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
                hardwareVersion: version(),
                firmwareVersion: version(),
                utcTime: [b' '; 16],
            },
        )
    }
}

/// A PIN's token flags, `[count low, final try, locked]` as PKCS#11 defines them:
/// a wrong PIN was given at least once since the last login with it; one more
/// wrong PIN locks it; it is locked, and no login with it is possible.
fn pin_flags(failures: u32, locked: bool, max: u32, [low, last, lock]: [CK_FLAGS; 3]) -> CK_FLAGS {
    let locked = locked || (max > 0 && failures >= max);
    let mut f = 0;
    if failures > 0 {
        f |= low;
    }
    if locked {
        f |= lock;
    } else if max > 0 && failures.saturating_add(1) >= max {
        f |= last;
    }
    f
}

pub(crate) unsafe fn get_mechanism_list(
    id: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    n: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let mechs: Vec<CK_MECHANISM_TYPE> = m
        .slot(id)?
        .mechanisms()?
        .iter()
        .map(|x| x.mechanism)
        .collect();
    // SAFETY: `n` is C_GetMechanismList's pulCount (`give_list` refuses it null, else
    // readable and writable) and `list` null or room for `*n` mechanism types:
    // `give_list`'s contract.
    unsafe { give_list(&mechs, list, n) }
}

pub(crate) unsafe fn get_mechanism_info(
    id: CK_SLOT_ID,
    ty: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> R {
    let m = ctx()?;
    out(info)?;
    let mi = m
        .slot(id)?
        .mechanisms()?
        .into_iter()
        .find(|x| x.mechanism == ty)
        .ok_or(CKR_MECHANISM_INVALID)?;
    // SAFETY: `info` is C_GetMechanismInfo's CK_MECHANISM_INFO out-pointer, checked
    // non-null by `out` above; PKCS#11 makes it writable for one.
    unsafe {
        put(
            info,
            CK_MECHANISM_INFO {
                ulMinKeySize: mi.min_key,
                ulMaxKeySize: mi.max_key,
                flags: mi.flags,
            },
        )
    }
}

pub(crate) unsafe fn init_token(
    id: CK_SLOT_ID,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
    label: *mut CK_UTF8CHAR,
) -> R {
    let m = ctx()?;
    let slot = m.slot(id)?;
    // SAFETY: `pin` and `len` are C_InitToken's SO PIN: null only with a length
    // of 0, else `len` bytes readable for the whole call, which is all `bytes` needs;
    // the slice does not outlive the call.
    let pin = unsafe { bytes(pin, len) }?;
    if label.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    if m.slot_sessions(id)?.0 > 0 {
        return Err(CKR_SESSION_EXISTS);
    }
    slot.call(|c| c.init_token(pin))
}

pub(crate) unsafe fn init_pin(h: CK_SESSION_HANDLE, pin: *mut CK_UTF8CHAR, len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    if pin.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: `pin` is non-null (checked above) and C_InitPIN's pPin then holds `len`
    // readable bytes; the slice does not outlive the call.
    let pin = unsafe { bytes(pin, len) }?;
    m.call(&s, |c, r| c.init_pin(r, pin))
}

pub(crate) unsafe fn set_pin(
    h: CK_SESSION_HANDLE,
    old: *mut CK_UTF8CHAR,
    old_len: CK_ULONG,
    new: *mut CK_UTF8CHAR,
    new_len: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    if old.is_null() || new.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: `old` and `new` are non-null (checked above) and C_SetPIN's pOldPin and
    // pNewPin then hold `old_len` and `new_len` readable bytes; the slices are only
    // read, and do not outlive the call.
    let (old, new) = unsafe { (bytes(old, old_len)?, bytes(new, new_len)?) };
    m.call(&s, |c, r| c.set_pin(r, old, new))
}

/// No slot of the module ever changes while it is initialized (a partition made
/// or removed since shows at the next C_Initialize), so there is never an event:
/// without blocking, `CKR_NO_EVENT`; waiting for one would be waiting for ever,
/// which the module does not offer.
pub(crate) unsafe fn wait_for_slot_event(
    flags: CK_FLAGS,
    slot: *mut CK_SLOT_ID,
    reserved: *mut c_void,
) -> R {
    ctx()?;
    out(slot)?;
    if !reserved.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    if flags & CKF_DONT_BLOCK != 0 {
        return Err(CKR_NO_EVENT);
    }
    Err(CKR_FUNCTION_NOT_SUPPORTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: [CK_FLAGS; 3] = [
        CKF_USER_PIN_COUNT_LOW,
        CKF_USER_PIN_FINAL_TRY,
        CKF_USER_PIN_LOCKED,
    ];

    #[test]
    fn pin_flags_follow_the_failures() {
        assert_eq!(pin_flags(0, false, 10, USER), 0);
        assert_eq!(pin_flags(1, false, 10, USER), CKF_USER_PIN_COUNT_LOW);
        assert_eq!(pin_flags(8, false, 10, USER), CKF_USER_PIN_COUNT_LOW);
        assert_eq!(
            pin_flags(9, false, 10, USER),
            CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY
        );
        assert_eq!(
            pin_flags(10, false, 10, USER),
            CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_LOCKED
        );
        // Locked by the HSM's own word, and a limit of one try.
        assert_eq!(pin_flags(0, true, 10, USER), CKF_USER_PIN_LOCKED);
        assert_eq!(pin_flags(0, false, 1, USER), CKF_USER_PIN_FINAL_TRY);
        // No limit: never the final try.
        assert_eq!(pin_flags(5, false, 0, USER), CKF_USER_PIN_COUNT_LOW);
    }
}
