//! Bad input at the C boundary: null pointers, wrong handles, handles of another
//! session or partition, wrong mechanism parameters, inconsistent or unknown
//! templates, buffers one byte short, calls out of order and after C_Finalize.
//! Each gets the CKR_ code PKCS#11 3.2 prescribes, through the very entry points
//! an application calls.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use core::ffi::c_void;
use core::ptr::{null, null_mut};

use common::*;
use cryptoki_sys::*;
use ihsm_pkcs11::ffi::*;

unsafe extern "C" fn create_mutex(m: *mut *mut c_void) -> CK_RV {
    // SAFETY: the module calls CreateMutex with a pointer to where the new mutex goes,
    // writable for one pointer (PKCS#11's CK_CREATEMUTEX).
    unsafe { *m = core::ptr::dangling_mut::<c_void>() };
    CKR_OK
}
unsafe extern "C" fn mutex_op(_: *mut c_void) -> CK_RV {
    CKR_OK
}

struct Session {
    h: CK_SESSION_HANDLE,
}

unsafe fn open(slot: CK_SLOT_ID) -> Session {
    let mut h = 0;
    let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    // SAFETY: `h` is a live local for the handle; no notify callback or application
    // pointer.
    let rv = unsafe { C_OpenSession(slot, flags, null_mut(), None, &mut h) };
    assert_eq!(rv, CKR_OK);
    let mut pin = PIN.as_bytes().to_vec();
    let len = pin.len() as CK_ULONG;
    // SAFETY: `pin` is a live buffer of exactly `len` bytes.
    let rv = unsafe { C_Login(h, CKU_USER, pin.as_mut_ptr(), len) };
    assert_eq!(rv, CKR_OK);
    Session { h }
}

unsafe fn ec_pair(s: &Session) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let mut m = mech(CKM_EC_KEY_PAIR_GEN);
    let mut public = [bytes_attr(CKA_EC_PARAMS, &P256)];
    let (mut pk, mut sk) = (0, 0);
    // SAFETY: `m` is a mechanism without parameter, `public` one attribute pointing to
    // the static P256 OID, the private template empty (null, 0), `pk` and `sk` live
    // locals for the handles.
    let rv = unsafe {
        C_GenerateKeyPair(
            s.h,
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

#[test]
fn every_entry_point_answers_bad_input_as_the_specification_says() {
    let _watchdog = watchdog(
        std::time::Duration::from_secs(300),
        "every_entry_point_answers_bad_input_as_the_specification_says",
    );
    let hsm = Hsm::with_partitions(&["a", "b"]);
    // SAFETY: the only test in this binary: nothing else reads the environment.
    unsafe { std::env::set_var("IHSM_STATE", hsm.state()) };
    // SAFETY: every call below passes pointers to live locals of the right type,
    // or deliberately null ones, which the module must refuse.
    unsafe {
        // Before C_Initialize.
        let mut n: CK_ULONG = 0;
        assert_eq!(
            C_GetSlotList(0, null_mut(), &mut n),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(C_Finalize(null_mut()), CKR_CRYPTOKI_NOT_INITIALIZED);
        let mut info: CK_INFO = core::mem::zeroed();
        assert_eq!(C_GetInfo(&mut info), CKR_CRYPTOKI_NOT_INITIALIZED);

        // C_Initialize: reserved must be null; callbacks all or none.
        let mut args: CK_C_INITIALIZE_ARGS = core::mem::zeroed();
        args.pReserved = core::ptr::dangling_mut::<c_void>();
        assert_eq!(C_Initialize((&raw mut args).cast()), CKR_ARGUMENTS_BAD);
        let mut args: CK_C_INITIALIZE_ARGS = core::mem::zeroed();
        args.CreateMutex = Some(create_mutex);
        assert_eq!(C_Initialize((&raw mut args).cast()), CKR_ARGUMENTS_BAD);
        // With the application's locking callbacks (and without OS locking).
        args.DestroyMutex = Some(mutex_op);
        args.LockMutex = Some(mutex_op);
        args.UnlockMutex = Some(mutex_op);
        assert_eq!(C_Initialize((&raw mut args).cast()), CKR_OK);
        assert_eq!(C_Initialize(null_mut()), CKR_CRYPTOKI_ALREADY_INITIALIZED);
        assert_eq!(
            C_Finalize(core::ptr::dangling_mut::<c_void>()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(C_Finalize(null_mut()), CKR_OK);
        let mut args: CK_C_INITIALIZE_ARGS = core::mem::zeroed();
        args.flags = CKF_OS_LOCKING_OK;
        assert_eq!(C_Initialize((&raw mut args).cast()), CKR_OK);

        // Info, function lists, interfaces.
        assert_eq!(C_GetInfo(null_mut()), CKR_ARGUMENTS_BAD);
        assert_eq!(C_GetInfo(&mut info), CKR_OK);
        assert_eq!(
            (info.cryptokiVersion.major, info.cryptokiVersion.minor),
            (3, 2)
        );
        assert_eq!(&info.manufacturerID[..4], b"ihsm");
        assert_eq!(C_GetFunctionList(null_mut()), CKR_ARGUMENTS_BAD);
        let mut list: *mut CK_FUNCTION_LIST = null_mut();
        assert_eq!(C_GetFunctionList(&mut list), CKR_OK);
        assert_eq!(((*list).version.major, (*list).version.minor), (2, 40));
        assert_eq!(
            C_GetInterfaceList(null_mut(), null_mut()),
            CKR_ARGUMENTS_BAD
        );
        let mut n: CK_ULONG = 0;
        assert_eq!(C_GetInterfaceList(null_mut(), &mut n), CKR_OK);
        assert_eq!(n, 3);
        let mut ifaces: [CK_INTERFACE; 3] = core::mem::zeroed();
        let mut short: CK_ULONG = 2;
        assert_eq!(
            C_GetInterfaceList(ifaces.as_mut_ptr(), &mut short),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(short, 3);
        assert_eq!(C_GetInterfaceList(ifaces.as_mut_ptr(), &mut n), CKR_OK);
        let mut iface: *mut CK_INTERFACE = null_mut();
        let mut name = *b"PKCS 11\0";
        let mut v30 = CK_VERSION { major: 3, minor: 0 };
        assert_eq!(
            C_GetInterface(name.as_mut_ptr(), &mut v30, &mut iface, 0),
            CKR_OK
        );
        let l30 = (*iface).pFunctionList.cast::<CK_FUNCTION_LIST_3_0>();
        assert_eq!(((*l30).version.major, (*l30).version.minor), (3, 0));
        assert_eq!(
            C_GetInterface(null_mut(), null_mut(), &mut iface, 0),
            CKR_OK
        );
        let l32 = (*iface).pFunctionList.cast::<CK_FUNCTION_LIST_3_2>();
        assert_eq!((*l32).version.minor, 2);
        assert!((*l32).C_EncapsulateKey.is_some());
        let mut v99 = CK_VERSION { major: 9, minor: 9 };
        assert_eq!(
            C_GetInterface(name.as_mut_ptr(), &mut v99, &mut iface, 0),
            CKR_ARGUMENTS_BAD
        );
        let mut other = *b"PKCS 12\0";
        assert_eq!(
            C_GetInterface(other.as_mut_ptr(), null_mut(), &mut iface, 0),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            C_GetInterface(name.as_mut_ptr(), null_mut(), null_mut(), 0),
            CKR_ARGUMENTS_BAD
        );

        // Slots: the two-call convention, a buffer one short, a bad slot id.
        assert_eq!(C_GetSlotList(0, null_mut(), null_mut()), CKR_ARGUMENTS_BAD);
        let mut n: CK_ULONG = 0;
        assert_eq!(C_GetSlotList(1, null_mut(), &mut n), CKR_OK);
        assert_eq!(n, 2);
        let mut slots = [0 as CK_SLOT_ID; 2];
        let mut one: CK_ULONG = 1;
        assert_eq!(
            C_GetSlotList(1, slots.as_mut_ptr(), &mut one),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(one, 2);
        assert_eq!(C_GetSlotList(1, slots.as_mut_ptr(), &mut n), CKR_OK);
        let mut si: CK_SLOT_INFO = core::mem::zeroed();
        assert_eq!(C_GetSlotInfo(99, &mut si), CKR_SLOT_ID_INVALID);
        assert_eq!(C_GetSlotInfo(slots[0], null_mut()), CKR_ARGUMENTS_BAD);
        let mut ti: CK_TOKEN_INFO = core::mem::zeroed();
        assert_eq!(C_GetTokenInfo(slots[0], &mut ti), CKR_OK);
        assert_eq!(&ti.label[..2], b"a ");
        assert_ne!(ti.flags & CKF_USER_PIN_INITIALIZED, 0);

        // Mechanisms.
        let mut mi: CK_MECHANISM_INFO = core::mem::zeroed();
        assert_eq!(
            C_GetMechanismInfo(slots[0], CKM_ECDSA_SHA256, &mut mi),
            CKR_OK
        );
        assert_ne!(mi.flags & CKF_SIGN, 0);
        assert_eq!(
            C_GetMechanismInfo(slots[0], CKM_DES_CBC, &mut mi),
            CKR_MECHANISM_INVALID
        );
        let mut nm: CK_ULONG = 0;
        assert_eq!(C_GetMechanismList(slots[0], null_mut(), &mut nm), CKR_OK);
        let mut mechs = vec![0 as CK_MECHANISM_TYPE; nm as usize];
        let mut short = nm - 1;
        assert_eq!(
            C_GetMechanismList(slots[0], mechs.as_mut_ptr(), &mut short),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(
            C_GetMechanismList(slots[0], mechs.as_mut_ptr(), &mut nm),
            CKR_OK
        );
        assert!(mechs.contains(&CKM_ML_DSA) && mechs.contains(&CKM_ML_KEM));

        // Sessions.
        let mut h = 0;
        assert_eq!(
            C_OpenSession(slots[0], CKF_RW_SESSION, null_mut(), None, &mut h),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
        assert_eq!(
            C_OpenSession(slots[0], CKF_SERIAL_SESSION, null_mut(), None, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            C_OpenSession(42, CKF_SERIAL_SESSION, null_mut(), None, &mut h),
            CKR_SLOT_ID_INVALID
        );
        assert_eq!(C_CloseSession(999_999), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(
            C_OpenSession(
                slots[0],
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                null_mut(),
                None,
                &mut h
            ),
            CKR_OK
        );
        let mut pin = PIN.as_bytes().to_vec();
        assert_eq!(
            C_Login(h, 7, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_USER_TYPE_INVALID
        );
        assert_eq!(C_Login(h, CKU_USER, null_mut(), 4), CKR_ARGUMENTS_BAD);
        let mut wrong = b"wrong-pin".to_vec();
        assert_eq!(
            C_Login(h, CKU_USER, wrong.as_mut_ptr(), wrong.len() as CK_ULONG),
            CKR_PIN_INCORRECT
        );
        assert_eq!(
            C_Login(h, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_OK
        );
        assert_eq!(
            C_Login(h, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_USER_ALREADY_LOGGED_IN
        );
        let mut sinfo: CK_SESSION_INFO = core::mem::zeroed();
        assert_eq!(C_GetSessionInfo(h, &mut sinfo), CKR_OK);
        assert_eq!(sinfo.state, CKS_RW_USER_FUNCTIONS);
        assert_eq!(C_GetSessionInfo(h, null_mut()), CKR_ARGUMENTS_BAD);
        let s = Session { h };

        // Templates: inconsistent, unknown attribute, value of the wrong size.
        let (pk, sk) = ec_pair(&s);
        let mut m = mech(CKM_EC_KEY_PAIR_GEN);
        let secret_class: CK_OBJECT_CLASS = CKO_SECRET_KEY;
        let mut bad_pub = [
            bytes_attr(CKA_EC_PARAMS, &P256),
            attr(CKA_CLASS, &secret_class),
        ];
        let (mut a, mut b) = (0, 0);
        assert_eq!(
            C_GenerateKeyPair(
                s.h,
                &mut m,
                bad_pub.as_mut_ptr(),
                2,
                null_mut(),
                0,
                &mut a,
                &mut b
            ),
            CKR_TEMPLATE_INCONSISTENT
        );
        let yes: CK_BBOOL = 1;
        let mut unknown = [bytes_attr(CKA_EC_PARAMS, &P256), attr(0x7eee_eeee, &yes)];
        assert_eq!(
            C_GenerateKeyPair(
                s.h,
                &mut m,
                unknown.as_mut_ptr(),
                2,
                null_mut(),
                0,
                &mut a,
                &mut b
            ),
            CKR_ATTRIBUTE_TYPE_INVALID
        );
        let long_bool: CK_ULONG = 1;
        let mut wrong_size = [
            bytes_attr(CKA_EC_PARAMS, &P256),
            attr(CKA_TOKEN, &long_bool),
        ];
        assert_eq!(
            C_GenerateKeyPair(
                s.h,
                &mut m,
                wrong_size.as_mut_ptr(),
                2,
                null_mut(),
                0,
                &mut a,
                &mut b
            ),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(
            C_GenerateKeyPair(s.h, &mut m, null_mut(), 1, null_mut(), 0, &mut a, &mut b),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            C_GenerateKeyPair(
                s.h,
                null_mut(),
                null_mut(),
                0,
                null_mut(),
                0,
                &mut a,
                &mut b
            ),
            CKR_ARGUMENTS_BAD
        );

        // Mechanisms: null, unknown, wrong parameters; wrong and foreign keys.
        assert_eq!(C_SignInit(s.h, null_mut(), sk), CKR_ARGUMENTS_BAD);
        let mut des = mech(CKM_DES_CBC);
        assert_eq!(C_SignInit(s.h, &mut des, sk), CKR_MECHANISM_INVALID);
        let mut pss = mech(CKM_SHA256_RSA_PKCS_PSS);
        let short_param = [0u8; 3];
        pss.pParameter = short_param.as_ptr().cast_mut().cast();
        pss.ulParameterLen = 3;
        assert_eq!(C_SignInit(s.h, &mut pss, sk), CKR_MECHANISM_PARAM_INVALID);
        let mut ecdsa = mech(CKM_ECDSA_SHA256);
        assert_eq!(C_SignInit(s.h, &mut ecdsa, 123_456), CKR_KEY_HANDLE_INVALID);
        let other = open(slots[1]);
        let (other_pk, other_sk) = ec_pair(&other);
        assert_eq!(
            C_SignInit(s.h, &mut ecdsa, other_sk),
            CKR_KEY_HANDLE_INVALID
        );
        assert_eq!(
            C_VerifyInit(s.h, &mut ecdsa, other_pk),
            CKR_KEY_HANDLE_INVALID
        );
        let mut sha_rsa = mech(CKM_SHA256_RSA_PKCS);
        assert_eq!(C_SignInit(s.h, &mut sha_rsa, sk), CKR_KEY_TYPE_INCONSISTENT);
        let mut gcm = mech(CKM_AES_GCM);
        assert_eq!(
            C_EncryptInit(s.h, &mut gcm, pk),
            CKR_MECHANISM_PARAM_INVALID
        );

        // Calls out of order.
        let mut data = *b"message";
        assert_eq!(
            C_SignUpdate(s.h, data.as_mut_ptr(), 7),
            CKR_OPERATION_NOT_INITIALIZED
        );
        let mut sig = [0u8; 64];
        let mut sl: CK_ULONG = 64;
        assert_eq!(
            C_SignFinal(s.h, sig.as_mut_ptr(), &mut sl),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(
            C_DigestUpdate(s.h, data.as_mut_ptr(), 7),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(
            C_FindObjects(s.h, null_mut(), 0, &mut n),
            CKR_OPERATION_NOT_INITIALIZED
        );

        // Output buffers: length query, one byte short, exact; the operation
        // survives the first two and ends with the third.
        assert_eq!(C_SignInit(s.h, &mut ecdsa, sk), CKR_OK);
        assert_eq!(C_SignInit(s.h, &mut ecdsa, sk), CKR_OPERATION_ACTIVE);
        let mut len: CK_ULONG = 0;
        assert_eq!(
            C_Sign(s.h, data.as_mut_ptr(), 7, null_mut(), &mut len),
            CKR_OK
        );
        assert_eq!(len, 64);
        let mut short: CK_ULONG = 63;
        assert_eq!(
            C_Sign(s.h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), &mut short),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(short, 64);
        assert_eq!(
            C_Sign(s.h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            C_Sign(s.h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), &mut len),
            CKR_OK
        );
        assert_eq!(
            C_Sign(s.h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), &mut len),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(C_VerifyInit(s.h, &mut ecdsa, pk), CKR_OK);
        assert_eq!(
            C_Verify(s.h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), 64),
            CKR_OK
        );
        sig[10] ^= 1;
        assert_eq!(C_VerifyInit(s.h, &mut ecdsa, pk), CKR_OK);
        assert_eq!(
            C_Verify(s.h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), 64),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(C_VerifyInit(s.h, &mut ecdsa, pk), CKR_OK);
        assert_eq!(
            C_Verify(s.h, null_mut(), 7, sig.as_mut_ptr(), 64),
            CKR_ARGUMENTS_BAD
        );

        // Attributes: sensitive, invalid, length query, one byte short — the
        // others are still filled in, and the right code comes back.
        let mut point = [0u8; 67];
        let mut value = [0u8; 32];
        let mut tmpl = [
            CK_ATTRIBUTE {
                type_: CKA_EC_POINT,
                pValue: null_mut(),
                ulValueLen: 0,
            },
            CK_ATTRIBUTE {
                type_: CKA_VALUE,
                pValue: value.as_mut_ptr().cast(),
                ulValueLen: 32,
            },
        ];
        assert_eq!(C_GetAttributeValue(s.h, pk, tmpl.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(tmpl[0].ulValueLen, 67);
        tmpl[0].pValue = point.as_mut_ptr().cast();
        tmpl[0].ulValueLen = 66;
        assert_eq!(
            C_GetAttributeValue(s.h, pk, tmpl.as_mut_ptr(), 1),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(tmpl[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        tmpl[0].ulValueLen = 67;
        assert_eq!(
            C_GetAttributeValue(s.h, sk, tmpl.as_mut_ptr(), 2),
            CKR_ATTRIBUTE_SENSITIVE
        );
        assert_eq!(tmpl[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(
            tmpl[0].ulValueLen, CK_UNAVAILABLE_INFORMATION,
            "a private key has no EC point"
        );
        let mut tmpl = [
            CK_ATTRIBUTE {
                type_: CKA_EC_POINT,
                pValue: point.as_mut_ptr().cast(),
                ulValueLen: 67,
            },
            CK_ATTRIBUTE {
                type_: 0x7eee_eeee,
                pValue: null_mut(),
                ulValueLen: 0,
            },
        ];
        assert_eq!(
            C_GetAttributeValue(s.h, pk, tmpl.as_mut_ptr(), 2),
            CKR_ATTRIBUTE_TYPE_INVALID
        );
        assert_eq!(tmpl[0].ulValueLen, 67);
        assert_eq!(
            point[0], 0x04,
            "the valid attribute is filled in all the same"
        );
        assert_eq!(
            C_GetAttributeValue(s.h, 123_456, tmpl.as_mut_ptr(), 1),
            CKR_OBJECT_HANDLE_INVALID
        );
        assert_eq!(
            C_GetAttributeValue(s.h, pk, null_mut(), 1),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            C_GetAttributeValue(s.h, other_pk, tmpl.as_mut_ptr(), 1),
            CKR_OBJECT_HANDLE_INVALID
        );
        let no: CK_BBOOL = 0;
        let mut turn_off_sensitive = [attr(CKA_SENSITIVE, &no)];
        assert_eq!(
            C_SetAttributeValue(s.h, sk, turn_off_sensitive.as_mut_ptr(), 1),
            CKR_ATTRIBUTE_READ_ONLY
        );

        // Find: twice active, paging.
        let mut none: [CK_ATTRIBUTE; 0] = [];
        assert_eq!(C_FindObjectsInit(s.h, none.as_mut_ptr(), 0), CKR_OK);
        assert_eq!(
            C_FindObjectsInit(s.h, none.as_mut_ptr(), 0),
            CKR_OPERATION_ACTIVE
        );
        let mut found = [0 as CK_OBJECT_HANDLE; 1];
        let mut total = 0;
        loop {
            let mut got: CK_ULONG = 0;
            assert_eq!(C_FindObjects(s.h, found.as_mut_ptr(), 1, &mut got), CKR_OK);
            if got == 0 {
                break;
            }
            total += got;
        }
        assert_eq!(total, 2, "only this partition's two keys");
        assert_eq!(
            C_FindObjects(s.h, found.as_mut_ptr(), 1, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(C_FindObjectsFinal(s.h), CKR_OK);
        assert_eq!(C_FindObjectsFinal(s.h), CKR_OPERATION_NOT_INITIALIZED);

        // A session of the other slot is not valid through this one's handle
        // space: using another slot's session handle reaches that slot only.
        assert_eq!(C_SignInit(other.h, &mut ecdsa, sk), CKR_KEY_HANDLE_INVALID);

        // Random, digests, what is not supported.
        let mut buf = [0u8; 16];
        assert_eq!(C_GenerateRandom(s.h, buf.as_mut_ptr(), 16), CKR_OK);
        assert_ne!(buf, [0u8; 16]);
        assert_eq!(C_GenerateRandom(s.h, null_mut(), 16), CKR_ARGUMENTS_BAD);
        assert_eq!(
            C_SeedRandom(s.h, buf.as_mut_ptr(), 16),
            CKR_RANDOM_SEED_NOT_SUPPORTED
        );
        assert_eq!(
            C_GetOperationState(s.h, null_mut(), &mut n),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        assert_eq!(C_DigestKey(s.h, sk), CKR_FUNCTION_NOT_SUPPORTED);
        let mut sha = mech(CKM_SHA256);
        assert_eq!(C_DigestInit(s.h, &mut sha), CKR_OK);
        let mut md = [0u8; 32];
        let mut mdl: CK_ULONG = 31;
        let mut abc = *b"abc";
        assert_eq!(
            C_Digest(s.h, abc.as_mut_ptr(), 3, md.as_mut_ptr(), &mut mdl),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(mdl, 32);
        assert_eq!(
            C_Digest(s.h, abc.as_mut_ptr(), 3, md.as_mut_ptr(), &mut mdl),
            CKR_OK
        );
        assert_eq!(md[..4], [0xba, 0x78, 0x16, 0xbf]);

        // Logged out, a private object is out of reach.
        assert_eq!(C_Logout(s.h), CKR_OK);
        assert_eq!(C_SignInit(s.h, &mut ecdsa, sk), CKR_KEY_HANDLE_INVALID);
        assert_eq!(C_CloseAllSessions(slots[0]), CKR_OK);
        assert_eq!(
            C_GetSessionInfo(s.h, &mut sinfo),
            CKR_SESSION_HANDLE_INVALID
        );

        // After C_Finalize.
        assert_eq!(C_Finalize(null_mut()), CKR_OK);
        assert_eq!(
            C_OpenSession(slots[0], CKF_SERIAL_SESSION, null_mut(), None, &mut h),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(
            C_GetSlotList(0, null_mut(), &mut n),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(
            C_Sign(other.h, data.as_mut_ptr(), 7, null_mut(), &mut len),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
    }
    let _ = null::<u8>();
}
