//! `ihsm-verify`: the verifier of ihsm's evidence, written from the documents
//! (docs/attestation.md, docs/quote.md, docs/certificates.md, docs/boot.md) and
//! sharing no code with the crates that produce the evidence.
//!
//! It trusts only its inputs: a trust anchor (a root certificate or a pinned
//! IDevID), the vendor's public keys for the signed reference values, and a nonce
//! it chose. Each check has its own verdict ([`appraise::Check`], with a typed
//! [`appraise::Refusal`]); the result can be carried as a signed EAR ([`ear`]).
//!
//! - [`chain`]: the ECC P-384 and ML-DSA-87 DICE chains and the TCG extensions,
//!   partition identity certificates;
//! - [`quote`]: PCR quotes and the PCR log replay;
//! - [`refvals`]: reference values; [`keyreport`]: key attestation reports, both in
//!   the two-signature [`envelope`];
//! - [`appraise`]: every check in order; [`ear`]: the attestation result;
//! - [`release`]: the release-policy engine (secure key release) over an EAR;
//! - [`audit`]: audit exports, decoded and verified from the file alone;
//! - [`service`]: the verifier service (`ihsm-verify serve`), with the `serve`
//!   feature (on by default).
#![forbid(unsafe_code)]

mod cbor;
mod der;
mod sig;

pub mod appraise;
pub mod audit;
pub mod chain;
pub mod ear;
pub mod envelope;
pub mod keyreport;
pub mod quote;
pub mod refvals;
pub mod release;
#[cfg(feature = "serve")]
pub mod service;

pub use sig::{MLDSA87_PUBLIC_LEN, MLDSA87_SIGNATURE_LEN, P384_POINT_LEN};
