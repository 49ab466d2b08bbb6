//! A partition: one tenant's token. Its PINs, quotas, keys (master, index, mask,
//! identity), sessions and objects, and every PKCS#11-shaped operation on them.
//!
//! Key hierarchy: the device sealing key (from the root of trust) seals the
//! partition record, which holds a random master key; the master key seals every
//! object record (in the store), and derives the blind-index key and the masking key.
//!
//! Its files, each named for what it owns:
//! - `record`: the sealed partition record and its persistence;
//! - `auth`: sessions, login and PINs;
//! - `objects` and `template`: objects, and the templates they are made from;
//! - `keys`: key management (generate, import, wrap, unwrap, derive, masked keys);
//! - `operations`: the cryptographic operations (sign, verify, encrypt, decrypt,
//!   digest, random);
//! - `audit`: the partition's audit log.
//!
//! Every call on a session goes through one preamble, `Partition::enter`.

mod audit;
mod auth;
mod keys;
mod objects;
mod operations;
mod record;
mod release;
mod report;
mod template;
mod transfer;

pub(crate) use audit::device_head;
use audit::last_audit_head;
pub(crate) use record::{PartitionRecord, RecordKeys};
pub use transfer::{Arrived, Leaving, Staged};
pub(crate) use transfer::{Bundle, identity_public, store_keys};

use crate::Map;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use ihsm_crypto::ec::{EccP384PrivateKey, EccP384PublicKey};
use ihsm_crypto::mldsa::{MlDsa87PrivateKey, MlDsa87PublicKey};
use ihsm_crypto::seal::SealKey;
use ihsm_crypto::{ExposeSecret, Secret, SecretVec, kdf};
use ihsm_store::{Store, StoreError};

use crate::audit::{Head, Who};
use crate::device::Shared;
use crate::error::{CoreError, Result};
use crate::object::Object;
use crate::pin::PinVerifier;
use crate::quota::{Quotas, RateLimiter};
use crate::session::{Session, Sessions, UserType};

/// `CK_UNAVAILABLE_INFORMATION`.
const UNAVAILABLE: u64 = u64::MAX;

pub use ihsm_proto::types::{MAX_PRINCIPALS, PartitionInfo, PartitionPolicy, Principal};

/// The partition's volatile secrets; dropped (and wiped) as one on tamper.
struct Secrets {
    master: SealKey,
    /// The blind-index HMAC key, prepared once (aws-lc cleanses it on drop).
    index_key: ihsm_crypto::hmac::HmacKey,
    mask: SealKey,
    identity: EccP384PrivateKey,
    /// The identity key's PKCS#8, which the sealed record holds.
    identity_der: SecretVec,
    /// The ML-DSA-87 identity key, beside the ECC one: derived from the master key
    /// (so the record, sealed under it, needs no second key).
    identity_mldsa: MlDsa87PrivateKey,
}

/// A partition.
pub struct Partition {
    id: u32,
    name: String,
    owner: (u32, u32),
    /// Who it admits besides its owner: the record's set, readable without
    /// taking `record` (which a login holds across its durable write), by the
    /// check of every connection and request.
    principals: RwLock<Vec<Principal>>,
    /// The record's policy, which never changes.
    policy: PartitionPolicy,
    shared: Weak<Shared>,
    record: Mutex<PartitionRecord>,
    secrets: RwLock<Option<Secrets>>,
    identity_public: EccP384PublicKey,
    identity_mldsa_public: MlDsa87PublicKey,
    sessions: Mutex<Sessions>,
    session_objects: RwLock<Map<u64, Arc<Object>>>,
    cache: RwLock<Map<u64, Arc<Object>>>,
    audit: Mutex<Head>,
    limiter: RateLimiter,
    /// The record's quotas, which never change: read without taking `record`,
    /// which a login holds across its durable write.
    quotas: Quotas,
    next_session_object: AtomicU64,
    token_objects: AtomicU64,
    /// Whether it serves: [`SERVING`], or a move's state (`device::migrate`).
    standing: AtomicU8,
    /// Where it went, once [`MOVED`].
    moved_to: Mutex<Option<String>>,
}

/// The partition serves.
pub(crate) const SERVING: u8 = 0;
/// It arrived from another host and waits for its placement to flip.
pub(crate) const INCOMING: u8 = 1;
/// It is leaving for another host: it serves nothing until the move commits or
/// is undone.
pub(crate) const OUTGOING: u8 = 2;
/// It left: every call is told where it went.
pub(crate) const MOVED: u8 = 3;

impl core::fmt::Debug for Partition {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Partition")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A token object's blind-index entries: (tag, MAC of the value).
pub(crate) type IndexEntries = Vec<(u8, [u8; 16])>;

/// Most token objects kept decoded in memory.
const CACHE_LIMIT: usize = 65_536;

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock().map_err(|_| CoreError::Internal("lock poisoned"))
}

fn who(u: UserType) -> Who {
    match u {
        UserType::SecurityOfficer => Who::SecurityOfficer,
        UserType::User => Who::User,
    }
}

impl Partition {
    /// Builds a partition from its record and keys (at start or creation).
    pub(crate) fn load(
        record: PartitionRecord,
        keys: RecordKeys,
        store: &Store,
        shared: Weak<Shared>,
    ) -> Result<Self> {
        let RecordKeys {
            master: master_secret,
            identity: identity_der,
        } = keys;
        let index_key = ihsm_crypto::hmac::HmacKey::new(
            ihsm_crypto::hash::HashAlg::Sha256,
            derive32(&master_secret, b"ihsm partition index key v1")?.expose_secret(),
        )?;
        let mask = SealKey::new(derive32(&master_secret, b"ihsm partition masking key v1")?);
        let identity = EccP384PrivateKey::from_der(identity_der.expose_secret())?;
        let identity_public = identity.public_key().clone();
        let identity_mldsa = MlDsa87PrivateKey::from_seed(&derive32(
            &master_secret,
            b"ihsm partition ML-DSA-87 identity seed v1",
        )?)?;
        let identity_mldsa_public = identity_mldsa.public_key().clone();
        let id = record.id;
        let head = last_audit_head(store, id)?;
        let token_objects = store.object_count(id)?;
        let limiter = RateLimiter::new(record.quotas.ops_per_second);
        let quotas = record.quotas;
        let secrets = Secrets {
            master: SealKey::new(master_secret),
            index_key,
            mask,
            identity,
            identity_der,
            identity_mldsa,
        };
        #[cfg(all(feature = "test-hooks", debug_assertions))]
        crate::test_hooks::reveal(
            id,
            secrets.master.expose(),
            secrets.mask.expose(),
            secrets.identity_der.expose_secret(),
        );
        let p = Self {
            id,
            name: record.name.clone(),
            owner: (record.owner_uid, record.owner_gid),
            principals: RwLock::new(record.principals.clone()),
            policy: record.policy,
            shared,
            secrets: RwLock::new(Some(secrets)),
            record: Mutex::new(record),
            identity_public,
            identity_mldsa_public,
            sessions: Mutex::new(Sessions::default()),
            session_objects: RwLock::new(Map::default()),
            cache: RwLock::new(Map::default()),
            audit: Mutex::new(head),
            limiter,
            quotas,
            next_session_object: AtomicU64::new(1),
            token_objects: AtomicU64::new(token_objects),
            standing: AtomicU8::new(SERVING),
            moved_to: Mutex::new(None),
        };
        Ok(p)
    }

    /// Partition id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Name (token label).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Owner `(uid, gid)`: admitted always, besides the principals allowed
    /// (see [`Partition::authorize`]).
    #[must_use]
    pub fn owner(&self) -> (u32, u32) {
        self.owner
    }

    /// What the partition allows that the HSM refuses by default.
    #[must_use]
    pub fn policy(&self) -> PartitionPolicy {
        self.policy
    }

    /// The mechanisms this partition offers (what C_GetMechanismList reports):
    /// the core's, and the SHA-1 signature mechanisms if its policy allows them.
    #[must_use]
    pub fn mechanisms(&self) -> Vec<crate::mech::MechanismInfo> {
        let mut all = crate::mech::MECHANISMS.to_vec();
        if self.policy.allow_sha1_signatures {
            all.extend_from_slice(crate::mech::SHA1_SIGNATURES);
        }
        all
    }

    /// The partition identity public key (ECC P-384), certified by the RT Alias key.
    #[must_use]
    pub fn identity_public(&self) -> &EccP384PublicKey {
        &self.identity_public
    }

    /// The partition ML-DSA-87 identity public key, certified by the RT Alias
    /// ML-DSA-87 key.
    #[must_use]
    pub fn identity_mldsa_public(&self) -> &MlDsa87PublicKey {
        &self.identity_mldsa_public
    }

    /// The partition's UUID (the application id of its key reports): SHA-256 of
    /// its ECC identity public key (SEC1 uncompressed), first 16 bytes, stamped as
    /// an RFC 9562 version 8 UUID. Stable for the partition's life, and computable
    /// by a verifier from the partition certificate.
    #[must_use]
    pub fn uuid(&self) -> [u8; 16] {
        partition_uuid(self.identity_public.as_bytes())
    }

    fn check(&self) -> Result<Arc<Shared>> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| CoreError::Fatal("device stopped".into()))?;
        shared.check()?;
        if self.standing.load(Ordering::Acquire) != SERVING {
            return Err(self.standing_error());
        }
        Ok(shared)
    }

    /// The device's fleet masking domain, when it holds one.
    pub(crate) fn fleet_domain(&self) -> Option<Arc<crate::device::LiveDomain>> {
        self.shared.upgrade().and_then(|s| s.fleet_domain())
    }

    /// What a call is told while the partition does not serve here.
    pub(crate) fn standing_error(&self) -> CoreError {
        match self.standing.load(Ordering::Acquire) {
            MOVED => match self.moved_to.lock().ok().and_then(|t| t.clone()) {
                Some(to) => CoreError::PartitionMoved {
                    name: self.name.clone(),
                    to,
                },
                None => CoreError::PartitionMoving(self.name.clone()),
            },
            INCOMING => CoreError::PartitionNotFound(self.name.clone()),
            _ => CoreError::PartitionMoving(self.name.clone()),
        }
    }

    /// The move state ([`SERVING`], [`INCOMING`], [`OUTGOING`], [`MOVED`]).
    pub(crate) fn standing(&self) -> u8 {
        self.standing.load(Ordering::Acquire)
    }

    /// Sets the move state; `to` is where it went, for [`MOVED`].
    pub(crate) fn set_standing(&self, standing: u8, to: Option<String>) {
        if let Ok(mut t) = self.moved_to.lock() {
            *t = to;
        }
        self.standing.store(standing, Ordering::Release);
    }

    /// The audit head, locked: while it is held no write of the partition is in
    /// flight, and the log can be extended in a write of the device's.
    pub(crate) fn audit_head(&self) -> Result<MutexGuard<'_, Head>> {
        lock(&self.audit)
    }

    /// The store, while the device holds it (gone after a tamper).
    fn store(&self) -> Result<Arc<Store>> {
        self.check()?.store()
    }

    /// Turns store integrity failures into a tamper response, and self-test
    /// failures into the fatal state, on the way out.
    fn watch<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r
            && let Some(shared) = self.shared.upgrade()
        {
            match e {
                CoreError::Store(StoreError::Corrupt { .. } | StoreError::Rollback { .. }) => {
                    shared.tamper(&format!(
                        "store integrity failure in partition {}: {e}",
                        self.id
                    ));
                }
                CoreError::Crypto(ihsm_crypto::CryptoError::PairwiseConsistency) => {
                    shared.fatal("pairwise-consistency self-test failed on key generation");
                }
                CoreError::RandomFailure => {
                    shared.fatal("continuous random number generator test failed")
                }
                _ => {}
            }
        }
        r
    }

    /// Drops every volatile secret of the partition (tamper response).
    pub(crate) fn zeroize(&self) {
        if let Ok(mut s) = self.secrets.write() {
            *s = None;
        }
        if let Ok(mut r) = self.record.lock() {
            r.so_pin = None;
            r.user_pin = None;
        }
        if let Ok(mut c) = self.cache.write() {
            c.clear();
        }
        if let Ok(mut c) = self.session_objects.write() {
            c.clear();
        }
        if let Ok(mut s) = self.sessions.lock() {
            for sess in s.sessions.values_mut() {
                sess.reset_ops();
            }
            s.sessions.clear();
            s.login.clear();
        }
    }

    fn with_secrets<T>(&self, f: impl FnOnce(&Secrets) -> Result<T>) -> Result<T> {
        let g = self
            .secrets
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        match g.as_ref() {
            Some(s) => f(s),
            None => Err(CoreError::Tampered(
                "partition secrets were zeroized".into(),
            )),
        }
    }

    /// What `describe` reports.
    ///
    /// # Errors
    /// Device state errors.
    pub fn info(&self) -> Result<PartitionInfo> {
        let rec = lock(&self.record)?;
        let sessions = lock(&self.sessions)?.sessions.len() as u64;
        let session_objects = self
            .session_objects
            .read()
            .map(|m| m.len() as u64)
            .unwrap_or(0);
        Ok(PartitionInfo {
            id: self.id,
            name: self.name.clone(),
            owner_uid: self.owner.0,
            owner_gid: self.owner.1,
            quotas: rec.quotas,
            token_objects: self.token_objects.load(Ordering::Relaxed),
            session_objects,
            sessions,
            user_pin_initialized: rec.user_pin.is_some(),
            user_pin_locked: rec.user_pin.as_ref().is_some_and(PinVerifier::locked),
            so_pin_locked: rec.so_pin.as_ref().is_some_and(PinVerifier::locked),
            user_pin_failures: rec.user_pin.as_ref().map_or(0, |p| p.failures),
            so_pin_failures: rec.so_pin.as_ref().map_or(0, |p| p.failures),
            max_pin_failures: crate::pin::MAX_FAILED_ATTEMPTS,
            created: rec.created,
            principals: rec.principals.clone(),
            policy: rec.policy,
        })
    }

    // ---- the preamble ---------------------------------------------------------

    /// The preamble of every call on a session, in one place and one order: the
    /// device is operational; the session exists and is the application's; its
    /// login is what the call needs; `f` runs on the session under its lock (to
    /// take the operation a call continues, say); then the call is counted against
    /// the operations-per-second quota if it is a counted one. A refused rate ends
    /// what `f` took, as PKCS#11 has any error end an active operation.
    ///
    /// The calls without a session (opening one, C_InitToken, the audit
    /// checkpoint) check the device state themselves; closing sessions, which only
    /// ever frees, checks nothing.
    fn enter_with<T>(
        &self,
        app: u64,
        session: u64,
        need: Need,
        rate: Rate,
        f: impl FnOnce(&mut Session) -> Result<T>,
    ) -> Result<(Caller, T)> {
        self.check()?;
        let (caller, out) = self.with_session(app, session, |s, login| {
            let caller = Caller { login, rw: s.rw };
            caller.meets(need)?;
            Ok((caller, f(s)?))
        })?;
        if rate == Rate::Counted {
            self.limiter.take()?;
        }
        Ok((caller, out))
    }

    /// [`Partition::enter_with`] for a call that starts afresh.
    fn enter(&self, app: u64, session: u64, need: Need, rate: Rate) -> Result<Caller> {
        Ok(self.enter_with(app, session, need, rate, |_| Ok(()))?.0)
    }

    /// Runs `f` on session `session` of `app` with the application's login, under
    /// the sessions' lock. Only the preamble and the second half of a call that has
    /// been through it use this.
    fn with_session<T>(
        &self,
        app: u64,
        session: u64,
        f: impl FnOnce(&mut Session, Option<UserType>) -> Result<T>,
    ) -> Result<T> {
        let mut s = lock(&self.sessions)?;
        let login = s.login_of(app);
        let sess = s
            .sessions
            .get_mut(&session)
            .filter(|x| x.app == app)
            .ok_or(CoreError::SessionHandleInvalid)?;
        f(sess, login)
    }
}

/// What a call needs of its session's login, checked by the preamble.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Any session of the application.
    Session,
    /// A read-write session (bulk creation).
    ReadWrite,
    /// Someone logged in, on a read-write session (C_SetPIN).
    LoginReadWrite,
    /// The Security Officer, on a read-write session (C_InitPIN).
    SecurityOfficer,
}

/// Whether a call counts against the partition's operations-per-second quota:
/// the cryptographic operations (sign, verify, encrypt, decrypt, generate, wrap,
/// unwrap, derive, KEM) do; the rest do not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rate {
    Counted,
    Free,
}

/// Who calls, as the preamble found the session.
#[derive(Clone, Copy)]
struct Caller {
    login: Option<UserType>,
    rw: bool,
}

impl Caller {
    /// Whether the Security Officer is logged in.
    fn so(self) -> bool {
        self.login == Some(UserType::SecurityOfficer)
    }

    fn meets(self, need: Need) -> Result<()> {
        match need {
            Need::Session => Ok(()),
            Need::ReadWrite if !self.rw => Err(CoreError::SessionReadOnly),
            Need::ReadWrite => Ok(()),
            Need::LoginReadWrite if self.login.is_none() => Err(CoreError::UserNotLoggedIn),
            Need::LoginReadWrite if !self.rw => Err(CoreError::SessionReadOnly),
            Need::LoginReadWrite => Ok(()),
            Need::SecurityOfficer if !self.so() || !self.rw => Err(CoreError::NotSecurityOfficer),
            Need::SecurityOfficer => Ok(()),
        }
    }
}

/// 32 bytes derived from the master key for `label`.
/// See [`Partition::uuid`].
pub(crate) fn partition_uuid(identity_sec1: &[u8]) -> [u8; 16] {
    let h = ihsm_crypto::hash::sha256(identity_sec1);
    let mut u = [0u8; 16];
    u.iter_mut().zip(h).for_each(|(d, s)| *d = s);
    u[6] = (u[6] & 0x0f) | 0x80;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

fn derive32(master: &Secret<32>, label: &[u8]) -> Result<Secret<32>> {
    let block = kdf::kdf_hmac512(master.expose_secret(), label, None)?;
    Ok(Secret::from_slice(
        block.expose_secret().get(..32).unwrap_or_default(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attribute;
    use crate::device::{Device, DeviceConfig, DeviceState};
    use cryptoki_sys as ck;
    use zeroize::Zeroizing;

    /// A started device (on a temporary state directory) with partition `t`: SO
    /// PIN `so-pin-1`, user PIN `user-pin`.
    fn device_with_partition() -> (tempfile::TempDir, Device, Arc<Partition>) {
        let dir = tempfile::tempdir().unwrap();
        let state = ihsm_rot::state::StateDir::new(dir.path());
        state.provision_dev(false, &[1; 48]).unwrap();
        let mut cfg = DeviceConfig::new(dir.path());
        cfg.pin_iterations = 1000;
        let d = Device::start(cfg, state.boot(&[1; 48]).unwrap()).unwrap();
        let spec = crate::PartitionSpec {
            name: "t".into(),
            owner_uid: 0,
            owner_gid: 0,
            so_pin: Zeroizing::new(b"so-pin-1".to_vec()),
            user_pin: Some(Zeroizing::new(b"user-pin".to_vec())),
            quotas: Quotas::default(),
            policy: PartitionPolicy::default(),
        };
        let p = d.partition(d.create_partition(spec).unwrap().id).unwrap();
        (dir, d, p)
    }

    /// The store detects edited records (its own tests edit every byte of one);
    /// here: whatever integrity error reaches a partition sets off the tamper
    /// response, and self-test failures the fatal state.
    #[test]
    fn integrity_errors_tamper_and_self_test_errors_are_fatal() {
        let (_dir, d, p) = device_with_partition();
        let corrupt = StoreError::Corrupt {
            what: "object",
            pid: Some(p.id()),
            oid: Some(1),
        };
        assert!(p.watch::<()>(Err(CoreError::Store(corrupt))).is_err());
        assert!(matches!(d.state(), DeviceState::Tampered(r) if r.contains("store integrity")));
        drop(p);
        drop(d);

        let (_dir, d, p) = device_with_partition();
        let _ = p.watch::<()>(Err(CoreError::Crypto(
            ihsm_crypto::CryptoError::PairwiseConsistency,
        )));
        assert!(matches!(d.state(), DeviceState::Fatal(r) if r.contains("pairwise")));
        assert!(matches!(
            p.info()
                .map(|_| ())
                .and(p.open_session(1, true).map(|_| ())),
            Err(CoreError::Fatal(_))
        ));
    }

    /// C_InitToken destroys every object with its index entries; an object that
    /// does not load is an error, not skipped (which once left its index entries
    /// behind, shifted the next object's onto it, and answered success), and then
    /// nothing is destroyed and the user PIN stays.
    #[test]
    fn init_token_reports_an_object_that_does_not_load_and_destroys_nothing() {
        let (_dir, _d, p) = device_with_partition();
        let s = p.open_session(1, true).unwrap();
        p.login(1, s, UserType::User, b"user-pin").unwrap();
        let data = |label: &[u8]| {
            vec![
                Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
                Attribute::bool(ck::CKA_TOKEN, true),
                Attribute::bytes(ck::CKA_LABEL, label.to_vec()),
            ]
        };
        let handles: Vec<u64> = [&b"a"[..], b"b", b"c"]
            .iter()
            .map(|l| p.create_object(1, s, &data(l)).unwrap())
            .collect();
        p.close_all_sessions(1).unwrap();
        // The middle object's record no longer decodes (sealed properly, so the
        // store has nothing to say about it), and it is not in the cache.
        let (pid, oid, _) = crate::object::split_handle(handles[1]);
        p.with_secrets(|sec| {
            Ok(p.store()?
                .write(|tx| tx.put_object(pid, oid, &sec.master, &[0; 32], b"not a record"))?)
        })
        .unwrap();
        p.cache.write().unwrap().clear();

        let e = p.init_token(b"so-pin-1").unwrap_err();
        assert!(matches!(e, CoreError::Internal(_)), "{e:?}");
        assert_eq!(p.store().unwrap().object_ids(pid).unwrap().len(), 3);
        assert!(p.info().unwrap().user_pin_initialized);
        // The others still load, and are found by their indexed label.
        let s = p.open_session(1, true).unwrap();
        p.login(1, s, UserType::User, b"user-pin").unwrap();
        for (h, l) in [(handles[0], &b"a"[..]), (handles[2], b"c")] {
            let found = p
                .find(1, s, &[Attribute::bytes(ck::CKA_LABEL, l.to_vec())])
                .unwrap();
            assert_eq!(found, [h]);
        }
    }
}
