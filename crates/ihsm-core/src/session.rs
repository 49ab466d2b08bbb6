//! Sessions and login state, as PKCS#11 models them: an application (a connection)
//! holds sessions; login is per application and shared by its sessions; each
//! session has at most one active operation of each kind.

use crate::Map;
use std::sync::Arc;

use ihsm_crypto::hash::DigestCtx;

use crate::mech::Mechanism;
use crate::object::Object;
use crate::ops::{CryptCtx, SignCtx};

pub use ihsm_proto::types::{SessionState, UserType};

/// An active signing or verifying operation.
pub(crate) struct SignOp {
    pub(crate) mech: Mechanism,
    pub(crate) key: Arc<Object>,
    /// Set once `update` was called (multi-part); `None` for single-part so far.
    pub(crate) ctx: Option<SignCtx>,
}

/// An active encrypting or decrypting operation.
pub(crate) struct CryptOp {
    pub(crate) mech: Mechanism,
    pub(crate) key: Arc<Object>,
    pub(crate) ctx: Option<CryptCtx>,
}

/// One session.
pub(crate) struct Session {
    pub(crate) app: u64,
    pub(crate) rw: bool,
    pub(crate) digest: Option<DigestCtx>,
    pub(crate) sign: Option<SignOp>,
    pub(crate) verify: Option<SignOp>,
    pub(crate) encrypt: Option<CryptOp>,
    pub(crate) decrypt: Option<CryptOp>,
    pub(crate) find: Option<Vec<u64>>,
}

impl Session {
    pub(crate) fn new(app: u64, rw: bool) -> Self {
        Self {
            app,
            rw,
            digest: None,
            sign: None,
            verify: None,
            encrypt: None,
            decrypt: None,
            find: None,
        }
    }

    /// Ends every active operation (logout, close).
    pub(crate) fn reset_ops(&mut self) {
        self.digest = None;
        self.sign = None;
        self.verify = None;
        self.encrypt = None;
        self.decrypt = None;
        self.find = None;
    }
}

/// All sessions of a partition.
#[derive(Default)]
pub(crate) struct Sessions {
    /// Login state per application.
    pub(crate) login: Map<u64, UserType>,
    pub(crate) sessions: Map<u64, Session>,
    pub(crate) next: u64,
}

impl Sessions {
    /// The login of an application.
    pub(crate) fn login_of(&self, app: u64) -> Option<UserType> {
        self.login.get(&app).copied()
    }

    /// Whether the application has read-only sessions.
    pub(crate) fn has_read_only(&self, app: u64) -> bool {
        self.sessions.values().any(|s| s.app == app && !s.rw)
    }
}

/// The state of a session with this login and mode.
pub(crate) fn state(login: Option<UserType>, rw: bool) -> SessionState {
    match (login, rw) {
        (Some(UserType::SecurityOfficer), _) => SessionState::ReadWriteSecurityOfficer,
        (Some(UserType::User), true) => SessionState::ReadWriteUser,
        (Some(UserType::User), false) => SessionState::ReadOnlyUser,
        (None, true) => SessionState::ReadWritePublic,
        (None, false) => SessionState::ReadOnlyPublic,
    }
}
