//! Masked keys: a key exported as a blob sealed under the partition's masking key,
//! as Azure Integrated HSM's masked keys, so a partition can keep unlimited keys
//! outside the device and bring any of them back.
//!
//! ```text
//! blob = "IHMK" | version (1) | pid u32 BE | svn u32 BE | attr digest (32)
//!        | AES-256-GCM(masking key, nonce, AD = "ihsm/masked/v1" || header, record)
//! ```
//!
//! The masking key is derived from the partition master key, so the blob opens
//! only in this partition of this device; the header binds the partition id, the
//! firmware SVN (a blob made by newer firmware is refused by older firmware) and the
//! digest of the key's attributes (which the record must match).

use ihsm_crypto::ExposeSecret;
use ihsm_crypto::seal::SealKey;

use crate::error::{CoreError, Result};
use crate::object::Object;

const MAGIC: &[u8; 4] = b"IHMK";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 4 + 4 + 32;
const AD_LABEL: &[u8] = b"ihsm/masked/v1";

fn ad(header: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(AD_LABEL.len() + header.len());
    v.extend_from_slice(AD_LABEL);
    v.extend_from_slice(header);
    v
}

/// Seals `o` into a masked blob.
pub(crate) fn mask(pid: u32, svn: u32, o: &Object, key: &SealKey) -> Result<Vec<u8>> {
    let (record, digest) = o.encode()?;
    seal(pid, svn, &record, &digest, key)
}

/// Seals an encoded object record whose attributes have digest `digest`.
pub(crate) fn seal(
    pid: u32,
    svn: u32,
    record: &[u8],
    digest: &[u8; 32],
    key: &SealKey,
) -> Result<Vec<u8>> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.push(VERSION);
    header.extend_from_slice(&pid.to_be_bytes());
    header.extend_from_slice(&svn.to_be_bytes());
    header.extend_from_slice(digest);
    let sealed = key.seal(&ad(&header), record)?;
    header.extend_from_slice(&sealed);
    Ok(header)
}

/// Opens a masked blob for partition `pid` running firmware `svn`.
pub(crate) fn unmask(pid: u32, svn: u32, blob: &[u8], key: &SealKey) -> Result<Object> {
    if blob.len() < HEADER_LEN + ihsm_crypto::seal::SEAL_OVERHEAD {
        return Err(CoreError::MaskedKeyInvalid("blob too short"));
    }
    let (header, sealed) = blob.split_at(HEADER_LEN);
    if &header[..4] != MAGIC {
        return Err(CoreError::MaskedKeyInvalid("not a masked key"));
    }
    if header[4] != VERSION {
        return Err(CoreError::MaskedKeyInvalid(
            "unsupported masked key version",
        ));
    }
    let be32 = |b: &[u8]| {
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        u32::from_be_bytes(a)
    };
    if be32(&header[5..9]) != pid {
        return Err(CoreError::MaskedKeyInvalid("masked by another partition"));
    }
    if be32(&header[9..13]) > svn {
        return Err(CoreError::MaskedKeyInvalid(
            "masked by newer firmware than this",
        ));
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&header[13..45]);
    let record = key.open(&ad(header), sealed).map_err(|_| {
        CoreError::MaskedKeyInvalid("not masked by this partition of this device, or altered")
    })?;
    Object::decode(0, record.expose_secret(), &digest)
        .map_err(|_| CoreError::MaskedKeyInvalid("record does not match its attribute digest"))
}
