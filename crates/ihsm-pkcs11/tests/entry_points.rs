//! The entry points no command-line client reaches: message-based signatures
//! (PKCS#11 3.0), C_VerifySignature (3.2), object copy and size, PIN and token
//! management, and every function ihsm does not implement. Each is called through
//! the exported symbol an application links against, and its answer checked, the
//! working ones by what they do and the refused ones by their CKR_ code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use core::ptr::null_mut;

use common::*;
use cryptoki_sys::*;
use ihsm_pkcs11::ffi::*;

unsafe fn open(slot: CK_SLOT_ID) -> CK_SESSION_HANDLE {
    let mut h = 0;
    let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    // SAFETY: `h` is a live local for the handle; no notify callback or application
    // pointer.
    let rv = unsafe { C_OpenSession(slot, flags, null_mut(), None, &mut h) };
    assert_eq!(rv, CKR_OK);
    h
}

unsafe fn login(h: CK_SESSION_HANDLE, who: CK_USER_TYPE, pin: &str) -> CK_RV {
    let mut pin = pin.as_bytes().to_vec();
    let len = pin.len() as CK_ULONG;
    // SAFETY: `pin` is a live buffer of exactly `len` bytes.
    unsafe { C_Login(h, who, pin.as_mut_ptr(), len) }
}

unsafe fn set_pin(h: CK_SESSION_HANDLE, old: &str, new: &str) -> CK_RV {
    let (mut old, mut new) = (old.as_bytes().to_vec(), new.as_bytes().to_vec());
    let (ol, nl) = (old.len() as CK_ULONG, new.len() as CK_ULONG);
    // SAFETY: `old` and `new` are live buffers of exactly `ol` and `nl` bytes.
    unsafe { C_SetPIN(h, old.as_mut_ptr(), ol, new.as_mut_ptr(), nl) }
}

unsafe fn ec_pair(h: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let mut m = mech(CKM_EC_KEY_PAIR_GEN);
    let mut public = [bytes_attr(CKA_EC_PARAMS, &P256)];
    let (mut pk, mut sk) = (0, 0);
    // SAFETY: `m` is a mechanism without parameter, `public` one attribute pointing to
    // the static P256 OID, the private template empty (null, 0), `pk` and `sk` live
    // locals for the handles.
    let rv = unsafe {
        C_GenerateKeyPair(
            h,
            &mut m,
            public.as_mut_ptr(),
            1,
            null_mut(),
            0,
            &mut pk,
            &mut sk,
        )
    };
    assert_eq!(rv, CKR_OK);
    (pk, sk)
}

/// Every object handle a find over the whole partition returns.
unsafe fn all_objects(h: CK_SESSION_HANDLE) -> Vec<CK_OBJECT_HANDLE> {
    let mut found = [0 as CK_OBJECT_HANDLE; 64];
    let mut n: CK_ULONG = 0;
    // SAFETY: an empty template (null, 0) matches everything; `found` has room for
    // the 64 handles allowed, `n` is a live local for the count.
    unsafe {
        assert_eq!(C_FindObjectsInit(h, null_mut(), 0), CKR_OK);
        assert_eq!(C_FindObjects(h, found.as_mut_ptr(), 64, &mut n), CKR_OK);
        assert_eq!(C_FindObjectsFinal(h), CKR_OK);
    }
    found[..n as usize].to_vec()
}

/// A signature made with the message-based functions, one call or in parts.
unsafe fn message_sign(h: CK_SESSION_HANDLE, parts: &[&[u8]]) -> Vec<u8> {
    let mut sig = vec![0u8; 256];
    let mut len = sig.len() as CK_ULONG;
    // SAFETY: each part is a live slice passed with its own length; `sig` has room for
    // the `len` bytes said, `n` and `len` are live locals; the message parameter is
    // absent (null, 0), as ihsm's mechanisms take none.
    unsafe {
        if let [one] = parts {
            let mut n: CK_ULONG = 0;
            let (p, l) = (one.as_ptr().cast_mut(), one.len() as CK_ULONG);
            assert_eq!(
                C_SignMessage(h, null_mut(), 0, p, l, null_mut(), &mut n),
                CKR_OK
            );
            assert!(n >= 64);
            let rv = C_SignMessage(h, null_mut(), 0, p, l, sig.as_mut_ptr(), &mut len);
            assert_eq!(rv, CKR_OK);
        } else {
            assert_eq!(C_SignMessageBegin(h, null_mut(), 0), CKR_OK);
            let (last, rest) = parts.split_last().unwrap();
            for part in rest {
                let (p, l) = (part.as_ptr().cast_mut(), part.len() as CK_ULONG);
                let rv = C_SignMessageNext(h, null_mut(), 0, p, l, null_mut(), null_mut());
                assert_eq!(rv, CKR_OK);
            }
            let (p, l) = (last.as_ptr().cast_mut(), last.len() as CK_ULONG);
            let rv = C_SignMessageNext(h, null_mut(), 0, p, l, sig.as_mut_ptr(), &mut len);
            assert_eq!(rv, CKR_OK);
        }
    }
    sig.truncate(len as usize);
    sig
}

#[test]
fn every_entry_point_works_or_says_it_is_not_supported() {
    let _watchdog = watchdog(
        std::time::Duration::from_secs(300),
        "every_entry_point_works_or_says_it_is_not_supported",
    );
    let hsm = Hsm::with_partitions(&["a"]);
    // SAFETY: the only test in this binary: nothing else reads the environment.
    unsafe { std::env::set_var("IHSM_STATE", hsm.state()) };
    // SAFETY: every call below passes pointers to live locals of the right type,
    // or deliberately null ones, which the module must refuse.
    unsafe {
        assert_eq!(C_Initialize(null_mut()), CKR_OK);
        let mut slots = [0 as CK_SLOT_ID; 1];
        let mut n: CK_ULONG = 1;
        assert_eq!(C_GetSlotList(1, slots.as_mut_ptr(), &mut n), CKR_OK);
        let slot = slots[0];
        let h = open(slot);
        assert_eq!(login(h, CKU_USER, PIN), CKR_OK);
        let (pk, sk) = ec_pair(h);
        let data = b"a message signed in one part, and then in three";
        let (d, dl) = (data.as_ptr().cast_mut(), data.len() as CK_ULONG);
        let mut m = mech(CKM_ECDSA_SHA256);

        // Message-based signing: one call, and in parts; each verifies both ways.
        let mut sig = [0u8; 128];
        let mut sl = sig.len() as CK_ULONG;
        assert_eq!(
            C_SignMessage(h, null_mut(), 0, d, dl, sig.as_mut_ptr(), &mut sl),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(
            C_SignMessageBegin(h, null_mut(), 0),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(C_MessageSignFinal(h), CKR_OPERATION_NOT_INITIALIZED);
        assert_eq!(C_MessageSignInit(h, null_mut(), sk), CKR_ARGUMENTS_BAD);
        assert_eq!(C_MessageSignInit(h, &mut m, sk), CKR_OK);
        assert_eq!(C_MessageSignInit(h, &mut m, sk), CKR_OPERATION_ACTIVE);
        // Next before Begin; a parameter ECDSA does not take; the verify side.
        assert_eq!(
            C_SignMessageNext(h, null_mut(), 0, d, dl, null_mut(), null_mut()),
            CKR_OPERATION_NOT_INITIALIZED
        );
        let mut junk = [0u8; 4];
        assert_eq!(
            C_SignMessage(h, junk.as_mut_ptr().cast(), 4, d, dl, null_mut(), &mut sl),
            CKR_MECHANISM_PARAM_INVALID
        );
        assert_eq!(
            C_VerifyMessageBegin(h, null_mut(), 0),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(C_MessageVerifyFinal(h), CKR_OPERATION_NOT_INITIALIZED);
        let whole = message_sign(h, &[data]);
        let split = message_sign(h, &[&data[..10], &data[10..20], &data[20..]]);
        // The context stays for more messages until C_MessageSignFinal.
        let again = message_sign(h, &[data]);
        assert_eq!(C_MessageSignFinal(h), CKR_OK);
        assert_eq!(C_MessageSignFinal(h), CKR_OPERATION_NOT_INITIALIZED);

        assert_eq!(C_MessageVerifyInit(h, &mut m, pk), CKR_OK);
        for s in [&whole, &split, &again] {
            let (sp, sl) = (s.as_ptr().cast_mut(), s.len() as CK_ULONG);
            assert_eq!(C_VerifyMessage(h, null_mut(), 0, d, dl, sp, sl), CKR_OK);
            assert_eq!(C_VerifyMessageBegin(h, null_mut(), 0), CKR_OK);
            assert_eq!(
                C_VerifyMessageNext(h, null_mut(), 0, d, 7, null_mut(), 0),
                CKR_OK
            );
            let rest = d.add(7);
            assert_eq!(
                C_VerifyMessageNext(h, null_mut(), 0, rest, dl - 7, sp, sl),
                CKR_OK
            );
        }
        let mut bad = whole.clone();
        bad[10] ^= 1;
        let (bp, bl) = (bad.as_mut_ptr(), bad.len() as CK_ULONG);
        assert_eq!(
            C_VerifyMessage(h, null_mut(), 0, d, dl, bp, bl),
            CKR_SIGNATURE_INVALID
        );
        // A verify context does not sign.
        assert_eq!(
            C_SignMessage(h, null_mut(), 0, d, dl, null_mut(), &mut sl),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(C_MessageSignFinal(h), CKR_OPERATION_NOT_INITIALIZED);
        assert_eq!(C_MessageVerifyFinal(h), CKR_OK);

        // C_VerifySignature (3.2): the signature comes first, the data after.
        let (wp, wl) = (whole.as_ptr().cast_mut(), whole.len() as CK_ULONG);
        assert_eq!(C_VerifySignature(h, d, dl), CKR_OPERATION_NOT_INITIALIZED);
        assert_eq!(C_VerifySignatureFinal(h), CKR_OPERATION_NOT_INITIALIZED);
        assert_eq!(C_VerifySignatureInit(h, &mut m, pk, wp, wl), CKR_OK);
        assert_eq!(
            C_VerifySignatureInit(h, &mut m, pk, wp, wl),
            CKR_OPERATION_ACTIVE
        );
        assert_eq!(C_VerifySignature(h, d, dl), CKR_OK);
        assert_eq!(C_VerifySignature(h, d, dl), CKR_OPERATION_NOT_INITIALIZED);
        assert_eq!(C_VerifySignatureInit(h, &mut m, pk, wp, wl), CKR_OK);
        assert_eq!(C_VerifySignatureUpdate(h, d, 5), CKR_OK);
        assert_eq!(C_VerifySignatureUpdate(h, d.add(5), dl - 5), CKR_OK);
        assert_eq!(C_VerifySignatureFinal(h), CKR_OK);
        assert_eq!(C_VerifySignatureInit(h, &mut m, pk, bp, bl), CKR_OK);
        assert_eq!(C_VerifySignature(h, d, dl), CKR_SIGNATURE_INVALID);

        // A start the HSM accepted before travels with the data: the answers
        // stay those of PKCS#11.
        let sign_once = |key| {
            let mut sig = [0u8; 128];
            let mut sl = sig.len() as CK_ULONG;
            let mut m = mech(CKM_ECDSA_SHA256);
            let rv = C_SignInit(h, &mut m, key);
            if rv != CKR_OK {
                return rv;
            }
            C_Sign(h, d, dl, sig.as_mut_ptr(), &mut sl)
        };
        assert_eq!(sign_once(pk), CKR_KEY_FUNCTION_NOT_PERMITTED);
        assert_eq!(sign_once(pk), CKR_KEY_FUNCTION_NOT_PERMITTED);
        for _ in 0..3 {
            assert_eq!(sign_once(sk), CKR_OK);
        }
        assert_eq!(C_SignInit(h, &mut m, sk), CKR_OK);
        assert_eq!(C_SignInit(h, &mut m, sk), CKR_OPERATION_ACTIVE);
        // In parts, and with a length query first.
        assert_eq!(C_SignUpdate(h, d, 4), CKR_OK);
        assert_eq!(C_SignUpdate(h, d.add(4), dl - 4), CKR_OK);
        let mut parts = [0u8; 128];
        let mut pl: CK_ULONG = 0;
        assert_eq!(C_SignFinal(h, null_mut(), &mut pl), CKR_OK);
        assert_eq!(C_SignFinal(h, parts.as_mut_ptr(), &mut pl), CKR_OK);
        assert_eq!(C_VerifyInit(h, &mut m, pk), CKR_OK);
        assert_eq!(C_Verify(h, d, dl, parts.as_mut_ptr(), pl), CKR_OK);
        assert_eq!(C_SignInit(h, &mut m, sk), CKR_OK);
        let mut q: CK_ULONG = 0;
        assert_eq!(C_Sign(h, d, dl, null_mut(), &mut q), CKR_OK);
        let mut one = vec![0u8; q as usize];
        assert_eq!(C_Sign(h, d, dl, one.as_mut_ptr(), &mut q), CKR_OK);
        assert_eq!(C_VerifyInit(h, &mut m, pk), CKR_OK);
        assert_eq!(C_Verify(h, d, dl, one.as_mut_ptr(), q), CKR_OK);
        assert_eq!(
            C_Sign(h, d, dl, one.as_mut_ptr(), &mut q),
            CKR_OPERATION_NOT_INITIALIZED
        );
        // A key this application destroys is refused at the start again.
        let (doomed_pk, doomed) = ec_pair(h);
        assert_eq!(C_DestroyObject(h, doomed_pk), CKR_OK);
        assert_eq!(sign_once(doomed), CKR_OK);
        assert_eq!(C_DestroyObject(h, doomed), CKR_OK);
        assert_eq!(C_SignInit(h, &mut m, doomed), CKR_KEY_HANDLE_INVALID);
        // AES-GCM: a new IV each time rides along; a wrong IV length is a new
        // start, refused at C_EncryptInit.
        let mut keygen = mech(CKM_AES_KEY_GEN);
        let vl: CK_ULONG = 32;
        let mut t = [CK_ATTRIBUTE {
            type_: CKA_VALUE_LEN,
            pValue: core::ptr::from_ref(&vl).cast_mut().cast(),
            ulValueLen: size_of::<CK_ULONG>() as CK_ULONG,
        }];
        let mut aes = 0;
        assert_eq!(
            C_GenerateKey(h, &mut keygen, t.as_mut_ptr(), 1, &mut aes),
            CKR_OK
        );
        for (i, iv_len, init) in [
            (1u8, 12, CKR_OK),
            (2, 12, CKR_OK),
            (3, 12, CKR_OK),
            (4, 7, CKR_MECHANISM_PARAM_INVALID),
        ] {
            let mut iv = vec![i; iv_len];
            let mut p = CK_GCM_PARAMS {
                pIv: iv.as_mut_ptr(),
                ulIvLen: iv_len as CK_ULONG,
                ulIvBits: 8 * iv_len as CK_ULONG,
                pAAD: null_mut(),
                ulAADLen: 0,
                ulTagBits: 128,
            };
            let mut g = CK_MECHANISM {
                mechanism: CKM_AES_GCM,
                pParameter: (&raw mut p).cast(),
                ulParameterLen: size_of::<CK_GCM_PARAMS>() as CK_ULONG,
            };
            assert_eq!(C_EncryptInit(h, &mut g, aes), init, "IV {i}");
            if init == CKR_OK {
                let mut ct = [0u8; 128];
                let mut cl = ct.len() as CK_ULONG;
                assert_eq!(C_Encrypt(h, d, dl, ct.as_mut_ptr(), &mut cl), CKR_OK);
                assert_eq!(cl, dl + 16);
                assert_eq!(C_DecryptInit(h, &mut g, aes), CKR_OK);
                let mut back = [0u8; 128];
                let mut bl = back.len() as CK_ULONG;
                assert_eq!(
                    C_Decrypt(h, ct.as_mut_ptr(), cl, back.as_mut_ptr(), &mut bl),
                    CKR_OK
                );
                assert_eq!(&back[..bl as usize], &data[..]);
            }
        }
        assert_eq!(C_DestroyObject(h, aes), CKR_OK);

        // Copy, size, destroy.
        let label = b"copied";
        let mut tmpl = [bytes_attr(CKA_LABEL, label)];
        let mut copy = 0;
        assert_eq!(
            C_CopyObject(h, pk, tmpl.as_mut_ptr(), 1, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            C_CopyObject(h, 0xdead_beef, tmpl.as_mut_ptr(), 1, &mut copy),
            CKR_OBJECT_HANDLE_INVALID
        );
        assert_eq!(C_CopyObject(h, pk, tmpl.as_mut_ptr(), 1, &mut copy), CKR_OK);
        assert_ne!(copy, pk);
        let mut got = [0u8; 16];
        let mut a = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: got.as_mut_ptr().cast(),
            ulValueLen: 16,
        }];
        assert_eq!(C_GetAttributeValue(h, copy, a.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(&got[..a[0].ulValueLen as usize], label);
        // The copy verifies what the original's private key signed.
        assert_eq!(C_VerifySignatureInit(h, &mut m, copy, wp, wl), CKR_OK);
        assert_eq!(C_VerifySignature(h, d, dl), CKR_OK);
        let mut size: CK_ULONG = 0;
        assert_eq!(C_GetObjectSize(h, copy, null_mut()), CKR_ARGUMENTS_BAD);
        assert_eq!(
            C_GetObjectSize(h, 0xdead_beef, &mut size),
            CKR_OBJECT_HANDLE_INVALID
        );
        assert_eq!(C_GetObjectSize(h, copy, &mut size), CKR_OK);
        assert_eq!(size, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(all_objects(h).len(), 3);
        assert_eq!(C_DestroyObject(h, copy), CKR_OK);
        assert_eq!(C_DestroyObject(h, copy), CKR_OBJECT_HANDLE_INVALID);
        assert_eq!(all_objects(h).len(), 2);

        // C_SetPIN: the old PIN must be right; the new one works at the next login.
        assert_eq!(set_pin(h, "not-the-pin", "new-user-pin"), CKR_PIN_INCORRECT);
        assert_eq!(set_pin(h, PIN, "new-user-pin"), CKR_OK);
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(set_pin(h, "new-user-pin", PIN), CKR_USER_NOT_LOGGED_IN);
        assert_eq!(login(h, CKU_USER, PIN), CKR_PIN_INCORRECT);
        assert_eq!(login(h, CKU_USER, "new-user-pin"), CKR_OK);

        // C_InitPIN: the SO's alone, in a read-write session.
        let mut p = b"third-user-pin".to_vec();
        let pl = p.len() as CK_ULONG;
        assert_eq!(C_InitPIN(h, p.as_mut_ptr(), pl), CKR_USER_NOT_LOGGED_IN);
        assert_eq!(C_InitPIN(h, null_mut(), pl), CKR_ARGUMENTS_BAD);
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(login(h, CKU_SO, SO_PIN), CKR_OK);
        assert_eq!(C_InitPIN(h, p.as_mut_ptr(), pl), CKR_OK);
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(login(h, CKU_USER, "new-user-pin"), CKR_PIN_INCORRECT);
        assert_eq!(login(h, CKU_USER, "third-user-pin"), CKR_OK);

        // C_InitToken: refused while a session is open, then clears the objects
        // and the user PIN; the SO sets a new one.
        let mut so = SO_PIN.as_bytes().to_vec();
        let sol = so.len() as CK_ULONG;
        let mut tl = [b' '; 32];
        tl[..1].copy_from_slice(b"a");
        assert_eq!(
            C_InitToken(slot, so.as_mut_ptr(), sol, tl.as_mut_ptr()),
            CKR_SESSION_EXISTS
        );
        assert_eq!(C_CloseSession(h), CKR_OK);
        assert_eq!(
            C_InitToken(slot, so.as_mut_ptr(), sol, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        let mut wrong = b"wrong-so-pin".to_vec();
        assert_eq!(
            C_InitToken(slot, wrong.as_mut_ptr(), 12, tl.as_mut_ptr()),
            CKR_PIN_INCORRECT
        );
        assert_eq!(
            C_InitToken(slot, so.as_mut_ptr(), sol, tl.as_mut_ptr()),
            CKR_OK
        );
        let mut ti: CK_TOKEN_INFO = core::mem::zeroed();
        assert_eq!(C_GetTokenInfo(slot, &mut ti), CKR_OK);
        assert_eq!(ti.flags & CKF_USER_PIN_INITIALIZED, 0);
        let h = open(slot);
        assert_eq!(
            login(h, CKU_USER, "third-user-pin"),
            CKR_USER_PIN_NOT_INITIALIZED
        );
        assert_eq!(login(h, CKU_SO, SO_PIN), CKR_OK);
        assert_eq!(C_InitPIN(h, p.as_mut_ptr(), pl), CKR_OK);
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(login(h, CKU_USER, "third-user-pin"), CKR_OK);
        assert!(all_objects(h).is_empty());
        assert_eq!(C_GetTokenInfo(slot, &mut ti), CKR_OK);
        assert_ne!(ti.flags & CKF_USER_PIN_INITIALIZED, 0);

        // ihsm runs no function in parallel with the application.
        assert_eq!(C_GetFunctionStatus(h), CKR_FUNCTION_NOT_PARALLEL);
        assert_eq!(C_CancelFunction(h), CKR_FUNCTION_NOT_PARALLEL);
        assert_eq!(
            C_SeedRandom(h, p.as_mut_ptr(), pl),
            CKR_RANDOM_SEED_NOT_SUPPORTED
        );

        // What ihsm does not implement says so, whatever it is given.
        assert_eq!(
            C_GetOperationState(0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_GetOperationState"
        );
        assert_eq!(
            C_SetOperationState(0, null_mut(), 0, 0, 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_SetOperationState"
        );
        assert_eq!(C_DigestKey(0, 0), CKR_FUNCTION_NOT_SUPPORTED, "C_DigestKey");
        assert_eq!(
            C_SignRecoverInit(0, null_mut(), 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_SignRecoverInit"
        );
        assert_eq!(
            C_SignRecover(0, null_mut(), 0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_SignRecover"
        );
        assert_eq!(
            C_VerifyRecoverInit(0, null_mut(), 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_VerifyRecoverInit"
        );
        assert_eq!(
            C_VerifyRecover(0, null_mut(), 0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_VerifyRecover"
        );
        assert_eq!(
            C_DigestEncryptUpdate(0, null_mut(), 0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_DigestEncryptUpdate"
        );
        assert_eq!(
            C_DecryptDigestUpdate(0, null_mut(), 0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_DecryptDigestUpdate"
        );
        assert_eq!(
            C_SignEncryptUpdate(0, null_mut(), 0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_SignEncryptUpdate"
        );
        assert_eq!(
            C_DecryptVerifyUpdate(0, null_mut(), 0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_DecryptVerifyUpdate"
        );
        // Waiting for a slot event that never comes is not offered (tests/token.rs
        // has the rest of C_WaitForSlotEvent).
        let mut event_slot: CK_SLOT_ID = 0;
        assert_eq!(
            C_WaitForSlotEvent(0, &mut event_slot, null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_WaitForSlotEvent"
        );
        assert_eq!(
            C_LoginUser(0, 0, null_mut(), 0, null_mut(), 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_LoginUser"
        );
        assert_eq!(
            C_SessionCancel(0, 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_SessionCancel"
        );
        assert_eq!(
            C_MessageEncryptInit(0, null_mut(), 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_MessageEncryptInit"
        );
        assert_eq!(
            C_EncryptMessage(
                0,
                null_mut(),
                0,
                null_mut(),
                0,
                null_mut(),
                0,
                null_mut(),
                null_mut()
            ),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_EncryptMessage"
        );
        assert_eq!(
            C_EncryptMessageBegin(0, null_mut(), 0, null_mut(), 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_EncryptMessageBegin"
        );
        assert_eq!(
            C_EncryptMessageNext(0, null_mut(), 0, null_mut(), 0, null_mut(), null_mut(), 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_EncryptMessageNext"
        );
        assert_eq!(
            C_MessageEncryptFinal(0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_MessageEncryptFinal"
        );
        assert_eq!(
            C_MessageDecryptInit(0, null_mut(), 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_MessageDecryptInit"
        );
        assert_eq!(
            C_DecryptMessage(
                0,
                null_mut(),
                0,
                null_mut(),
                0,
                null_mut(),
                0,
                null_mut(),
                null_mut()
            ),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_DecryptMessage"
        );
        assert_eq!(
            C_DecryptMessageBegin(0, null_mut(), 0, null_mut(), 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_DecryptMessageBegin"
        );
        assert_eq!(
            C_DecryptMessageNext(0, null_mut(), 0, null_mut(), 0, null_mut(), null_mut(), 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_DecryptMessageNext"
        );
        assert_eq!(
            C_MessageDecryptFinal(0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_MessageDecryptFinal"
        );
        assert_eq!(
            C_GetSessionValidationFlags(0, 0, null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_GetSessionValidationFlags"
        );
        assert_eq!(
            C_AsyncComplete(0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_AsyncComplete"
        );
        assert_eq!(
            C_AsyncGetID(0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_AsyncGetID"
        );
        assert_eq!(
            C_AsyncJoin(0, null_mut(), 0, null_mut(), 0),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_AsyncJoin"
        );
        assert_eq!(
            C_WrapKeyAuthenticated(0, null_mut(), 0, 0, null_mut(), 0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_WrapKeyAuthenticated"
        );
        assert_eq!(
            C_UnwrapKeyAuthenticated(
                0,
                null_mut(),
                0,
                null_mut(),
                0,
                null_mut(),
                0,
                null_mut(),
                0,
                null_mut()
            ),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_UnwrapKeyAuthenticated"
        );

        // And the mechanism list does not claim message-based encryption.
        let mut mi: CK_MECHANISM_INFO = core::mem::zeroed();
        assert_eq!(C_GetMechanismInfo(slot, CKM_AES_GCM, &mut mi), CKR_OK);
        assert_eq!(mi.flags & (CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT), 0);
        assert_eq!(C_GetMechanismInfo(slot, CKM_ECDSA_SHA256, &mut mi), CKR_OK);
        assert_ne!(mi.flags & CKF_MESSAGE_SIGN, 0);

        assert_eq!(C_Finalize(null_mut()), CKR_OK);
    }
}
