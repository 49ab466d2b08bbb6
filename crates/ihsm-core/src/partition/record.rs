//! The sealed partition record (inside the store, sealed under the device key) and
//! its persistence.
//!
//! A partition keeps its record's fields in [`PartitionRecord`] and its keys (the
//! master key and the identity key's PKCS#8) only in its locked secrets. The
//! encoded record, keys and all, exists only while it is read or written: it is
//! decoded with the keys going straight into locked memory, and encoded into a
//! locked buffer of its exact size, which is wiped once the store has sealed it.
//!
//! The format grows at its end: a record is the fields of [`Sealing`] (the first
//! format, unchanged), then, if it has any, the [`Extension`] fields. A record
//! whose extension is the default (no principals, the default policy) is written
//! without one, byte for byte as before, so a daemon of the first format still
//! reads it; and a record without one reads as the default. A daemon of the
//! first format reading a record with an extension ignores it (postcard leaves
//! trailing bytes alone): it admits only the owner and refuses SHA-1 signatures,
//! the safe side of both.

use ihsm_crypto::{ExposeSecret, ExposeSecretMut, Secret, SecretVec};
use serde::{Deserialize, Serialize};

use super::Partition;
use crate::audit::AuditEvent;
use crate::error::{CoreError, Result};
use crate::pin::PinVerifier;
use crate::quota::Quotas;
use ihsm_proto::types::{PartitionPolicy, Principal};

/// What a partition keeps of its sealed record: every field but its keys.
pub(crate) struct PartitionRecord {
    pub(crate) version: u32,
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) owner_uid: u32,
    pub(crate) owner_gid: u32,
    pub(crate) so_pin: Option<PinVerifier>,
    pub(crate) user_pin: Option<PinVerifier>,
    pub(crate) pin_iterations: u32,
    pub(crate) quotas: Quotas,
    pub(crate) created: u64,
    /// Who it admits besides its owner, sorted, without repeats.
    pub(crate) principals: Vec<Principal>,
    pub(crate) policy: PartitionPolicy,
}

/// The fields a record holds after the first format's: the principals (their
/// variant order, uid then gid, is part of the format) and the policy.
#[derive(Serialize, Deserialize, Default, PartialEq, Debug)]
struct Extension {
    principals: Vec<Principal>,
    policy: PartitionPolicy,
}

/// The keys of a sealed record, in locked memory.
pub(crate) struct RecordKeys {
    /// The partition master key.
    pub(crate) master: Secret<32>,
    /// The identity private key, PKCS#8 DER.
    pub(crate) identity: SecretVec,
}

/// The stored form, as it is written: the record's fields and its keys, borrowed
/// from locked memory. The field order is the format on disk.
#[derive(Serialize)]
struct Sealing<'a> {
    version: u32,
    id: u32,
    name: &'a str,
    owner_uid: u32,
    owner_gid: u32,
    so_pin: &'a Option<PinVerifier>,
    user_pin: &'a Option<PinVerifier>,
    pin_iterations: u32,
    quotas: &'a Quotas,
    master_key: &'a [u8; 32],
    identity_key: &'a [u8],
    created: u64,
}

/// The stored form, as it is read: the same fields, the keys decoded into locked
/// memory.
#[derive(Deserialize)]
struct Opening {
    version: u32,
    id: u32,
    name: String,
    owner_uid: u32,
    owner_gid: u32,
    so_pin: Option<PinVerifier>,
    user_pin: Option<PinVerifier>,
    pin_iterations: u32,
    quotas: Quotas,
    #[serde(deserialize_with = "crate::locked::array::deserialize")]
    master_key: Secret<32>,
    #[serde(deserialize_with = "crate::locked::bytes::deserialize")]
    identity_key: SecretVec,
    created: u64,
}

impl PartitionRecord {
    /// The stored form of this record with these keys, in a locked buffer of its
    /// exact size (an encoder that grows its buffer would leave copies of the keys
    /// in the memory it frees), its [`Extension`] after the first format's fields
    /// unless it is the default.
    pub(crate) fn encode(&self, master: &Secret<32>, identity_der: &[u8]) -> Result<SecretVec> {
        let sealing = Sealing {
            version: self.version,
            id: self.id,
            name: &self.name,
            owner_uid: self.owner_uid,
            owner_gid: self.owner_gid,
            so_pin: &self.so_pin,
            user_pin: &self.user_pin,
            pin_iterations: self.pin_iterations,
            quotas: &self.quotas,
            master_key: master.expose_secret(),
            identity_key: identity_der,
            created: self.created,
        };
        let ext = Extension {
            principals: self.principals.clone(),
            policy: self.policy,
        };
        let ext = (ext != Extension::default()).then_some(ext);
        let enc = |_| CoreError::Internal("partition record encoding");
        let len = postcard::experimental::serialized_size(&sealing).map_err(enc)?;
        let ext_len = match &ext {
            Some(e) => postcard::experimental::serialized_size(e).map_err(enc)?,
            None => 0,
        };
        let mut out = SecretVec::zeroed(len + ext_len)?;
        let (first, rest) = out.expose_secret_mut().split_at_mut(len);
        postcard::to_slice(&sealing, first).map_err(enc)?;
        if let Some(e) = &ext {
            postcard::to_slice(e, rest).map_err(enc)?;
        }
        Ok(out)
    }

    /// Decodes a stored record into its fields and its keys.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Self, RecordKeys)> {
        let bad = |_| CoreError::Internal("partition record does not parse");
        let (o, rest): (Opening, &[u8]) = postcard::take_from_bytes(bytes).map_err(bad)?;
        // Fields a later format appends after these are left alone, as the
        // first format leaves these.
        let ext = if rest.is_empty() {
            Extension::default()
        } else {
            postcard::take_from_bytes::<Extension>(rest).map_err(bad)?.0
        };
        let keys = RecordKeys {
            master: o.master_key,
            identity: o.identity_key,
        };
        let rec = Self {
            version: o.version,
            id: o.id,
            name: o.name,
            owner_uid: o.owner_uid,
            owner_gid: o.owner_gid,
            so_pin: o.so_pin,
            user_pin: o.user_pin,
            pin_iterations: o.pin_iterations,
            quotas: o.quotas,
            created: o.created,
            principals: ext.principals,
            policy: ext.policy,
        };
        Ok((rec, keys))
    }
}

impl Partition {
    /// The stored form of `rec` with this partition's keys.
    pub(super) fn encode_record(&self, rec: &PartitionRecord) -> Result<SecretVec> {
        self.with_secrets(|s| rec.encode(s.master.expose(), s.identity_der.expose_secret()))
    }

    pub(super) fn persist_record(
        &self,
        rec: &PartitionRecord,
        events: Vec<AuditEvent>,
    ) -> Result<()> {
        let bytes = self.encode_record(rec)?;
        let pid = self.id;
        self.audited(|tx| {
            tx.put_partition(pid, bytes.expose_secret())?;
            Ok(((), events))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record as it was stored before the keys left it (the format on disk).
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Stored {
        version: u32,
        id: u32,
        name: String,
        owner_uid: u32,
        owner_gid: u32,
        so_pin: Option<StoredPin>,
        user_pin: Option<StoredPin>,
        pin_iterations: u32,
        quotas: Quotas,
        master_key: [u8; 32],
        identity_key: Vec<u8>,
        created: u64,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct StoredPin {
        salt: [u8; 16],
        iterations: u32,
        hash: [u8; 32],
        failures: u32,
    }

    #[test]
    fn the_stored_format_is_unchanged() {
        let identity = ihsm_crypto::ec::EccP384PrivateKey::generate().unwrap();
        let stored = Stored {
            version: 1,
            id: 7,
            name: "tenant-7".into(),
            owner_uid: 1000,
            owner_gid: 1001,
            so_pin: Some(StoredPin {
                salt: [1; 16],
                iterations: 1000,
                hash: [2; 32],
                failures: 3,
            }),
            user_pin: None,
            pin_iterations: 1000,
            quotas: Quotas::default(),
            master_key: [0x5a; 32],
            identity_key: identity.to_pkcs8_der().unwrap().to_vec(),
            created: 1_700_000_000,
        };
        let old = postcard::to_allocvec(&stored).unwrap();
        let (rec, keys) = PartitionRecord::decode(&old).unwrap();
        assert_eq!(keys.master.expose_secret(), &stored.master_key);
        assert_eq!(keys.identity.expose_secret(), &stored.identity_key[..]);
        assert_eq!(rec.name, stored.name);
        assert_eq!(rec.so_pin.as_ref().map(|v| v.failures), Some(3));
        let new = rec
            .encode(&keys.master, keys.identity.expose_secret())
            .unwrap();
        assert_eq!(new.expose_secret(), &old[..]);
        assert_eq!(
            postcard::from_bytes::<Stored>(new.expose_secret()).unwrap(),
            stored
        );
        // A record of the first format admits only its owner, by the default
        // policy.
        assert!(rec.principals.is_empty());
        assert_eq!(rec.policy, PartitionPolicy::default());
    }

    #[test]
    fn principals_and_policy_follow_the_first_format_and_an_old_reader_still_reads_it() {
        let identity = ihsm_crypto::ec::EccP384PrivateKey::generate().unwrap();
        let der = identity.to_pkcs8_der().unwrap().to_vec();
        let master = Secret::<32>::from_slice(&[7; 32]).unwrap();
        let rec = PartitionRecord {
            version: 1,
            id: 3,
            name: "web".into(),
            owner_uid: 0,
            owner_gid: 0,
            so_pin: None,
            user_pin: None,
            pin_iterations: 1000,
            quotas: Quotas::default(),
            created: 1_700_000_000,
            principals: vec![Principal::Uid(33), Principal::Gid(33)],
            policy: PartitionPolicy {
                allow_sha1_signatures: true,
            },
        };
        let bytes = rec.encode(&master, &der).unwrap();
        let (back, keys) = PartitionRecord::decode(bytes.expose_secret()).unwrap();
        assert_eq!(back.principals, rec.principals);
        assert_eq!(back.policy, rec.policy);
        assert_eq!(keys.master.expose_secret(), &[7; 32]);
        assert_eq!(keys.identity.expose_secret(), &der[..]);
        // The first format's reader reads the same fields, and leaves the rest.
        let old: Stored = postcard::from_bytes(bytes.expose_secret()).unwrap();
        assert_eq!((old.name.as_str(), old.owner_uid, old.id), ("web", 0, 3));
        let plain = postcard::to_allocvec(&old).unwrap();
        assert!(bytes.expose_secret().len() > plain.len());
        assert!(bytes.expose_secret().starts_with(&plain));
        // Without principals and with the default policy, it is the first format.
        let rec = PartitionRecord {
            principals: Vec::new(),
            policy: PartitionPolicy::default(),
            ..rec
        };
        let bytes = rec.encode(&master, &der).unwrap();
        let old: Stored = postcard::from_bytes(bytes.expose_secret()).unwrap();
        assert_eq!(postcard::to_allocvec(&old).unwrap(), bytes.expose_secret());
        // A truncated extension is an error, not a default.
        let bytes = PartitionRecord {
            principals: vec![Principal::Uid(33)],
            ..rec
        }
        .encode(&master, &der)
        .unwrap();
        let cut = &bytes.expose_secret()[..bytes.expose_secret().len() - 1];
        assert!(PartitionRecord::decode(cut).is_err());
    }
}
