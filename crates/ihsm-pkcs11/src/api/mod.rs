//! The inner functions behind the exported entry points: check the arguments,
//! translate, call the daemon, translate back. `Err` carries the `CK_RV`.
//!
//! # Safety
//! Every function here is `unsafe` because it dereferences the raw pointers the
//! application passed; each checks them for null before use and relies, as the
//! PKCS#11 specification does, on the application for their extent.
#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

mod cipher;
mod deferred;
mod digest;
mod general;
mod keys;
mod message;
mod object;
mod output;
mod random;
mod session;
mod sign;
mod slot;

pub(crate) use self::cipher::*;
pub(crate) use self::digest::*;
pub(crate) use self::general::*;
pub(crate) use self::keys::*;
pub(crate) use self::message::*;
pub(crate) use self::object::*;
pub(crate) use self::random::*;
pub(crate) use self::session::*;
pub(crate) use self::sign::*;
pub(crate) use self::slot::*;

use cryptoki_sys::*;

use crate::R;
use crate::state::{Module, Session, module};

fn ctx() -> R<std::sync::Arc<Module>> {
    module()
}

fn sess(m: &Module, h: CK_SESSION_HANDLE) -> R<std::sync::Arc<Session>> {
    m.session(h)
}
