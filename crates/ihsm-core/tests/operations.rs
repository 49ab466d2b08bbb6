//! One session's operations of different kinds are kept apart: a digest, a
//! signature, a verification, an encryption and a decryption can each be in
//! progress on one session at once, in any order of their calls, and none
//! disturbs another. A second operation of a kind already active is refused
//! with `OperationActive` and the first goes on; the one-call fast paths
//! (sign_once, encrypt_once) leave every active operation alone, and refuse
//! when their own kind is active. Every pair of kinds, in both orders.
//! (The core has no message-based operations: PKCS#11's C_Message* functions
//! are not offered.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cryptoki_sys as ck;
use ihsm_core::CoreError;
use ihsm_core::mech::{Hash, Mechanism};
use ihsm_crypto::ExposeSecret;

const DATA: &[u8] = b"one session, five operations, none lost: 0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Digest,
    Sign,
    Verify,
    Encrypt,
    Decrypt,
}

const KINDS: [Kind; 5] = [
    Kind::Digest,
    Kind::Sign,
    Kind::Verify,
    Kind::Encrypt,
    Kind::Decrypt,
];

/// A session with an HMAC key and an AES key, and what each kind's operation
/// over [`DATA`] must give, computed on another session.
struct Fixture {
    t: Tenant,
    hmac: u64,
    aes: u64,
    digest: Vec<u8>,
    mac: Vec<u8>,
    ct: Vec<u8>,
}

fn hmac() -> Mechanism {
    Mechanism::Hmac(Hash::Sha256)
}

fn cbc() -> Mechanism {
    Mechanism::AesCbcPad { iv: vec![7; 16] }
}

fn fixture() -> (tempfile::TempDir, ihsm_core::Device, Fixture) {
    let (dir, d) = device();
    let t = Tenant::new(&d, "ops");
    let hmac_key =
        t.p.generate_key(
            t.app,
            t.s,
            &Mechanism::GenericSecretKeyGen,
            &[u(ck::CKA_VALUE_LEN, 32)],
        )
        .unwrap();
    let aes = aes_key(&t, "aes", &[]);
    // The expected results, on a session of their own.
    let other = t.p.open_session(t.app, true).unwrap();
    let mac =
        t.p.sign_once(t.app, other, &hmac(), hmac_key, DATA)
            .unwrap();
    let (ct, _) = t.p.encrypt_once(t.app, other, &cbc(), aes, DATA).unwrap();
    t.p.close_session(t.app, other).unwrap();
    let digest = ihsm_crypto::hash::digest(ihsm_crypto::hash::HashAlg::Sha256, DATA).to_vec();
    let f = Fixture {
        t,
        hmac: hmac_key,
        aes,
        digest,
        mac,
        ct,
    };
    (dir, d, f)
}

impl Fixture {
    fn init(&self, k: Kind) -> ihsm_core::Result<()> {
        let Tenant { p, app, s } = &self.t;
        let (app, s) = (*app, *s);
        match k {
            Kind::Digest => p.digest_init(app, s, &Mechanism::Digest(Hash::Sha256)),
            Kind::Sign => p.sign_init(app, s, &hmac(), self.hmac, false),
            Kind::Verify => p.sign_init(app, s, &hmac(), self.hmac, true),
            Kind::Encrypt => p.crypt_init(app, s, &cbc(), self.aes, true),
            Kind::Decrypt => p.crypt_init(app, s, &cbc(), self.aes, false),
        }
    }

    /// The kind's input.
    fn input(&self, k: Kind) -> &[u8] {
        if k == Kind::Decrypt { &self.ct } else { DATA }
    }

    /// Checks the kind's output (the whole of it).
    fn check(&self, k: Kind, out: &[u8]) {
        let want: &[u8] = match k {
            Kind::Digest => &self.digest,
            Kind::Sign => &self.mac,
            Kind::Verify => &[],
            Kind::Encrypt => &self.ct,
            Kind::Decrypt => DATA,
        };
        assert_eq!(out, want, "{k:?} gave a wrong result");
    }

    /// The kind's single-part call, which ends it; checked.
    fn run(&self, k: Kind) {
        let Tenant { p, app, s } = &self.t;
        let (app, s) = (*app, *s);
        let out = match k {
            Kind::Digest => {
                p.digest_update(app, s, DATA).unwrap();
                p.digest_final(app, s).unwrap()
            }
            Kind::Sign => p.sign(app, s, DATA).unwrap(),
            Kind::Verify => {
                p.verify(app, s, DATA, &self.mac).unwrap();
                Vec::new()
            }
            Kind::Encrypt => p.encrypt(app, s, DATA).unwrap().0,
            Kind::Decrypt => p
                .decrypt(app, s, &self.ct)
                .unwrap()
                .expose_secret()
                .to_vec(),
        };
        self.check(k, &out);
    }

    /// One part of the kind's multi-part operation; its output so far.
    fn update(&self, k: Kind, part: &[u8]) -> Vec<u8> {
        let Tenant { p, app, s } = &self.t;
        let (app, s) = (*app, *s);
        match k {
            Kind::Digest => {
                p.digest_update(app, s, part).unwrap();
                Vec::new()
            }
            Kind::Sign | Kind::Verify => {
                p.sign_update(app, s, part, k == Kind::Verify).unwrap();
                Vec::new()
            }
            Kind::Encrypt | Kind::Decrypt => {
                p.crypt_update(app, s, part, k == Kind::Encrypt).unwrap()
            }
        }
    }

    /// The kind's final call; its last output.
    fn finish(&self, k: Kind) -> Vec<u8> {
        let Tenant { p, app, s } = &self.t;
        let (app, s) = (*app, *s);
        match k {
            Kind::Digest => p.digest_final(app, s).unwrap(),
            Kind::Sign => p.sign_final(app, s).unwrap(),
            Kind::Verify => {
                p.verify_final(app, s, &self.mac).unwrap();
                Vec::new()
            }
            Kind::Encrypt => p.encrypt_final(app, s).unwrap(),
            Kind::Decrypt => p.decrypt_final(app, s).unwrap().expose_secret().to_vec(),
        }
    }

    /// Whether the kind has no operation in progress: its final call says so.
    fn idle(&self, k: Kind) -> bool {
        let Tenant { p, app, s } = &self.t;
        let (app, s) = (*app, *s);
        let r = match k {
            Kind::Digest => p.digest_final(app, s).map(|_| ()),
            Kind::Sign => p.sign_final(app, s).map(|_| ()),
            Kind::Verify => p.verify_final(app, s, &self.mac),
            Kind::Encrypt => p.encrypt_final(app, s).map(|_| ()),
            Kind::Decrypt => p.decrypt_final(app, s).map(|_| ()),
        };
        matches!(r, Err(CoreError::OperationNotInitialized))
    }

    fn all_idle(&self) {
        for k in KINDS {
            assert!(self.idle(k), "{k:?} still in progress");
        }
    }
}

fn pairs() -> impl Iterator<Item = (Kind, Kind)> {
    KINDS
        .into_iter()
        .flat_map(|a| KINDS.into_iter().map(move |b| (a, b)))
        .filter(|(a, b)| a != b)
}

/// Init A, init B, run B, run A: both right (the bug of issue 13: a sign
/// initialized before an encryption was lost when the encryption ran).
#[test]
fn every_pair_interleaved_single_part_keeps_both() {
    let (_dir, _d, f) = fixture();
    for (a, b) in pairs() {
        f.init(a).unwrap();
        f.init(b).unwrap();
        f.run(b);
        f.run(a);
        f.all_idle();
    }
}

/// A then B, each complete before the next begins.
#[test]
fn every_pair_one_after_the_other() {
    let (_dir, _d, f) = fixture();
    for (a, b) in pairs() {
        f.init(a).unwrap();
        f.run(a);
        f.init(b).unwrap();
        f.run(b);
        f.all_idle();
    }
}

/// Multi-part, parts of A and B alternating, B finished first.
#[test]
fn every_pair_interleaved_multi_part_keeps_both() {
    let (_dir, _d, f) = fixture();
    for (a, b) in pairs() {
        f.init(a).unwrap();
        f.init(b).unwrap();
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let (ia, ib) = (f.input(a).to_vec(), f.input(b).to_vec());
        for (pa, pb) in ia.chunks(13).zip(ib.chunks(13)) {
            out_a.extend(f.update(a, pa));
            out_b.extend(f.update(b, pb));
        }
        // Whatever is left of the longer input (a ciphertext is padded).
        for pa in ia.chunks(13).skip(ib.chunks(13).count()) {
            out_a.extend(f.update(a, pa));
        }
        for pb in ib.chunks(13).skip(ia.chunks(13).count()) {
            out_b.extend(f.update(b, pb));
        }
        out_b.extend(f.finish(b));
        out_a.extend(f.finish(a));
        f.check(b, &out_b);
        f.check(a, &out_a);
        f.all_idle();
    }
}

/// All five at once, finished in reverse order of their start.
#[test]
fn all_five_kinds_at_once() {
    let (_dir, _d, f) = fixture();
    for k in KINDS {
        f.init(k).unwrap();
    }
    for k in KINDS.into_iter().rev() {
        f.run(k);
    }
    f.all_idle();
}

/// A second init of an active kind is refused, and the first goes on; so is an
/// operation of the kind that failed, which ends only that one.
#[test]
fn a_second_init_of_a_kind_is_refused_and_loses_nothing() {
    let (_dir, _d, f) = fixture();
    for a in KINDS {
        // Started in a different order each round.
        f.init(a).unwrap();
        for b in KINDS.into_iter().filter(|b| *b != a) {
            f.init(b).unwrap();
        }
        // Every kind is active now; each second init answers OperationActive.
        for b in KINDS {
            assert!(
                matches!(f.init(b), Err(CoreError::OperationActive)),
                "{b:?}"
            );
        }
        // One kind fails (a wrong MAC): only it ends.
        let Tenant { p, app, s } = &f.t;
        assert!(matches!(
            p.verify(*app, *s, DATA, &[0; 32]),
            Err(CoreError::SignatureInvalid)
        ));
        assert!(f.idle(Kind::Verify));
        for k in KINDS.into_iter().filter(|k| *k != Kind::Verify) {
            f.run(k);
        }
        f.all_idle();
    }
}

/// The one-call paths (the daemon's SignOnce, EncryptOnce) touch no
/// operation in progress, and refuse when their own kind has one, rather
/// than answer as if none were.
#[test]
fn the_one_call_paths_leave_active_operations_alone() {
    let (_dir, _d, f) = fixture();
    let Tenant { p, app, s } = &f.t;
    let (app, s) = (*app, *s);
    for a in KINDS {
        f.init(a).unwrap();
        let sign = p.sign_once(app, s, &hmac(), f.hmac, DATA);
        let enc = p.encrypt_once(app, s, &cbc(), f.aes, DATA);
        if a == Kind::Sign {
            assert!(matches!(sign, Err(CoreError::OperationActive)), "{sign:?}");
        } else {
            assert_eq!(sign.unwrap(), f.mac);
        }
        if a == Kind::Encrypt {
            assert!(matches!(enc, Err(CoreError::OperationActive)));
        } else {
            assert_eq!(enc.unwrap().0, f.ct);
        }
        f.run(a);
        f.all_idle();
    }
}
