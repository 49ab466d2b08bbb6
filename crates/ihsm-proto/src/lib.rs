//! The ihsm wire protocol, shared by the daemon and its clients.
//!
//! - [`frame`]: length-prefixed postcard frames, bounded, read without trusting the
//!   announced length.
//! - [`msg`]: the hello (revision negotiation), requests and replies.
//! - [`error`]: stable error numbers and their `CKR_*` mapping.
//! - [`mech`], [`attr`], [`types`]: the data the HSM takes and reports. The core
//!   uses these same types, so nothing is translated between wire and core.
//!
//! This crate has no cryptography and no I/O beyond `std::io::{Read, Write}`:
//! the PKCS#11 module links it without pulling the HSM in.
#![forbid(unsafe_code)]

pub mod attr;
pub mod error;
pub mod frame;
pub mod mech;
pub mod msg;
pub mod types;

pub use error::{ErrorCode, WireError};
pub use msg::{Hello, HelloReply, Reply, Request, Response, SecretBytes};
