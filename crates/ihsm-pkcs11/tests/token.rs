//! The token's PIN flags as the failures run down, arguments checked before
//! mechanisms, and C_WaitForSlotEvent; through the cdylib loaded with dlopen and
//! a real daemon.
//!
//! Regressions (issue 13): a wrong PIN set none of CKF_USER_PIN_COUNT_LOW,
//! _FINAL_TRY (nor the SO's), only _LOCKED at the end; C_GenerateKey with a null
//! template and a non-zero count answered CKR_MECHANISM_INVALID, not
//! CKR_ARGUMENTS_BAD; C_WaitForSlotEvent before C_Initialize answered
//! CKR_FUNCTION_NOT_SUPPORTED, not CKR_CRYPTOKI_NOT_INITIALIZED; session handles
//! began at 1 again after C_Finalize and C_Initialize, so a stale one named a new
//! session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use core::ffi::c_void;
use core::ptr::null_mut;
use std::time::Duration;

use common::dl::Dl;
use common::*;
use cryptoki_sys::*;

/// A mechanism no version of PKCS#11 or ihsm defines.
const UNKNOWN: CK_MECHANISM_TYPE = CKM_VENDOR_DEFINED | 0x00de_ad00;

const PIN_FLAGS: CK_FLAGS = CKF_USER_PIN_COUNT_LOW
    | CKF_USER_PIN_FINAL_TRY
    | CKF_USER_PIN_LOCKED
    | CKF_SO_PIN_COUNT_LOW
    | CKF_SO_PIN_FINAL_TRY
    | CKF_SO_PIN_LOCKED;

fn flags(dl: &Dl, slot: CK_SLOT_ID) -> CK_FLAGS {
    // SAFETY: CK_TOKEN_INFO is plain data, all zeroes a value; the module writes it.
    let mut info: CK_TOKEN_INFO = unsafe { core::mem::zeroed() };
    // SAFETY: `info` is a live CK_TOKEN_INFO.
    assert_eq!(unsafe { p11!(dl, C_GetTokenInfo(slot, &mut info)) }, CKR_OK);
    info.flags & PIN_FLAGS
}

fn login(dl: &Dl, h: CK_SESSION_HANDLE, who: CK_USER_TYPE, pin: &str) -> CK_RV {
    let mut pin = pin.as_bytes().to_vec();
    let len = pin.len() as CK_ULONG;
    // SAFETY: `pin` is a live buffer of `len` bytes.
    unsafe { p11!(dl, C_Login(h, who, pin.as_mut_ptr(), len)) }
}

/// Runs a PIN down to locked, checking the three flags at every step.
fn run_down(
    dl: &Dl,
    slot: CK_SLOT_ID,
    h: CK_SESSION_HANDLE,
    who: CK_USER_TYPE,
    right: &str,
    max: u32,
    [low, last, locked]: [CK_FLAGS; 3],
) {
    // SAFETY: a live session handle.
    let logout = || unsafe { p11!(dl, C_Logout(h)) };
    assert_eq!(flags(dl, slot), 0, "no failure yet");
    // One wrong PIN, then the right one: the count is back to nothing.
    assert_eq!(login(dl, h, who, "wrong-pin-0000"), CKR_PIN_INCORRECT);
    assert_eq!(flags(dl, slot), low, "one failure: count low");
    assert_eq!(login(dl, h, who, right), CKR_OK);
    assert_eq!(flags(dl, slot), 0, "a good login clears it");
    assert_eq!(logout(), CKR_OK);
    for failures in 1..max {
        assert_eq!(login(dl, h, who, "wrong-pin-0000"), CKR_PIN_INCORRECT);
        let want = if failures + 1 == max { low | last } else { low };
        assert_eq!(flags(dl, slot), want, "{failures} of {max} failures");
    }
    let rv = login(dl, h, who, "wrong-pin-0000");
    assert!(
        rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED,
        "the locking try: 0x{rv:x}"
    );
    assert_eq!(flags(dl, slot), low | locked, "locked");
    assert_eq!(login(dl, h, who, right), CKR_PIN_LOCKED);
    assert_eq!(flags(dl, slot), low | locked, "still locked");
}

#[test]
fn pin_flags_argument_order_and_slot_events() {
    within(Duration::from_secs(300), "the token test", || {
        let hsm = Hsm::with_partitions(&["a", "b"]);
        // SAFETY: the only test in this binary: nothing else reads the environment.
        unsafe { std::env::set_var("IHSM_STATE", hsm.state()) };
        let max =
            ihsm_client::Client::connect(ihsm_proto::layout::partition_socket(hsm.state(), "a"))
                .unwrap()
                .info()
                .unwrap()
                .max_pin_failures;
        assert!(max >= 2, "{max}");
        let dl = Dl::load(&module());
        let mut slot: CK_SLOT_ID = 0;
        // SAFETY: every call below passes pointers to live locals, or deliberately
        // null ones, which the module must refuse.
        unsafe {
            // Before C_Initialize.
            assert_eq!(
                p11!(dl, C_WaitForSlotEvent(0, &mut slot, null_mut())),
                CKR_CRYPTOKI_NOT_INITIALIZED
            );
            assert_eq!(
                p11!(
                    dl,
                    C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut())
                ),
                CKR_CRYPTOKI_NOT_INITIALIZED
            );
            assert_eq!(p11!(dl, C_Initialize(null_mut())), CKR_OK);
            // Slots never change while the module is initialized.
            assert_eq!(
                p11!(
                    dl,
                    C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut())
                ),
                CKR_NO_EVENT
            );
            assert_eq!(
                p11!(
                    dl,
                    C_WaitForSlotEvent(CKF_DONT_BLOCK, null_mut(), null_mut())
                ),
                CKR_ARGUMENTS_BAD
            );
            let mut reserved = 0u8;
            assert_eq!(
                p11!(
                    dl,
                    C_WaitForSlotEvent(
                        CKF_DONT_BLOCK,
                        &mut slot,
                        (&raw mut reserved).cast::<c_void>()
                    )
                ),
                CKR_ARGUMENTS_BAD
            );

            let mut slots = [0 as CK_SLOT_ID; 2];
            let mut n: CK_ULONG = 2;
            assert_eq!(
                p11!(dl, C_GetSlotList(1, slots.as_mut_ptr(), &mut n)),
                CKR_OK
            );
            assert_eq!(n, 2);
            let (a, b) = (slots[0], slots[1]);
            let mut h = 0;
            let rw = CKF_SERIAL_SESSION | CKF_RW_SESSION;
            assert_eq!(
                p11!(dl, C_OpenSession(a, rw, null_mut(), None, &mut h)),
                CKR_OK
            );

            // Arguments before mechanisms, in every function that takes both: each
            // call is made twice, once with a bad argument (CKR_ARGUMENTS_BAD) and
            // once without (the unknown mechanism's CKR_MECHANISM_INVALID).
            let mut bad = mech(UNKNOWN);
            let mut k = 0;
            let (mut pk, mut sk) = (0, 0);
            let buf = [0u8; 16];
            let bp = buf.as_ptr().cast_mut();
            let len: CK_ULONG = 16;
            let mut t = [attr(CKA_VALUE_LEN, &len)];
            let tp = t.as_mut_ptr();
            let mut out = [0u8; 64];
            let mut out_len: CK_ULONG = 64;
            let mech_bad = |rv: CK_RV, what: &str| {
                assert_eq!(rv, CKR_MECHANISM_INVALID, "{what}, good arguments");
            };
            let args_bad = |rv: CK_RV, what: &str| {
                assert_eq!(rv, CKR_ARGUMENTS_BAD, "{what}, bad arguments");
            };
            args_bad(
                p11!(dl, C_GenerateKey(h, &mut bad, null_mut(), 1, &mut k)),
                "C_GenerateKey",
            );
            mech_bad(
                p11!(dl, C_GenerateKey(h, &mut bad, tp, 1, &mut k)),
                "C_GenerateKey",
            );
            args_bad(
                p11!(
                    dl,
                    C_GenerateKeyPair(h, &mut bad, null_mut(), 1, tp, 1, &mut pk, &mut sk)
                ),
                "C_GenerateKeyPair (public template)",
            );
            args_bad(
                p11!(
                    dl,
                    C_GenerateKeyPair(h, &mut bad, tp, 1, null_mut(), 1, &mut pk, &mut sk)
                ),
                "C_GenerateKeyPair (private template)",
            );
            mech_bad(
                p11!(
                    dl,
                    C_GenerateKeyPair(h, &mut bad, tp, 1, tp, 1, &mut pk, &mut sk)
                ),
                "C_GenerateKeyPair",
            );
            args_bad(
                p11!(dl, C_DeriveKey(h, &mut bad, 1, null_mut(), 1, &mut k)),
                "C_DeriveKey",
            );
            mech_bad(
                p11!(dl, C_DeriveKey(h, &mut bad, 1, tp, 1, &mut k)),
                "C_DeriveKey",
            );
            args_bad(
                p11!(
                    dl,
                    C_UnwrapKey(h, &mut bad, 1, null_mut(), 16, tp, 1, &mut k)
                ),
                "C_UnwrapKey (wrapped key)",
            );
            args_bad(
                p11!(
                    dl,
                    C_UnwrapKey(h, &mut bad, 1, bp, 16, null_mut(), 1, &mut k)
                ),
                "C_UnwrapKey (template)",
            );
            mech_bad(
                p11!(dl, C_UnwrapKey(h, &mut bad, 1, bp, 16, tp, 1, &mut k)),
                "C_UnwrapKey",
            );
            args_bad(
                p11!(
                    dl,
                    C_WrapKey(h, &mut bad, 1, 2, out.as_mut_ptr(), null_mut())
                ),
                "C_WrapKey",
            );
            args_bad(
                p11!(
                    dl,
                    C_SignMessage(h, null_mut(), 0, null_mut(), 16, null_mut(), &mut out_len)
                ),
                "C_SignMessage",
            );
            type Encapsulate = unsafe extern "C" fn(
                CK_SESSION_HANDLE,
                *mut CK_MECHANISM,
                CK_OBJECT_HANDLE,
                *mut CK_ATTRIBUTE,
                CK_ULONG,
                *mut CK_BYTE,
                *mut CK_ULONG,
                *mut CK_OBJECT_HANDLE,
            ) -> CK_RV;
            type Decapsulate = unsafe extern "C" fn(
                CK_SESSION_HANDLE,
                *mut CK_MECHANISM,
                CK_OBJECT_HANDLE,
                *mut CK_ATTRIBUTE,
                CK_ULONG,
                *mut CK_BYTE,
                CK_ULONG,
                *mut CK_OBJECT_HANDLE,
            ) -> CK_RV;
            type VerifySignatureInit = unsafe extern "C" fn(
                CK_SESSION_HANDLE,
                *mut CK_MECHANISM,
                CK_OBJECT_HANDLE,
                *mut CK_BYTE,
                CK_ULONG,
            ) -> CK_RV;
            // SAFETY: the module exports these PKCS#11 3.2 functions with these
            // signatures (cryptoki-sys's CK_C_EncapsulateKey and the others).
            let (enc, dec, vsi) = (
                core::mem::transmute::<*mut c_void, Encapsulate>(dl.sym(c"C_EncapsulateKey")),
                core::mem::transmute::<*mut c_void, Decapsulate>(dl.sym(c"C_DecapsulateKey")),
                core::mem::transmute::<*mut c_void, VerifySignatureInit>(
                    dl.sym(c"C_VerifySignatureInit"),
                ),
            );
            let op = out.as_mut_ptr();
            args_bad(
                enc(h, &mut bad, 1, null_mut(), 1, op, &mut out_len, &mut k),
                "C_EncapsulateKey",
            );
            mech_bad(
                enc(h, &mut bad, 1, tp, 1, op, &mut out_len, &mut k),
                "C_EncapsulateKey",
            );
            args_bad(
                dec(h, &mut bad, 1, null_mut(), 1, bp, 16, &mut k),
                "C_DecapsulateKey (template)",
            );
            args_bad(
                dec(h, &mut bad, 1, tp, 1, null_mut(), 16, &mut k),
                "C_DecapsulateKey (ciphertext)",
            );
            mech_bad(
                dec(h, &mut bad, 1, tp, 1, bp, 16, &mut k),
                "C_DecapsulateKey",
            );
            args_bad(vsi(h, &mut bad, 1, null_mut(), 16), "C_VerifySignatureInit");
            mech_bad(vsi(h, &mut bad, 1, bp, 16), "C_VerifySignatureInit");

            // The user PIN of "a", run down to locked.
            run_down(
                &dl,
                a,
                h,
                CKU_USER,
                PIN,
                max,
                [
                    CKF_USER_PIN_COUNT_LOW,
                    CKF_USER_PIN_FINAL_TRY,
                    CKF_USER_PIN_LOCKED,
                ],
            );
            // The SO PIN of "b" (an SO logs in on a read-write session).
            let mut hb = 0;
            assert_eq!(
                p11!(dl, C_OpenSession(b, rw, null_mut(), None, &mut hb)),
                CKR_OK
            );
            run_down(
                &dl,
                b,
                hb,
                CKU_SO,
                SO_PIN,
                max,
                [
                    CKF_SO_PIN_COUNT_LOW,
                    CKF_SO_PIN_FINAL_TRY,
                    CKF_SO_PIN_LOCKED,
                ],
            );
            // Each partition's flags are its own.
            assert_eq!(flags(&dl, a), CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_LOCKED);
            assert_eq!(p11!(dl, C_Finalize(null_mut())), CKR_OK);
            assert_eq!(
                p11!(
                    dl,
                    C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut())
                ),
                CKR_CRYPTOKI_NOT_INITIALIZED
            );

            // A session handle kept past C_Finalize never names a session of the
            // next C_Initialize (it did: handles counted from 1 again, and a
            // thread still holding an old one worked on another's new session).
            assert_eq!(p11!(dl, C_Initialize(null_mut())), CKR_OK);
            let mut fresh = Vec::new();
            for _ in 0..4 {
                let mut h2 = 0;
                assert_eq!(
                    p11!(dl, C_OpenSession(a, rw, null_mut(), None, &mut h2)),
                    CKR_OK
                );
                fresh.push(h2);
            }
            assert!(
                !fresh.contains(&h) && !fresh.contains(&hb),
                "{fresh:?} {h} {hb}"
            );
            let mut info: CK_SESSION_INFO = core::mem::zeroed();
            for old in [h, hb] {
                assert_eq!(
                    p11!(dl, C_GetSessionInfo(old, &mut info)),
                    CKR_SESSION_HANDLE_INVALID
                );
            }
            assert_eq!(p11!(dl, C_Finalize(null_mut())), CKR_OK);
        }
    });
}
