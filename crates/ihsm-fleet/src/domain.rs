//! The fleet masking domain in etcd (docs/fleet.md, "The masking domain").
//!
//! Two kinds of keys under `/ihsm/fleet/v1/domain/`:
//!
//! - `epoch`: an [`EpochRecord`], which epoch is current, who drew it and whom it
//!   evicts. It coordinates (an eviction replaces it in a transaction that
//!   compares its revision) and is trusted for nothing: what a host takes comes
//!   from a wrap.
//! - `wraps/EPOCH/HOST`: a [`DomainWrap`], the epoch sealed (HPKE Auth) to
//!   `HOST`'s attested transfer key by a host that holds it, with the sender's
//!   transfer certificate, so the recipient checks it against the sender's
//!   attested chain. The epoch's key, its issuer and the hosts it evicts are
//!   inside the seal; only the device core opens it.
//!
//! Every decoder here bounds every length before anything is allocated: these
//! bytes come from whoever can write etcd.

use serde::{Deserialize, Serialize};

use crate::record::{MAX_CERT, RecordError, valid_host_name};
use crate::registry::PREFIX;

/// The records' format version.
pub const VERSION: u16 = 1;
/// The most bytes an epoch record may take.
pub const MAX_EPOCH_RECORD: usize = 32 * 1024;
/// The most bytes a wrap may take.
pub const MAX_WRAP: usize = 64 * 1024;
/// Most hosts an epoch evicts.
pub const MAX_EVICTED: usize = 256;
/// The domain label at the start of a wrap's HPKE info.
pub const INFO_DOMAIN: &[u8] = b"ihsm fleet domain v1\0";
/// A P-384 HPKE `enc` (SEC1 uncompressed).
const ENC_LEN: usize = 97;

/// The key of the epoch record.
#[must_use]
pub fn epoch_key() -> String {
    format!("{PREFIX}domain/epoch")
}

/// The prefix of everything the domain keeps.
#[must_use]
pub fn domain_prefix() -> String {
    format!("{PREFIX}domain/")
}

/// The prefix of epoch `epoch`'s wraps (zero-padded, so keys sort by epoch).
#[must_use]
pub fn wraps_prefix(epoch: u32) -> String {
    format!("{PREFIX}domain/wraps/{epoch:010}/")
}

/// The key of epoch `epoch`'s wrap for host `to`.
#[must_use]
pub fn wrap_key(epoch: u32, to: &str) -> String {
    format!("{}{to}", wraps_prefix(epoch))
}

/// Which epoch is current (coordination only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// [`VERSION`].
    pub version: u16,
    /// The current epoch, from 1.
    pub epoch: u32,
    /// The host that drew it.
    pub issuer: String,
    /// The hosts evicted by it and every earlier epoch.
    pub evicted: Vec<String>,
}

impl EpochRecord {
    /// Encodes the record.
    ///
    /// # Errors
    /// [`RecordError::OutOfBounds`] for a field a reader would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        postcard::to_allocvec(self).map_err(|_| RecordError::Malformed("unencodable epoch"))
    }

    /// Decodes a record, every field bounded.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_EPOCH_RECORD {
            return Err(RecordError::TooLong(bytes.len()));
        }
        let (r, rest): (Self, _) =
            postcard::take_from_bytes(bytes).map_err(|_| RecordError::Malformed("epoch"))?;
        if !rest.is_empty() {
            return Err(RecordError::Malformed("bytes after the epoch"));
        }
        r.check()?;
        Ok(r)
    }

    fn check(&self) -> Result<(), RecordError> {
        if self.version != VERSION {
            return Err(RecordError::Version(self.version));
        }
        if self.epoch == 0 {
            return Err(RecordError::OutOfBounds("epoch"));
        }
        if !valid_host_name(&self.issuer)
            || self.evicted.len() > MAX_EVICTED
            || !self.evicted.iter().all(|h| valid_host_name(h))
        {
            return Err(RecordError::OutOfBounds("host name"));
        }
        Ok(())
    }
}

/// One epoch sealed to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainWrap {
    /// [`VERSION`].
    pub version: u16,
    /// The epoch sealed.
    pub epoch: u32,
    /// The sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The sender's transfer certificate (DER), issued by its RT Alias.
    #[serde(with = "serde_bytes")]
    pub from_cert: Vec<u8>,
    /// SHA-256 of the recipient's transfer certificate it was sealed to (a
    /// recipient that restarted has another key: the wrap is stale).
    pub to_cert_sha256: [u8; 32],
    /// HPKE's `enc`.
    #[serde(with = "serde_bytes")]
    pub enc: Vec<u8>,
    /// HPKE's ciphertext.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

impl DomainWrap {
    /// The HPKE info: both hosts and both transfer certificates, and the epoch.
    #[must_use]
    pub fn info(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(INFO_DOMAIN.len() + 4 + 2 * 64 + 64);
        v.extend_from_slice(INFO_DOMAIN);
        v.extend_from_slice(&self.epoch.to_be_bytes());
        for h in [&self.from, &self.to] {
            v.extend_from_slice(h.as_bytes());
            v.push(0);
        }
        v.extend_from_slice(&sha256(&self.from_cert));
        v.extend_from_slice(&self.to_cert_sha256);
        v
    }

    /// Encodes the wrap.
    ///
    /// # Errors
    /// [`RecordError::OutOfBounds`] for a field a reader would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        postcard::to_allocvec(self).map_err(|_| RecordError::Malformed("unencodable wrap"))
    }

    /// Decodes a wrap, every field bounded.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_WRAP {
            return Err(RecordError::TooLong(bytes.len()));
        }
        let (w, rest): (Self, _) =
            postcard::take_from_bytes(bytes).map_err(|_| RecordError::Malformed("wrap"))?;
        if !rest.is_empty() {
            return Err(RecordError::Malformed("bytes after the wrap"));
        }
        w.check()?;
        Ok(w)
    }

    fn check(&self) -> Result<(), RecordError> {
        if self.version != VERSION {
            return Err(RecordError::Version(self.version));
        }
        if self.epoch == 0 {
            return Err(RecordError::OutOfBounds("epoch"));
        }
        if !valid_host_name(&self.from) || !valid_host_name(&self.to) || self.from == self.to {
            return Err(RecordError::OutOfBounds("host name"));
        }
        if self.from_cert.is_empty() || self.from_cert.len() > MAX_CERT {
            return Err(RecordError::OutOfBounds("transfer certificate"));
        }
        if self.enc.len() != ENC_LEN || self.ciphertext.len() < 16 {
            return Err(RecordError::OutOfBounds("seal"));
        }
        Ok(())
    }
}

/// SHA-256, for certificate digests.
#[must_use]
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap() -> DomainWrap {
        DomainWrap {
            version: VERSION,
            epoch: 3,
            from: "a".into(),
            to: "b".into(),
            from_cert: vec![0x30; 500],
            to_cert_sha256: [7; 32],
            enc: vec![4; ENC_LEN],
            ciphertext: vec![9; 80],
        }
    }

    fn epoch() -> EpochRecord {
        EpochRecord {
            version: VERSION,
            epoch: 2,
            issuer: "a".into(),
            evicted: vec!["c".into()],
        }
    }

    #[test]
    fn records_round_trip_and_every_truncation_or_bad_field_is_refused() {
        let w = wrap();
        let bytes = w.encode().unwrap();
        assert_eq!(DomainWrap::decode(&bytes).unwrap(), w);
        for n in 0..bytes.len() {
            assert!(DomainWrap::decode(&bytes[..n]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(DomainWrap::decode(&long).is_err());
        assert!(DomainWrap::decode(&vec![0xff; MAX_WRAP + 1]).is_err());
        for bad in [
            DomainWrap { epoch: 0, ..wrap() },
            DomainWrap {
                to: "a".into(),
                ..wrap()
            },
            DomainWrap {
                from: "A B".into(),
                ..wrap()
            },
            DomainWrap {
                enc: vec![4; 10],
                ..wrap()
            },
            DomainWrap {
                from_cert: vec![0; MAX_CERT + 1],
                ..wrap()
            },
            DomainWrap {
                version: 2,
                ..wrap()
            },
        ] {
            assert!(bad.encode().is_err());
            assert!(DomainWrap::decode(&postcard::to_allocvec(&bad).unwrap()).is_err());
        }

        let e = epoch();
        let bytes = e.encode().unwrap();
        // The fuzz corpus's seeds are these encodings.
        assert_eq!(bytes, [1, 2, 1, b'a', 1, 1, b'c']);
        assert_eq!(
            &w.encode().unwrap()[..8],
            &[1, 3, 1, b'a', 1, b'b', 0xf4, 0x03]
        );
        assert_eq!(EpochRecord::decode(&bytes).unwrap(), e);
        for n in 0..bytes.len() {
            assert!(EpochRecord::decode(&bytes[..n]).is_err());
        }
        for bad in [
            EpochRecord {
                epoch: 0,
                ..epoch()
            },
            EpochRecord {
                evicted: vec![String::new()],
                ..epoch()
            },
            EpochRecord {
                evicted: vec!["x".into(); MAX_EVICTED + 1],
                ..epoch()
            },
        ] {
            assert!(bad.encode().is_err());
            assert!(EpochRecord::decode(&postcard::to_allocvec(&bad).unwrap()).is_err());
        }
    }

    #[test]
    fn the_info_binds_both_hosts_both_keys_and_the_epoch() {
        let base = wrap().info();
        for other in [
            DomainWrap { epoch: 4, ..wrap() },
            DomainWrap {
                from: "ab".into(),
                to: "b".into(),
                ..wrap()
            },
            DomainWrap {
                to: "c".into(),
                ..wrap()
            },
            DomainWrap {
                from_cert: vec![0x31; 500],
                ..wrap()
            },
            DomainWrap {
                to_cert_sha256: [8; 32],
                ..wrap()
            },
        ] {
            assert_ne!(other.info(), base);
        }
        // Host names are delimited: "a"+"bb" is not "ab"+"b".
        let x = DomainWrap {
            from: "a".into(),
            to: "bb".into(),
            ..wrap()
        };
        let y = DomainWrap {
            from: "ab".into(),
            to: "b".into(),
            ..wrap()
        };
        assert_ne!(x.info(), y.info());
    }
}
