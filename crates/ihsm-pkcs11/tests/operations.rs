//! One session, every kind of operation at once: digest, sign, verify, encrypt,
//! decrypt, message-based signing and verifying. Each pair of kinds is started
//! together and ended in both orders, in one part and in several, with outputs
//! asked the length of first; a second start of a kind under way answers
//! `CKR_OPERATION_ACTIVE`. All of it cold (the HSM asked at every start) and
//! warmed (signing and encrypting started before, so their starts travel with
//! the data), through the cdylib loaded with dlopen and a real daemon.
//!
//! Regression (issue 13): warmed, `C_SignInit`, `C_EncryptInit`, `C_Encrypt`, then
//! `C_Sign` answered `CKR_OPERATION_NOT_INITIALIZED`: one deferred start was kept
//! for all kinds, and the encryption's overwrote the signature's.
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

const DATA: &[u8] = b"one session, every kind of operation at once";
/// SHA-256 of [`DATA`] (`printf '...' | sha256sum`).
const SHA256: &str = "9006a48c44440cd8f1568ef0570067c30a98a20cd21e905ae0454a1d2ff4f096";
static IV: [u8; 16] = [7; 16];
/// Where a part of [`DATA`] ends and the next begins.
const HALF: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    Digest,
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    MessageSign,
    MessageVerify,
}

const ALL: [K; 7] = [
    K::Digest,
    K::Sign,
    K::Verify,
    K::Encrypt,
    K::Decrypt,
    K::MessageSign,
    K::MessageVerify,
];

impl K {
    fn has_output(self) -> bool {
        !matches!(self, Self::Verify | Self::MessageVerify)
    }
}

/// A session and its keys, with the answers every kind must give.
struct S {
    dl: Dl,
    h: CK_SESSION_HANDLE,
    pk: CK_OBJECT_HANDLE,
    sk: CK_OBJECT_HANDLE,
    aes: CK_OBJECT_HANDLE,
    /// A good signature of DATA.
    sig: Vec<u8>,
    /// DATA encrypted with AES-CBC-PAD under IV.
    ct: Vec<u8>,
}

fn ecdsa() -> CK_MECHANISM {
    mech(CKM_ECDSA_SHA256)
}

fn cbc() -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: IV.as_ptr().cast_mut().cast::<c_void>(),
        ulParameterLen: 16,
    }
}

fn ptr(b: &[u8]) -> (*mut u8, CK_ULONG) {
    (b.as_ptr().cast_mut(), b.len() as CK_ULONG)
}

// SAFETY (for every `unsafe` block below): each call goes through the module's
// function list with pointers to live locals or slices of the lengths passed, and
// mechanisms whose parameters (IV) are statics.
impl S {
    fn pin(&self) -> CK_RV {
        let (p, l) = ptr(PIN.as_bytes());
        // SAFETY: see the impl.
        unsafe { p11!(self.dl, C_Login(self.h, CKU_USER, p, l)) }
    }

    /// Cold: logged out and in again, so the module has forgotten every start the
    /// HSM accepted. Warmed: and then a signature and an encryption made, whose
    /// starts it remembers.
    fn prepare(&self, warm: bool) {
        // SAFETY: see the impl.
        assert_eq!(unsafe { p11!(self.dl, C_Logout(self.h)) }, CKR_OK);
        assert_eq!(self.pin(), CKR_OK);
        if warm {
            for k in [K::Sign, K::Encrypt] {
                assert_eq!(self.init(k), CKR_OK, "warming {k:?}");
                let (rv, out) = self.once(k, Some(512));
                assert_eq!(rv, CKR_OK, "warming {k:?}");
                self.check(k, &out);
            }
        }
    }

    fn init(&self, k: K) -> CK_RV {
        let (mut e, mut c) = (ecdsa(), cbc());
        // SAFETY: see the impl.
        unsafe {
            match k {
                K::Digest => p11!(self.dl, C_DigestInit(self.h, &mut mech(CKM_SHA256))),
                K::Sign => p11!(self.dl, C_SignInit(self.h, &mut e, self.sk)),
                K::Verify => p11!(self.dl, C_VerifyInit(self.h, &mut e, self.pk)),
                K::Encrypt => p11!(self.dl, C_EncryptInit(self.h, &mut c, self.aes)),
                K::Decrypt => p11!(self.dl, C_DecryptInit(self.h, &mut c, self.aes)),
                K::MessageSign => p11!(self.dl, C_MessageSignInit(self.h, &mut e, self.sk)),
                K::MessageVerify => p11!(self.dl, C_MessageVerifyInit(self.h, &mut e, self.pk)),
            }
        }
    }

    /// The one-part call, with an output buffer of `room` bytes (`None`: a length
    /// query); its code and output.
    fn once(&self, k: K, room: Option<usize>) -> (CK_RV, Vec<u8>) {
        let mut out = vec![0u8; room.unwrap_or(0)];
        let o = if room.is_some() {
            out.as_mut_ptr()
        } else {
            null_mut()
        };
        let mut n = out.len() as CK_ULONG;
        let (d, dl) = ptr(DATA);
        let (sg, sl) = ptr(&self.sig);
        let (ct, cl) = ptr(&self.ct);
        // SAFETY: see the impl.
        let rv = unsafe {
            match k {
                K::Digest => p11!(self.dl, C_Digest(self.h, d, dl, o, &mut n)),
                K::Sign => p11!(self.dl, C_Sign(self.h, d, dl, o, &mut n)),
                K::Verify => {
                    n = 0;
                    p11!(self.dl, C_Verify(self.h, d, dl, sg, sl))
                }
                K::Encrypt => p11!(self.dl, C_Encrypt(self.h, d, dl, o, &mut n)),
                K::Decrypt => p11!(self.dl, C_Decrypt(self.h, ct, cl, o, &mut n)),
                K::MessageSign => {
                    p11!(
                        self.dl,
                        C_SignMessage(self.h, null_mut(), 0, d, dl, o, &mut n)
                    )
                }
                K::MessageVerify => {
                    n = 0;
                    p11!(
                        self.dl,
                        C_VerifyMessage(self.h, null_mut(), 0, d, dl, sg, sl)
                    )
                }
            }
        };
        if room.is_none() || rv == CKR_BUFFER_TOO_SMALL {
            // The length said: a buffer of exactly it comes next.
            return (rv, vec![0; n as usize]);
        }
        out.truncate(n as usize);
        (rv, out)
    }

    /// The first part of a multi-part operation; its code and output.
    fn part(&self, k: K) -> (CK_RV, Vec<u8>) {
        let mut out = vec![0u8; 64];
        let mut n = out.len() as CK_ULONG;
        let (d, dl) = ptr(&DATA[..HALF]);
        let (ct, cl) = ptr(&self.ct[..16]);
        // SAFETY: see the impl.
        let rv = unsafe {
            match k {
                K::Digest => p11!(self.dl, C_DigestUpdate(self.h, d, dl)),
                K::Sign => p11!(self.dl, C_SignUpdate(self.h, d, dl)),
                K::Verify => p11!(self.dl, C_VerifyUpdate(self.h, d, dl)),
                K::Encrypt => p11!(
                    self.dl,
                    C_EncryptUpdate(self.h, d, dl, out.as_mut_ptr(), &mut n)
                ),
                K::Decrypt => p11!(
                    self.dl,
                    C_DecryptUpdate(self.h, ct, cl, out.as_mut_ptr(), &mut n)
                ),
                K::MessageSign => {
                    let rv = p11!(self.dl, C_SignMessageBegin(self.h, null_mut(), 0));
                    if rv != CKR_OK {
                        return (rv, Vec::new());
                    }
                    p11!(
                        self.dl,
                        C_SignMessageNext(self.h, null_mut(), 0, d, dl, null_mut(), null_mut())
                    )
                }
                K::MessageVerify => {
                    let rv = p11!(self.dl, C_VerifyMessageBegin(self.h, null_mut(), 0));
                    if rv != CKR_OK {
                        return (rv, Vec::new());
                    }
                    p11!(
                        self.dl,
                        C_VerifyMessageNext(self.h, null_mut(), 0, d, dl, null_mut(), 0)
                    )
                }
            }
        };
        if !matches!(k, K::Encrypt | K::Decrypt) {
            n = 0;
        }
        out.truncate(n as usize);
        (rv, out)
    }

    /// The rest after [`S::part`]: the last part and the final; its code and output.
    fn last(&self, k: K) -> (CK_RV, Vec<u8>) {
        let mut out = vec![0u8; 512];
        let mut n = out.len() as CK_ULONG;
        let (d, dl) = ptr(&DATA[HALF..]);
        let (sg, sl) = ptr(&self.sig);
        let (ct, cl) = ptr(&self.ct[16..]);
        let o = out.as_mut_ptr();
        // SAFETY: see the impl.
        let rv = unsafe {
            match k {
                K::Digest => match p11!(self.dl, C_DigestUpdate(self.h, d, dl)) {
                    CKR_OK => p11!(self.dl, C_DigestFinal(self.h, o, &mut n)),
                    rv => rv,
                },
                K::Sign => match p11!(self.dl, C_SignUpdate(self.h, d, dl)) {
                    CKR_OK => p11!(self.dl, C_SignFinal(self.h, o, &mut n)),
                    rv => rv,
                },
                K::Verify => {
                    n = 0;
                    match p11!(self.dl, C_VerifyUpdate(self.h, d, dl)) {
                        CKR_OK => p11!(self.dl, C_VerifyFinal(self.h, sg, sl)),
                        rv => rv,
                    }
                }
                K::Encrypt | K::Decrypt => {
                    let rv = if k == K::Encrypt {
                        p11!(self.dl, C_EncryptUpdate(self.h, d, dl, o, &mut n))
                    } else {
                        p11!(self.dl, C_DecryptUpdate(self.h, ct, cl, o, &mut n))
                    };
                    if rv != CKR_OK {
                        return (rv, Vec::new());
                    }
                    let done = n as usize;
                    let mut m = (out.len() - done) as CK_ULONG;
                    // SAFETY: `done` is at most the buffer's length, so the pointer
                    // stays inside `out`, with `m` bytes after it.
                    let rest = o.add(done);
                    let rv = if k == K::Encrypt {
                        p11!(self.dl, C_EncryptFinal(self.h, rest, &mut m))
                    } else {
                        p11!(self.dl, C_DecryptFinal(self.h, rest, &mut m))
                    };
                    n = (done as CK_ULONG) + m;
                    rv
                }
                K::MessageSign => {
                    p11!(
                        self.dl,
                        C_SignMessageNext(self.h, null_mut(), 0, d, dl, o, &mut n)
                    )
                }
                K::MessageVerify => {
                    n = 0;
                    p11!(
                        self.dl,
                        C_VerifyMessageNext(self.h, null_mut(), 0, d, dl, sg, sl)
                    )
                }
            }
        };
        out.truncate(n as usize);
        (rv, out)
    }

    /// The end of a message-based context; nothing for the other kinds.
    fn end(&self, k: K) {
        // SAFETY: see the impl.
        let rv = unsafe {
            match k {
                K::MessageSign => p11!(self.dl, C_MessageSignFinal(self.h)),
                K::MessageVerify => p11!(self.dl, C_MessageVerifyFinal(self.h)),
                _ => CKR_OK,
            }
        };
        assert_eq!(rv, CKR_OK, "end of {k:?}");
    }

    /// Whether `out` is what `k` must give.
    fn check(&self, k: K, out: &[u8]) {
        match k {
            K::Digest => assert_eq!(hex::encode(out), SHA256, "digest"),
            K::Sign | K::MessageSign => {
                let (d, dl) = ptr(DATA);
                let (sg, sl) = ptr(out);
                let mut e = ecdsa();
                // SAFETY: see the impl.
                unsafe {
                    assert_eq!(p11!(self.dl, C_VerifyInit(self.h, &mut e, self.pk)), CKR_OK);
                    assert_eq!(
                        p11!(self.dl, C_Verify(self.h, d, dl, sg, sl)),
                        CKR_OK,
                        "the signature of {k:?} verifies"
                    );
                }
            }
            K::Encrypt => assert_eq!(out, self.ct, "ciphertext"),
            K::Decrypt => assert_eq!(out, DATA, "plaintext"),
            K::Verify | K::MessageVerify => assert!(out.is_empty()),
        }
    }

    /// `k` from its start to its end in one part, checked.
    fn one_part(&self, k: K, what: &str) -> Vec<u8> {
        let (rv, out) = self.once(k, Some(512));
        assert_eq!(rv, CKR_OK, "{what}: one-part {k:?}");
        self.end(k);
        out
    }
}

fn setup() -> (Hsm, S) {
    let hsm = Hsm::start();
    // SAFETY: the only test in this binary: nothing else reads the environment.
    unsafe { std::env::set_var("IHSM_STATE", hsm.state()) };
    let dl = Dl::load(&module());
    let mut slots = [0 as CK_SLOT_ID; 1];
    let mut n: CK_ULONG = 1;
    let mut h = 0;
    let (mut pk, mut sk, mut aes) = (0, 0, 0);
    // SAFETY: pointers to live locals and templates of live values.
    unsafe {
        assert_eq!(p11!(dl, C_Initialize(null_mut())), CKR_OK);
        assert_eq!(
            p11!(dl, C_GetSlotList(1, slots.as_mut_ptr(), &mut n)),
            CKR_OK
        );
        let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
        assert_eq!(
            p11!(dl, C_OpenSession(slots[0], flags, null_mut(), None, &mut h)),
            CKR_OK
        );
        let mut public = [bytes_attr(CKA_EC_PARAMS, &P256)];
        let mut m = mech(CKM_EC_KEY_PAIR_GEN);
        let (p, l) = ptr(PIN.as_bytes());
        assert_eq!(p11!(dl, C_Login(h, CKU_USER, p, l)), CKR_OK);
        assert_eq!(
            p11!(
                dl,
                C_GenerateKeyPair(
                    h,
                    &mut m,
                    public.as_mut_ptr(),
                    1,
                    null_mut(),
                    0,
                    &mut pk,
                    &mut sk
                )
            ),
            CKR_OK
        );
        let len: CK_ULONG = 32;
        let mut t = [attr(CKA_VALUE_LEN, &len)];
        let mut m = mech(CKM_AES_KEY_GEN);
        assert_eq!(
            p11!(dl, C_GenerateKey(h, &mut m, t.as_mut_ptr(), 1, &mut aes)),
            CKR_OK
        );
    }
    let mut s = S {
        dl,
        h,
        pk,
        sk,
        aes,
        sig: Vec::new(),
        ct: Vec::new(),
    };
    // The answers, each made alone.
    assert_eq!(s.init(K::Sign), CKR_OK);
    s.sig = s.one_part(K::Sign, "setup");
    assert_eq!(s.init(K::Encrypt), CKR_OK);
    s.ct = s.one_part(K::Encrypt, "setup");
    assert_eq!(s.ct.len(), 48);
    (hsm, s)
}

#[test]
fn each_kind_of_operation_keeps_its_own_state() {
    within(Duration::from_secs(600), "the operations test", || {
        let (_hsm, s) = setup();

        // The regression, as the issue reported it.
        s.prepare(true);
        assert_eq!(s.init(K::Sign), CKR_OK);
        assert_eq!(s.init(K::Encrypt), CKR_OK);
        let (rv, ct) = s.once(K::Encrypt, Some(64));
        assert_eq!(rv, CKR_OK);
        s.check(K::Encrypt, &ct);
        let (rv, sig) = s.once(K::Sign, Some(64));
        assert_eq!(rv, CKR_OK, "C_Sign after C_Encrypt, both started warmed");
        s.check(K::Sign, &sig);

        for warm in [false, true] {
            for a in ALL {
                for b in ALL {
                    if a == b {
                        continue;
                    }
                    let what = format!("{a:?} with {b:?}, warm {warm}");

                    // Both started; the second ends first, in one part each.
                    s.prepare(warm);
                    assert_eq!(s.init(a), CKR_OK, "{what}: start {a:?}");
                    assert_eq!(s.init(b), CKR_OK, "{what}: start {b:?}");
                    let ob = s.one_part(b, &what);
                    let oa = s.one_part(a, &what);
                    s.check(a, &oa);
                    s.check(b, &ob);

                    // The first in parts around the whole of the second.
                    s.prepare(warm);
                    assert_eq!(s.init(a), CKR_OK, "{what}: start {a:?}");
                    let (rv, mut oa) = s.part(a);
                    assert_eq!(rv, CKR_OK, "{what}: first part of {a:?}");
                    assert_eq!(
                        s.init(b),
                        CKR_OK,
                        "{what}: start {b:?} while {a:?} is in parts"
                    );
                    let ob = s.one_part(b, &what);
                    let (rv, rest) = s.last(a);
                    assert_eq!(rv, CKR_OK, "{what}: end of {a:?} in parts");
                    s.end(a);
                    oa.extend(rest);
                    s.check(a, &oa);
                    s.check(b, &ob);

                    // Outputs asked the length of wait, each for its own call.
                    if a.has_output() && b.has_output() {
                        s.prepare(warm);
                        assert_eq!(s.init(a), CKR_OK, "{what}: start {a:?}");
                        let (rv, la) = s.once(a, None);
                        assert_eq!(rv, CKR_OK, "{what}: length of {a:?}");
                        assert_eq!(s.init(b), CKR_OK, "{what}: start {b:?}");
                        let (rv, lb) = s.once(b, None);
                        assert_eq!(rv, CKR_OK, "{what}: length of {b:?}");
                        let (rv, ob) = s.once(b, Some(lb.len()));
                        assert_eq!(rv, CKR_OK, "{what}: output of {b:?}");
                        s.end(b);
                        let (rv, oa) = s.once(a, Some(la.len()));
                        assert_eq!(rv, CKR_OK, "{what}: output of {a:?} after {b:?}'s");
                        s.end(a);
                        s.check(a, &oa);
                        s.check(b, &ob);
                    }
                }
            }

            // A second start of a kind under way, however it is under way.
            for a in ALL {
                let what = format!("{a:?} twice, warm {warm}");
                s.prepare(warm);
                assert_eq!(s.init(a), CKR_OK, "{what}");
                assert_eq!(s.init(a), CKR_OPERATION_ACTIVE, "{what}: second start");
                let out = s.one_part(a, &what);
                s.check(a, &out);

                s.prepare(warm);
                assert_eq!(s.init(a), CKR_OK, "{what}");
                let (rv, mut out) = s.part(a);
                assert_eq!(rv, CKR_OK, "{what}: first part");
                assert_eq!(
                    s.init(a),
                    CKR_OPERATION_ACTIVE,
                    "{what}: start while in parts"
                );
                let (rv, rest) = s.last(a);
                assert_eq!(rv, CKR_OK, "{what}: end in parts");
                s.end(a);
                out.extend(rest);
                s.check(a, &out);

                if a.has_output() {
                    s.prepare(warm);
                    assert_eq!(s.init(a), CKR_OK, "{what}");
                    let (rv, len) = s.once(a, None);
                    assert_eq!(rv, CKR_OK, "{what}: length");
                    assert_eq!(
                        s.init(a),
                        CKR_OPERATION_ACTIVE,
                        "{what}: start while its output waits"
                    );
                    let (rv, short) = s.once(a, Some(len.len() - 1));
                    assert_eq!(rv, CKR_BUFFER_TOO_SMALL, "{what}: short buffer");
                    assert_eq!(short.len(), len.len(), "{what}: the length is said again");
                    let (rv, out) = s.once(a, Some(len.len()));
                    assert_eq!(rv, CKR_OK, "{what}: output");
                    s.end(a);
                    s.check(a, &out);
                }
            }
        }
        // SAFETY: the session's handle; nothing of the module is used after.
        unsafe {
            assert_eq!(p11!(s.dl, C_CloseSession(s.h)), CKR_OK);
            assert_eq!(p11!(s.dl, C_Finalize(null_mut())), CKR_OK);
        }
    });
}
