//! A partition: one tenant's token. Its PINs, quotas, keys (master, index, mask,
//! identity), sessions and objects, and every PKCS#11-shaped operation on them.
//!
//! Key hierarchy: the device sealing key (from the root of trust) seals the
//! partition record, which holds a random master key; the master key seals every
//! object record (in the store), and derives the blind-index key and the masking key.

use std::collections::BTreeMap;

use crate::Map;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use cryptoki_sys as ck;
use ihsm_crypto::ec::{EccP384PrivateKey, EccP384PublicKey};
use ihsm_crypto::seal::SealKey;
use ihsm_crypto::{ExposeSecret, Secret, kdf};
use ihsm_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::attr::{self, AttrResult, AttrType, AttrValue, Attribute, Phase, class};
use crate::audit::{self, AuditEvent, AuditReport, Head, Origin, Who};
use crate::device::Shared;
use crate::error::{CoreError, Result};
use crate::key::{self, Material};
use crate::mech::{HashExt, Mechanism};
use crate::object::{self, INDEXED, Object};
use crate::ops::{self, Usage};
use crate::pin::{self, PinVerifier};
use crate::quota::{Quotas, RateLimiter};
use crate::session::{CryptOp, Session, SessionState, Sessions, SignOp, UserType};

/// `CK_UNAVAILABLE_INFORMATION`.
const UNAVAILABLE: u64 = u64::MAX;

/// The sealed partition record (inside the store, sealed under the device key).
#[derive(Serialize, Deserialize)]
pub(crate) struct PartitionRecord {
    pub(crate) version: u32,
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) owner_uid: u32,
    pub(crate) owner_gid: u32,
    pub(crate) so_pin: Option<PinVerifier>,
    pub(crate) user_pin: Option<PinVerifier>,
    pub(crate) pin_iterations: u32,
    pub(crate) quotas: Quotas,
    pub(crate) master_key: [u8; 32],
    pub(crate) identity_key: Vec<u8>,
    pub(crate) created: u64,
}

impl Drop for PartitionRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.master_key);
        zeroize::Zeroize::zeroize(&mut self.identity_key);
    }
}

impl PartitionRecord {
    pub(crate) fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(postcard::to_allocvec(self).map_err(
            |_| CoreError::Internal("partition record encoding"),
        )?))
    }
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        postcard::from_bytes(bytes)
            .map_err(|_| CoreError::Internal("partition record does not parse"))
    }
}

pub use ihsm_proto::types::PartitionInfo;

/// The partition's volatile secrets; dropped (and wiped) as one on tamper.
struct Secrets {
    master: SealKey,
    /// The blind-index HMAC key, prepared once (aws-lc cleanses it on drop).
    index_key: ihsm_crypto::hmac::HmacKey,
    mask: SealKey,
    identity: EccP384PrivateKey,
}

/// A partition.
pub struct Partition {
    id: u32,
    name: String,
    owner: (u32, u32),
    shared: Weak<Shared>,
    record: Mutex<PartitionRecord>,
    secrets: RwLock<Option<Secrets>>,
    identity_public: EccP384PublicKey,
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
}

impl core::fmt::Debug for Partition {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Partition")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

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
    /// Builds a partition from its record (at start or creation).
    pub(crate) fn load(
        record: PartitionRecord,
        store: &Store,
        shared: Weak<Shared>,
    ) -> Result<Self> {
        let master_secret = Secret::<32>::from_slice(&record.master_key)?;
        let index_key = ihsm_crypto::hmac::HmacKey::new(
            ihsm_crypto::hash::HashAlg::Sha256,
            derive32(&master_secret, b"ihsm partition index key v1")?.expose_secret(),
        )?;
        let mask = SealKey::new(derive32(&master_secret, b"ihsm partition masking key v1")?);
        let identity = EccP384PrivateKey::from_der(&record.identity_key)?;
        let identity_public = identity.public_key().clone();
        let id = record.id;
        let head = last_audit_head(store, id)?;
        let token_objects = store.object_count(id)?;
        let limiter = RateLimiter::new(record.quotas.ops_per_second);
        let quotas = record.quotas;
        let p = Self {
            id,
            name: record.name.clone(),
            owner: (record.owner_uid, record.owner_gid),
            shared,
            secrets: RwLock::new(Some(Secrets {
                master: SealKey::new(master_secret),
                index_key,
                mask,
                identity,
            })),
            record: Mutex::new(record),
            identity_public,
            sessions: Mutex::new(Sessions::default()),
            session_objects: RwLock::new(Map::default()),
            cache: RwLock::new(Map::default()),
            audit: Mutex::new(head),
            limiter,
            quotas,
            next_session_object: AtomicU64::new(1),
            token_objects: AtomicU64::new(token_objects),
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

    /// Owner `(uid, gid)`; the daemon admits only this peer.
    #[must_use]
    pub fn owner(&self) -> (u32, u32) {
        self.owner
    }

    /// The partition identity public key (ECC P-384), certified by the RT Alias key.
    #[must_use]
    pub fn identity_public(&self) -> &EccP384PublicKey {
        &self.identity_public
    }

    fn check(&self) -> Result<Arc<Shared>> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| CoreError::Fatal("device stopped".into()))?;
        shared.check()?;
        Ok(shared)
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
            zeroize::Zeroize::zeroize(&mut r.master_key);
            zeroize::Zeroize::zeroize(&mut r.identity_key);
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
            created: rec.created,
        })
    }

    // ---- audit ---------------------------------------------------------------

    /// Runs `f`'s store changes and writes the audit events it returns, in one
    /// durable transaction, adding a signed checkpoint when one is due.
    fn audited<T>(
        &self,
        f: impl FnOnce(&mut ihsm_store::WriteTx<'_>) -> Result<(T, Vec<AuditEvent>), StoreError>,
    ) -> Result<T> {
        let mut head = lock(&self.audit)?;
        let mut next = head.clone();
        let pid = self.id;
        let identity = self
            .secrets
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let out = self.store()?.write(|tx| {
            let (out, events) = f(tx)?;
            let enc =
                |_| StoreError::Crypto(ihsm_crypto::CryptoError::Internal("audit entry encoding"));
            for ev in events {
                let (seq, bytes) = next.append(ev).map_err(enc)?;
                tx.audit_append(pid, seq, &bytes)?;
            }
            if next.checkpoint_due()
                && let Some(s) = identity.as_ref()
            {
                let cp = next.checkpoint(pid, &s.identity).map_err(enc)?;
                let (seq, bytes) = next.append(cp).map_err(enc)?;
                tx.audit_append(pid, seq, &bytes)?;
            }
            Ok(out)
        });
        drop(identity);
        let out = self.watch(out.map_err(CoreError::from))?;
        *head = next;
        Ok(out)
    }

    /// Appends a signed checkpoint now (at load, and on request).
    ///
    /// # Errors
    /// Store or device state errors.
    pub fn audit_checkpoint(&self) -> Result<()> {
        self.check()?;
        let mut head = lock(&self.audit)?;
        let mut next = head.clone();
        let cp = self.with_secrets(|s| next.checkpoint(self.id, &s.identity))?;
        let (seq, bytes) = next.append(cp)?;
        let pid = self.id;
        let r = self.store()?.write(|tx| tx.audit_append(pid, seq, &bytes));
        self.watch(r.map_err(CoreError::from))?;
        *head = next;
        Ok(())
    }

    /// The stored audit log (encoded entries, in order).
    ///
    /// # Errors
    /// Store errors.
    pub fn audit_entries(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut from = 1;
        loop {
            let batch = self.store()?.audit(self.id, from, 4096)?;
            let Some((last, _)) = batch.last() else { break };
            from = last.saturating_add(1);
            out.extend(batch.into_iter().map(|(_, e)| e));
        }
        Ok(out)
    }

    /// Verifies the whole audit log against the identity key and the HSM's head.
    ///
    /// # Errors
    /// [`CoreError::Internal`] naming the first broken entry.
    pub fn audit_verify(&self) -> Result<AuditReport> {
        let entries = self.audit_entries()?;
        let head = lock(&self.audit)?.clone();
        audit::verify(
            self.id,
            &entries,
            &self.identity_public,
            1,
            [0; 48],
            Some((head.next_seq.saturating_sub(1), head.prev)),
        )
        .map_err(|e| CoreError::AuditBroken(e.to_string()))
    }

    // ---- sessions and login ----------------------------------------------------

    fn session_handle(&self, n: u64) -> u64 {
        (u64::from(self.id) << 40) | n
    }

    /// Opens a session for application `app` (a connection).
    ///
    /// # Errors
    /// [`CoreError::QuotaExceeded`], [`CoreError::SessionReadOnlyExists`] (a
    /// read-only session while the SO is logged in).
    pub fn open_session(&self, app: u64, rw: bool) -> Result<u64> {
        self.check()?;
        let max = self.quotas.max_sessions;
        let mut s = lock(&self.sessions)?;
        if s.sessions.len() >= max as usize {
            return Err(CoreError::QuotaExceeded("sessions"));
        }
        if !rw && s.login_of(app) == Some(UserType::SecurityOfficer) {
            return Err(CoreError::SessionReadOnlyExists);
        }
        s.next += 1;
        let h = self.session_handle(s.next);
        s.sessions.insert(h, Session::new(app, rw));
        Ok(h)
    }

    /// Closes a session and destroys its session objects.
    ///
    /// # Errors
    /// [`CoreError::SessionHandleInvalid`].
    pub fn close_session(&self, app: u64, session: u64) -> Result<()> {
        let mut s = lock(&self.sessions)?;
        match s.sessions.get(&session) {
            Some(sess) if sess.app == app => {}
            _ => return Err(CoreError::SessionHandleInvalid),
        }
        s.sessions.remove(&session);
        // The last session of an application logs it out (PKCS#11).
        if !s.sessions.values().any(|x| x.app == app) {
            s.login.remove(&app);
        }
        drop(s);
        self.drop_session_objects(|o| o.session == Some(session));
        Ok(())
    }

    /// Closes every session of an application (and so logs it out).
    ///
    /// # Errors
    /// None in practice; lock errors.
    pub fn close_all_sessions(&self, app: u64) -> Result<()> {
        let mut s = lock(&self.sessions)?;
        let closed: Vec<u64> = s
            .sessions
            .iter()
            .filter(|(_, x)| x.app == app)
            .map(|(h, _)| *h)
            .collect();
        for h in &closed {
            s.sessions.remove(h);
        }
        s.login.remove(&app);
        drop(s);
        self.drop_session_objects(|o| o.session.is_some_and(|x| closed.contains(&x)));
        Ok(())
    }

    fn drop_session_objects(&self, pred: impl Fn(&Object) -> bool) {
        if let Ok(mut m) = self.session_objects.write() {
            m.retain(|_, o| !pred(o));
        }
    }

    /// The state of a session.
    ///
    /// # Errors
    /// [`CoreError::SessionHandleInvalid`].
    pub fn session_state(&self, app: u64, session: u64) -> Result<SessionState> {
        let s = lock(&self.sessions)?;
        let sess = s
            .sessions
            .get(&session)
            .filter(|x| x.app == app)
            .ok_or(CoreError::SessionHandleInvalid)?;
        Ok(s.state(sess))
    }

    /// Whether a caller with these credentials may use the partition: its uid is
    /// the owner's, or its gid the owner's group. The daemon checks the socket
    /// peer's credentials when it accepts a connection and asks again here before
    /// every request, so a connection routed to the wrong partition does nothing.
    ///
    /// # Errors
    /// [`CoreError::PermissionDenied`].
    pub fn authorize(&self, uid: u32, gid: u32) -> Result<()> {
        let (owner_uid, owner_gid) = self.owner;
        if uid == owner_uid || gid == owner_gid {
            Ok(())
        } else {
            Err(CoreError::PermissionDenied {
                partition: self.name.clone(),
                uid,
                gid,
                owner_uid,
                owner_gid,
            })
        }
    }

    /// Checks a session belongs to `app`; returns (login, rw).
    fn session(&self, app: u64, session: u64) -> Result<(Option<UserType>, bool)> {
        let s = lock(&self.sessions)?;
        let sess = s
            .sessions
            .get(&session)
            .filter(|x| x.app == app)
            .ok_or(CoreError::SessionHandleInvalid)?;
        Ok((s.login_of(app), sess.rw))
    }

    fn persist_record(&self, rec: &PartitionRecord, events: Vec<AuditEvent>) -> Result<()> {
        let bytes = rec.encode()?;
        let pid = self.id;
        self.audited(|tx| {
            tx.put_partition(pid, &bytes)?;
            Ok(((), events))
        })
    }

    /// C_Login.
    ///
    /// # Errors
    /// PIN, session and login-state errors, as PKCS#11 names them.
    pub fn login(&self, app: u64, session: u64, user: UserType, pin: &[u8]) -> Result<()> {
        self.check()?;
        {
            let s = lock(&self.sessions)?;
            s.sessions
                .get(&session)
                .filter(|x| x.app == app)
                .ok_or(CoreError::SessionHandleInvalid)?;
            match s.login_of(app) {
                Some(u) if u == user => return Err(CoreError::UserAlreadyLoggedIn),
                Some(_) => return Err(CoreError::UserAnotherAlreadyLoggedIn),
                None => {}
            }
            if user == UserType::SecurityOfficer && s.has_read_only(app) {
                return Err(CoreError::SessionReadOnlyExists);
            }
        }
        let mut rec = lock(&self.record)?;
        let verifier = match user {
            UserType::SecurityOfficer => rec.so_pin.as_mut(),
            UserType::User => rec.user_pin.as_mut(),
        }
        .ok_or(CoreError::UserPinNotInitialized)?;
        if verifier.locked() {
            return Err(CoreError::PinLocked);
        }
        let result = verifier.check(pin);
        let event = match &result {
            Ok(()) => AuditEvent::Login(who(user)),
            Err(CoreError::PinLocked) => AuditEvent::PinLocked(who(user)),
            Err(CoreError::PinIncorrect { remaining }) => AuditEvent::LoginFailed {
                who: who(user),
                remaining: *remaining,
            },
            Err(_) => AuditEvent::LoginFailed {
                who: who(user),
                remaining: 0,
            },
        };
        // The failure count is durable before the answer goes out.
        self.persist_record(&rec, vec![event])?;
        drop(rec);
        result?;
        lock(&self.sessions)?.login.insert(app, user);
        Ok(())
    }

    /// C_Logout.
    ///
    /// # Errors
    /// [`CoreError::UserNotLoggedIn`].
    pub fn logout(&self, app: u64, session: u64) -> Result<()> {
        let mut s = lock(&self.sessions)?;
        s.sessions
            .get(&session)
            .filter(|x| x.app == app)
            .ok_or(CoreError::SessionHandleInvalid)?;
        if s.login.remove(&app).is_none() {
            return Err(CoreError::UserNotLoggedIn);
        }
        for sess in s.sessions.values_mut().filter(|x| x.app == app) {
            sess.reset_ops();
        }
        Ok(())
    }

    /// C_InitPIN: the SO sets (or resets, unlocking) the user PIN.
    ///
    /// # Errors
    /// [`CoreError::NotSecurityOfficer`], PIN length.
    pub fn init_pin(&self, app: u64, session: u64, pin: &[u8]) -> Result<()> {
        self.check()?;
        let (login, rw) = self.session(app, session)?;
        if login != Some(UserType::SecurityOfficer) || !rw {
            return Err(CoreError::NotSecurityOfficer);
        }
        let mut rec = lock(&self.record)?;
        rec.user_pin = Some(PinVerifier::new(pin, rec.pin_iterations)?);
        self.persist_record(&rec, vec![AuditEvent::PinSet(Who::User)])
    }

    /// C_SetPIN: the logged-in user (or SO) changes their own PIN.
    ///
    /// # Errors
    /// [`CoreError::UserNotLoggedIn`] outside a RW login; PIN errors.
    pub fn set_pin(&self, app: u64, session: u64, old: &[u8], new: &[u8]) -> Result<()> {
        self.check()?;
        let (login, rw) = self.session(app, session)?;
        let user = login.ok_or(CoreError::UserNotLoggedIn)?;
        if !rw {
            return Err(CoreError::SessionReadOnly);
        }
        pin::check_len(new)?;
        let mut rec = lock(&self.record)?;
        let iterations = rec.pin_iterations;
        let slot = match user {
            UserType::SecurityOfficer => &mut rec.so_pin,
            UserType::User => &mut rec.user_pin,
        };
        let v = slot.as_mut().ok_or(CoreError::UserPinNotInitialized)?;
        let checked = v.check(old);
        if checked.is_ok() {
            *slot = Some(PinVerifier::new(new, iterations)?);
        }
        let event = match &checked {
            Ok(()) => AuditEvent::PinSet(who(user)),
            Err(CoreError::PinLocked) => AuditEvent::PinLocked(who(user)),
            Err(CoreError::PinIncorrect { remaining }) => AuditEvent::LoginFailed {
                who: who(user),
                remaining: *remaining,
            },
            Err(_) => AuditEvent::LoginFailed {
                who: who(user),
                remaining: 0,
            },
        };
        self.persist_record(&rec, vec![event])?;
        checked
    }

    /// C_InitToken: with the SO PIN, destroys every object of the partition and the
    /// user PIN (the partition keeps its identity and owner).
    ///
    /// # Errors
    /// PIN errors; [`CoreError::SessionReadOnlyExists`] while sessions are open.
    pub fn init_token(&self, so_pin: &[u8]) -> Result<()> {
        self.check()?;
        if !lock(&self.sessions)?.sessions.is_empty() {
            return Err(CoreError::SessionReadOnlyExists);
        }
        let mut rec = lock(&self.record)?;
        let v = rec
            .so_pin
            .as_mut()
            .ok_or(CoreError::UserPinNotInitialized)?;
        let checked = v.check(so_pin);
        if checked.is_err() {
            let ev = AuditEvent::LoginFailed {
                who: Who::SecurityOfficer,
                remaining: 0,
            };
            self.persist_record(&rec, vec![ev])?;
            return checked;
        }
        rec.user_pin = None;
        let ids = self.store()?.object_ids(self.id)?;
        let pid = self.id;
        let bytes = rec.encode()?;
        // Index entries go with their objects: rebuild by deleting each object with
        // its index keys.
        let mut doomed = Vec::with_capacity(ids.len());
        for oid in &ids {
            if let Ok(o) = self.load_token(object::handle(pid, *oid, false)) {
                doomed.push(o);
            }
        }
        let macs = doomed
            .iter()
            .map(|o| self.index_entries(o))
            .collect::<Result<Vec<_>>>()?;
        self.audited(|tx| {
            tx.put_partition(pid, &bytes)?;
            for (oid, macs) in ids
                .iter()
                .zip(macs.iter().chain(std::iter::repeat(&Vec::new())))
            {
                for (t, mac) in macs {
                    tx.index_remove(pid, *t, mac, *oid)?;
                }
                tx.delete_object(pid, *oid)?;
            }
            Ok(((), vec![AuditEvent::TokenInitialized]))
        })?;
        self.cache
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .clear();
        self.session_objects
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .clear();
        self.token_objects.store(0, Ordering::Relaxed);
        Ok(())
    }

    // ---- objects ----------------------------------------------------------------

    fn index_entries(&self, o: &Object) -> Result<Vec<(u8, [u8; 16])>> {
        self.with_secrets(|s| {
            INDEXED
                .iter()
                .filter_map(|(t, ty)| o.attrs.get(ty).map(|v| (*t, v)))
                .map(|(t, v)| Ok((t, object::index_mac(&s.index_key, t, v)?)))
                .collect()
        })
    }

    /// Loads a token object from the cache or the store.
    fn load_token(&self, h: u64) -> Result<Arc<Object>> {
        if let Some(o) = self
            .cache
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .get(&h)
        {
            return Ok(Arc::clone(o));
        }
        let (_, oid, _) = object::split_handle(h);
        let found = self.with_secrets(|s| Ok(self.store()?.object(self.id, oid, &s.master)?));
        let (digest, bytes) = self.watch(found)?.ok_or(CoreError::ObjectHandleInvalid)?;
        let o = Arc::new(Object::decode(h, bytes.expose_secret(), &digest)?);
        let mut c = self
            .cache
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        if c.len() >= CACHE_LIMIT
            && let Some(k) = c.keys().next().copied()
        {
            c.remove(&k);
        }
        c.insert(h, Arc::clone(&o));
        Ok(o)
    }

    /// The object behind `h`, if this session's login may see it.
    fn object(&self, login: Option<UserType>, h: u64) -> Result<Arc<Object>> {
        let (pid, _, session) = object::split_handle(h);
        if pid != self.id {
            return Err(CoreError::ObjectHandleInvalid);
        }
        let o = if session {
            self.session_objects
                .read()
                .map_err(|_| CoreError::Internal("lock poisoned"))?
                .get(&h)
                .cloned()
                .ok_or(CoreError::ObjectHandleInvalid)?
        } else {
            self.load_token(h)?
        };
        if o.is_private() && login != Some(UserType::User) {
            return Err(CoreError::ObjectHandleInvalid);
        }
        Ok(o)
    }

    fn key(&self, login: Option<UserType>, h: u64) -> Result<Arc<Object>> {
        self.object(login, h).map_err(|e| match e {
            CoreError::ObjectHandleInvalid => CoreError::KeyHandleInvalid,
            other => other,
        })
    }

    fn count_objects(&self) -> Result<u64> {
        let sess = self
            .session_objects
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .len() as u64;
        Ok(self.token_objects.load(Ordering::Relaxed) + sess)
    }

    /// Stores a new object (token or session) and returns its handle.
    fn insert(&self, session: u64, mut o: Object, origin: Origin) -> Result<u64> {
        let max = self.quotas.max_objects;
        if self.count_objects()? >= max {
            return Err(CoreError::QuotaExceeded("objects"));
        }
        let unique: [u8; 16] = ihsm_crypto::rand::array()?;
        o.attrs.insert(
            ck::CKA_UNIQUE_ID,
            AttrValue::Bytes(hex::encode(unique).into_bytes()),
        );
        if !o.is_token() {
            let n = self.next_session_object.fetch_add(1, Ordering::Relaxed);
            let h = object::handle(self.id, n, true);
            o.handle = h;
            o.session = Some(session);
            self.session_objects
                .write()
                .map_err(|_| CoreError::Internal("lock poisoned"))?
                .insert(h, Arc::new(o));
            return Ok(h);
        }
        let pid = self.id;
        let (class, key_type) = (o.class(), o.key_type());
        let (bytes, digest) = o.encode()?;
        let macs = self.index_entries(&o)?;
        let h = self.with_secrets(|s| {
            self.audited(|tx| {
                let oid = tx.next_object_id(pid)?;
                tx.put_object(pid, oid, &s.master, &digest, &bytes)?;
                for (t, mac) in &macs {
                    tx.index_add(pid, *t, mac, oid)?;
                }
                let h = object::handle(pid, oid, false);
                Ok((
                    h,
                    vec![AuditEvent::ObjectCreated {
                        handle: h,
                        class,
                        key_type,
                        origin,
                    }],
                ))
            })
        })?;
        o.handle = h;
        self.token_objects.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut c) = self.cache.write()
            && c.len() < CACHE_LIMIT
        {
            c.insert(h, Arc::new(o));
        }
        Ok(h)
    }
}

/// 32 bytes derived from the master key for `label`.
fn derive32(master: &Secret<32>, label: &[u8]) -> Result<Secret<32>> {
    let block = kdf::kdf_hmac512(master.expose_secret(), label, None)?;
    Ok(Secret::from_slice(
        block.expose_secret().get(..32).unwrap_or_default(),
    )?)
}

/// The head of the device audit log.
pub(crate) fn device_head(store: &Store) -> Result<Head> {
    last_audit_head(store, 0)
}

/// The head of a stored audit log: the last entry, found by exponential and binary
/// search over sequence numbers (entries are dense from 1).
fn last_audit_head(store: &Store, pid: u32) -> Result<Head> {
    let exists = |seq: u64| -> Result<bool> {
        Ok(store
            .audit(pid, seq, 1)?
            .first()
            .is_some_and(|(s, _)| *s == seq))
    };
    if !exists(1)? {
        return Ok(Head::default());
    }
    let mut lo = 1u64;
    let mut hi = 2u64;
    while exists(hi)? {
        lo = hi;
        hi = hi.saturating_mul(2);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if exists(mid)? { lo = mid } else { hi = mid }
    }
    let last = store.audit(pid, lo, 1)?;
    Head::after(last.first().map(|(_, e)| e.as_slice()))
}

/// Defaults of a new object's storage and key attributes.
fn apply_defaults(m: &mut BTreeMap<AttrType, AttrValue>, class_bit: u8, key_type: Option<u64>) {
    let mut default = |ty: AttrType, v: AttrValue| {
        m.entry(ty).or_insert(v);
    };
    let secret_or_private = class_bit & (class::SECRET | class::PRIV) != 0;
    default(ck::CKA_TOKEN, AttrValue::Bool(false));
    default(ck::CKA_PRIVATE, AttrValue::Bool(secret_or_private));
    default(ck::CKA_MODIFIABLE, AttrValue::Bool(true));
    default(ck::CKA_COPYABLE, AttrValue::Bool(true));
    default(ck::CKA_DESTROYABLE, AttrValue::Bool(true));
    default(ck::CKA_LABEL, AttrValue::Bytes(Vec::new()));
    if class_bit & class::KEY != 0 {
        default(ck::CKA_ID, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_DERIVE, AttrValue::Bool(false));
        default(ck::CKA_START_DATE, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_END_DATE, AttrValue::Bytes(Vec::new()));
        // Usage defaults: each key type's primary function only. Wrapping,
        // unwrapping and deriving must be asked for.
        let (sign, crypt, kem) = match key_type {
            Some(ck::CKK_AES) => (false, true, false),
            Some(ck::CKK_ML_KEM) => (false, false, true),
            Some(ck::CKK_GENERIC_SECRET | ck::CKK_HKDF) => (true, false, false),
            _ => (true, false, false),
        };
        for (ty, classes, v) in [
            (ck::CKA_SIGN, class::PRIV | class::SECRET, sign),
            (ck::CKA_VERIFY, class::PUB | class::SECRET, sign),
            (ck::CKA_ENCRYPT, class::PUB | class::SECRET, crypt),
            (ck::CKA_DECRYPT, class::PRIV | class::SECRET, crypt),
            (ck::CKA_WRAP, class::PUB | class::SECRET, false),
            (ck::CKA_UNWRAP, class::PRIV | class::SECRET, false),
            (ck::CKA_SIGN_RECOVER, class::PRIV, false),
            (ck::CKA_VERIFY_RECOVER, class::PUB, false),
            (ck::CKA_ENCAPSULATE, class::PUB, kem),
            (ck::CKA_DECAPSULATE, class::PRIV, kem),
        ] {
            if classes & class_bit != 0 {
                default(ty, AttrValue::Bool(v));
            }
        }
        if secret_or_private {
            default(ck::CKA_SENSITIVE, AttrValue::Bool(true));
            default(ck::CKA_EXTRACTABLE, AttrValue::Bool(false));
            default(ck::CKA_WRAP_WITH_TRUSTED, AttrValue::Bool(false));
        }
        if class_bit & class::PRIV != 0 {
            default(ck::CKA_ALWAYS_AUTHENTICATE, AttrValue::Bool(false));
            default(ck::CKA_SUBJECT, AttrValue::Bytes(Vec::new()));
        }
        if class_bit & class::PUB != 0 {
            default(ck::CKA_SUBJECT, AttrValue::Bytes(Vec::new()));
        }
        if class_bit & (class::PUB | class::SECRET) != 0 {
            default(ck::CKA_TRUSTED, AttrValue::Bool(false));
        }
    }
    if class_bit == class::DATA {
        default(ck::CKA_APPLICATION, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_OBJECT_ID, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_VALUE, AttrValue::Bytes(Vec::new()));
    }
    if class_bit == class::CERT {
        default(ck::CKA_CERTIFICATE_CATEGORY, AttrValue::Ulong(0));
        default(ck::CKA_TRUSTED, AttrValue::Bool(false));
        default(ck::CKA_ID, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_ISSUER, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_SERIAL_NUMBER, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_START_DATE, AttrValue::Bytes(Vec::new()));
        default(ck::CKA_END_DATE, AttrValue::Bytes(Vec::new()));
    }
}

/// How a key object came to be, for its HSM-set attributes.
#[derive(Clone, Copy)]
struct Provenance {
    local: bool,
    gen_mech: u64,
    /// For derived or unwrapped keys: the base key's (always sensitive, never
    /// extractable), which the new key can only inherit downwards.
    inherited: Option<(bool, bool)>,
}

/// Builds an object of `class`/`key_type` from a caller template, defaults and
/// material, enforcing the attribute table. The template has been mapped already.
fn build(
    class: u64,
    key_type: Option<u64>,
    mut m: BTreeMap<AttrType, AttrValue>,
    material: Option<Material>,
    phase: Phase,
    so: bool,
    prov: Provenance,
) -> Result<Object> {
    let class_bit =
        attr::class_bit(class).ok_or(CoreError::AttributeValueInvalid(ck::CKA_CLASS))?;
    for (ty, v) in &m {
        attr::check_settable(class_bit, key_type, *ty, v, phase, None, so)?;
    }
    match m.get(&ck::CKA_CLASS) {
        Some(AttrValue::Ulong(c)) if *c != class => {
            return Err(CoreError::TemplateInconsistent("CKA_CLASS does not match"));
        }
        _ => {}
    }
    m.insert(ck::CKA_CLASS, AttrValue::Ulong(class));
    if let Some(kt) = key_type {
        match m.get(&ck::CKA_KEY_TYPE) {
            Some(AttrValue::Ulong(k)) if *k != kt => {
                return Err(CoreError::TemplateInconsistent(
                    "CKA_KEY_TYPE does not match the mechanism",
                ));
            }
            _ => {}
        }
        m.insert(ck::CKA_KEY_TYPE, AttrValue::Ulong(kt));
    }
    if matches!(
        m.get(&ck::CKA_ALWAYS_AUTHENTICATE),
        Some(AttrValue::Bool(true))
    ) {
        return Err(CoreError::AttributeValueInvalid(
            ck::CKA_ALWAYS_AUTHENTICATE,
        ));
    }
    // Key material and derived values are never stored as attributes; an
    // imported key's value is wiped as it is dropped from the template.
    m.retain(|ty, v| {
        let keep = attr::rule_for(*ty, class_bit, key_type).is_none_or(|r| !r.derived);
        if !keep && let AttrValue::Bytes(b) = v {
            zeroize::Zeroize::zeroize(b);
        }
        keep
    });
    if class_bit == class::SECRET
        && [ck::CKA_WRAP, ck::CKA_UNWRAP]
            .iter()
            .any(|ty| matches!(m.get(ty), Some(AttrValue::Bool(true))))
    {
        // A key-encryption key encrypts no data unless asked to (and then only
        // in the direction separation allows).
        m.entry(ck::CKA_ENCRYPT).or_insert(AttrValue::Bool(false));
        m.entry(ck::CKA_DECRYPT).or_insert(AttrValue::Bool(false));
    }
    apply_defaults(&mut m, class_bit, key_type);
    separated(class_bit, &m)?;
    if class_bit & class::KEY != 0 {
        m.insert(ck::CKA_LOCAL, AttrValue::Bool(prov.local));
        m.insert(
            ck::CKA_KEY_GEN_MECHANISM,
            AttrValue::Ulong(if prov.local {
                prov.gen_mech
            } else {
                UNAVAILABLE
            }),
        );
    }
    if class_bit & (class::SECRET | class::PRIV) != 0 {
        let sensitive = matches!(m.get(&ck::CKA_SENSITIVE), Some(AttrValue::Bool(true)));
        let extractable = matches!(m.get(&ck::CKA_EXTRACTABLE), Some(AttrValue::Bool(true)));
        let (base_always, base_never) = prov.inherited.unwrap_or((prov.local, prov.local));
        m.insert(
            ck::CKA_ALWAYS_SENSITIVE,
            AttrValue::Bool(sensitive && base_always),
        );
        m.insert(
            ck::CKA_NEVER_EXTRACTABLE,
            AttrValue::Bool(!extractable && base_never),
        );
    }
    Ok(Object {
        handle: 0,
        class_bit,
        attrs: m,
        material,
        session: None,
    })
}

/// Key separation for secret keys (the Clulow attacks on PKCS#11): a key that
/// wraps may not decrypt, or wrapping a sensitive key under it and decrypting
/// the result reads that key (with AES-CBC, one block at a time); a key that
/// unwraps may not encrypt, or encrypting chosen bytes and unwrapping them plants
/// a key whose value the caller knows.
fn separated(class_bit: u8, m: &BTreeMap<AttrType, AttrValue>) -> Result<()> {
    if class_bit != class::SECRET {
        return Ok(());
    }
    let on = |ty| matches!(m.get(&ty), Some(AttrValue::Bool(true)));
    if on(ck::CKA_WRAP) && on(ck::CKA_DECRYPT) {
        return Err(CoreError::TemplateInconsistent(
            "a secret key may not both wrap keys and decrypt data: decrypting what it wrapped would reveal the wrapped key",
        ));
    }
    if on(ck::CKA_UNWRAP) && on(ck::CKA_ENCRYPT) {
        return Err(CoreError::TemplateInconsistent(
            "a secret key may not both unwrap keys and encrypt data: unwrapping what it encrypted would make a key of known value",
        ));
    }
    Ok(())
}

/// Whether a wrapping key keeps what it wraps inside an HSM, so that wrapping a
/// sensitive key under it does not reveal the key to whoever asked for the wrap.
///
/// Either the Security Officer vouched for it (`CKA_TRUSTED`: for a public key, that
/// its private half lives in a genuine HSM), or it is a secret key generated here
/// that was never extractable: nobody outside holds its value, and key separation
/// keeps it from decrypting what it wrapped. Any other secret key may be known to
/// the caller: created from a value, unwrapped, derived (ECDH with the caller's
/// public key), encapsulated to the caller's public key, or once extractable. An
/// untrusted public key is refused too: the HSM cannot tell whether the caller holds
/// its private half, or whether a private half here may decrypt what it wrapped
/// (the key-pair form of the wrap-and-decrypt attack).
fn keeps_secrets(wk: &Object) -> bool {
    wk.flag(ck::CKA_TRUSTED)
        || (wk.class_bit == class::SECRET
            && wk.flag(ck::CKA_LOCAL)
            && wk.flag(ck::CKA_NEVER_EXTRACTABLE))
}

/// A key made from another's secret (derived, decapsulated) is at least as
/// protected as that key: sensitive if it is, unextractable if it is. A template
/// asking otherwise is refused; one silent on sensitivity gets the base's.
fn inherit_protection(base: &Object, m: &mut BTreeMap<AttrType, AttrValue>) -> Result<()> {
    let base_sensitive = base.flag(ck::CKA_SENSITIVE);
    if base_sensitive && matches!(m.get(&ck::CKA_SENSITIVE), Some(AttrValue::Bool(false))) {
        return Err(CoreError::TemplateInconsistent(
            "a key made from a sensitive key's secret must be sensitive",
        ));
    }
    if !base.flag(ck::CKA_EXTRACTABLE)
        && matches!(m.get(&ck::CKA_EXTRACTABLE), Some(AttrValue::Bool(true)))
    {
        return Err(CoreError::TemplateInconsistent(
            "a key made from an unextractable key's secret must be unextractable",
        ));
    }
    if base_sensitive {
        m.insert(ck::CKA_SENSITIVE, AttrValue::Bool(true));
    }
    Ok(())
}

/// Template maps of a key pair's two halves, each checked.
fn map_template(t: &[Attribute]) -> Result<BTreeMap<AttrType, AttrValue>> {
    attr::to_map(t)
}

impl Partition {
    /// Common checks before creating an object: a RW session for token objects and
    /// a user login for private ones.
    fn may_create(
        &self,
        login: Option<UserType>,
        rw: bool,
        m: &BTreeMap<AttrType, AttrValue>,
        class_bit: u8,
    ) -> Result<()> {
        let token = attr::get_bool(m, ck::CKA_TOKEN, false)?;
        let private = attr::get_bool(
            m,
            ck::CKA_PRIVATE,
            class_bit & (class::SECRET | class::PRIV) != 0,
        )?;
        if token && !rw {
            return Err(CoreError::SessionReadOnly);
        }
        if private && login != Some(UserType::User) {
            return Err(CoreError::UserNotLoggedIn);
        }
        Ok(())
    }

    /// C_CreateObject: data objects, certificates, and key import.
    ///
    /// # Errors
    /// Template, session and login errors.
    pub fn create_object(&self, app: u64, session: u64, template: &[Attribute]) -> Result<u64> {
        self.check()?;
        let (login, rw) = self.session(app, session)?;
        let m = map_template(template)?;
        let class = attr::get_ulong(&m, ck::CKA_CLASS)?
            .ok_or(CoreError::TemplateIncomplete(ck::CKA_CLASS))?;
        let class_bit =
            attr::class_bit(class).ok_or(CoreError::AttributeValueInvalid(ck::CKA_CLASS))?;
        self.may_create(login, rw, &m, class_bit)?;
        let so = login == Some(UserType::SecurityOfficer);
        let (key_type, material) = if class_bit & class::KEY != 0 {
            let kt = attr::get_ulong(&m, ck::CKA_KEY_TYPE)?
                .ok_or(CoreError::TemplateIncomplete(ck::CKA_KEY_TYPE))?;
            let get = |ty| Ok(attr::get_bytes(&m, ty)?.map(<[u8]>::to_vec));
            let get_ulong = |ty| attr::get_ulong(&m, ty);
            (Some(kt), Some(key::import(class, kt, &get, &get_ulong)?))
        } else {
            if class_bit == class::CERT {
                match attr::get_ulong(&m, ck::CKA_CERTIFICATE_TYPE)? {
                    Some(ck::CKC_X_509) => {}
                    Some(_) => {
                        return Err(CoreError::AttributeValueInvalid(ck::CKA_CERTIFICATE_TYPE));
                    }
                    None => return Err(CoreError::TemplateIncomplete(ck::CKA_CERTIFICATE_TYPE)),
                }
                if attr::get_bytes(&m, ck::CKA_VALUE)?.is_none() {
                    return Err(CoreError::TemplateIncomplete(ck::CKA_VALUE));
                }
            }
            (None, None)
        };
        let prov = Provenance {
            local: false,
            gen_mech: UNAVAILABLE,
            inherited: Some((false, false)),
        };
        let o = build(class, key_type, m, material, Phase::Create, so, prov)?;
        self.insert(session, o, Origin::Created)
    }

    /// Creates many token objects in one durable transaction (bulk import, restore,
    /// benchmarks): all are created or none. Each template is as for
    /// [`Partition::create_object`] and must ask for a token object.
    ///
    /// # Errors
    /// The first template error; quota; session and login errors.
    pub fn create_objects(
        &self,
        app: u64,
        session: u64,
        templates: &[Vec<Attribute>],
    ) -> Result<Vec<u64>> {
        self.check()?;
        let (login, rw) = self.session(app, session)?;
        if !rw {
            return Err(CoreError::SessionReadOnly);
        }
        let max = self.quotas.max_objects;
        if self.count_objects()?.saturating_add(templates.len() as u64) > max {
            return Err(CoreError::QuotaExceeded("objects"));
        }
        let so = login == Some(UserType::SecurityOfficer);
        let mut prepared = Vec::with_capacity(templates.len());
        for template in templates {
            let m = map_template(template)?;
            if !attr::get_bool(&m, ck::CKA_TOKEN, false)? {
                return Err(CoreError::TemplateInconsistent(
                    "bulk creation makes token objects only",
                ));
            }
            let class = attr::get_ulong(&m, ck::CKA_CLASS)?
                .ok_or(CoreError::TemplateIncomplete(ck::CKA_CLASS))?;
            let class_bit =
                attr::class_bit(class).ok_or(CoreError::AttributeValueInvalid(ck::CKA_CLASS))?;
            self.may_create(login, rw, &m, class_bit)?;
            let (key_type, material) = if class_bit & class::KEY != 0 {
                let kt = attr::get_ulong(&m, ck::CKA_KEY_TYPE)?
                    .ok_or(CoreError::TemplateIncomplete(ck::CKA_KEY_TYPE))?;
                let get = |ty| Ok(attr::get_bytes(&m, ty)?.map(<[u8]>::to_vec));
                let get_ulong = |ty| attr::get_ulong(&m, ty);
                (Some(kt), Some(key::import(class, kt, &get, &get_ulong)?))
            } else {
                (None, None)
            };
            let prov = Provenance {
                local: false,
                gen_mech: UNAVAILABLE,
                inherited: Some((false, false)),
            };
            let mut o = build(class, key_type, m, material, Phase::Create, so, prov)?;
            let unique: [u8; 16] = ihsm_crypto::rand::array()?;
            o.attrs.insert(
                ck::CKA_UNIQUE_ID,
                AttrValue::Bytes(hex::encode(unique).into_bytes()),
            );
            let (bytes, digest) = o.encode()?;
            let macs = self.index_entries(&o)?;
            prepared.push((o.class(), o.key_type(), bytes, digest, macs));
        }
        let pid = self.id;
        let handles = self.with_secrets(|s| {
            self.audited(|tx| {
                let mut handles = Vec::with_capacity(prepared.len());
                let mut events = Vec::with_capacity(prepared.len());
                for (class, key_type, bytes, digest, macs) in &prepared {
                    let oid = tx.next_object_id(pid)?;
                    tx.put_object(pid, oid, &s.master, digest, bytes)?;
                    for (t, mac) in macs {
                        tx.index_add(pid, *t, mac, oid)?;
                    }
                    let h = object::handle(pid, oid, false);
                    handles.push(h);
                    events.push(AuditEvent::ObjectCreated {
                        handle: h,
                        class: *class,
                        key_type: *key_type,
                        origin: Origin::Created,
                    });
                }
                Ok((handles, events))
            })
        })?;
        self.token_objects
            .fetch_add(handles.len() as u64, Ordering::Relaxed);
        Ok(handles)
    }

    /// C_DestroyObject.
    ///
    /// # Errors
    /// Handle, session and "not destroyable" errors.
    pub fn destroy_object(&self, app: u64, session: u64, h: u64) -> Result<()> {
        self.check()?;
        let (login, rw) = self.session(app, session)?;
        let o = self.object(login, h)?;
        if matches!(
            o.attrs.get(&ck::CKA_DESTROYABLE),
            Some(AttrValue::Bool(false))
        ) {
            return Err(CoreError::ActionProhibited("destroyable"));
        }
        if !o.is_token() {
            self.session_objects
                .write()
                .map_err(|_| CoreError::Internal("lock poisoned"))?
                .remove(&h);
            return Ok(());
        }
        if !rw {
            return Err(CoreError::SessionReadOnly);
        }
        let macs = self.index_entries(&o)?;
        let (pid, oid, _) = object::split_handle(h);
        self.audited(|tx| {
            for (t, mac) in &macs {
                tx.index_remove(pid, *t, mac, oid)?;
            }
            tx.delete_object(pid, oid)?;
            Ok(((), vec![AuditEvent::ObjectDestroyed { handle: h }]))
        })?;
        self.cache
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .remove(&h);
        self.token_objects.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    /// C_GetAttributeValue: one result per requested type.
    ///
    /// # Errors
    /// Handle and session errors (per-attribute outcomes are in the results).
    pub fn get_attributes(
        &self,
        app: u64,
        session: u64,
        h: u64,
        types: &[AttrType],
    ) -> Result<Vec<AttrResult>> {
        self.check()?;
        let (login, _) = self.session(app, session)?;
        let o = self.object(login, h)?;
        types.iter().map(|t| o.get(*t)).collect()
    }

    /// Replaces an object (token or session) with `new`, keeping its handle.
    fn replace(&self, old: &Object, new: Object, event: AuditEvent) -> Result<()> {
        let h = old.handle;
        if !old.is_token() {
            self.session_objects
                .write()
                .map_err(|_| CoreError::Internal("lock poisoned"))?
                .insert(h, Arc::new(new));
            return Ok(());
        }
        let (pid, oid, _) = object::split_handle(h);
        let old_macs = self.index_entries(old)?;
        let new_macs = self.index_entries(&new)?;
        let (bytes, digest) = new.encode()?;
        self.with_secrets(|s| {
            self.audited(|tx| {
                for (t, mac) in &old_macs {
                    tx.index_remove(pid, *t, mac, oid)?;
                }
                tx.put_object(pid, oid, &s.master, &digest, &bytes)?;
                for (t, mac) in &new_macs {
                    tx.index_add(pid, *t, mac, oid)?;
                }
                Ok(((), vec![event]))
            })
        })?;
        self.cache
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .insert(h, Arc::new(new));
        Ok(())
    }

    fn clone_material(o: &Object) -> Result<Option<Material>> {
        o.material
            .as_ref()
            .map(|m| {
                let rec = m.to_record()?;
                Material::from_record(&rec)
            })
            .transpose()
    }

    /// C_SetAttributeValue, with the table's rules (one-way attributes, read-only
    /// ones, SO-only ones).
    ///
    /// # Errors
    /// Attribute, handle, session errors.
    pub fn set_attributes(
        &self,
        app: u64,
        session: u64,
        h: u64,
        template: &[Attribute],
    ) -> Result<()> {
        self.check()?;
        let (login, rw) = self.session(app, session)?;
        let o = self.object(login, h)?;
        if o.is_token() && !rw {
            return Err(CoreError::SessionReadOnly);
        }
        if !o.flag(ck::CKA_MODIFIABLE) {
            return Err(CoreError::ActionProhibited("modifiable"));
        }
        let so = login == Some(UserType::SecurityOfficer);
        let mut attrs = o.attrs.clone();
        for a in template {
            attr::check_settable(
                o.class_bit,
                o.key_type(),
                a.ty,
                &a.value,
                Phase::Modify,
                o.attrs.get(&a.ty),
                so,
            )?;
            attrs.insert(a.ty, a.value.clone());
        }
        separated(o.class_bit, &attrs)?;
        // Turning sensitive on or extractable off keeps the history attributes true
        // to the key's past: they only ever become false.
        let new = Object {
            handle: h,
            class_bit: o.class_bit,
            attrs,
            material: Self::clone_material(&o)?,
            session: o.session,
        };
        self.replace(&o, new, AuditEvent::AttributesChanged { handle: h })
    }

    /// C_CopyObject.
    ///
    /// # Errors
    /// "not copyable", attribute, session errors.
    pub fn copy_object(
        &self,
        app: u64,
        session: u64,
        h: u64,
        template: &[Attribute],
    ) -> Result<u64> {
        self.check()?;
        let (login, rw) = self.session(app, session)?;
        let o = self.object(login, h)?;
        if !o.flag(ck::CKA_COPYABLE) {
            return Err(CoreError::ActionProhibited("copyable"));
        }
        let so = login == Some(UserType::SecurityOfficer);
        let mut attrs = o.attrs.clone();
        for a in template {
            attr::check_settable(
                o.class_bit,
                o.key_type(),
                a.ty,
                &a.value,
                Phase::Copy,
                o.attrs.get(&a.ty),
                so,
            )?;
            attrs.insert(a.ty, a.value.clone());
        }
        separated(o.class_bit, &attrs)?;
        self.may_create(login, rw, &attrs, o.class_bit)?;
        attrs.remove(&ck::CKA_UNIQUE_ID);
        let new = Object {
            handle: 0,
            class_bit: o.class_bit,
            attrs,
            material: Self::clone_material(&o)?,
            session: None,
        };
        self.insert(session, new, Origin::Copied)
    }

    /// C_FindObjects: every visible object matching `template` (indexed on label,
    /// id, key type and class; the rest filtered).
    ///
    /// # Errors
    /// Session errors.
    pub fn find(&self, app: u64, session: u64, template: &[Attribute]) -> Result<Vec<u64>> {
        self.check()?;
        let (login, _) = self.session(app, session)?;
        let m = map_template(template)?;
        let want: Vec<(AttrType, AttrValue)> = m.iter().map(|(k, v)| (*k, v.clone())).collect();
        let token_wanted = !matches!(m.get(&ck::CKA_TOKEN), Some(AttrValue::Bool(false)));
        let session_wanted = !matches!(m.get(&ck::CKA_TOKEN), Some(AttrValue::Bool(true)));
        let mut out = Vec::new();
        if token_wanted {
            let indexed = INDEXED
                .iter()
                .find_map(|(t, ty)| m.get(ty).map(|v| (*t, v)));
            let oids = match indexed {
                Some((t, v)) => {
                    let mac = self.with_secrets(|s| object::index_mac(&s.index_key, t, v))?;
                    self.store()?.find(self.id, t, &mac)?
                }
                None => self.store()?.object_ids(self.id)?,
            };
            for oid in oids {
                let h = object::handle(self.id, oid, false);
                match self.object(login, h) {
                    Ok(o) if o.matches(&want)? => out.push(h),
                    Ok(_) | Err(CoreError::ObjectHandleInvalid) => {}
                    Err(e) => return self.watch(Err(e)),
                }
            }
        }
        if session_wanted {
            let objs: Vec<Arc<Object>> = self
                .session_objects
                .read()
                .map_err(|_| CoreError::Internal("lock poisoned"))?
                .values()
                .cloned()
                .collect();
            for o in objs {
                if (!o.is_private() || login == Some(UserType::User)) && o.matches(&want)? {
                    out.push(o.handle);
                }
            }
        }
        Ok(out)
    }

    /// Index tag of an attribute type, if indexed (for tests and tooling).
    #[must_use]
    pub fn is_indexed(ty: AttrType) -> bool {
        INDEXED.iter().any(|(_, t)| *t == ty)
    }
}

// ---- key generation ----------------------------------------------------------

use ihsm_crypto::SecretVec;
use ihsm_crypto::aes::AesKey;
use ihsm_crypto::ec::EcPrivateKey;
use ihsm_crypto::ed25519::Ed25519PrivateKey;
use ihsm_crypto::mldsa::{MlDsaLevel, MlDsaPrivateKey};
use ihsm_crypto::mlkem::{MlKemLevel, MlKemPrivateKey};
use ihsm_crypto::rsa::RsaPrivateKey;

fn param_set(
    pubm: &BTreeMap<AttrType, AttrValue>,
    privm: &BTreeMap<AttrType, AttrValue>,
) -> Result<u64> {
    let a = attr::get_ulong(pubm, ck::CKA_PARAMETER_SET)?;
    let b = attr::get_ulong(privm, ck::CKA_PARAMETER_SET)?;
    match (a, b) {
        (Some(x), Some(y)) if x != y => Err(CoreError::TemplateInconsistent(
            "CKA_PARAMETER_SET differs between the templates",
        )),
        (Some(x), _) | (None, Some(x)) => Ok(x),
        (None, None) => Err(CoreError::TemplateIncomplete(ck::CKA_PARAMETER_SET)),
    }
}

impl Partition {
    fn check_rate(&self) -> Result<()> {
        self.limiter.take()
    }

    /// C_GenerateKey: AES (CKA_VALUE_LEN 16, 24, 32) and generic secrets (1..=512).
    ///
    /// # Errors
    /// Mechanism, template, session errors.
    pub fn generate_key(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        template: &[Attribute],
    ) -> Result<u64> {
        self.check()?;
        self.check_rate()?;
        let (login, rw) = self.session(app, session)?;
        let mut m = map_template(template)?;
        let (kt, material) = match mech {
            Mechanism::AesKeyGen => {
                let len = attr::get_ulong(&m, ck::CKA_VALUE_LEN)?
                    .ok_or(CoreError::TemplateIncomplete(ck::CKA_VALUE_LEN))?;
                if !matches!(len, 16 | 24 | 32) {
                    return Err(CoreError::KeySizeRange("AES keys are 16, 24 or 32 bytes"));
                }
                (
                    ck::CKK_AES,
                    Material::Aes(
                        self.watch(AesKey::generate(len as usize * 8).map_err(CoreError::from))?,
                    ),
                )
            }
            Mechanism::GenericSecretKeyGen => {
                let len = attr::get_ulong(&m, ck::CKA_VALUE_LEN)?
                    .ok_or(CoreError::TemplateIncomplete(ck::CKA_VALUE_LEN))?;
                if !(1..=512).contains(&len) {
                    return Err(CoreError::KeySizeRange(
                        "generic secrets are 1 to 512 bytes",
                    ));
                }
                let kt = attr::get_ulong(&m, ck::CKA_KEY_TYPE)?.unwrap_or(ck::CKK_GENERIC_SECRET);
                if !matches!(kt, ck::CKK_GENERIC_SECRET | ck::CKK_HKDF) {
                    return Err(CoreError::TemplateInconsistent("generic secret key type"));
                }
                (
                    kt,
                    Material::Generic(
                        self.watch(SecretVec::random(len as usize).map_err(CoreError::from))?,
                    ),
                )
            }
            _ => {
                return Err(CoreError::MechanismInvalid(format!(
                    "0x{:x} does not generate secret keys",
                    mech.ckm()
                )));
            }
        };
        m.remove(&ck::CKA_VALUE_LEN);
        self.may_create(login, rw, &m, class::SECRET)?;
        let prov = Provenance {
            local: true,
            gen_mech: mech.ckm(),
            inherited: None,
        };
        let so = login == Some(UserType::SecurityOfficer);
        let o = build(
            ck::CKO_SECRET_KEY,
            Some(kt),
            m,
            Some(material),
            Phase::Generate,
            so,
            prov,
        )?;
        self.insert(session, o, Origin::Generated)
    }

    /// C_GenerateKeyPair: EC (P-256/384/521 by CKA_EC_PARAMS), Ed25519, RSA
    /// (CKA_MODULUS_BITS 2048/3072/4096, exponent 65537), ML-DSA and ML-KEM
    /// (CKA_PARAMETER_SET). Returns (public, private).
    ///
    /// # Errors
    /// Mechanism, template, session errors.
    pub fn generate_key_pair(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        public_template: &[Attribute],
        private_template: &[Attribute],
    ) -> Result<(u64, u64)> {
        self.check()?;
        self.check_rate()?;
        let (login, rw) = self.session(app, session)?;
        let mut pubm = map_template(public_template)?;
        let mut privm = map_template(private_template)?;
        let ec_params = attr::get_bytes(&pubm, ck::CKA_EC_PARAMS)?
            .or(attr::get_bytes(&privm, ck::CKA_EC_PARAMS)?)
            .map(<[u8]>::to_vec);
        let private = self.watch((|| -> Result<Material> {
            Ok(match mech {
                Mechanism::EcKeyPairGen => {
                    let p = ec_params
                        .as_deref()
                        .ok_or(CoreError::TemplateIncomplete(ck::CKA_EC_PARAMS))?;
                    Material::EcPrivate(EcPrivateKey::generate(key::curve_from_params(p)?)?)
                }
                Mechanism::EcEdwardsKeyPairGen => {
                    if let Some(p) = &ec_params
                        && !key::is_ed25519_params(p)
                    {
                        return Err(CoreError::AttributeValueInvalid(ck::CKA_EC_PARAMS));
                    }
                    Material::EdPrivate(Ed25519PrivateKey::generate()?)
                }
                Mechanism::RsaKeyPairGen => {
                    let bits = attr::get_ulong(&pubm, ck::CKA_MODULUS_BITS)?
                        .ok_or(CoreError::TemplateIncomplete(ck::CKA_MODULUS_BITS))?;
                    if !matches!(bits, 2048 | 3072 | 4096) {
                        return Err(CoreError::KeySizeRange(
                            "RSA keys are 2048, 3072 or 4096 bits",
                        ));
                    }
                    if let Some(e) = attr::get_bytes(&pubm, ck::CKA_PUBLIC_EXPONENT)? {
                        let trimmed: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
                        if trimmed != [0x01, 0x00, 0x01] {
                            return Err(CoreError::AttributeValueInvalid(ck::CKA_PUBLIC_EXPONENT));
                        }
                    }
                    Material::RsaPrivate(RsaPrivateKey::generate(bits as usize)?)
                }
                Mechanism::MlDsaKeyPairGen => {
                    let level = match param_set(&pubm, &privm)? {
                        1 => MlDsaLevel::L44,
                        2 => MlDsaLevel::L65,
                        3 => MlDsaLevel::L87,
                        _ => return Err(CoreError::AttributeValueInvalid(ck::CKA_PARAMETER_SET)),
                    };
                    Material::MlDsaPrivate(MlDsaPrivateKey::generate(level)?)
                }
                Mechanism::MlKemKeyPairGen => {
                    let level = match param_set(&pubm, &privm)? {
                        1 => MlKemLevel::L512,
                        2 => MlKemLevel::L768,
                        3 => MlKemLevel::L1024,
                        _ => return Err(CoreError::AttributeValueInvalid(ck::CKA_PARAMETER_SET)),
                    };
                    Material::MlKemPrivate(MlKemPrivateKey::generate(level)?)
                }
                _ => {
                    return Err(CoreError::MechanismInvalid(format!(
                        "0x{:x} does not generate key pairs",
                        mech.ckm()
                    )));
                }
            })
        })())?;
        let kt = private.key_type();
        let public = private.public_half()?;
        for m in [&mut pubm, &mut privm] {
            m.remove(&ck::CKA_EC_PARAMS);
            m.remove(&ck::CKA_MODULUS_BITS);
            m.remove(&ck::CKA_PUBLIC_EXPONENT);
            m.remove(&ck::CKA_PARAMETER_SET);
        }
        self.may_create(login, rw, &pubm, class::PUB)?;
        self.may_create(login, rw, &privm, class::PRIV)?;
        let so = login == Some(UserType::SecurityOfficer);
        let prov = Provenance {
            local: true,
            gen_mech: mech.ckm(),
            inherited: None,
        };
        let pubo = build(
            ck::CKO_PUBLIC_KEY,
            Some(kt),
            pubm,
            Some(public),
            Phase::Generate,
            so,
            prov,
        )?;
        let privo = build(
            ck::CKO_PRIVATE_KEY,
            Some(kt),
            privm,
            Some(private),
            Phase::Generate,
            so,
            prov,
        )?;
        let hpub = self.insert(session, pubo, Origin::Generated)?;
        match self.insert(session, privo, Origin::Generated) {
            Ok(hpriv) => Ok((hpub, hpriv)),
            Err(e) => {
                // No half pair: take the public half back.
                let _ = self.destroy_object(app, session, hpub);
                Err(e)
            }
        }
    }

    // ---- single- and multi-part operations ---------------------------------------

    fn with_session<T>(
        &self,
        app: u64,
        session: u64,
        f: impl FnOnce(&mut Session, Option<UserType>) -> Result<T>,
    ) -> Result<T> {
        let mut s = lock(&self.sessions)?;
        let login = s.login.get(&app).copied();
        let sess = s
            .sessions
            .get_mut(&session)
            .filter(|x| x.app == app)
            .ok_or(CoreError::SessionHandleInvalid)?;
        f(sess, login)
    }

    fn login_of(&self, app: u64, session: u64) -> Result<Option<UserType>> {
        Ok(self.session(app, session)?.0)
    }

    /// C_SignInit / C_VerifyInit.
    ///
    /// # Errors
    /// [`CoreError::OperationActive`], key and mechanism errors.
    pub fn sign_init(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        key: u64,
        verify: bool,
    ) -> Result<()> {
        self.check()?;
        let login = self.login_of(app, session)?;
        let k = self.key(login, key)?;
        let usage = if verify { Usage::Verify } else { Usage::Sign };
        ops::permitted(&k, usage)?;
        // Validate mechanism against the key now, as PKCS#11 wants errors at Init.
        let _ = ops::SignCtx::new(mech, &k, usage)?;
        self.with_session(app, session, |s, _| {
            let slot = if verify { &mut s.verify } else { &mut s.sign };
            if slot.is_some() {
                return Err(CoreError::OperationActive);
            }
            *slot = Some(SignOp {
                mech: mech.clone(),
                key: k,
                ctx: None,
            });
            Ok(())
        })
    }

    fn take_sign(&self, app: u64, session: u64, verify: bool) -> Result<SignOp> {
        self.with_session(app, session, |s, _| {
            let slot = if verify { &mut s.verify } else { &mut s.sign };
            slot.take().ok_or(CoreError::OperationNotInitialized)
        })
    }

    fn put_sign(&self, app: u64, session: u64, verify: bool, op: SignOp) -> Result<()> {
        self.with_session(app, session, |s, _| {
            if verify {
                s.verify = Some(op);
            } else {
                s.sign = Some(op);
            }
            Ok(())
        })
    }

    /// C_Sign: single-part; ends the operation.
    ///
    /// # Errors
    /// Operation, data and key errors.
    pub fn sign(&self, app: u64, session: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.check()?;
        let op = self.take_sign(app, session, false)?;
        // A refused call ends the operation, as PKCS#11 says of any error.
        self.check_rate()?;
        if op.ctx.is_some() {
            return Err(CoreError::OperationActive);
        }
        self.watch(ops::sign(&op.mech, &op.key, data))
    }

    /// Sign in one call (SignInit + Sign), the daemon's fast path.
    ///
    /// # Errors
    /// As [`Partition::sign_init`] and [`Partition::sign`].
    pub fn sign_once(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        key: u64,
        data: &[u8],
    ) -> Result<Vec<u8>> {
        self.check()?;
        self.check_rate()?;
        let login = self.login_of(app, session)?;
        let k = self.key(login, key)?;
        self.watch(ops::sign(mech, &k, data))
    }

    /// C_SignUpdate / C_VerifyUpdate.
    ///
    /// # Errors
    /// Operation and data errors; an error ends the operation.
    pub fn sign_update(&self, app: u64, session: u64, data: &[u8], verify: bool) -> Result<()> {
        self.check()?;
        let mut op = self.take_sign(app, session, verify)?;
        let usage = if verify { Usage::Verify } else { Usage::Sign };
        let mut ctx = match op.ctx.take() {
            Some(c) => c,
            None => ops::SignCtx::new(&op.mech, &op.key, usage)?,
        };
        ctx.update(data)?;
        op.ctx = Some(ctx);
        self.put_sign(app, session, verify, op)
    }

    /// C_SignFinal.
    ///
    /// # Errors
    /// Operation and key errors.
    pub fn sign_final(&self, app: u64, session: u64) -> Result<Vec<u8>> {
        self.check()?;
        let op = self.take_sign(app, session, false)?;
        // A refused call ends the operation, as PKCS#11 says of any error.
        self.check_rate()?;
        let ctx = match op.ctx {
            Some(c) => c,
            None => ops::SignCtx::new(&op.mech, &op.key, Usage::Sign)?,
        };
        self.watch(ctx.sign(&op.mech, &op.key))
    }

    /// C_Verify: single-part; ends the operation.
    ///
    /// # Errors
    /// [`CoreError::SignatureInvalid`] and the rest.
    pub fn verify(&self, app: u64, session: u64, data: &[u8], sig: &[u8]) -> Result<()> {
        self.check()?;
        let op = self.take_sign(app, session, true)?;
        // A refused call ends the operation, as PKCS#11 says of any error.
        self.check_rate()?;
        if op.ctx.is_some() {
            return Err(CoreError::OperationActive);
        }
        ops::verify(&op.mech, &op.key, data, sig)
    }

    /// C_VerifyFinal.
    ///
    /// # Errors
    /// [`CoreError::SignatureInvalid`] and the rest.
    pub fn verify_final(&self, app: u64, session: u64, sig: &[u8]) -> Result<()> {
        self.check()?;
        let op = self.take_sign(app, session, true)?;
        // A refused call ends the operation, as PKCS#11 says of any error.
        self.check_rate()?;
        let ctx = match op.ctx {
            Some(c) => c,
            None => ops::SignCtx::new(&op.mech, &op.key, Usage::Verify)?,
        };
        ctx.verify(&op.mech, &op.key, sig)
    }

    /// C_EncryptInit / C_DecryptInit.
    ///
    /// # Errors
    /// [`CoreError::OperationActive`], key and mechanism errors.
    pub fn crypt_init(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        key: u64,
        encrypt: bool,
    ) -> Result<()> {
        self.check()?;
        let login = self.login_of(app, session)?;
        let k = self.key(login, key)?;
        ops::CryptCtx::validate(mech, &k, encrypt)?;
        self.with_session(app, session, |s, _| {
            let slot = if encrypt {
                &mut s.encrypt
            } else {
                &mut s.decrypt
            };
            if slot.is_some() {
                return Err(CoreError::OperationActive);
            }
            *slot = Some(CryptOp {
                mech: mech.clone(),
                key: k,
                ctx: None,
            });
            Ok(())
        })
    }

    fn take_crypt(&self, app: u64, session: u64, encrypt: bool) -> Result<CryptOp> {
        self.with_session(app, session, |s, _| {
            let slot = if encrypt {
                &mut s.encrypt
            } else {
                &mut s.decrypt
            };
            slot.take().ok_or(CoreError::OperationNotInitialized)
        })
    }

    /// C_Encrypt: single-part; returns the ciphertext and a generated GCM IV.
    ///
    /// # Errors
    /// Operation, data and key errors.
    pub fn encrypt(
        &self,
        app: u64,
        session: u64,
        data: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        self.check()?;
        let op = self.take_crypt(app, session, true)?;
        // A refused call ends the operation, as PKCS#11 says of any error.
        self.check_rate()?;
        if op.ctx.is_some() {
            return Err(CoreError::OperationActive);
        }
        self.watch(ops::encrypt(&op.mech, &op.key, data))
    }

    /// Encrypt in one call (EncryptInit + Encrypt), the daemon's fast path.
    ///
    /// # Errors
    /// As [`Partition::crypt_init`] and [`Partition::encrypt`].
    pub fn encrypt_once(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        key: u64,
        data: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        self.check()?;
        self.check_rate()?;
        let login = self.login_of(app, session)?;
        let k = self.key(login, key)?;
        self.watch(ops::encrypt(mech, &k, data))
    }

    /// C_Decrypt: single-part.
    ///
    /// # Errors
    /// [`CoreError::EncryptedDataInvalid`] and the rest.
    pub fn decrypt(&self, app: u64, session: u64, data: &[u8]) -> Result<SecretVec> {
        self.check()?;
        let op = self.take_crypt(app, session, false)?;
        // A refused call ends the operation, as PKCS#11 says of any error.
        self.check_rate()?;
        if op.ctx.is_some() {
            return Err(CoreError::OperationActive);
        }
        self.watch(ops::decrypt(&op.mech, &op.key, data))
    }

    /// C_EncryptUpdate / C_DecryptUpdate.
    ///
    /// # Errors
    /// Operation and data errors; an error ends the operation.
    pub fn crypt_update(
        &self,
        app: u64,
        session: u64,
        data: &[u8],
        encrypt: bool,
    ) -> Result<Vec<u8>> {
        self.check()?;
        let mut op = self.take_crypt(app, session, encrypt)?;
        let mut ctx = match op.ctx.take() {
            Some(c) => c,
            None => ops::CryptCtx::new(&op.mech, &op.key, encrypt)?,
        };
        let out = ctx.update(data)?;
        op.ctx = Some(ctx);
        self.with_session(app, session, |s, _| {
            if encrypt {
                s.encrypt = Some(op);
            } else {
                s.decrypt = Some(op);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// C_EncryptFinal.
    ///
    /// # Errors
    /// Operation and data errors.
    pub fn encrypt_final(&self, app: u64, session: u64) -> Result<Vec<u8>> {
        self.check()?;
        let op = self.take_crypt(app, session, true)?;
        // A refused call ends the operation, as PKCS#11 says of any error.
        self.check_rate()?;
        let ctx = match op.ctx {
            Some(c) => c,
            None => ops::CryptCtx::new(&op.mech, &op.key, true)?,
        };
        ctx.finish_encrypt(&op.mech, &op.key)
    }

    /// C_DecryptFinal.
    ///
    /// # Errors
    /// Operation and data errors.
    pub fn decrypt_final(&self, app: u64, session: u64) -> Result<SecretVec> {
        self.check()?;
        let op = self.take_crypt(app, session, false)?;
        // A refused call ends the operation, as PKCS#11 says of any error.
        self.check_rate()?;
        let ctx = match op.ctx {
            Some(c) => c,
            None => ops::CryptCtx::new(&op.mech, &op.key, false)?,
        };
        ctx.finish_decrypt(&op.mech, &op.key)
    }

    /// C_DigestInit.
    ///
    /// # Errors
    /// [`CoreError::OperationActive`], mechanism errors.
    pub fn digest_init(&self, app: u64, session: u64, mech: &Mechanism) -> Result<()> {
        self.check()?;
        let Mechanism::Digest(h) = mech else {
            return Err(CoreError::MechanismInvalid(format!(
                "0x{:x} is not a digest",
                mech.ckm()
            )));
        };
        let ctx = ihsm_crypto::hash::DigestCtx::new(h.alg());
        self.with_session(app, session, |s, _| {
            if s.digest.is_some() {
                return Err(CoreError::OperationActive);
            }
            s.digest = Some(ctx);
            Ok(())
        })
    }

    /// C_DigestUpdate.
    ///
    /// # Errors
    /// [`CoreError::OperationNotInitialized`].
    pub fn digest_update(&self, app: u64, session: u64, data: &[u8]) -> Result<()> {
        self.with_session(app, session, |s, _| {
            s.digest
                .as_mut()
                .ok_or(CoreError::OperationNotInitialized)?
                .update(data);
            Ok(())
        })
    }

    /// C_DigestFinal (and C_Digest after init).
    ///
    /// # Errors
    /// [`CoreError::OperationNotInitialized`].
    pub fn digest_final(&self, app: u64, session: u64) -> Result<Vec<u8>> {
        let ctx = self.with_session(app, session, |s, _| {
            s.digest.take().ok_or(CoreError::OperationNotInitialized)
        })?;
        Ok(ctx.finish())
    }

    /// C_GenerateRandom (at most 1 MiB per call).
    ///
    /// # Errors
    /// [`CoreError::DataLenRange`], [`CoreError::RandomFailure`].
    pub fn random(&self, app: u64, session: u64, len: usize) -> Result<Vec<u8>> {
        self.check()?;
        self.session(app, session)?;
        if len > 1 << 20 {
            return Err(CoreError::DataLenRange("at most 1 MiB of random per call"));
        }
        let mut out = vec![0u8; len];
        self.watch(ihsm_crypto::rand::fill(&mut out).map_err(CoreError::from))?;
        Ok(out)
    }
}

// ---- wrap, unwrap, derive, encapsulate ---------------------------------------------

/// Class, key type and value length of a secret-key template (derive, KEM).
fn secret_template(
    m: &mut BTreeMap<AttrType, AttrValue>,
    default_len: Option<u64>,
) -> Result<(u64, usize)> {
    if let Some(c) = attr::get_ulong(m, ck::CKA_CLASS)?
        && c != ck::CKO_SECRET_KEY
    {
        return Err(CoreError::TemplateInconsistent(
            "derived keys are secret keys",
        ));
    }
    let kt = attr::get_ulong(m, ck::CKA_KEY_TYPE)?.unwrap_or(ck::CKK_GENERIC_SECRET);
    let len = match (attr::get_ulong(m, ck::CKA_VALUE_LEN)?, default_len) {
        (Some(l), _) | (None, Some(l)) => l,
        (None, None) => return Err(CoreError::TemplateIncomplete(ck::CKA_VALUE_LEN)),
    };
    match kt {
        ck::CKK_AES if matches!(len, 16 | 24 | 32) => {}
        ck::CKK_AES => {
            return Err(CoreError::TemplateInconsistent(
                "AES keys are 16, 24 or 32 bytes",
            ));
        }
        ck::CKK_GENERIC_SECRET | ck::CKK_HKDF if (1..=512).contains(&len) => {}
        ck::CKK_GENERIC_SECRET | ck::CKK_HKDF => {
            return Err(CoreError::TemplateInconsistent(
                "generic secrets are 1 to 512 bytes",
            ));
        }
        _ => {
            return Err(CoreError::TemplateInconsistent(
                "derived keys are AES or generic secrets",
            ));
        }
    }
    m.remove(&ck::CKA_VALUE_LEN);
    Ok((kt, len as usize))
}

fn secret_material(kt: u64, bytes: SecretVec) -> Result<Material> {
    if kt == ck::CKK_AES {
        Ok(Material::Aes(AesKey::from_bytes(bytes.expose_secret())?))
    } else {
        Ok(Material::Generic(bytes))
    }
}

impl Partition {
    /// C_WrapKey. The key must be extractable; a wrap-with-trusted key only under a
    /// trusted wrapping key; a sensitive key only under a key that keeps secrets
    /// ([`keeps_secrets`]); a key never wraps itself.
    ///
    /// # Errors
    /// [`CoreError::KeyUnextractable`], [`CoreError::KeyNotWrappable`] and the rest.
    pub fn wrap_key(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        wrapping: u64,
        key: u64,
    ) -> Result<Vec<u8>> {
        self.check()?;
        self.check_rate()?;
        let login = self.login_of(app, session)?;
        let wk = self.key(login, wrapping)?;
        let k = self.key(login, key)?;
        if wrapping == key {
            return Err(CoreError::KeyUnextractable("a key cannot wrap itself"));
        }
        if !k.flag(ck::CKA_EXTRACTABLE) {
            return Err(CoreError::KeyUnextractable("CKA_EXTRACTABLE is false"));
        }
        if k.flag(ck::CKA_WRAP_WITH_TRUSTED) && !wk.flag(ck::CKA_TRUSTED) {
            return Err(CoreError::KeyNotWrappable(
                "CKA_WRAP_WITH_TRUSTED needs a trusted wrapping key",
            ));
        }
        if k.flag(ck::CKA_SENSITIVE) && !keeps_secrets(&wk) {
            return Err(CoreError::KeyNotWrappable(
                "a sensitive key is wrapped only under a key the Security Officer trusts, or a secret key made in this HSM that was never extractable",
            ));
        }
        let bytes = k
            .material
            .as_ref()
            .ok_or(CoreError::KeyHandleInvalid)?
            .wrap_bytes()?;
        let out = ops::wrap(mech, &wk, &bytes)?;
        if k.is_token() {
            self.audited(|_| {
                Ok((
                    (),
                    vec![AuditEvent::KeyWrapped {
                        handle: key,
                        wrapping_key: wrapping,
                    }],
                ))
            })?;
        }
        Ok(out)
    }

    /// C_UnwrapKey: the template names the class and key type of what is inside.
    ///
    /// # Errors
    /// [`CoreError::WrappedKeyInvalid`] and the rest.
    pub fn unwrap_key(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        unwrapping: u64,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> Result<u64> {
        self.check()?;
        self.check_rate()?;
        let (login, rw) = self.session(app, session)?;
        let uk = self.key(login, unwrapping)?;
        let mut m = map_template(template)?;
        // A key that arrives wrapped stays secret: unwrapping a wrapping of a
        // sensitive key as readable would undo the wrap (the Clulow attack). A
        // caller holding a key's value in the clear creates it with C_CreateObject.
        if matches!(m.get(&ck::CKA_SENSITIVE), Some(AttrValue::Bool(false))) {
            return Err(CoreError::TemplateInconsistent(
                "an unwrapped key is sensitive: a wrapped key is not made readable by unwrapping it",
            ));
        }
        m.insert(ck::CKA_SENSITIVE, AttrValue::Bool(true));
        let class = attr::get_ulong(&m, ck::CKA_CLASS)?
            .ok_or(CoreError::TemplateIncomplete(ck::CKA_CLASS))?;
        let kt = attr::get_ulong(&m, ck::CKA_KEY_TYPE)?
            .ok_or(CoreError::TemplateIncomplete(ck::CKA_KEY_TYPE))?;
        let class_bit =
            attr::class_bit(class).ok_or(CoreError::AttributeValueInvalid(ck::CKA_CLASS))?;
        if class_bit & (class::SECRET | class::PRIV) == 0 {
            return Err(CoreError::TemplateInconsistent(
                "only secret and private keys are unwrapped",
            ));
        }
        let params = attr::get_ulong(&m, ck::CKA_PARAMETER_SET)?;
        m.remove(&ck::CKA_PARAMETER_SET);
        let want_len = attr::get_ulong(&m, ck::CKA_VALUE_LEN)?;
        m.remove(&ck::CKA_VALUE_LEN);
        let bytes = ops::unwrap(mech, &uk, wrapped)?;
        if let Some(l) = want_len
            && class == ck::CKO_SECRET_KEY
            && l as usize != bytes.len()
        {
            return Err(CoreError::TemplateInconsistent(
                "CKA_VALUE_LEN does not match the unwrapped key",
            ));
        }
        let material = Material::from_unwrapped(class, kt, bytes.expose_secret(), params)?;
        self.may_create(login, rw, &m, class_bit)?;
        let so = login == Some(UserType::SecurityOfficer);
        let prov = Provenance {
            local: false,
            gen_mech: UNAVAILABLE,
            inherited: Some((false, false)),
        };
        let o = build(
            class,
            Some(kt),
            m,
            Some(material),
            Phase::Generate,
            so,
            prov,
        )?;
        self.insert(session, o, Origin::Unwrapped)
    }

    /// C_DeriveKey: ECDH, HKDF, SP 800-108 counter KDF, TLS 1.3 Expand-Label. A key
    /// derived from a sensitive base is sensitive, and from an unextractable base is
    /// unextractable (stricter than PKCS#11 requires: no route from a sensitive key to
    /// an extractable copy of its secrets).
    ///
    /// # Errors
    /// Template, mechanism and key errors.
    pub fn derive_key(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        base: u64,
        template: &[Attribute],
    ) -> Result<u64> {
        self.check()?;
        self.check_rate()?;
        let (login, rw) = self.session(app, session)?;
        let b = self.key(login, base)?;
        let mut m = map_template(template)?;
        let (kt, len) = secret_template(&mut m, None)?;
        inherit_protection(&b, &mut m)?;
        let bytes = ops::derive(mech, &b, len)?;
        let material = secret_material(kt, bytes)?;
        self.may_create(login, rw, &m, class::SECRET)?;
        let so = login == Some(UserType::SecurityOfficer);
        let inherited = (
            b.flag(ck::CKA_ALWAYS_SENSITIVE),
            b.flag(ck::CKA_NEVER_EXTRACTABLE),
        );
        let prov = Provenance {
            local: false,
            gen_mech: UNAVAILABLE,
            inherited: Some(inherited),
        };
        let o = build(
            ck::CKO_SECRET_KEY,
            Some(kt),
            m,
            Some(material),
            Phase::Generate,
            so,
            prov,
        )?;
        self.insert(session, o, Origin::Derived)
    }

    /// C_EncapsulateKey (ML-KEM): returns the ciphertext and the new secret key's
    /// handle (32 bytes unless the template asks for less).
    ///
    /// # Errors
    /// Template, mechanism and key errors.
    pub fn encapsulate(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        public: u64,
        template: &[Attribute],
    ) -> Result<(Vec<u8>, u64)> {
        self.check()?;
        self.check_rate()?;
        if *mech != Mechanism::MlKem {
            return Err(CoreError::MechanismInvalid(format!(
                "0x{:x} does not encapsulate",
                mech.ckm()
            )));
        }
        let (login, rw) = self.session(app, session)?;
        let k = self.key(login, public)?;
        let mut m = map_template(template)?;
        let (kt, len) = secret_template(&mut m, Some(32))?;
        let (ct, ss) = ops::encapsulate(&k)?;
        if len > ss.len() {
            return Err(CoreError::TemplateInconsistent(
                "CKA_VALUE_LEN is longer than the shared secret",
            ));
        }
        let material = secret_material(
            kt,
            SecretVec::from_slice(ss.expose_secret().get(..len).unwrap_or_default())?,
        )?;
        self.may_create(login, rw, &m, class::SECRET)?;
        let so = login == Some(UserType::SecurityOfficer);
        let prov = Provenance {
            local: false,
            gen_mech: UNAVAILABLE,
            inherited: Some((true, true)),
        };
        let o = build(
            ck::CKO_SECRET_KEY,
            Some(kt),
            m,
            Some(material),
            Phase::Generate,
            so,
            prov,
        )?;
        Ok((ct, self.insert(session, o, Origin::Derived)?))
    }

    /// C_DecapsulateKey (ML-KEM).
    ///
    /// # Errors
    /// Template, mechanism and key errors.
    pub fn decapsulate(
        &self,
        app: u64,
        session: u64,
        mech: &Mechanism,
        private: u64,
        ct: &[u8],
        template: &[Attribute],
    ) -> Result<u64> {
        self.check()?;
        self.check_rate()?;
        if *mech != Mechanism::MlKem {
            return Err(CoreError::MechanismInvalid(format!(
                "0x{:x} does not decapsulate",
                mech.ckm()
            )));
        }
        let (login, rw) = self.session(app, session)?;
        let k = self.key(login, private)?;
        let mut m = map_template(template)?;
        let (kt, len) = secret_template(&mut m, Some(32))?;
        // The shared secret is the private key's to protect: readable from a
        // sensitive key, it would hand the private key's use to anyone who can
        // read a key's value.
        inherit_protection(&k, &mut m)?;
        let ss = ops::decapsulate(&k, ct)?;
        if len > ss.len() {
            return Err(CoreError::TemplateInconsistent(
                "CKA_VALUE_LEN is longer than the shared secret",
            ));
        }
        let material = secret_material(
            kt,
            SecretVec::from_slice(ss.expose_secret().get(..len).unwrap_or_default())?,
        )?;
        self.may_create(login, rw, &m, class::SECRET)?;
        let so = login == Some(UserType::SecurityOfficer);
        let inherited = (
            k.flag(ck::CKA_ALWAYS_SENSITIVE),
            k.flag(ck::CKA_NEVER_EXTRACTABLE),
        );
        let prov = Provenance {
            local: false,
            gen_mech: UNAVAILABLE,
            inherited: Some(inherited),
        };
        let o = build(
            ck::CKO_SECRET_KEY,
            Some(kt),
            m,
            Some(material),
            Phase::Generate,
            so,
            prov,
        )?;
        self.insert(session, o, Origin::Decapsulated)
    }

    // ---- masked keys ------------------------------------------------------------------

    /// Exports a key as a masked blob: its attributes and material sealed under the
    /// partition's masking key, bound to this partition and firmware SVN. Only this
    /// partition of this device can import it again.
    ///
    /// # Errors
    /// Handle and session errors.
    pub fn export_masked(&self, app: u64, session: u64, h: u64, svn: u32) -> Result<Vec<u8>> {
        self.check()?;
        let login = self.login_of(app, session)?;
        let o = self.key(login, h)?;
        if o.class_bit & class::KEY == 0 {
            return Err(CoreError::KeyHandleInvalid);
        }
        let blob = self.with_secrets(|s| crate::masked::mask(self.id, svn, &o, &s.mask))?;
        if o.is_token() {
            self.audited(|_| Ok(((), vec![AuditEvent::KeyMasked { handle: h }])))?;
        }
        Ok(blob)
    }

    /// Imports a masked blob made by [`Partition::export_masked`] as a new object
    /// (token or session, as it was).
    ///
    /// # Errors
    /// [`CoreError::MaskedKeyInvalid`] for another partition's, another device's, a
    /// newer firmware's, or an altered blob.
    pub fn import_masked(&self, app: u64, session: u64, blob: &[u8], svn: u32) -> Result<u64> {
        self.check()?;
        let (login, rw) = self.session(app, session)?;
        let o = self.with_secrets(|s| crate::masked::unmask(self.id, svn, blob, &s.mask))?;
        self.may_create(login, rw, &o.attrs, o.class_bit)?;
        self.insert(session, o, Origin::Unmasked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Device, DeviceConfig, DeviceState};

    /// The store detects edited records (its own tests edit every byte of one);
    /// here: whatever integrity error reaches a partition sets off the tamper
    /// response, and self-test failures the fatal state.
    #[test]
    fn integrity_errors_tamper_and_self_test_errors_are_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let state = ihsm_rot::state::StateDir::new(dir.path());
        state.provision_dev(false, &[1; 48]).unwrap();
        let mut cfg = DeviceConfig::new(dir.path());
        cfg.pin_iterations = 1000;
        let d = Device::start(cfg.clone(), state.boot(&[1; 48]).unwrap()).unwrap();
        let spec = crate::PartitionSpec {
            name: "t".into(),
            owner_uid: 0,
            owner_gid: 0,
            so_pin: Zeroizing::new(b"so-pin-1".to_vec()),
            user_pin: None,
            quotas: Quotas::default(),
        };
        let p = d.partition(d.create_partition(spec).unwrap().id).unwrap();
        let corrupt = StoreError::Corrupt {
            what: "object",
            pid: Some(p.id()),
            oid: Some(1),
        };
        assert!(p.watch::<()>(Err(CoreError::Store(corrupt))).is_err());
        assert!(matches!(d.state(), DeviceState::Tampered(r) if r.contains("store integrity")));
        drop(p);
        drop(d);

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
            user_pin: None,
            quotas: Quotas::default(),
        };
        let p = d.partition(d.create_partition(spec).unwrap().id).unwrap();
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
}
