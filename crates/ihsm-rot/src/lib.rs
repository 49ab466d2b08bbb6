//! The ihsm root of trust, modelled on Caliptra 2.x.
//!
//! Fuses ([`fuses`]) hold the device secrets. Boot ([`boot`]) runs ROM -> FMC -> RT:
//! power-on self-tests, the DICE chain IDevID -> LDevID -> FMC Alias -> RT Alias in
//! ECC P-384 and ML-DSA-87 ([`dice`], [`certs`], [`tcg`]), verification of the signed
//! firmware manifest ([`manifest`]) and measurement into PCRs ([`pcr`]). The booted
//! [`runtime::Runtime`] serves certificates, quotes and Caliptra's mailbox command
//! set ([`mailbox`]) and hands the store a sealing key from the SVN key ladder.
//!
//! See `docs/boot.md`, `docs/certificates.md`, `docs/quote.md` and
//! `docs/mailbox.md` for the formats as built.
//!
//! # Where it runs
//!
//! The root of trust runs in `ihsmd` and nowhere else: only the daemon boots it
//! ([`state::StateDir::boot`], [`boot`]), holds a [`runtime::Runtime`] and so
//! derives or signs with a device key, and reads or burns the fuses
//! ([`fuses::Fuses`]); `ihsmd --check` is how a device or a new build is
//! checked without serving it, and `ihsmd --burn-svn` how the SVN fuse is burnt.
//!
//! The `ihsm` tool, which tenants also run, uses this crate only for the
//! offline operator's files and for the formats of the mailbox's answers:
//!
//! - provisioning, which writes a device's fuses once:
//!   [`state::StateDir`]'s paths, [`state::StateDir::provision`],
//!   [`state::StateDir::provision_dev`], [`fuses::Lifecycle`];
//! - manifests, signed with vendor and owner keys (never a device's):
//!   [`manifest`], [`keyset`], [`state::default_body`],
//!   [`state::measure_file`], [`config::SecurityConfig::parse`],
//!   [`fuses::write_atomic`];
//! - what the daemon's mailbox answers: [`mailbox`]'s framing and command
//!   codes, [`certs::Layer`], [`certs::cert_pem`], [`certs::csr_pem`],
//!   [`quote::Quote`], [`pcr::PcrLogEntry`], [`Alg`], [`RotError`].
//!
//! `crates/ihsm/clippy.toml` denies the tool the items that would boot the root
//! of trust or touch the fuses.
#![forbid(unsafe_code)]

pub mod boot;
pub mod certs;
mod codec;
pub mod config;
pub mod cose;
pub(crate) mod dice;
mod error;
pub mod fuses;
pub mod keyset;
pub mod mailbox;
pub mod manifest;
pub mod pcr;
pub mod quote;
pub mod refvals;
pub mod runtime;
pub mod state;
pub mod tcg;

pub use error::{Alg, Result, RotError};
