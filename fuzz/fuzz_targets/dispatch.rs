//! The dispatcher behind the wire decoder: decoded `ihsm_proto` requests carried
//! out by the daemon's own dispatcher (`ihsmd::fuzz::dispatch`, which is
//! crates/ihsmd/src/serve.rs's) on a partition of a real core `Device`, as a
//! tenant connection's requests are. The device is built once per process on a tmpfs: a development
//! provisioning, booted through the root of trust, PIN hashing at the lowest count
//! the daemon allows (1000), a partition "fuzz" holding a few keys (AES, an AES key
//! wrapping key, an HMAC secret, EC P-256, RSA-2048, Ed25519, ML-KEM-768, a data
//! object) and a partition "other" with keys of its own.
//!
//! Input: requests, each `u16 LE length | postcard Request` (the wire's body).
//! Sessions and handles below 16 and 64 are names, not values: they are replaced
//! by the input's own sessions (a logged-in read-write one, a read-only one, those
//! it opened), another application's session, the other partition's session, and
//! by the keys above, the other partition's keys and the objects the input made.
//! Larger values go through as they are (handles and sessions that do not exist).
//! RSA key-pair generation is skipped (hundreds of milliseconds each, it would be
//! all the fuzzer does); at most 32 requests run per input.
//!
//! Nothing may panic; every error is an error reply; no request of a tenant takes
//! the device out of the operational state. Each input runs as a fresh
//! application whose sessions are closed afterwards, and the token objects it made
//! are destroyed; the partition is made again when an input changed its PINs,
//! locked them, re-initialized the token, and every 2000 inputs (its audit log
//! grows).
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki_sys::*;
use ihsm_core::partition::Partition;
use ihsm_core::quota::Quotas;
use ihsm_core::session::UserType;
use ihsm_core::{Device, DeviceConfig, DeviceState, PartitionSpec};
use ihsm_crypto::aes::{AesKey, key_wrap_pad};
use ihsm_crypto::rsa::RsaPrivateKey;
use ihsm_proto::attr::{AttrValue, Attribute};
use ihsm_proto::frame;
use ihsm_proto::mech::Mechanism;
use ihsm_proto::msg::{Reply, Request};
use ihsm_rot::state::StateDir;
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

const IMAGE: [u8; 48] = [0x11; 48];
const SO_PIN: &[u8] = b"so-pin-1234";
const USER_PIN: &[u8] = b"user-pin-1234";
const KEK: [u8; 32] = [2; 32];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

struct Fixture {
    device: Device,
    svn: u32,
    /// The fuzzed partition, its keys, and a session of another application.
    p: Arc<Partition>,
    keys: Vec<u64>,
    other_app_session: u64,
    /// The other partition: a session of its own and its keys.
    other_session: u64,
    other_keys: Vec<u64>,
    rsa_pkcs8: Zeroizing<Vec<u8>>,
    rsa_public: (Vec<u8>, Vec<u8>),
    next_app: u64,
    since_rebuild: u32,
}

fn b(ty: CK_ATTRIBUTE_TYPE, v: bool) -> Attribute {
    Attribute {
        ty,
        value: AttrValue::Bool(v),
    }
}
fn u(ty: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> Attribute {
    Attribute {
        ty,
        value: AttrValue::Ulong(v),
    }
}
fn by(ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> Attribute {
    Attribute {
        ty,
        value: AttrValue::Bytes(v.to_vec()),
    }
}

fn spec(name: &str) -> PartitionSpec {
    PartitionSpec {
        name: name.into(),
        owner_uid: 1000,
        owner_gid: 1000,
        so_pin: Zeroizing::new(SO_PIN.to_vec()),
        user_pin: Some(Zeroizing::new(USER_PIN.to_vec())),
        quotas: Quotas {
            max_objects: 10_000,
            max_sessions: 256,
            ops_per_second: 0,
        },
        policy: Default::default(),
    }
}

/// A user session of application `app`.
fn login(p: &Partition, app: u64) -> Option<u64> {
    let s = p.open_session(app, true).ok()?;
    p.login(app, s, UserType::User, USER_PIN).ok()?;
    Some(s)
}

/// The fuzzed partition's keys (best effort: what fails is left out).
fn base_keys(
    p: &Partition,
    app: u64,
    s: u64,
    rsa: &[u8],
    rsa_public: &(Vec<u8>, Vec<u8>),
) -> Vec<u64> {
    let secret = |kt, value: &[u8], extra: &[Attribute]| {
        let mut t = vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, kt),
            by(CKA_VALUE, value),
            b(CKA_TOKEN, true),
        ];
        t.extend_from_slice(extra);
        p.create_object(app, s, &t).ok()
    };
    let mut keys = Vec::new();
    let aes = secret(
        CKK_AES,
        &[1; 32],
        &[
            b(CKA_ENCRYPT, true),
            b(CKA_DECRYPT, true),
            b(CKA_SENSITIVE, false),
            b(CKA_EXTRACTABLE, true),
        ],
    );
    let kek = secret(CKK_AES, &KEK, &[b(CKA_WRAP, true), b(CKA_UNWRAP, true)]);
    let hmac = secret(
        CKK_GENERIC_SECRET,
        &[3; 32],
        &[b(CKA_SIGN, true), b(CKA_VERIFY, true), b(CKA_DERIVE, true)],
    );
    keys.extend([aes, kek, hmac].into_iter().flatten());
    let pair = |mech: Mechanism, public: &[Attribute], private: &[Attribute]| {
        p.generate_key_pair(app, s, &mech, public, private).ok()
    };
    let on = [
        b(CKA_TOKEN, true),
        b(CKA_SIGN, true),
        b(CKA_DERIVE, true),
        b(CKA_EXTRACTABLE, true),
    ];
    if let Some((pk, sk)) = pair(
        Mechanism::EcKeyPairGen,
        &[
            by(CKA_EC_PARAMS, OID_P256),
            b(CKA_TOKEN, true),
            b(CKA_VERIFY, true),
        ],
        &on,
    ) {
        keys.extend([pk, sk]);
    }
    if let Some((pk, sk)) = pair(
        Mechanism::EcEdwardsKeyPairGen,
        &[
            by(CKA_EC_PARAMS, OID_ED25519),
            b(CKA_TOKEN, true),
            b(CKA_VERIFY, true),
        ],
        &[b(CKA_TOKEN, true), b(CKA_SIGN, true)],
    ) {
        keys.extend([pk, sk]);
    }
    if let Some((pk, sk)) = pair(
        Mechanism::MlKemKeyPairGen,
        &[
            u(CKA_PARAMETER_SET, 2),
            b(CKA_TOKEN, true),
            b(CKA_ENCAPSULATE, true),
        ],
        &[b(CKA_TOKEN, true), b(CKA_DECAPSULATE, true)],
    ) {
        keys.extend([pk, sk]);
    }
    // RSA: generated once per process, brought in by unwrapping.
    let rsa_pub = p
        .create_object(
            app,
            s,
            &[
                u(CKA_CLASS, CKO_PUBLIC_KEY),
                u(CKA_KEY_TYPE, CKK_RSA),
                by(CKA_MODULUS, &rsa_public.0),
                by(CKA_PUBLIC_EXPONENT, &rsa_public.1),
                b(CKA_TOKEN, true),
                b(CKA_VERIFY, true),
                b(CKA_ENCRYPT, true),
                b(CKA_WRAP, true),
            ],
        )
        .ok();
    let rsa_priv = kek.and_then(|kek| {
        let wrapped = key_wrap_pad(&AesKey::from_bytes(&KEK).unwrap(), rsa).ok()?;
        p.unwrap_key(
            app,
            s,
            &Mechanism::AesKeyWrapPad,
            kek,
            &wrapped,
            &[
                u(CKA_CLASS, CKO_PRIVATE_KEY),
                u(CKA_KEY_TYPE, CKK_RSA),
                b(CKA_TOKEN, true),
                b(CKA_SIGN, true),
                b(CKA_DECRYPT, true),
                b(CKA_UNWRAP, true),
            ],
        )
        .ok()
    });
    keys.extend([rsa_pub, rsa_priv].into_iter().flatten());
    if let Ok(h) = p.create_object(
        app,
        s,
        &[
            u(CKA_CLASS, CKO_DATA),
            b(CKA_TOKEN, true),
            by(CKA_LABEL, b"data"),
            by(CKA_VALUE, b"value"),
        ],
    ) {
        keys.push(h);
    }
    keys
}

impl Fixture {
    fn new() -> Self {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        // State directories of earlier runs whose process is gone.
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("ihsm-fuzz-dispatch-")
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = PathBuf::from(format!("{base}/ihsm-fuzz-dispatch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let state = StateDir::new(&dir);
        state.provision_dev(false, &IMAGE).unwrap();
        let rt = state.boot(&IMAGE).unwrap();
        let mut config = DeviceConfig::new(&dir);
        config.pin_iterations = 1000;
        let device = Device::start(config, rt).unwrap();
        let svn = device.svn().unwrap_or(0);

        let rsa = RsaPrivateKey::generate(2048).unwrap();
        let rsa_pkcs8 = rsa.to_pkcs8().unwrap();
        let rsa_public = (
            rsa.public_key().modulus().to_vec(),
            rsa.public_key().exponent().to_vec(),
        );

        let other = device
            .partition(device.create_partition(spec("other")).unwrap().id)
            .unwrap();
        let other_session = login(&other, 1).unwrap();
        let other_keys = base_keys(&other, 1, other_session, &rsa_pkcs8, &rsa_public);
        let p = device
            .partition(device.create_partition(spec("fuzz")).unwrap().id)
            .unwrap();
        let mut f = Fixture {
            device,
            svn,
            p: p.clone(),
            keys: Vec::new(),
            other_app_session: 0,
            other_session,
            other_keys,
            rsa_pkcs8,
            rsa_public,
            next_app: 100,
            since_rebuild: 0,
        };
        f.furnish();
        f
    }

    /// Gives the fuzzed partition its keys and the other application's session.
    fn furnish(&mut self) {
        let s = login(&self.p, 1).unwrap();
        self.keys = base_keys(&self.p, 1, s, &self.rsa_pkcs8, &self.rsa_public);
        self.other_app_session = s;
        self.since_rebuild = 0;
    }

    /// Makes the fuzzed partition again.
    fn rebuild(&mut self) {
        self.device.delete_partition(self.p.id()).unwrap();
        let id = self.device.create_partition(spec("fuzz")).unwrap().id;
        self.p = self.device.partition(id).unwrap();
        self.furnish();
    }

    /// Whether the partition is as `furnish` left it, enough for the next input.
    fn healthy(&self) -> bool {
        self.since_rebuild < 2000
            && self.p.session_state(1, self.other_app_session).is_ok()
            && self.keys.first().is_some_and(|&h| {
                self.p
                    .get_attributes(1, self.other_app_session, h, &[CKA_CLASS])
                    .is_ok()
            })
    }
}

fn fixture() -> &'static Mutex<Fixture> {
    static F: OnceLock<Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(Fixture::new()))
}

/// Replaces names by sessions and handles (see the module documentation).
fn rename(req: &mut Request, sessions: &[u64], handles: &[u64]) {
    use Request as R;
    let s = |v: &mut u64| {
        if *v < 16 {
            *v = sessions[*v as usize % sessions.len()];
        }
    };
    let h = |v: &mut u64| {
        if *v < 64 && !handles.is_empty() {
            *v = handles[*v as usize % handles.len()];
        }
    };
    match req {
        R::CloseSession { session }
        | R::SessionState { session }
        | R::Login { session, .. }
        | R::Logout { session }
        | R::InitPin { session, .. }
        | R::SetPin { session, .. }
        | R::CreateObject { session, .. }
        | R::CreateObjects { session, .. }
        | R::Find { session, .. }
        | R::GenerateKey { session, .. }
        | R::GenerateKeyPair { session, .. }
        | R::ImportMasked { session, .. }
        | R::Sign { session, .. }
        | R::SignUpdate { session, .. }
        | R::SignFinal { session }
        | R::Verify { session, .. }
        | R::VerifyFinal { session, .. }
        | R::Encrypt { session, .. }
        | R::Decrypt { session, .. }
        | R::CryptUpdate { session, .. }
        | R::EncryptFinal { session }
        | R::DecryptFinal { session }
        | R::DigestInit { session, .. }
        | R::DigestUpdate { session, .. }
        | R::DigestFinal { session }
        | R::Random { session, .. } => s(session),
        R::DestroyObject { session, handle }
        | R::GetAttributes {
            session, handle, ..
        }
        | R::SetAttributes {
            session, handle, ..
        }
        | R::CopyObject {
            session, handle, ..
        }
        | R::ExportMasked { session, handle }
        | R::UnwrapKey {
            session,
            unwrapping: handle,
            ..
        }
        | R::DeriveKey {
            session,
            base: handle,
            ..
        }
        | R::Encapsulate {
            session,
            public: handle,
            ..
        }
        | R::Decapsulate {
            session,
            private: handle,
            ..
        }
        | R::SignInit {
            session,
            key: handle,
            ..
        }
        | R::SignOnce {
            session,
            key: handle,
            ..
        }
        | R::CryptInit {
            session,
            key: handle,
            ..
        }
        | R::EncryptOnce {
            session,
            key: handle,
            ..
        }
        | R::KeyReport {
            session,
            key: handle,
            ..
        } => {
            s(session);
            h(handle);
        }
        R::WrapKey {
            session,
            wrapping,
            key,
            ..
        } => {
            s(session);
            h(wrapping);
            h(key);
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let mut f = fixture().lock().unwrap();
    if !f.healthy() {
        f.rebuild();
    }
    f.since_rebuild += 1;
    f.next_app += 1;
    let app = f.next_app;
    let p = f.p.clone();
    let Some(rw) = login(&p, app) else {
        f.rebuild();
        return;
    };
    let ro = p.open_session(app, false).unwrap_or(0);
    let mut sessions = vec![rw, ro, f.other_app_session, f.other_session, 0, u64::MAX];
    let mut handles: Vec<u64> = f.keys.iter().chain(&f.other_keys).copied().collect();
    let mut made = Vec::new();

    let mut d = data;
    for _ in 0..32 {
        if d.len() < 2 {
            break;
        }
        let len = usize::from(u16::from_le_bytes([d[0], d[1]])).min(d.len() - 2);
        let body = &d[2..2 + len];
        d = &d[2 + len..];
        let Ok(mut req) = frame::decode::<Request>(body) else {
            continue;
        };
        if matches!(
            &req,
            Request::GenerateKeyPair {
                mech: Mechanism::RsaKeyPairGen,
                ..
            }
        ) {
            continue;
        }
        rename(&mut req, &sessions, &handles);
        let opens_session = matches!(req, Request::OpenSession { .. });
        match ihsmd::fuzz::dispatch(&p, app, f.svn, req) {
            Ok(Reply::Handle(s)) if opens_session => sessions.push(s),
            Ok(reply) => {
                let new: Vec<u64> = match reply {
                    Reply::Handle(h) | Reply::Encapsulated { handle: h, .. } => vec![h],
                    Reply::KeyPair(a, b) => vec![a, b],
                    Reply::Handles(v) => v,
                    _ => Vec::new(),
                };
                for h in new {
                    if !handles.contains(&h) {
                        made.push(h);
                        handles.push(h);
                    }
                }
            }
            Err(e) => {
                let _ = e.to_wire();
            }
        }
        assert!(
            matches!(f.device.state(), DeviceState::Operational),
            "a tenant's request took the device out of service: {:?}",
            f.device.state()
        );
    }
    // Leave the partition as it was: the input's sessions (and with them its
    // session objects) closed, its token objects destroyed.
    let _ = p.close_all_sessions(app);
    if !made.is_empty()
        && let Some(s) = login(&p, app)
    {
        for h in made {
            if !f.keys.contains(&h) {
                let _ = p.destroy_object(app, s, h);
            }
        }
        let _ = p.close_all_sessions(app);
    }
});
