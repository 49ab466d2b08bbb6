//! A partition as one bundle, for a move to another device: its sealed record's
//! contents (PINs' verifiers and lockout counts, quotas, principals, policy, the
//! master and identity keys), every token object's record, the next object id,
//! and the whole audit log. The bundle exists only in locked memory, and leaves
//! the device only sealed (HPKE, `device::migrate`).
//!
//! A move sends two: the whole partition while it still serves (the staged
//! bundle), then, once it is stopped, only what changed since (the delta: the
//! objects whose digest differs or that are new, the ids of those gone, the
//! audit entries after the staged ones, and the record again), so that the
//! partition is stopped for the delta's time, not the whole partition's.
//!
//! The object records travel as the core encodes them, so that the destination
//! seals them again under its store's place-binding (the same partition id and
//! object id: a partition keeps its number, and with it its handles and its
//! audit checkpoints, on every host).
//!
//! The delta also carries the partition's applications that can resume at the
//! destination (those whose connections hold an application token: the
//! PKCS#11 module's): each one's token and uid, its login, its sessions (their
//! handles and modes) and its session objects, so that the application's next
//! connection there joins it by the token and carries on with the same handles,
//! without logging in again. A session's operations that were started and
//! given no data yet (C_SignInit, C_VerifyInit, C_EncryptInit, C_DecryptInit
//! before their first call with data) travel as their mechanism and key, and
//! are checked again at the destination; one that has taken data (a multi-part
//! operation under way, or any digest) holds state the cryptography cannot
//! export, and ends with the move.

use ihsm_crypto::{ExposeSecret, ExposeSecretMut, SecretVec};
use ihsm_store::{Store, WriteTx};
use serde::{Deserialize, Serialize};

use super::{Partition, PartitionRecord, RecordKeys, lock};
use crate::error::{CoreError, Result};
use crate::mech::Mechanism;
use crate::object::{self, Object};
use crate::ops::{self, Usage};
use crate::session::{CryptOp, Session, SignOp, UserType};

/// The bundle's format version (2: staged and delta bundles; 3: the delta's
/// applications).
const BUNDLE_VERSION: u16 = 3;
/// The most objects a bundle may carry.
pub(crate) const MAX_BUNDLE_OBJECTS: usize = 1 << 20;
/// The most audit entries a bundle may carry.
const MAX_BUNDLE_AUDIT: usize = 1 << 24;
/// The most applications a delta may carry.
const MAX_BUNDLE_APPS: usize = 4096;
/// The most sessions a delta may carry, over all its applications.
const MAX_BUNDLE_SESSIONS: usize = 1 << 16;
/// The bits of a session handle below the partition id.
const SESSION_LOCAL: u64 = (1 << 40) - 1;

/// The kinds of operation a session carries: sign, verify, encrypt, decrypt.
const OP_SIGN: u8 = 0;
const OP_VERIFY: u8 = 1;
const OP_ENCRYPT: u8 = 2;
const OP_DECRYPT: u8 = 3;

/// An application of a leaving partition that may resume at the destination:
/// the daemon's id for it, the token its connections join it with, and its
/// peer's uid (which the destination's join checks again).
#[derive(Clone, Copy)]
pub struct Leaving<'a> {
    /// The daemon's id of the application (the sessions' owner).
    pub app: u64,
    /// Its token (`AppToken`).
    pub token: &'a [u8; 32],
    /// The uid of its connections' peer.
    pub uid: u32,
}

impl core::fmt::Debug for Leaving<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Leaving")
            .field("app", &self.app)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

/// An application that arrived with a partition's delta, for the daemon to
/// adopt under an id of its own ([`crate::Device::adopt_app`]) before the
/// partition serves.
pub struct Arrived {
    /// The token its connections join it with.
    pub token: zeroize::Zeroizing<[u8; 32]>,
    /// The uid its connections must have.
    pub uid: u32,
    pub(crate) login: Option<UserType>,
    pub(crate) sessions: Vec<SessionIo>,
    pub(crate) objects: Vec<Object>,
}

/// A session as a delta carries it: its handle, mode, and the operations
/// started in it that have taken no data yet (kind, mechanism, key handle).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionIo {
    handle: u64,
    rw: bool,
    ops: Vec<(u8, Mechanism, u64)>,
}

impl core::fmt::Debug for Arrived {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Arrived")
            .field("uid", &self.uid)
            .field("login", &self.login)
            .field("sessions", &self.sessions.len())
            .field("objects", &self.objects.len())
            .finish_non_exhaustive()
    }
}

impl Arrived {
    /// How many sessions it brought.
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

#[derive(Serialize)]
struct BundleOut<'a> {
    version: u16,
    pid: u32,
    name: &'a str,
    #[serde(with = "serde_bytes")]
    record: &'a [u8],
    next_oid: u64,
    delta: bool,
    objects: Vec<ObjectOut<'a>>,
    deleted: Vec<u64>,
    audit: Vec<AuditOut<'a>>,
    apps: Vec<AppOut<'a>>,
}

#[derive(Serialize)]
struct AppOut<'a> {
    #[serde(with = "serde_bytes")]
    token: &'a [u8],
    uid: u32,
    login: Option<UserType>,
    sessions: &'a [SessionIo],
    objects: Vec<SessionObjectOut<'a>>,
}

#[derive(Serialize)]
struct SessionObjectOut<'a> {
    handle: u64,
    session: u64,
    digest: [u8; 32],
    #[serde(with = "serde_bytes")]
    record: &'a [u8],
}

#[derive(Serialize)]
struct ObjectOut<'a> {
    oid: u64,
    digest: [u8; 32],
    #[serde(with = "serde_bytes")]
    record: &'a [u8],
}

#[derive(Serialize)]
struct AuditOut<'a> {
    seq: u64,
    #[serde(with = "serde_bytes")]
    entry: &'a [u8],
}

/// A bundle as read: every field borrowed from the locked buffer it was opened
/// into.
#[derive(Deserialize)]
pub(crate) struct Bundle<'a> {
    version: u16,
    pub(crate) pid: u32,
    pub(crate) name: &'a str,
    #[serde(with = "serde_bytes")]
    record: &'a [u8],
    next_oid: u64,
    /// Whether it completes a staged bundle (else it is the whole partition).
    pub(crate) delta: bool,
    #[serde(borrow)]
    objects: Vec<ObjectIn<'a>>,
    /// In a delta: the staged objects that are gone.
    deleted: Vec<u64>,
    #[serde(borrow)]
    audit: Vec<AuditIn<'a>>,
    /// In a delta: the applications that may resume at the destination.
    #[serde(borrow)]
    apps: Vec<AppIn<'a>>,
}

#[derive(Deserialize)]
struct AppIn<'a> {
    #[serde(with = "serde_bytes")]
    token: &'a [u8],
    uid: u32,
    login: Option<UserType>,
    sessions: Vec<SessionIo>,
    #[serde(borrow)]
    objects: Vec<SessionObjectIn<'a>>,
}

#[derive(Deserialize)]
struct SessionObjectIn<'a> {
    handle: u64,
    session: u64,
    digest: [u8; 32],
    #[serde(with = "serde_bytes")]
    record: &'a [u8],
}

/// What a staged bundle carried: each object's digest and the last audit
/// entry's number, which the delta that completes it is computed against. It
/// holds no secret.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Staged {
    pub(crate) objects: std::collections::BTreeMap<u64, [u8; 32]>,
    pub(crate) audit_last: u64,
}

#[derive(Deserialize)]
struct ObjectIn<'a> {
    oid: u64,
    digest: [u8; 32],
    #[serde(with = "serde_bytes")]
    record: &'a [u8],
}

#[derive(Deserialize)]
struct AuditIn<'a> {
    seq: u64,
    #[serde(with = "serde_bytes")]
    entry: &'a [u8],
}

impl Partition {
    /// The partition as a bundle, read from `store`: the whole of it when
    /// `since` is `None` (the staged bundle, read while the partition serves:
    /// what changes meanwhile the delta carries), else what changed since
    /// `since` (the delta, read while the partition serves nothing: the caller
    /// stopped it, under its audit lock, so no write is in flight), with the
    /// applications `apps` that may resume at the destination. With it, what it
    /// carried, for a delta after it.
    pub(crate) fn bundle(
        &self,
        store: &Store,
        since: Option<&Staged>,
        apps: &[Leaving<'_>],
    ) -> Result<(SecretVec, Staged)> {
        let pid = self.id;
        let record = store
            .partition(pid)?
            .ok_or_else(|| CoreError::PartitionNotFound(self.name.clone()))?;
        let mut objects = Vec::new();
        let mut carried = Staged::default();
        let mut deleted = Vec::new();
        self.with_secrets(|s| {
            match since {
                None => {
                    for oid in store.object_ids(pid)? {
                        if let Some((digest, rec)) = store.object(pid, oid, &s.master)? {
                            carried.objects.insert(oid, digest);
                            objects.push((oid, digest, rec));
                        }
                    }
                }
                Some(staged) => {
                    for (oid, digest) in store.object_digests(pid)? {
                        carried.objects.insert(oid, digest);
                        if staged.objects.get(&oid) == Some(&digest) {
                            continue;
                        }
                        if let Some((digest, rec)) = store.object(pid, oid, &s.master)? {
                            objects.push((oid, digest, rec));
                        }
                    }
                    deleted.extend(
                        staged
                            .objects
                            .keys()
                            .filter(|oid| !carried.objects.contains_key(oid)),
                    );
                }
            }
            Ok(())
        })?;
        let next_oid = store.next_object_id(pid)?;
        let mut audit = Vec::new();
        let mut from = since.map_or(1, |s| s.audit_last.saturating_add(1));
        carried.audit_last = from.saturating_sub(1);
        loop {
            let batch = store.audit(pid, from, 4096)?;
            let Some((last, _)) = batch.last() else { break };
            from = last.saturating_add(1);
            carried.audit_last = *last;
            audit.extend(batch);
        }
        let travelling = if since.is_some() {
            self.travelling(apps)?
        } else {
            Vec::new()
        };
        let out = BundleOut {
            version: BUNDLE_VERSION,
            pid,
            name: &self.name,
            record: record.expose_secret(),
            next_oid,
            delta: since.is_some(),
            objects: objects
                .iter()
                .map(|(oid, digest, rec)| ObjectOut {
                    oid: *oid,
                    digest: *digest,
                    record: rec.expose_secret(),
                })
                .collect(),
            deleted,
            audit: audit
                .iter()
                .map(|(seq, entry)| AuditOut { seq: *seq, entry })
                .collect(),
            apps: travelling
                .iter()
                .map(|t| AppOut {
                    token: &t.token[..],
                    uid: t.uid,
                    login: t.login,
                    sessions: &t.sessions,
                    objects: t
                        .objects
                        .iter()
                        .map(|o| SessionObjectOut {
                            handle: o.handle,
                            session: o.session,
                            digest: o.digest,
                            record: &o.record,
                        })
                        .collect(),
                })
                .collect(),
        };
        // Encoded straight into locked memory of its exact size.
        let enc = |_| CoreError::Internal("partition bundle encoding");
        let len = postcard::experimental::serialized_size(&out).map_err(enc)?;
        let mut buf = SecretVec::zeroed(len)?;
        postcard::to_slice(&out, buf.expose_secret_mut()).map_err(enc)?;
        Ok((buf, carried))
    }
}

/// One leaving application as the delta carries it.
struct Travelling {
    token: zeroize::Zeroizing<[u8; 32]>,
    uid: u32,
    login: Option<UserType>,
    sessions: Vec<SessionIo>,
    objects: Vec<TravellingObject>,
}

/// An operation adopted at the destination.
enum Started {
    Sign(SignOp),
    Crypt(CryptOp),
}

/// The operations of `s` that were started and have taken no data yet.
fn started_ops(s: &Session) -> Vec<(u8, Mechanism, u64)> {
    let sign = [(OP_SIGN, &s.sign), (OP_VERIFY, &s.verify)]
        .into_iter()
        .filter_map(|(k, op)| {
            op.as_ref()
                .filter(|op| op.ctx.is_none())
                .map(|op| (k, op.mech.clone(), op.key.handle))
        });
    let crypt = [(OP_ENCRYPT, &s.encrypt), (OP_DECRYPT, &s.decrypt)]
        .into_iter()
        .filter_map(|(k, op)| {
            op.as_ref()
                .filter(|op| op.ctx.is_none())
                .map(|op| (k, op.mech.clone(), op.key.handle))
        });
    sign.chain(crypt).collect()
}

/// A leaving application's session object, encoded.
struct TravellingObject {
    handle: u64,
    session: u64,
    digest: [u8; 32],
    record: zeroize::Zeroizing<Vec<u8>>,
}

impl Partition {
    /// The sessions, login and session objects of each of `apps` (those with no
    /// session are left out: nothing of theirs would resume).
    fn travelling(&self, apps: &[Leaving<'_>]) -> Result<Vec<Travelling>> {
        let mut out = Vec::new();
        let s = lock(&self.sessions)?;
        for a in apps.iter().take(MAX_BUNDLE_APPS) {
            let sessions: Vec<SessionIo> = s
                .sessions
                .iter()
                .filter(|(_, x)| x.app == a.app)
                .map(|(h, x)| SessionIo {
                    handle: *h,
                    rw: x.rw,
                    ops: started_ops(x),
                })
                .collect();
            if sessions.is_empty() {
                continue;
            }
            out.push(Travelling {
                token: zeroize::Zeroizing::new(*a.token),
                uid: a.uid,
                login: s.login_of(a.app),
                sessions,
                objects: Vec::new(),
            });
        }
        drop(s);
        let objects = self
            .session_objects
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        for o in objects.values() {
            let Some(session) = o.session else { continue };
            if let Some(t) = out
                .iter_mut()
                .find(|t| t.sessions.iter().any(|x| x.handle == session))
            {
                let (record, digest) = o.encode()?;
                t.objects.push(TravellingObject {
                    handle: o.handle,
                    session,
                    digest,
                    record,
                });
            }
        }
        Ok(out)
    }

    /// Gives application `app` (the daemon's new id for it) the sessions,
    /// login and session objects that `a` brought. Called before the arrived
    /// partition serves.
    ///
    /// # Errors
    /// [`CoreError::QuotaExceeded`] past the partition's session or object
    /// quota; [`CoreError::BundleInvalid`] for a session or object handle that
    /// is already taken.
    pub(crate) fn adopt(&self, app: u64, a: Arrived) -> Result<()> {
        let mut s = lock(&self.sessions)?;
        if s.sessions.len() + a.sessions.len() > self.quotas.max_sessions as usize {
            return Err(CoreError::QuotaExceeded("sessions"));
        }
        if a.sessions
            .iter()
            .any(|x| s.sessions.contains_key(&x.handle))
        {
            return Err(CoreError::BundleInvalid("a session handle is taken"));
        }
        let mut objects = self
            .session_objects
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let total = self
            .token_objects
            .load(std::sync::atomic::Ordering::Relaxed)
            + (objects.len() + a.objects.len()) as u64;
        if total > self.quotas.max_objects {
            return Err(CoreError::QuotaExceeded("objects"));
        }
        if a.objects.iter().any(|o| objects.contains_key(&o.handle)) {
            return Err(CoreError::BundleInvalid("a session object handle is taken"));
        }
        for x in &a.sessions {
            s.sessions.insert(x.handle, Session::new(app, x.rw));
            s.next = s.next.max(x.handle & SESSION_LOCAL);
        }
        if let Some(u) = a.login {
            s.login.insert(app, u);
        }
        for o in a.objects {
            let (_, n, _) = object::split_handle(o.handle);
            self.next_session_object
                .fetch_max(n.saturating_add(1), std::sync::atomic::Ordering::Relaxed);
            objects.insert(o.handle, std::sync::Arc::new(o));
        }
        drop((objects, s));
        // The operations started at the source, checked again here as their
        // C_*Init would be; one whose key no longer resolves or fits ends.
        for x in &a.sessions {
            for (kind, mech, key) in &x.ops {
                let Some(op) = self.restart(a.login, *kind, mech, *key) else {
                    continue;
                };
                let mut s = lock(&self.sessions)?;
                let Some(sess) = s.sessions.get_mut(&x.handle) else {
                    continue;
                };
                match (op, *kind) {
                    (Started::Sign(op), OP_SIGN) => sess.sign = Some(op),
                    (Started::Sign(op), _) => sess.verify = Some(op),
                    (Started::Crypt(op), OP_ENCRYPT) => sess.encrypt = Some(op),
                    (Started::Crypt(op), _) => sess.decrypt = Some(op),
                }
            }
        }
        Ok(())
    }

    /// An operation of `kind` with `mech` and `key` as its C_*Init would start
    /// it here, if the key resolves and fits.
    fn restart(
        &self,
        login: Option<UserType>,
        kind: u8,
        mech: &Mechanism,
        key: u64,
    ) -> Option<Started> {
        let k = self.key(login, key).ok()?;
        match kind {
            OP_SIGN | OP_VERIFY => {
                let usage = if kind == OP_SIGN {
                    Usage::Sign
                } else {
                    Usage::Verify
                };
                let fits = (*mech == Mechanism::KeyReport && kind == OP_SIGN)
                    || (ops::permitted(&k, usage).is_ok()
                        && ops::SignCtx::new(mech, &k, usage, self.policy).is_ok());
                fits.then(|| {
                    Started::Sign(SignOp {
                        mech: mech.clone(),
                        key: k,
                        ctx: None,
                    })
                })
            }
            _ => ops::CryptCtx::validate(mech, &k, kind == OP_ENCRYPT)
                .is_ok()
                .then(|| {
                    Started::Crypt(CryptOp {
                        mech: mech.clone(),
                        key: k,
                        ctx: None,
                    })
                }),
        }
    }

    /// The index entries of this staged partition's objects that `delta`
    /// replaces or deletes, read under its keys, which must be the delta's
    /// (`keys`): else the objects it does not touch would no longer open.
    pub(crate) fn replaced_by(
        &self,
        store: &Store,
        delta: &Bundle<'_>,
        keys: &RecordKeys,
    ) -> Result<Vec<(u64, super::IndexEntries)>> {
        let same = self.with_secrets(|s| {
            Ok(s.master.expose().expose_secret() == keys.master.expose_secret())
        })?;
        if !same {
            return Err(CoreError::BundleInvalid(
                "its keys are not the staged partition's",
            ));
        }
        let mut out = Vec::new();
        for oid in delta.touched() {
            let found = self.with_secrets(|s| Ok(store.object(self.id, oid, &s.master)?))?;
            if let Some((digest, rec)) = found {
                let o = Object::decode(
                    object::handle(self.id, oid, false),
                    rec.expose_secret(),
                    &digest,
                )
                .map_err(|_| CoreError::BundleInvalid("a staged object does not decode"))?;
                out.push((oid, self.index_entries(&o)?));
            }
        }
        Ok(out)
    }
}

impl<'a> Bundle<'a> {
    /// Reads a bundle, every count bounded and every record checked: the record
    /// must parse and name the bundle's partition, every object must decode with
    /// its digest, and the audit log must be numbered without a gap; a whole
    /// bundle's log must start at 1 and its chain and checkpoints verify (a
    /// delta's is verified against the staged log it continues:
    /// [`Bundle::verify_audit_after`]).
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<(Self, PartitionRecord, RecordKeys)> {
        let (b, rest): (Self, _) = postcard::take_from_bytes(bytes)
            .map_err(|_| CoreError::BundleInvalid("it does not parse"))?;
        if !rest.is_empty() {
            return Err(CoreError::BundleInvalid("bytes after the bundle"));
        }
        if b.version != BUNDLE_VERSION {
            return Err(CoreError::BundleInvalid("unknown bundle version"));
        }
        if b.objects.len() > MAX_BUNDLE_OBJECTS || b.audit.len() > MAX_BUNDLE_AUDIT {
            return Err(CoreError::BundleInvalid(
                "too many objects or audit entries",
            ));
        }
        if b.pid == 0 || b.pid >= 1 << 23 {
            return Err(CoreError::BundleInvalid("partition id out of range"));
        }
        b.check_apps()?;
        let (rec, keys) = PartitionRecord::decode(b.record)
            .map_err(|_| CoreError::BundleInvalid("the partition record does not parse"))?;
        if rec.id != b.pid || rec.name != b.name {
            return Err(CoreError::BundleInvalid(
                "the partition record is not the bundle's partition",
            ));
        }
        let mut last = 0u64;
        for o in &b.objects {
            if o.oid <= last || o.oid >= b.next_oid {
                return Err(CoreError::BundleInvalid("object ids out of order"));
            }
            last = o.oid;
            Object::decode(object::handle(b.pid, o.oid, false), o.record, &o.digest)
                .map_err(|_| CoreError::BundleInvalid("an object record does not decode"))?;
        }
        if !b.delta && !b.deleted.is_empty() {
            return Err(CoreError::BundleInvalid(
                "a whole bundle names deleted objects",
            ));
        }
        let mut last = 0u64;
        for &oid in &b.deleted {
            if oid <= last || oid >= b.next_oid {
                return Err(CoreError::BundleInvalid("deleted ids out of order"));
            }
            last = oid;
            if b.objects.binary_search_by_key(&oid, |o| o.oid).is_ok() {
                return Err(CoreError::BundleInvalid(
                    "an object is both carried and deleted",
                ));
            }
        }
        let first = b.audit.first().map_or(1, |a| a.seq);
        if first == 0 || (!b.delta && first != 1) {
            return Err(CoreError::BundleInvalid("the audit log has a gap"));
        }
        for (i, a) in b.audit.iter().enumerate() {
            if Some(a.seq) != first.checked_add(i as u64) {
                return Err(CoreError::BundleInvalid("the audit log has a gap"));
            }
        }
        if !b.delta {
            let identity = identity_public(&keys)?;
            b.verify_audit_from(&identity, 1, [0; 48])?;
        }
        Ok((b, rec, keys))
    }

    /// Checks the applications a delta carries: each token 32 bytes and its
    /// own, every session handle the partition's and carried once, every
    /// session object the partition's, a session object (not a token one),
    /// carried once, decoding with its digest and owned by a session of its
    /// application.
    fn check_apps(&self) -> Result<()> {
        let bad = CoreError::BundleInvalid;
        if self.apps.is_empty() {
            return Ok(());
        }
        if !self.delta {
            return Err(bad("a whole bundle carries applications"));
        }
        if self.apps.len() > MAX_BUNDLE_APPS {
            return Err(bad("too many applications"));
        }
        let sessions: usize = self.apps.iter().map(|a| a.sessions.len()).sum();
        let objects: usize = self.apps.iter().map(|a| a.objects.len()).sum();
        if sessions > MAX_BUNDLE_SESSIONS || objects > MAX_BUNDLE_OBJECTS {
            return Err(bad("too many sessions or session objects"));
        }
        let mut tokens = std::collections::BTreeSet::new();
        let mut handles = std::collections::BTreeSet::new();
        for a in &self.apps {
            if a.token.len() != 32 || !tokens.insert(a.token) {
                return Err(bad("an application's token is not 32 bytes of its own"));
            }
            if a.sessions.is_empty() {
                return Err(bad("an application has no session"));
            }
            for x in &a.sessions {
                let h = x.handle;
                if h >> 40 != u64::from(self.pid) || h & SESSION_LOCAL == 0 || !handles.insert(h) {
                    return Err(bad("a session handle is not the partition's, or twice"));
                }
                let mut kinds = 0u8;
                for (kind, _, key) in &x.ops {
                    if *kind > OP_DECRYPT || kinds & (1 << kind) != 0 {
                        return Err(bad("a session's operation is of no kind, or twice"));
                    }
                    kinds |= 1 << kind;
                    if object::split_handle(*key).0 != self.pid {
                        return Err(bad("an operation's key is not the partition's"));
                    }
                }
            }
            for o in &a.objects {
                let (pid, n, session) = object::split_handle(o.handle);
                if pid != self.pid || !session || n == 0 || !handles.insert(o.handle) {
                    return Err(bad(
                        "a session object handle is not the partition's, or twice",
                    ));
                }
                if !a.sessions.iter().any(|x| x.handle == o.session) {
                    return Err(bad(
                        "a session object belongs to no session of its application",
                    ));
                }
            }
        }
        for o in self.apps.iter().flat_map(|a| &a.objects) {
            let decoded = Object::decode(o.handle, o.record, &o.digest)
                .map_err(|_| bad("a session object does not decode"))?;
            if decoded.is_token() {
                return Err(bad("a session object is a token object"));
            }
        }
        Ok(())
    }

    /// The applications the delta carries, decoded (checked by
    /// [`Bundle::decode`]).
    pub(crate) fn arrived(&self) -> Result<Vec<Arrived>> {
        let mut out = Vec::with_capacity(self.apps.len());
        for a in &self.apps {
            let mut token = zeroize::Zeroizing::new([0u8; 32]);
            token.copy_from_slice(a.token);
            let mut objects = Vec::with_capacity(a.objects.len());
            for o in &a.objects {
                let mut decoded = Object::decode(o.handle, o.record, &o.digest)
                    .map_err(|_| CoreError::BundleInvalid("a session object does not decode"))?;
                decoded.session = Some(o.session);
                objects.push(decoded);
            }
            out.push(Arrived {
                token,
                uid: a.uid,
                login: a.login,
                sessions: a.sessions.clone(),
                objects,
            });
        }
        Ok(out)
    }

    /// Checks that a delta's audit entries continue the log whose head is
    /// `head` (the staged partition's), chained and signed by its identity.
    pub(crate) fn verify_audit_after(
        &self,
        head: &crate::audit::Head,
        identity: &ihsm_crypto::ec::EccP384PublicKey,
    ) -> Result<()> {
        if self.audit.first().is_some_and(|a| a.seq != head.next_seq) {
            return Err(CoreError::BundleInvalid(
                "the delta's audit log does not continue the staged one",
            ));
        }
        self.verify_audit_from(identity, head.next_seq, head.prev)
    }

    fn verify_audit_from(
        &self,
        identity: &ihsm_crypto::ec::EccP384PublicKey,
        first_seq: u64,
        first_prev: [u8; 48],
    ) -> Result<()> {
        if self.audit.is_empty() {
            return Ok(());
        }
        let entries: Vec<Vec<u8>> = self.audit.iter().map(|a| a.entry.to_vec()).collect();
        crate::audit::verify(self.pid, &entries, identity, first_seq, first_prev, None)
            .map(drop)
            .map_err(|_| CoreError::BundleInvalid("the audit log does not verify"))
    }

    /// Writes the bundle's partition into `tx` under its own id: the record
    /// (`record_bytes`, re-encoded by the caller), every object sealed under the
    /// master key with its index entries, the next object id and the audit log.
    /// A delta first drops the index entries of the staged objects it replaces
    /// or deletes (`replaced`, read by the caller) and deletes those gone.
    pub(crate) fn write(
        &self,
        tx: &mut WriteTx<'_>,
        record_bytes: &[u8],
        master: &ihsm_crypto::seal::SealKey,
        index_key: &ihsm_crypto::hmac::HmacKey,
        replaced: &[(u64, super::IndexEntries)],
    ) -> core::result::Result<(), ihsm_store::StoreError> {
        let pid = self.pid;
        tx.put_partition(pid, record_bytes)?;
        for (oid, entries) in replaced {
            for (t, mac) in entries {
                tx.index_remove(pid, *t, mac, *oid)?;
            }
        }
        for &oid in &self.deleted {
            tx.delete_object(pid, oid)?;
        }
        for o in &self.objects {
            tx.put_object(pid, o.oid, master, &o.digest, o.record)?;
            let decoded = Object::decode(object::handle(pid, o.oid, false), o.record, &o.digest)
                .map_err(|_| {
                    ihsm_store::StoreError::Crypto(ihsm_crypto::CryptoError::Internal(
                        "object decoding",
                    ))
                })?;
            for (t, ty) in object::INDEXED {
                if let Some(v) = decoded.attrs.get(&ty) {
                    let mac = object::index_mac(index_key, t, v).map_err(|_| {
                        ihsm_store::StoreError::Crypto(ihsm_crypto::CryptoError::Internal(
                            "index MAC",
                        ))
                    })?;
                    tx.index_add(pid, t, &mac, o.oid)?;
                }
            }
        }
        tx.reserve_object_ids(pid, self.next_oid)?;
        for a in &self.audit {
            tx.audit_append(pid, a.seq, a.entry)?;
        }
        Ok(())
    }

    /// The head of the audit log the bundle carries.
    pub(crate) fn audit_tail(&self) -> Option<&'a [u8]> {
        self.audit.last().map(|a| a.entry)
    }

    /// The ids of the staged objects a delta replaces or deletes.
    pub(crate) fn touched(&self) -> impl Iterator<Item = u64> + '_ {
        self.objects
            .iter()
            .map(|o| o.oid)
            .chain(self.deleted.iter().copied())
    }
}

/// The public half of a bundle's partition identity key.
pub(crate) fn identity_public(keys: &RecordKeys) -> Result<ihsm_crypto::ec::EccP384PublicKey> {
    Ok(
        ihsm_crypto::ec::EccP384PrivateKey::from_der(keys.identity.expose_secret())
            .map_err(|_| CoreError::BundleInvalid("the identity key does not parse"))?
            .public_key()
            .clone(),
    )
}

/// The keys a partition's store records need, derived from its master key as
/// [`Partition::load`] derives them.
pub(crate) fn store_keys(
    master: &ihsm_crypto::Secret<32>,
) -> Result<(ihsm_crypto::seal::SealKey, ihsm_crypto::hmac::HmacKey)> {
    let index_key = ihsm_crypto::hmac::HmacKey::new(
        ihsm_crypto::hash::HashAlg::Sha256,
        super::derive32(master, b"ihsm partition index key v1")?.expose_secret(),
    )?;
    let copy = ihsm_crypto::Secret::<32>::from_slice(master.expose_secret())?;
    Ok((ihsm_crypto::seal::SealKey::new(copy), index_key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const PID: u32 = 5;

    fn session(n: u64) -> u64 {
        (u64::from(PID) << 40) | n
    }

    fn app<'a>(
        token: &'a [u8],
        sessions: Vec<(u64, bool)>,
        objects: Vec<SessionObjectOut<'a>>,
    ) -> AppOut<'a> {
        let sessions = sessions
            .into_iter()
            .map(|(handle, rw)| SessionIo {
                handle,
                rw,
                ops: Vec::new(),
            })
            .collect();
        with_ops(token, sessions, objects)
    }

    fn with_ops<'a>(
        token: &'a [u8],
        sessions: Vec<SessionIo>,
        objects: Vec<SessionObjectOut<'a>>,
    ) -> AppOut<'a> {
        AppOut {
            token,
            uid: 1000,
            login: Some(UserType::User),
            // Leaked: a test's few bytes, for the borrow the encoder takes.
            sessions: Box::leak(sessions.into_boxed_slice()),
            objects,
        }
    }

    fn ops(ops: Vec<(u8, u64)>) -> Vec<SessionIo> {
        vec![SessionIo {
            handle: session(1),
            rw: true,
            ops: ops
                .into_iter()
                .map(|(k, key)| (k, Mechanism::Ecdsa, key))
                .collect(),
        }]
    }

    fn object(handle: u64, session: u64) -> SessionObjectOut<'static> {
        SessionObjectOut {
            handle,
            session,
            digest: [0; 32],
            record: b"not an object",
        }
    }

    /// Why `decode` refused a delta (with a record that does not parse, so
    /// that applications which pass their checks reach the record's).
    fn refusal(delta: bool, apps: Vec<AppOut<'_>>) -> &'static str {
        let bytes = postcard::to_allocvec(&BundleOut {
            version: BUNDLE_VERSION,
            pid: PID,
            name: "p",
            record: b"not a record",
            next_oid: 1,
            delta,
            objects: Vec::new(),
            deleted: Vec::new(),
            audit: Vec::new(),
            apps,
        })
        .unwrap();
        match Bundle::decode(&bytes) {
            Err(CoreError::BundleInvalid(why)) => why,
            Err(e) => panic!("refused otherwise: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn every_carried_application_is_checked() {
        let t = [7u8; 32];
        let u = [8u8; 32];
        let record = "the partition record does not parse";
        // Well formed: the applications pass, the record is what fails.
        assert_eq!(
            refusal(true, vec![app(&t, vec![(session(1), true)], Vec::new())]),
            record
        );
        assert_eq!(refusal(true, Vec::new()), record);
        let cases: Vec<(Vec<AppOut<'_>>, bool, &str)> = vec![
            (
                vec![app(&t, vec![(session(1), true)], Vec::new())],
                false,
                "whole bundle",
            ),
            (
                vec![app(&t[..31], vec![(session(1), true)], Vec::new())],
                true,
                "token",
            ),
            (
                vec![
                    app(&t, vec![(session(1), true)], Vec::new()),
                    app(&t, vec![(session(2), true)], Vec::new()),
                ],
                true,
                "token",
            ),
            (vec![app(&t, Vec::new(), Vec::new())], true, "no session"),
            (
                vec![app(&t, vec![((6 << 40) | 1, true)], Vec::new())],
                true,
                "session handle",
            ),
            (
                vec![app(&t, vec![(session(0), true)], Vec::new())],
                true,
                "session handle",
            ),
            (
                vec![
                    app(&t, vec![(session(1), true)], Vec::new()),
                    app(&u, vec![(session(1), false)], Vec::new()),
                ],
                true,
                "session handle",
            ),
            (
                vec![app(
                    &t,
                    vec![(session(1), true)],
                    vec![object(object::handle(PID, 1, false), session(1))],
                )],
                true,
                "session object handle",
            ),
            (
                vec![app(
                    &t,
                    vec![(session(1), true)],
                    vec![object(object::handle(PID + 1, 1, true), session(1))],
                )],
                true,
                "session object handle",
            ),
            (
                vec![app(
                    &t,
                    vec![(session(1), true)],
                    vec![
                        object(object::handle(PID, 1, true), session(1)),
                        object(object::handle(PID, 1, true), session(1)),
                    ],
                )],
                true,
                "session object handle",
            ),
            (
                vec![
                    app(&t, vec![(session(1), true)], Vec::new()),
                    app(
                        &u,
                        vec![(session(2), true)],
                        vec![object(object::handle(PID, 1, true), session(1))],
                    ),
                ],
                true,
                "no session of its application",
            ),
            (
                vec![app(
                    &t,
                    vec![(session(1), true)],
                    vec![object(object::handle(PID, 1, true), session(1))],
                )],
                true,
                "does not decode",
            ),
        ];
        let key = object::handle(PID, 3, false);
        assert_eq!(
            refusal(
                true,
                vec![with_ops(
                    &t,
                    ops(vec![(OP_SIGN, key), (OP_DECRYPT, key)]),
                    Vec::new()
                )]
            ),
            record
        );
        let mut cases = cases;
        cases.extend([
            (
                vec![with_ops(&t, ops(vec![(4, key)]), Vec::new())],
                true,
                "of no kind",
            ),
            (
                vec![with_ops(
                    &t,
                    ops(vec![(OP_SIGN, key), (OP_SIGN, key)]),
                    Vec::new(),
                )],
                true,
                "twice",
            ),
            (
                vec![with_ops(
                    &t,
                    ops(vec![(OP_VERIFY, object::handle(PID + 1, 3, false))]),
                    Vec::new(),
                )],
                true,
                "key is not the partition's",
            ),
        ]);
        for (i, (apps, delta, want)) in cases.into_iter().enumerate() {
            let why = refusal(delta, apps);
            assert!(why.contains(want), "case {i}: {why:?}, not {want:?}");
        }
    }
}
