//! Sessions, login and PINs: opening and closing sessions, C_Login and C_Logout,
//! C_InitPIN, C_SetPIN and C_InitToken.

use std::sync::atomic::Ordering;

use ihsm_crypto::ExposeSecret;

use super::{IndexEntries, MAX_PRINCIPALS, Need, Partition, Principal, Rate, lock, who};
use crate::audit::{AuditEvent, Who};
use crate::error::{CoreError, Result};
use crate::object::{self, Object};
use crate::pin::{self, PinVerifier};
use crate::session::{self, Session, SessionState, UserType};
use ihsm_proto::types::NO_ID;

impl Partition {
    fn session_handle(&self, n: u64) -> u64 {
        (u64::from(self.id) << 40) | n
    }

    /// Opens a session for application `app` (a connection).
    ///
    /// # Errors
    /// [`CoreError::QuotaExceeded`], [`CoreError::SessionReadWriteSoExists`] (a
    /// read-only session while the SO is logged in, as PKCS#11 3.2 names it for
    /// C_OpenSession).
    pub fn open_session(&self, app: u64, rw: bool) -> Result<u64> {
        self.check()?;
        let max = self.quotas.max_sessions;
        let mut s = lock(&self.sessions)?;
        if s.sessions.len() >= max as usize {
            return Err(CoreError::QuotaExceeded("sessions"));
        }
        if !rw && s.login_of(app) == Some(UserType::SecurityOfficer) {
            return Err(CoreError::SessionReadWriteSoExists);
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
        let caller = self.enter(app, session, Need::Session, Rate::Free)?;
        Ok(session::state(caller.login, caller.rw))
    }

    /// Whether a caller with these credentials may use the partition: its uid is
    /// the owner's, its gid the owner's group, or either is among the principals
    /// allowed (`ihsm partition allow`). This is the one rule of admission: the
    /// daemon asks it, with the socket peer's credentials (SO_PEERCRED), when it
    /// accepts a connection and again before every request, so a connection
    /// routed to the wrong partition, or whose principal was revoked, does
    /// nothing. The owner is checked first, without a lock.
    ///
    /// # Errors
    /// [`CoreError::PermissionDenied`], whose message names the partition, who
    /// it admits, the caller, and the command that would admit it.
    pub fn authorize(&self, uid: u32, gid: u32) -> Result<()> {
        let (owner_uid, owner_gid) = self.owner;
        // An owner without a group (NO_ID) admits no gid, that one included.
        if uid == owner_uid || (gid == owner_gid && owner_gid != NO_ID) {
            return Ok(());
        }
        let principals = self
            .principals
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let admitted = principals.iter().any(|p| match *p {
            Principal::Uid(u) => u == uid,
            Principal::Gid(g) => g == gid,
        });
        if admitted {
            Ok(())
        } else {
            Err(CoreError::PermissionDenied {
                partition: self.name.clone(),
                uid,
                gid,
                admits: ihsm_proto::types::admitted(owner_uid, owner_gid, &principals),
            })
        }
    }

    /// Whether `who` is the owner's uid or the owner's group.
    fn is_owner(&self, who: Principal) -> bool {
        let (uid, gid) = self.owner;
        who == Principal::Uid(uid) || (gid != NO_ID && who == Principal::Gid(gid))
    }

    /// Admits `who` besides the owner (`ihsm partition allow`), durably and
    /// audited. `Ok(false)`: it already was (a principal, or the owner), and
    /// nothing changed.
    ///
    /// # Errors
    /// [`CoreError::PrincipalInvalid`] for the id no process has
    /// ([`u32::MAX`]); [`CoreError::PrincipalLimit`] past
    /// [`MAX_PRINCIPALS`]; device and store errors.
    pub fn allow(&self, who: Principal) -> Result<bool> {
        self.check()?;
        if matches!(who, Principal::Uid(NO_ID) | Principal::Gid(NO_ID)) {
            return Err(CoreError::PrincipalInvalid(format!(
                "{who} is the id that stands for none; no process has it"
            )));
        }
        if self.is_owner(who) {
            return Ok(false);
        }
        let mut rec = lock(&self.record)?;
        if rec.principals.contains(&who) {
            return Ok(false);
        }
        if rec.principals.len() >= MAX_PRINCIPALS {
            return Err(CoreError::PrincipalLimit {
                partition: self.name.clone(),
                max: MAX_PRINCIPALS,
            });
        }
        rec.principals.push(who);
        rec.principals.sort_unstable();
        if let Err(e) = self.persist_record(&rec, vec![AuditEvent::PrincipalAllowed(who)]) {
            // The record in memory stays what the store holds.
            rec.principals.retain(|p| *p != who);
            return Err(e);
        }
        self.set_principals(&rec.principals)?;
        Ok(true)
    }

    /// Stops admitting `who` (`ihsm partition revoke`), durably and audited: the
    /// next connection or request it alone would have been admitted for is
    /// refused. `Ok(false)`: it was not admitted, and nothing changed.
    ///
    /// # Errors
    /// [`CoreError::PrincipalInvalid`] for the owner's uid or group, which the
    /// partition always admits; device and store errors.
    pub fn revoke(&self, who: Principal) -> Result<bool> {
        self.check()?;
        if self.is_owner(who) {
            let role = match who {
                Principal::Uid(_) => "owner",
                Principal::Gid(_) => "owner group",
            };
            return Err(CoreError::PrincipalInvalid(format!(
                "{who} is the {role} of partition {:?}, which always admits it: an owner cannot be revoked (delete the partition, or make a new one with another owner)",
                self.name
            )));
        }
        let mut rec = lock(&self.record)?;
        let Some(at) = rec.principals.iter().position(|p| *p == who) else {
            return Ok(false);
        };
        rec.principals.remove(at);
        if let Err(e) = self.persist_record(&rec, vec![AuditEvent::PrincipalRevoked(who)]) {
            rec.principals.insert(at, who);
            return Err(e);
        }
        self.set_principals(&rec.principals)?;
        Ok(true)
    }

    fn set_principals(&self, principals: &[Principal]) -> Result<()> {
        *self
            .principals
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))? = principals.to_vec();
        Ok(())
    }

    /// C_Login.
    ///
    /// # Errors
    /// PIN, session and login-state errors, as PKCS#11 names them.
    pub fn login(&self, app: u64, session: u64, user: UserType, pin: &[u8]) -> Result<()> {
        let caller = self.enter(app, session, Need::Session, Rate::Free)?;
        match caller.login {
            Some(u) if u == user => return Err(CoreError::UserAlreadyLoggedIn),
            Some(_) => return Err(CoreError::UserAnotherAlreadyLoggedIn),
            None => {}
        }
        // PKCS#11 3.2 C_Login: an SO login while the application has
        // read-only sessions is CKR_SESSION_READ_ONLY_EXISTS (and C_OpenSession
        // of a read-only session while the SO is logged in,
        // CKR_SESSION_READ_WRITE_SO_EXISTS: open_session).
        if user == UserType::SecurityOfficer && lock(&self.sessions)?.has_read_only(app) {
            return Err(CoreError::SessionReadOnlyExists);
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
        let event = pin_checked(user, &result, AuditEvent::Login(who(user)));
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
        self.enter(app, session, Need::Session, Rate::Free)?;
        let mut s = lock(&self.sessions)?;
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
        self.enter(app, session, Need::SecurityOfficer, Rate::Free)?;
        let mut rec = lock(&self.record)?;
        rec.user_pin = Some(PinVerifier::new(pin, rec.pin_iterations)?);
        self.persist_record(&rec, vec![AuditEvent::PinSet(Who::User)])
    }

    /// C_SetPIN: the logged-in user (or SO) changes their own PIN.
    ///
    /// # Errors
    /// [`CoreError::UserNotLoggedIn`] outside a RW login; PIN errors.
    pub fn set_pin(&self, app: u64, session: u64, old: &[u8], new: &[u8]) -> Result<()> {
        let caller = self.enter(app, session, Need::LoginReadWrite, Rate::Free)?;
        let user = caller.login.ok_or(CoreError::UserNotLoggedIn)?;
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
        let event = pin_checked(user, &checked, AuditEvent::PinSet(who(user)));
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
        let pid = self.id;
        // Index entries go with their objects: each object is deleted with its
        // index keys, so every object must load. One that does not is an error
        // here, not a skip: skipped, its index entries would stay behind (and the
        // next object's be taken for its). Nothing changes then but the PIN's
        // failure count, which the successful check reset.
        let doomed = match self.token_objects_and_index() {
            Ok(doomed) => doomed,
            Err(e) => {
                self.persist_record(&rec, Vec::new())?;
                return Err(e);
            }
        };
        let user_pin = rec.user_pin.take();
        let written = self.encode_record(&rec).and_then(|bytes| {
            self.audited(|tx| {
                tx.put_partition(pid, bytes.expose_secret())?;
                for (oid, macs) in &doomed {
                    for (t, mac) in macs {
                        tx.index_remove(pid, *t, mac, *oid)?;
                    }
                    tx.delete_object(pid, *oid)?;
                }
                Ok(((), vec![AuditEvent::TokenInitialized]))
            })
        });
        if let Err(e) = written {
            // The record in memory stays what the store holds.
            rec.user_pin = user_pin;
            return Err(e);
        }
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

    /// Every token object's id with its index entries.
    fn token_objects_and_index(&self) -> Result<Vec<(u64, IndexEntries)>> {
        let pid = self.id;
        self.store()?
            .object_ids(pid)?
            .into_iter()
            .map(|oid| {
                let o = self.load_token(object::handle(pid, oid, false))?;
                Ok((oid, self.index_entries(&o)?))
            })
            .collect()
    }
}

/// The audit event of a PIN check by `user`: `ok` when it passed, else the
/// failure, with the attempts left.
fn pin_checked(user: UserType, checked: &Result<()>, ok: AuditEvent) -> AuditEvent {
    match checked {
        Ok(()) => ok,
        Err(CoreError::PinLocked) => AuditEvent::PinLocked(who(user)),
        Err(CoreError::PinIncorrect { remaining }) => AuditEvent::LoginFailed {
            who: who(user),
            remaining: *remaining,
        },
        Err(_) => AuditEvent::LoginFailed {
            who: who(user),
            remaining: 0,
        },
    }
}
