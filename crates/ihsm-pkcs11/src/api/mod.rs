//! The inner functions behind the exported entry points: check the arguments,
//! translate, call the daemon, translate back. `Err` carries the `CK_RV`.
//!
//! # Safety
//! Every function here is `unsafe` because it dereferences the raw pointers the
//! application passed to the PKCS#11 function of the same name, and its contract is
//! that function's in PKCS#11 3.2: a buffer with a length is null only when the
//! length is 0, else holds that many readable (for an output, writable) bytes; an
//! output length (`pul...Len`) is readable and writable, the buffer beside it null or
//! `*len` bytes long; a template holds its count of attributes, each value readable
//! for its `ulValueLen`; a mechanism's parameter is readable as that mechanism
//! defines; an out-pointer is writable for one value; every pointer is aligned for
//! its type, and nothing else writes what it points to during the call. Each
//! function checks every pointer for null before use, and relies, as the
//! specification does, on the application for the rest.
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
