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
#![forbid(unsafe_code)]

pub mod boot;
pub mod certs;
mod codec;
pub mod config;
pub(crate) mod dice;
mod error;
pub mod fuses;
pub mod keyset;
pub mod mailbox;
pub mod manifest;
pub mod pcr;
pub mod quote;
pub mod runtime;
pub mod state;
pub mod tcg;

pub use error::{Alg, Result, RotError};
