//! Which peers a host accepts, and the appraisal of a record against it.
//!
//! A record is accepted only when `ihsm-verify` affirms its evidence against the
//! fleet's anchors, the vendor's signed reference values and this policy, with the
//! record's own digest as the nonce; when the record names the etcd key and lease
//! it was read under; and when it is fresh. Anything else is a refusal with its
//! reason, and the host is shown but trusted for nothing.

use ihsm_verify::appraise::{self, Appraisal, DeviceEvidence, Policy, TrustInputs};
use ihsm_verify::chain::TrustAnchor;
use ihsm_verify::keyreport::KeyPolicy;

use crate::record::{HostBody, HostRecord, RecordError};

/// What a host trusts of its peers: security configuration (`security.toml`
/// `[fleet]`, measured).
#[derive(Debug, Clone)]
pub struct FleetPolicy {
    /// The anchors a peer's chains may end in: (ECC P-384, ML-DSA-87) pairs of
    /// manufacturer roots or pinned IDevIDs.
    pub anchors: Vec<(TrustAnchor, TrustAnchor)>,
    /// The signed reference values a genuine peer matches (any one of them),
    /// each with the vendor keys that sign it.
    pub refvals: Vec<SignedRefvals>,
    /// Whether development devices may join (a development fleet).
    pub accept_development: bool,
    /// The oldest evidence accepted, in seconds.
    pub max_age: u64,
    /// A minimum firmware SVN beyond the reference values' (a source requires
    /// its destination's to be at least its own).
    pub min_svn: Option<u32>,
    /// Appraisals already made, shared by the policies a host builds in turn
    /// (none: every appraisal is made afresh).
    pub cache: Option<std::sync::Arc<AppraisalCache>>,
}

/// How long an appraisal is reused, in seconds.
pub const CACHE_SECS: i64 = 30;
/// Most appraisals kept.
const CACHE_MAX: usize = 1024;

/// Evidence appraisals already made, each reused for [`CACHE_SECS`]: a fleet
/// view, a move and the masking domain's look each appraise every host's
/// record (chains, quotes and reference values in ECC P-384 and ML-DSA-87,
/// tens of milliseconds each), and a record changes only when its host
/// refreshes it. An entry is keyed by the digest of everything the appraisal
/// read: the policy's anchors, reference values and settings, the nonce and the
/// evidence; a change to any of them is appraised afresh. What is reused is only
/// the verifier's verdict: a record's own freshness, key, lease and transfer key
/// are checked every time.
#[derive(Debug, Default)]
pub struct AppraisalCache {
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], (i64, Appraisal)>>,
}

impl AppraisalCache {
    fn get(&self, key: &[u8; 32], now: i64) -> Option<Appraisal> {
        let entries = self.entries.lock().ok()?;
        let (at, a) = entries.get(key)?;
        (now >= *at && now - *at < CACHE_SECS).then(|| a.clone())
    }

    fn put(&self, key: [u8; 32], now: i64, a: &Appraisal) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, (at, _)| now >= *at && now - *at < CACHE_SECS);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(key, (now, a.clone()));
    }

    /// How many appraisals it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Signed reference values and the vendor keys that verify them.
#[derive(Debug, Clone)]
pub struct SignedRefvals {
    /// The envelope (`ihsm manifest refvals`).
    pub envelope: Vec<u8>,
    /// The vendor's ECC P-384 public key (SEC1 point).
    pub vendor_ecc: Vec<u8>,
    /// The vendor's ML-DSA-87 public key.
    pub vendor_mldsa: Vec<u8>,
}

/// Why a record was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRefusal {
    /// It could not be read.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Its body names another host than the key it was found under.
    #[error("the record under {key} names host {named}")]
    WrongKey {
        /// The key's host.
        key: String,
        /// The body's host.
        named: String,
    },
    /// Its body names another lease than the one etcd holds it under.
    #[error("the record names lease {named:x}, etcd holds it under lease {held:x}")]
    WrongLease {
        /// The body's lease.
        named: i64,
        /// etcd's.
        held: i64,
    },
    /// Older than the policy's maximum age.
    #[error("the evidence is {age} s old (at most {max} s accepted)")]
    Stale {
        /// Its age.
        age: u64,
        /// The policy's maximum.
        max: u64,
    },
    /// Made in the future (more than the allowed clock skew).
    #[error("the record was made {0} s in the future")]
    FromTheFuture(u64),
    /// The evidence did not affirm: the checks that refused, by name, with their
    /// reasons.
    #[error("the evidence was refused: {}", .0.iter().map(|(c, r)| format!("{c}: {r}")).collect::<Vec<_>>().join("; "))]
    Evidence(Vec<(&'static str, String)>),
    /// The policy names no anchor or no reference values: no peer can be
    /// accepted.
    #[error("the fleet policy has no anchor or no reference values (security.toml [fleet])")]
    NoAnchors,
    /// The transfer key's certificate is not the RT Alias's, or not of its
    /// profile.
    #[error("the transfer key certificate: {0}")]
    TransferKey(String),
    /// The SVN is below the required minimum.
    #[error("firmware SVN {svn} is below the required {min}")]
    Svn {
        /// The peer's.
        svn: u32,
        /// The minimum.
        min: u32,
    },
}

/// How far in the future a record's time may be (clock skew between hosts).
pub const MAX_SKEW: u64 = 30;

/// A host as a reader sees it: what the record says, and whether it was accepted.
#[derive(Debug, Clone)]
pub struct HostView {
    /// The host's name (the etcd key's).
    pub host: String,
    /// The body, when it could be read (shown even when refused, marked so).
    pub body: Option<HostBody>,
    /// The verdict.
    pub verdict: Result<(), HostRefusal>,
    /// The device's UEID, when its chain verified.
    pub ueid: Option<[u8; 17]>,
    /// The firmware SVN, when its chain verified.
    pub svn: Option<u32>,
    /// Each check the verifier ran and whether it affirmed.
    pub checks: Vec<(&'static str, bool)>,
    /// The transfer key (SEC1 point), when the host was accepted.
    pub transfer_key: Option<Vec<u8>>,
}

impl FleetPolicy {
    /// Appraises the record `bytes` found under the key of host `key_host`,
    /// attached to etcd lease `lease`, at Unix time `now`.
    #[must_use]
    pub fn appraise(&self, key_host: &str, lease: i64, bytes: &[u8], now: i64) -> HostView {
        let mut view = HostView {
            host: key_host.to_owned(),
            body: None,
            verdict: Ok(()),
            ueid: None,
            svn: None,
            checks: Vec::new(),
            transfer_key: None,
        };
        view.verdict = self.check(key_host, lease, bytes, now, &mut view);
        view
    }

    fn check(
        &self,
        key_host: &str,
        lease: i64,
        bytes: &[u8],
        now: i64,
        view: &mut HostView,
    ) -> Result<(), HostRefusal> {
        if self.anchors.is_empty() || self.refvals.is_empty() {
            return Err(HostRefusal::NoAnchors);
        }
        let (record, body) = HostRecord::decode(bytes)?;
        view.body = Some(body.clone());
        if body.host != key_host {
            return Err(HostRefusal::WrongKey {
                key: key_host.to_owned(),
                named: body.host,
            });
        }
        if body.lease != lease {
            return Err(HostRefusal::WrongLease {
                named: body.lease,
                held: lease,
            });
        }
        let now_u = u64::try_from(now).unwrap_or(0);
        if body.issued_at > now_u.saturating_add(MAX_SKEW) {
            return Err(HostRefusal::FromTheFuture(body.issued_at - now_u));
        }
        let age = now_u.saturating_sub(body.issued_at);
        if age > self.max_age {
            return Err(HostRefusal::Stale {
                age,
                max: self.max_age,
            });
        }
        let a = self.appraise_evidence(&record, HostRecord::nonce(&record.body), now);
        view.ueid = a.ueid;
        view.svn = a.svn;
        view.checks = a
            .verdicts
            .iter()
            .map(|(c, v)| (c.name(), v.is_ok()))
            .collect();
        if !a.affirms() {
            return Err(HostRefusal::Evidence(
                a.verdicts
                    .iter()
                    .filter_map(|(c, v)| v.as_ref().err().map(|e| (c.name(), e.to_string())))
                    .collect(),
            ));
        }
        if let (Some(min), Some(svn)) = (self.min_svn, a.svn)
            && svn < min
        {
            return Err(HostRefusal::Svn { svn, min });
        }
        let (ecc, _) = a
            .chains()
            .ok_or_else(|| HostRefusal::TransferKey("no verified chain".into()))?;
        let key = ihsm_verify::chain::verify_transfer_cert(ecc, &body.transfer_cert, now)
            .map_err(|e| HostRefusal::TransferKey(e.to_string()))?;
        view.transfer_key = Some(key);
        Ok(())
    }

    /// Appraises evidence whose quotes must carry `nonce` against each anchor and
    /// each set of reference values in turn: the first that affirms, or the one
    /// that got furthest.
    #[must_use]
    pub fn appraise_evidence(&self, record: &HostRecord, nonce: [u8; 32], now: i64) -> Appraisal {
        let Some(cache) = &self.cache else {
            return self.appraise_afresh(record, nonce, now);
        };
        let key = self.cache_key(record, &nonce);
        if let Some(a) = key.and_then(|k| cache.get(&k, now)) {
            return a;
        }
        let a = self.appraise_afresh(record, nonce, now);
        if let Some(k) = key {
            cache.put(k, now, &a);
        }
        a
    }

    /// The digest of what an appraisal of `record`'s evidence over `nonce`
    /// reads (`None`, and no reuse, if the evidence does not encode).
    fn cache_key(&self, record: &HostRecord, nonce: &[u8; 32]) -> Option<[u8; 32]> {
        let evidence = postcard::to_allocvec(&record.evidence).ok()?;
        let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut part = |b: &[u8]| {
            c.update(&(b.len() as u64).to_be_bytes());
            c.update(b);
        };
        part(b"ihsm fleet appraisal v1");
        for (e, m) in &self.anchors {
            part(e.der());
            part(m.der());
        }
        for r in &self.refvals {
            part(&r.envelope);
            part(&r.vendor_ecc);
            part(&r.vendor_mldsa);
        }
        part(&[u8::from(self.accept_development)]);
        part(&self.max_age.to_be_bytes());
        part(&self.min_svn.map_or([0xff; 5], |v| {
            let mut b = [0u8; 5];
            b[1..].copy_from_slice(&v.to_be_bytes());
            b
        }));
        part(nonce);
        part(&evidence);
        let mut out = [0u8; 32];
        out.copy_from_slice(c.finish().as_ref());
        Some(out)
    }

    fn appraise_afresh(&self, record: &HostRecord, nonce: [u8; 32], now: i64) -> Appraisal {
        let ev = &record.evidence;
        let mut evidence = DeviceEvidence {
            ecc_chain: ev.ecc_chain.clone().map(serde_bytes::ByteBuf::into_vec),
            mldsa_chain: ev.mldsa_chain.clone().map(serde_bytes::ByteBuf::into_vec),
            quote_ecc: ev.quote_ecc.clone(),
            quote_mldsa: ev.quote_mldsa.clone(),
            pcr_log: ev.pcr_log.clone(),
            refvals: Vec::new(),
        };
        let policy = Policy {
            now,
            accept_development: self.accept_development,
            key_policy: KeyPolicy::sign_only_generated(),
        };
        // A pinned IDevID is tried first: it is the only anchor that can affirm.
        let pinned = |a: &(TrustAnchor, TrustAnchor)| a.0.der() == ev.ecc_chain[0].as_slice();
        let anchors = self
            .anchors
            .iter()
            .filter(|a| pinned(a))
            .chain(self.anchors.iter().filter(|a| !pinned(a)));
        let mut best: Option<Appraisal> = None;
        let score = |a: &Appraisal| a.verdicts.iter().filter(|(_, v)| v.is_ok()).count();
        for (ecc, mldsa) in anchors {
            for r in &self.refvals {
                let trust = TrustInputs {
                    anchor_ecc: ecc.clone(),
                    anchor_mldsa: mldsa.clone(),
                    vendor_ecc: r.vendor_ecc.clone(),
                    vendor_mldsa: r.vendor_mldsa.clone(),
                    nonce,
                };
                evidence.refvals.clone_from(&r.envelope);
                let a = appraise::appraise_device(&trust, &evidence, &policy);
                if a.affirms() {
                    return a;
                }
                if best.as_ref().is_none_or(|b| score(&a) > score(b)) {
                    best = Some(a);
                }
            }
        }
        best.unwrap_or_default()
    }
}
