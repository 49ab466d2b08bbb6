//! Blocking client of the ihsm daemon: one [`Client`] is one connection, kept and
//! reused for every request, over a partition's or the admin Unix socket, or over
//! the network mode's mutual TLS. No async runtime, so the PKCS#11 module can
//! embed it; this is the only way the CLI and the module reach the HSM.
//!
//! A connection is one PKCS#11 application: its sessions and login live as long as
//! it does. Errors keep the daemon's stable code ([`ClientError::code`]) and
//! message.
//!
//! ```no_run
//! use ihsm_client::Client;
//! use ihsm_proto::types::UserType;
//! let mut c = Client::connect("ihsm-state/partitions/tenant.sock")?;
//! let s = c.open_session(true)?;
//! c.login(s, UserType::User, b"user-pin")?;
//! # Ok::<(), ihsm_client::ClientError>(())
//! ```
//!
//! On a local socket, requests and replies that fit go through shared-memory
//! rings the daemon offers (ihsm-ring; `IHSM_TRANSPORT=socket` turns them off).
#![forbid(unsafe_code)]

mod calls;
mod connection;
mod error;
pub mod follow;
mod ring;
mod transport;

pub use connection::Client;
pub use error::{ClientError, Result};
pub use ring::{SLICE as RING_SLICE, rings_allowed_by_env};
pub use transport::{DEFAULT_SPIN, MAX_SPIN};
