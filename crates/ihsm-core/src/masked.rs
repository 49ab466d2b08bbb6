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
//!
//! On a device that holds the fleet masking domain (docs/fleet.md), blobs are of
//! version 2, masked under the domain instead:
//!
//! ```text
//! blob = "IHMK" | 2 | epoch u32 BE | svn u32 BE | attr digest (32) | name len (1) | name
//!        | AES-256-GCM(KDF(domain key of epoch, "ihsm fleet masking key v1" || name),
//!                      nonce, AD = "ihsm/masked/v2" || header, record)
//! ```
//!
//! so the blob opens in the partition of the same name on any host that holds
//! the epoch, and on no device outside the fleet.

use ihsm_crypto::seal::SealKey;
use ihsm_crypto::{ExposeSecret, Secret};

use crate::error::{CoreError, Result};
use crate::object::Object;

const MAGIC: &[u8; 4] = b"IHMK";
const VERSION: u8 = 1;
const VERSION_FLEET: u8 = 2;
const HEADER_LEN: usize = 4 + 1 + 4 + 4 + 32;
const AD_LABEL: &[u8] = b"ihsm/masked/v1";
const AD_LABEL_FLEET: &[u8] = b"ihsm/masked/v2";
const FLEET_KEY_LABEL: &[u8] = b"ihsm fleet masking key v1";
/// The longest partition name a fleet blob carries.
const MAX_NAME: usize = 64;

fn ad(label: &[u8], header: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(label.len() + header.len());
    v.extend_from_slice(label);
    v.extend_from_slice(header);
    v
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

/// The masking key of partition `name` under a fleet domain epoch's key.
fn fleet_key(domain_key: &Secret<32>, name: &str) -> Result<SealKey> {
    let mut label = Vec::with_capacity(FLEET_KEY_LABEL.len() + name.len());
    label.extend_from_slice(FLEET_KEY_LABEL);
    label.extend_from_slice(name.as_bytes());
    let block = ihsm_crypto::kdf::kdf_hmac512(domain_key.expose_secret(), &label, None)?;
    Ok(SealKey::new(Secret::from_slice(
        block.expose_secret().get(..32).unwrap_or_default(),
    )?))
}

/// The blob's masking domain, read from its header without opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Domain {
    /// Version 1: this device's partition.
    Partition,
    /// Version 2: the fleet domain's epoch.
    Fleet(u32),
}

/// Which domain `blob` says it was masked under.
pub(crate) fn domain_of(blob: &[u8]) -> Result<Domain> {
    if blob.len() < HEADER_LEN || &blob[..4] != MAGIC {
        return Err(CoreError::MaskedKeyInvalid("not a masked key"));
    }
    match blob[4] {
        VERSION => Ok(Domain::Partition),
        VERSION_FLEET => Ok(Domain::Fleet(be32(&blob[5..9]))),
        _ => Err(CoreError::MaskedKeyInvalid(
            "unsupported masked key version",
        )),
    }
}

/// Seals `o` of partition `name` into a fleet blob of `epoch`.
pub(crate) fn mask_fleet(
    name: &str,
    epoch: u32,
    svn: u32,
    o: &Object,
    domain_key: &Secret<32>,
) -> Result<Vec<u8>> {
    let (record, digest) = o.encode()?;
    seal_fleet(name, epoch, svn, &record, &digest, domain_key)
}

/// Seals an encoded object record into a fleet blob.
pub(crate) fn seal_fleet(
    name: &str,
    epoch: u32,
    svn: u32,
    record: &[u8],
    digest: &[u8; 32],
    domain_key: &Secret<32>,
) -> Result<Vec<u8>> {
    let n = u8::try_from(name.len())
        .ok()
        .filter(|n| (1..=MAX_NAME).contains(&usize::from(*n)))
        .ok_or(CoreError::MaskedKeyInvalid("partition name out of bounds"))?;
    let mut header = Vec::with_capacity(HEADER_LEN + 1 + name.len());
    header.extend_from_slice(MAGIC);
    header.push(VERSION_FLEET);
    header.extend_from_slice(&epoch.to_be_bytes());
    header.extend_from_slice(&svn.to_be_bytes());
    header.extend_from_slice(digest);
    header.push(n);
    header.extend_from_slice(name.as_bytes());
    let sealed = fleet_key(domain_key, name)?.seal(&ad(AD_LABEL_FLEET, &header), record)?;
    header.extend_from_slice(&sealed);
    Ok(header)
}

/// Opens a fleet blob for partition `name` running firmware `svn`, with the key
/// of the epoch the blob names (the caller looked it up with [`domain_of`]).
pub(crate) fn unmask_fleet(
    name: &str,
    svn: u32,
    blob: &[u8],
    domain_key: &Secret<32>,
) -> Result<Object> {
    if domain_of(blob)? == Domain::Partition || blob.len() < HEADER_LEN + 1 {
        return Err(CoreError::MaskedKeyInvalid("not a fleet masked key"));
    }
    let n = usize::from(blob[HEADER_LEN]);
    let header_len = HEADER_LEN + 1 + n;
    if n == 0 || n > MAX_NAME || blob.len() < header_len + ihsm_crypto::seal::SEAL_OVERHEAD {
        return Err(CoreError::MaskedKeyInvalid("blob too short"));
    }
    let (header, sealed) = blob.split_at(header_len);
    if &header[HEADER_LEN + 1..] != name.as_bytes() {
        return Err(CoreError::MaskedKeyInvalid("masked by another partition"));
    }
    open_record(
        header,
        sealed,
        svn,
        &fleet_key(domain_key, name)?,
        AD_LABEL_FLEET,
        "not masked by this fleet, or altered",
    )
}

/// The part both versions share once the header is checked: the SVN, the
/// record opened under `key` with `label` and the whole header as associated
/// data, and its attributes against the header's digest.
fn open_record(
    header: &[u8],
    sealed: &[u8],
    svn: u32,
    key: &SealKey,
    label: &[u8],
    not_ours: &'static str,
) -> Result<Object> {
    if be32(&header[9..13]) > svn {
        return Err(CoreError::MaskedKeyInvalid(
            "masked by newer firmware than this",
        ));
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&header[13..45]);
    let record = key
        .open(&ad(label, header), sealed)
        .map_err(|_| CoreError::MaskedKeyInvalid(not_ours))?;
    Object::decode(0, record.expose_secret(), &digest)
        .map_err(|_| CoreError::MaskedKeyInvalid("record does not match its attribute digest"))
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
    let sealed = key.seal(&ad(AD_LABEL, &header), record)?;
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
    if be32(&header[5..9]) != pid {
        return Err(CoreError::MaskedKeyInvalid("masked by another partition"));
    }
    open_record(
        header,
        sealed,
        svn,
        key,
        AD_LABEL,
        "not masked by this partition of this device, or altered",
    )
}
