//! What a host publishes in etcd: its record.
//!
//! A record is a body (who the host is, where its peers reach it, which lease it
//! holds, when it was made, what it serves) and the device's evidence: both DICE
//! chains, both PCR quotes and the PCR log. The quotes' nonce is
//! [`HostRecord::nonce`], the SHA-256 of a domain label and the body's exact bytes,
//! so the FMC Alias keys that the chains attest sign the body: nothing in it can be
//! changed, and no body can be given another device's evidence, without the quotes
//! failing. etcd stores the bytes and is trusted for nothing.
//!
//! The encoding is postcard (DESIGN.md's wire format), bounded in every length
//! before anything is allocated: a record comes from whoever could write to etcd.

use serde::{Deserialize, Serialize};

/// The body's format version.
pub const VERSION: u16 = 1;
/// The most bytes a record may take (ML-DSA-87 certificates and quote dominate:
/// a genuine record is about 40 KiB).
pub const MAX_RECORD: usize = 256 * 1024;
/// The most bytes a body may take.
pub const MAX_BODY: usize = 32 * 1024;
/// The longest host name.
pub const MAX_HOST_NAME: usize = 63;
/// The longest transfer certificate.
pub const MAX_CERT: usize = 4096;
/// The most partitions a record lists.
pub const MAX_PARTITIONS: usize = 1024;
/// The domain label hashed before the body into the quotes' nonce.
pub const NONCE_DOMAIN: &[u8] = b"ihsm fleet host record v1\0";

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Longer than [`MAX_RECORD`] or a body longer than [`MAX_BODY`].
    #[error("the record is {0} bytes, over the limit")]
    TooLong(usize),
    /// Not a postcard record, or bytes left over.
    #[error("the record is malformed: {0}")]
    Malformed(&'static str),
    /// A field out of its bounds.
    #[error("the record's {0} is out of bounds")]
    OutOfBounds(&'static str),
    /// A version this reader does not know.
    #[error("the record's version is {0}; this host reads version {VERSION}")]
    Version(u16),
}

/// Who a host is and what it serves: the part of the record the quotes sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBody {
    /// [`VERSION`].
    pub version: u16,
    /// The host's name in the fleet: lowercase letters, digits and `-`.
    pub host: String,
    /// The mutual-TLS address other hosts reach it at (`IP:port`).
    pub peer: String,
    /// The etcd lease the record is published under.
    pub lease: i64,
    /// When the record was made (Unix seconds): its evidence is that fresh.
    pub issued_at: u64,
    /// The partitions the host serves, by name.
    pub partitions: Vec<String>,
    /// Connections open on its partition sockets when the record was made.
    pub connections: u32,
    /// The certificate (DER) of the device's transfer key, issued by its RT
    /// Alias: what other hosts seal partitions to (HPKE, DHKEM P-384).
    #[serde(with = "serde_bytes")]
    pub transfer_cert: Vec<u8>,
}

/// The device's evidence, as a verifier needs it (docs/attestation.md).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// ECC P-384 chain, DER: IDevID, LDevID, FMC Alias, RT Alias.
    pub ecc_chain: [serde_bytes::ByteBuf; 4],
    /// ML-DSA-87 chain, DER, same order.
    pub mldsa_chain: [serde_bytes::ByteBuf; 4],
    /// The QUOTE_PCRS_ECC384 response.
    #[serde(with = "serde_bytes")]
    pub quote_ecc: Vec<u8>,
    /// The QUOTE_PCRS_MLDSA87 response.
    #[serde(with = "serde_bytes")]
    pub quote_mldsa: Vec<u8>,
    /// The GET_PCR_LOG data.
    #[serde(with = "serde_bytes")]
    pub pcr_log: Vec<u8>,
}

impl core::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Evidence")
            .field("quote_ecc", &self.quote_ecc.len())
            .field("quote_mldsa", &self.quote_mldsa.len())
            .field("pcr_log", &self.pcr_log.len())
            .finish_non_exhaustive()
    }
}

/// A host's record as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The postcard encoding of a [`HostBody`], kept as bytes so that the nonce
    /// is computed over exactly what was signed.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The evidence whose quotes carry [`HostRecord::nonce`].
    pub evidence: Evidence,
}

/// Whether `name` may be a host's name: 1 to [`MAX_HOST_NAME`] of `[a-z0-9-]`,
/// not starting or ending with `-` (it is an etcd key's last segment and a TLS
/// name).
#[must_use]
pub fn valid_host_name(name: &str) -> bool {
    (1..=MAX_HOST_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl HostBody {
    /// Encodes the body.
    ///
    /// # Errors
    /// [`RecordError::OutOfBounds`] for a field a reader would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        let bytes =
            postcard::to_allocvec(self).map_err(|_| RecordError::Malformed("unencodable body"))?;
        if bytes.len() > MAX_BODY {
            return Err(RecordError::TooLong(bytes.len()));
        }
        Ok(bytes)
    }

    /// Decodes a body, every field bounded.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_BODY {
            return Err(RecordError::TooLong(bytes.len()));
        }
        let (body, rest): (Self, _) =
            postcard::take_from_bytes(bytes).map_err(|_| RecordError::Malformed("body"))?;
        if !rest.is_empty() {
            return Err(RecordError::Malformed("bytes after the body"));
        }
        body.check()?;
        Ok(body)
    }

    fn check(&self) -> Result<(), RecordError> {
        if self.version != VERSION {
            return Err(RecordError::Version(self.version));
        }
        if !valid_host_name(&self.host) {
            return Err(RecordError::OutOfBounds("host name"));
        }
        if self.peer.parse::<std::net::SocketAddr>().is_err() {
            return Err(RecordError::OutOfBounds("peer address"));
        }
        if self.transfer_cert.len() > MAX_CERT {
            return Err(RecordError::OutOfBounds("transfer certificate"));
        }
        if self.partitions.len() > MAX_PARTITIONS
            || self
                .partitions
                .iter()
                .any(|p| p.is_empty() || p.len() > 64 || p.chars().any(char::is_control))
        {
            return Err(RecordError::OutOfBounds("partitions"));
        }
        Ok(())
    }
}

impl HostRecord {
    /// The nonce the record's quotes must carry: SHA-256 of [`NONCE_DOMAIN`] and
    /// the body's bytes.
    #[must_use]
    pub fn nonce(body: &[u8]) -> [u8; 32] {
        let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        c.update(NONCE_DOMAIN);
        c.update(body);
        let mut out = [0u8; 32];
        out.copy_from_slice(c.finish().as_ref());
        out
    }

    /// Encodes the record.
    ///
    /// # Errors
    /// [`RecordError::TooLong`] past [`MAX_RECORD`].
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let bytes = postcard::to_allocvec(self)
            .map_err(|_| RecordError::Malformed("unencodable record"))?;
        if bytes.len() > MAX_RECORD {
            return Err(RecordError::TooLong(bytes.len()));
        }
        Ok(bytes)
    }

    /// Decodes a record and its body.
    ///
    /// # Errors
    /// What is wrong with it; no length is trusted past [`MAX_RECORD`].
    pub fn decode(bytes: &[u8]) -> Result<(Self, HostBody), RecordError> {
        if bytes.len() > MAX_RECORD {
            return Err(RecordError::TooLong(bytes.len()));
        }
        let (record, rest): (Self, _) =
            postcard::take_from_bytes(bytes).map_err(|_| RecordError::Malformed("record"))?;
        if !rest.is_empty() {
            return Err(RecordError::Malformed("bytes after the record"));
        }
        let body = HostBody::decode(&record.body)?;
        Ok((record, body))
    }

    /// Encodes a body and evidence whatever the body is (placements share the
    /// record's shape).
    pub(crate) fn encode_unchecked(&self) -> Result<Vec<u8>, RecordError> {
        self.encode()
    }

    /// Decodes a body and evidence without reading the body.
    pub(crate) fn decode_unchecked(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD {
            return Err(RecordError::TooLong(bytes.len()));
        }
        let (record, rest): (Self, _) =
            postcard::take_from_bytes(bytes).map_err(|_| RecordError::Malformed("record"))?;
        if !rest.is_empty() {
            return Err(RecordError::Malformed("bytes after the record"));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> HostBody {
        HostBody {
            version: VERSION,
            host: "host-a".into(),
            peer: "127.0.0.1:7001".into(),
            lease: 0x1234,
            issued_at: 1_796_083_200,
            partitions: vec!["tenant-a".into()],
            connections: 2,
            transfer_cert: vec![0x30; 40],
        }
    }

    fn record() -> HostRecord {
        let b = |n: u8| serde_bytes::ByteBuf::from(vec![n; 10]);
        HostRecord {
            body: body().encode().unwrap(),
            evidence: Evidence {
                ecc_chain: [b(1), b(2), b(3), b(4)],
                mldsa_chain: [b(5), b(6), b(7), b(8)],
                quote_ecc: vec![9; 20],
                quote_mldsa: vec![10; 20],
                pcr_log: vec![11; 20],
            },
        }
    }

    #[test]
    fn a_record_round_trips_and_its_nonce_covers_the_body() {
        let r = record();
        let bytes = r.encode().unwrap();
        let (back, b) = HostRecord::decode(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(b, body());
        let mut other = body();
        other.peer = "127.0.0.1:7002".into();
        assert_ne!(
            HostRecord::nonce(&r.body),
            HostRecord::nonce(&other.encode().unwrap())
        );
    }

    #[test]
    fn every_truncation_and_every_trailing_byte_is_refused() {
        let bytes = record().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(HostRecord::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            HostRecord::decode(&long),
            Err(RecordError::Malformed("bytes after the record"))
        );
        assert!(matches!(
            HostRecord::decode(&vec![0u8; MAX_RECORD + 1]),
            Err(RecordError::TooLong(_))
        ));
    }

    #[test]
    fn bodies_out_of_bounds_are_refused() {
        for (what, edit) in [
            (
                "host name",
                (|b: &mut HostBody| b.host = "Host_A".into()) as fn(&mut HostBody),
            ),
            ("host name", |b| b.host = String::new()),
            ("host name", |b| b.host = "-a".into()),
            ("host name", |b| b.host = "a".repeat(64)),
            ("peer address", |b| b.peer = "somewhere".into()),
            ("partitions", |b| b.partitions = vec![String::new()]),
            ("partitions", |b| b.partitions = vec!["a\nb".into()]),
            ("transfer certificate", |b| {
                b.transfer_cert = vec![0; MAX_CERT + 1]
            }),
        ] {
            let mut b = body();
            edit(&mut b);
            assert_eq!(b.encode(), Err(RecordError::OutOfBounds(what)));
            let raw = postcard::to_allocvec(&b).unwrap();
            assert_eq!(HostBody::decode(&raw), Err(RecordError::OutOfBounds(what)));
        }
        let mut b = body();
        b.version = 2;
        let raw = postcard::to_allocvec(&b).unwrap();
        assert_eq!(HostBody::decode(&raw), Err(RecordError::Version(2)));
    }

    #[test]
    fn the_fuzz_targets_seeds_are_what_they_seed() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/corpus/fleet_messages"
        );
        let read = |n: &str| std::fs::read(format!("{dir}/{n}")).unwrap();
        HostBody::decode(&read("body")).unwrap();
        HostRecord::decode(&read("record")).unwrap();
        crate::trust::TrustBundle::decode(&read("bundle")).unwrap();
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x9e37_79b9_u32;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = HostRecord::decode(&bytes);
            let _ = HostBody::decode(&bytes);
        }
    }
}
