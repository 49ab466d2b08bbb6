//! Placements: which host serves which partition, in etcd under
//! `/ihsm/fleet/v1/placements/NAME`, each signed by the host that made it.
//!
//! A placement is a body (the partition, the host that serves it, the host it
//! came from, the epoch it replaces, the bundle's digest, who signed it) and the
//! signer's evidence, whose quotes carry [`PlacementRecord::nonce`]: SHA-256 of a
//! domain label and the body's bytes, as for host records. The epoch of a
//! placement is the etcd revision at which it was written (the key's
//! `mod_revision`); a move replaces exactly the placement of its epoch, in one
//! transaction that compares it (docs/fleet.md, "Placements").
//!
//! Without replicas only the serving host hands a partition on: a claim (no
//! `from`) is signed by the host it names, a move by the host it came `from`. A
//! placement is obeyed only when its evidence is affirmed against the fleet
//! policy and the signer's UEID is the one the body names (and, when the signer
//! is in the fleet now, the one its host record shows). Anything else (written
//! by whoever can write etcd) is shown with its reason and obeyed by no one.

use serde::{Deserialize, Serialize};

use crate::policy::{FleetPolicy, HostView};
use crate::record::{Evidence, HostRecord, RecordError, valid_host_name};
use crate::registry::PREFIX;

/// The body's format version.
pub const VERSION: u16 = 1;
/// The domain label hashed before the body into the quotes' nonce.
pub const NONCE_DOMAIN: &[u8] = b"ihsm fleet placement v1\0";
/// The most bytes a placement body may take.
pub const MAX_BODY: usize = 1024;

/// The key of partition `name`'s placement.
#[must_use]
pub fn placement_key(name: &str) -> String {
    format!("{PREFIX}placements/{name}")
}

/// Where a partition is served: what the signer's quotes sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementBody {
    /// [`VERSION`].
    pub version: u16,
    /// The partition's name.
    pub partition: String,
    /// The host that serves it.
    pub host: String,
    /// The host it moved from; `None` for a claim by the host that holds it.
    pub from: Option<String>,
    /// The epoch (etcd revision) of the placement this one replaced; 0 for the
    /// first.
    pub previous: u64,
    /// SHA-256 of the sealed bundle that moved (zeros for a claim).
    pub bundle_sha256: [u8; 32],
    /// The signer's UEID (the `from` host's, or the `host`'s for a claim).
    pub signer_ueid: [u8; 17],
    /// When it was made (Unix seconds).
    pub issued_at: u64,
}

impl PlacementBody {
    /// The host that must have signed it.
    #[must_use]
    pub fn signer(&self) -> &str {
        self.from.as_deref().unwrap_or(&self.host)
    }

    /// Encodes the body.
    ///
    /// # Errors
    /// [`RecordError::OutOfBounds`] for a field a reader would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        postcard::to_allocvec(self).map_err(|_| RecordError::Malformed("unencodable placement"))
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
            postcard::take_from_bytes(bytes).map_err(|_| RecordError::Malformed("placement"))?;
        if !rest.is_empty() {
            return Err(RecordError::Malformed("bytes after the placement"));
        }
        body.check()?;
        Ok(body)
    }

    fn check(&self) -> Result<(), RecordError> {
        if self.version != VERSION {
            return Err(RecordError::Version(self.version));
        }
        if !valid_host_name(&self.host) || self.from.as_deref().is_some_and(|f| !valid_host_name(f))
        {
            return Err(RecordError::OutOfBounds("host name"));
        }
        if self.from.as_deref() == Some(self.host.as_str()) {
            return Err(RecordError::OutOfBounds("a move to the host it came from"));
        }
        if self.partition.is_empty()
            || self.partition.len() > 64
            || self.partition.chars().any(char::is_control)
        {
            return Err(RecordError::OutOfBounds("partition name"));
        }
        Ok(())
    }
}

/// A placement as etcd holds it: the body's bytes and the signer's evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRecord {
    /// The postcard encoding of a [`PlacementBody`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The signer's evidence, its quotes over [`PlacementRecord::nonce`].
    pub evidence: Evidence,
}

impl PlacementRecord {
    /// The nonce the quotes must carry.
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
    /// [`RecordError::TooLong`].
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        HostRecord {
            body: self.body.clone(),
            evidence: self.evidence.clone(),
        }
        .encode_unchecked()
    }

    /// Decodes a record and its body.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<(Self, PlacementBody), RecordError> {
        let r = HostRecord::decode_unchecked(bytes)?;
        let body = PlacementBody::decode(&r.body)?;
        Ok((
            Self {
                body: r.body,
                evidence: r.evidence,
            },
            body,
        ))
    }
}

/// A placement read from etcd, with its epoch and its verdict.
#[derive(Debug, Clone)]
pub struct PlacementView {
    /// The partition (the key's last segment).
    pub partition: String,
    /// The key's `mod_revision`: the placement's epoch.
    pub epoch: u64,
    /// The body, when it decodes.
    pub body: Option<PlacementBody>,
    /// Whether it is obeyed, or why not.
    pub verdict: Result<(), String>,
}

impl PlacementView {
    /// The body, when the placement is obeyed.
    #[must_use]
    pub fn valid(&self) -> Option<&PlacementBody> {
        self.verdict.as_ref().ok().and(self.body.as_ref())
    }
}

impl FleetPolicy {
    /// Appraises the placement stored under partition `key_name`'s key at
    /// `epoch`, against this policy and the hosts in the fleet now.
    #[must_use]
    pub fn appraise_placement(
        &self,
        key_name: &str,
        epoch: u64,
        bytes: &[u8],
        hosts: &[HostView],
        now: i64,
    ) -> PlacementView {
        let mut view = PlacementView {
            partition: key_name.to_owned(),
            epoch,
            body: None,
            verdict: Ok(()),
        };
        view.verdict = (|| {
            let (record, body) = PlacementRecord::decode(bytes).map_err(|e| e.to_string())?;
            view.body = Some(body.clone());
            if body.partition != key_name {
                return Err(format!(
                    "the placement under {key_name} names partition {}",
                    body.partition
                ));
            }
            if body.previous >= epoch {
                return Err(format!(
                    "it replaces epoch {}, not older than its own {epoch}",
                    body.previous
                ));
            }
            let signed = HostRecord {
                body: record.body.clone(),
                evidence: record.evidence.clone(),
            };
            let a = self.appraise_evidence(&signed, PlacementRecord::nonce(&record.body), now);
            if !a.affirms() {
                return Err(format!(
                    "its signature is not a genuine fleet device's: {}",
                    a.verdicts
                        .iter()
                        .filter_map(|(c, v)| v.as_ref().err().map(|e| format!("{}: {e}", c.name())))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            if a.ueid != Some(body.signer_ueid) {
                return Err("it was signed by another device than the one it names".into());
            }
            if let Some(h) = hosts
                .iter()
                .find(|h| h.host == body.signer() && h.verdict.is_ok())
                && h.ueid != Some(body.signer_ueid)
            {
                return Err(format!(
                    "host {} is another device than the one that signed it",
                    body.signer()
                ));
            }
            Ok(())
        })();
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> PlacementBody {
        PlacementBody {
            version: VERSION,
            partition: "p".into(),
            host: "b".into(),
            from: Some("a".into()),
            previous: 7,
            bundle_sha256: [1; 32],
            signer_ueid: [2; 17],
            issued_at: 3,
        }
    }

    #[test]
    fn bodies_round_trip_and_bad_ones_are_refused() {
        let b = body();
        let bytes = b.encode().unwrap();
        assert_eq!(PlacementBody::decode(&bytes).unwrap(), b);
        for n in 0..bytes.len() {
            assert!(PlacementBody::decode(&bytes[..n]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(PlacementBody::decode(&long).is_err());
        for bad in [
            PlacementBody {
                host: "A B".into(),
                ..body()
            },
            PlacementBody {
                from: Some("b".into()),
                ..body()
            },
            PlacementBody {
                partition: String::new(),
                ..body()
            },
            PlacementBody {
                version: 2,
                ..body()
            },
        ] {
            assert!(bad.encode().is_err());
            let raw = postcard::to_allocvec(&bad).unwrap();
            assert!(PlacementBody::decode(&raw).is_err());
        }
        assert!(PlacementBody::decode(&vec![0xff; MAX_BODY + 1]).is_err());
    }

    #[test]
    fn a_placement_without_genuine_evidence_is_not_obeyed() {
        let policy = FleetPolicy {
            anchors: Vec::new(),
            refvals: Vec::new(),
            accept_development: true,
            max_age: 60,
            min_svn: None,
            cache: None,
        };
        let rec = PlacementRecord {
            body: body().encode().unwrap(),
            evidence: Evidence {
                ecc_chain: Default::default(),
                mldsa_chain: Default::default(),
                quote_ecc: vec![1],
                quote_mldsa: vec![2],
                pcr_log: vec![],
            },
        };
        let bytes = rec.encode().unwrap();
        let v = policy.appraise_placement("p", 9, &bytes, &[], 0);
        assert!(v.valid().is_none());
        let v = policy.appraise_placement("q", 9, &bytes, &[], 0);
        assert!(v.verdict.unwrap_err().contains("names partition"));
        let v = policy.appraise_placement("p", 7, &bytes, &[], 0);
        assert!(v.verdict.unwrap_err().contains("replaces epoch"));
        let v = policy.appraise_placement("p", 9, b"garbage", &[], 0);
        assert!(v.body.is_none() && v.verdict.is_err());
    }
}
