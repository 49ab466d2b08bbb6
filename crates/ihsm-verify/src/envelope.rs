//! The signed envelope of key reports and reference values: two tagged COSE_Sign1
//! messages over the same payload, back to back (a CBOR sequence, RFC 8742): first
//! ES384, then ML-DSA-87 (docs/attestation.md, "The envelope").

use ciborium::Value;
use coset::{
    AsCborValue, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable, iana,
};

use crate::sig;

/// The content type both protected headers carry.
pub const CONTENT_TYPE: &str = "application/cbor";
/// Most bytes an envelope may have (two ML-DSA-87 signatures and a small payload).
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024;

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeRefusal {
    /// Larger than [`MAX_ENVELOPE_LEN`].
    #[error("the signed message is larger than {MAX_ENVELOPE_LEN} bytes")]
    TooLarge,
    /// Not two tagged COSE_Sign1 messages and nothing else.
    #[error("the signed message is not two tagged COSE_Sign1 messages")]
    Malformed,
    /// A protected header is not exactly `{1: alg, 3: "application/cbor"}`, or an
    /// unprotected header is not empty.
    #[error("a COSE_Sign1 header is not the profile's")]
    Header,
    /// A payload is missing or the two payloads differ.
    #[error("the two COSE_Sign1 payloads are missing or differ")]
    Payload,
    /// The ES384 signature does not verify.
    #[error("the ES384 signature does not verify")]
    EcdsaSignature,
    /// The ML-DSA-87 signature does not verify.
    #[error("the ML-DSA-87 signature does not verify")]
    MlDsaSignature,
}

fn protected_text(alg: iana::Algorithm) -> coset::Header {
    // Content type as the text AziHSM uses, not the CoAP number.
    let mut h = HeaderBuilder::new().algorithm(alg).build();
    h.content_type = Some(coset::ContentType::Text(CONTENT_TYPE.to_string()));
    h
}

/// Builds an envelope. `ecdsa` returns the 96-byte `r ‖ s` ES384 signature and
/// `mldsa` the ML-DSA-87 signature of the Sig_structure bytes they are given.
/// For producers and tests; a verifier only needs [`open`].
///
/// # Errors
/// A signer's error; an encoding failure (which the values built here cannot
/// cause) is [`EnvelopeRefusal::Malformed`].
pub fn seal<E: From<EnvelopeRefusal>>(
    payload: &[u8],
    ecdsa: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    mldsa: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let first = CoseSign1Builder::new()
        .protected(protected_text(iana::Algorithm::ES384))
        .payload(payload.to_vec())
        .try_create_signature(b"", ecdsa)?
        .build();
    let second = CoseSign1Builder::new()
        .protected(protected_text(iana::Algorithm::ML_DSA_87))
        .payload(payload.to_vec())
        .try_create_signature(b"", mldsa)?
        .build();
    let mut out = first
        .to_tagged_vec()
        .map_err(|_| E::from(EnvelopeRefusal::Malformed))?;
    out.extend(
        second
            .to_tagged_vec()
            .map_err(|_| E::from(EnvelopeRefusal::Malformed))?,
    );
    Ok(out)
}

fn read_sign1(rest: &mut &[u8]) -> Result<CoseSign1, EnvelopeRefusal> {
    let v: Value = ciborium::de::from_reader(&mut *rest).map_err(|_| EnvelopeRefusal::Malformed)?;
    let Value::Tag(tag, inner) = v else {
        return Err(EnvelopeRefusal::Malformed);
    };
    if tag != CoseSign1::TAG {
        return Err(EnvelopeRefusal::Malformed);
    }
    CoseSign1::from_cbor_value(*inner).map_err(|_| EnvelopeRefusal::Malformed)
}

fn header_ok(m: &CoseSign1, alg: iana::Algorithm) -> bool {
    let want = protected_text(alg);
    let h = &m.protected.header;
    h.alg == want.alg
        && h.content_type == want.content_type
        && h.crit.is_empty()
        && h.key_id.is_empty()
        && h.iv.is_empty()
        && h.partial_iv.is_empty()
        && h.counter_signatures.is_empty()
        && h.rest.is_empty()
        && m.unprotected.is_empty()
}

/// Opens an envelope: both headers the profile's, both payloads identical, the
/// ES384 signature by `ecc_key` (a SEC1 point) and the ML-DSA-87 one by
/// `mldsa_key`. Returns the payload.
///
/// # Errors
/// [`EnvelopeRefusal`].
pub fn open(bytes: &[u8], ecc_key: &[u8], mldsa_key: &[u8]) -> Result<Vec<u8>, EnvelopeRefusal> {
    let (ecc, ml) = split(bytes)?;
    if ecc
        .verify_signature(b"", |s, tbs| {
            sig::ecdsa_fixed(ecc_key, tbs, s).then_some(()).ok_or(())
        })
        .is_err()
    {
        return Err(EnvelopeRefusal::EcdsaSignature);
    }
    if ml
        .verify_signature(b"", |s, tbs| {
            sig::mldsa87(mldsa_key, tbs, s).then_some(()).ok_or(())
        })
        .is_err()
    {
        return Err(EnvelopeRefusal::MlDsaSignature);
    }
    ecc.payload.ok_or(EnvelopeRefusal::Payload)
}

/// Splits and checks the structure of an envelope without checking signatures.
///
/// # Errors
/// [`EnvelopeRefusal`] other than the signature ones.
pub fn split(bytes: &[u8]) -> Result<(CoseSign1, CoseSign1), EnvelopeRefusal> {
    if bytes.len() > MAX_ENVELOPE_LEN {
        return Err(EnvelopeRefusal::TooLarge);
    }
    let mut rest = bytes;
    let ecc = read_sign1(&mut rest)?;
    let ml = read_sign1(&mut rest)?;
    if !rest.is_empty() {
        return Err(EnvelopeRefusal::Malformed);
    }
    if !header_ok(&ecc, iana::Algorithm::ES384) || !header_ok(&ml, iana::Algorithm::ML_DSA_87) {
        return Err(EnvelopeRefusal::Header);
    }
    match (&ecc.payload, &ml.payload) {
        (Some(a), Some(b)) if a == b => Ok((ecc, ml)),
        _ => Err(EnvelopeRefusal::Payload),
    }
}
