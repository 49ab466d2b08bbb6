//! Audit exports (docs/audit.md): the stored entries of a partition's log, decoded
//! strictly from their documented encoding, rendered as JSON lines for a SIEM,
//! and verified from the export alone: every line's fields are its entry's, the
//! entries chain by SHA-384, sequence numbers run without gaps, and each
//! checkpoint's ECDSA P-384 signature verifies with the partition's identity key.
//! The first line that was edited, dropped or reordered is named.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// Longest export [`verify_export`] reads (bytes).
pub const MAX_EXPORT_LEN: usize = 256 * 1024 * 1024;
/// Longest stored entry accepted.
pub const MAX_ENTRY_LEN: usize = 64 * 1024;
/// The prefix of the message a checkpoint signs.
pub const CHECKPOINT_CONTEXT: &[u8] = b"ihsm-audit-checkpoint-v1";

/// Who a PIN event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The Security Officer.
    SecurityOfficer,
    /// The user.
    User,
}

/// A principal admitted to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A uid.
    Uid(u32),
    /// A gid.
    Gid(u32),
}

/// How an object came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// C_CreateObject.
    Created,
    /// Generated in the HSM.
    Generated,
    /// Unwrapped.
    Unwrapped,
    /// Derived.
    Derived,
    /// Decapsulated.
    Decapsulated,
    /// Copied.
    Copied,
    /// Imported from a masked blob.
    Unmasked,
}

/// An event, as docs/audit.md lists them (variant indices in order).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Event {
    PartitionCreated {
        pid: u32,
    },
    PartitionDeleted {
        pid: u32,
    },
    TokenInitialized,
    PinSet(Who),
    Login(Who),
    LoginFailed {
        who: Who,
        remaining: u32,
    },
    PinLocked(Who),
    ObjectCreated {
        handle: u64,
        class: u64,
        key_type: Option<u64>,
        origin: Origin,
    },
    ObjectDestroyed {
        handle: u64,
    },
    AttributesChanged {
        handle: u64,
    },
    KeyWrapped {
        handle: u64,
        wrapping_key: u64,
    },
    KeyMasked {
        handle: u64,
    },
    Tamper {
        source: String,
    },
    SelfTest {
        passed: bool,
        detail: String,
    },
    Checkpoint {
        signature: Vec<u8>,
    },
    PrincipalAllowed(Principal),
    PrincipalRevoked(Principal),
    KeyReported {
        handle: u64,
        report_data: [u8; 48],
    },
    QuoteServed {
        command: u32,
        nonce: Vec<u8>,
    },
    KeyReleased {
        handle: u64,
        authority: String,
        granted: bool,
    },
    ReleasePolicyReplaced {
        handle: u64,
        policy_sha384: [u8; 48],
    },
    MoveStarted {
        to: String,
        epoch: u64,
    },
    MoveAborted {
        to: String,
    },
    MovedIn {
        from: String,
        epoch: u64,
    },
    PartitionMovedOut {
        pid: u32,
        to: String,
        epoch: u64,
    },
    PartitionMovedIn {
        pid: u32,
        from: String,
        epoch: u64,
    },
    FleetDomain {
        epoch: u32,
        issuer: String,
    },
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Unix seconds.
    pub time: u64,
    /// SHA-384 of the previous entry's encoding.
    pub prev: [u8; 48],
    /// What happened.
    pub event: Event,
}

/// Why an entry does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed audit entry: {0}")]
pub struct Malformed(pub &'static str);

/// A strict reader of the entry encoding (postcard: LEB128 varints, shortest form).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self, what: &'static str, max_bytes: usize) -> Result<u64, Malformed> {
        let mut v: u64 = 0;
        for i in 0..max_bytes {
            let (&b, rest) = self.0.split_first().ok_or(Malformed(what))?;
            self.0 = rest;
            let bits = u64::from(b & 0x7f);
            let shift = 7 * i as u32;
            if shift >= 64 || (shift == 63 && bits > 1) {
                return Err(Malformed(what));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                // Shortest form: no final zero byte after the first.
                if i > 0 && b == 0 {
                    return Err(Malformed(what));
                }
                return Ok(v);
            }
        }
        Err(Malformed(what))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Malformed> {
        self.varint(what, 10)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        u32::try_from(self.varint(what, 5)?).map_err(|_| Malformed(what))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let n = usize::try_from(self.u64(what)?).map_err(|_| Malformed(what))?;
        if n > self.0.len() {
            return Err(Malformed(what));
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }

    fn text(&mut self, what: &'static str) -> Result<String, Malformed> {
        String::from_utf8(self.bytes(what)?.to_vec()).map_err(|_| Malformed(what))
    }

    fn b48(&mut self, what: &'static str) -> Result<[u8; 48], Malformed> {
        self.bytes(what)?.try_into().map_err(|_| Malformed(what))
    }

    fn who(&mut self) -> Result<Who, Malformed> {
        match self.u32("who")? {
            0 => Ok(Who::SecurityOfficer),
            1 => Ok(Who::User),
            _ => Err(Malformed("who")),
        }
    }

    fn principal(&mut self) -> Result<Principal, Malformed> {
        match self.u32("principal")? {
            0 => Ok(Principal::Uid(self.u32("uid")?)),
            1 => Ok(Principal::Gid(self.u32("gid")?)),
            _ => Err(Malformed("principal")),
        }
    }

    fn boolean(&mut self, what: &'static str) -> Result<bool, Malformed> {
        let (&b, rest) = self.0.split_first().ok_or(Malformed(what))?;
        self.0 = rest;
        match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed(what)),
        }
    }
}

impl Entry {
    /// Decodes a stored entry (docs/audit.md): nothing may follow it.
    ///
    /// # Errors
    /// [`Malformed`] naming the field.
    pub fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(Malformed("entry too long"));
        }
        let mut r = Reader(bytes);
        let seq = r.u64("seq")?;
        let time = r.u64("time")?;
        let prev = r.b48("prev")?;
        let event = match r.u32("event")? {
            0 => Event::PartitionCreated { pid: r.u32("pid")? },
            1 => Event::PartitionDeleted { pid: r.u32("pid")? },
            2 => Event::TokenInitialized,
            3 => Event::PinSet(r.who()?),
            4 => Event::Login(r.who()?),
            5 => Event::LoginFailed {
                who: r.who()?,
                remaining: r.u32("remaining")?,
            },
            6 => Event::PinLocked(r.who()?),
            7 => Event::ObjectCreated {
                handle: r.u64("handle")?,
                class: r.u64("class")?,
                key_type: match r.u32("key_type")? {
                    0 => None,
                    1 => Some(r.u64("key_type")?),
                    _ => return Err(Malformed("key_type")),
                },
                origin: match r.u32("origin")? {
                    0 => Origin::Created,
                    1 => Origin::Generated,
                    2 => Origin::Unwrapped,
                    3 => Origin::Derived,
                    4 => Origin::Decapsulated,
                    5 => Origin::Copied,
                    6 => Origin::Unmasked,
                    _ => return Err(Malformed("origin")),
                },
            },
            8 => Event::ObjectDestroyed {
                handle: r.u64("handle")?,
            },
            9 => Event::AttributesChanged {
                handle: r.u64("handle")?,
            },
            10 => Event::KeyWrapped {
                handle: r.u64("handle")?,
                wrapping_key: r.u64("wrapping_key")?,
            },
            11 => Event::KeyMasked {
                handle: r.u64("handle")?,
            },
            12 => Event::Tamper {
                source: r.text("source")?,
            },
            13 => Event::SelfTest {
                passed: r.boolean("passed")?,
                detail: r.text("detail")?,
            },
            14 => Event::Checkpoint {
                signature: r.bytes("signature")?.to_vec(),
            },
            15 => Event::PrincipalAllowed(r.principal()?),
            16 => Event::PrincipalRevoked(r.principal()?),
            17 => Event::KeyReported {
                handle: r.u64("handle")?,
                report_data: r.b48("report_data")?,
            },
            18 => Event::QuoteServed {
                command: r.u32("command")?,
                nonce: r.bytes("nonce")?.to_vec(),
            },
            19 => Event::KeyReleased {
                handle: r.u64("handle")?,
                authority: r.text("authority")?,
                granted: r.boolean("granted")?,
            },
            20 => Event::ReleasePolicyReplaced {
                handle: r.u64("handle")?,
                policy_sha384: r.b48("policy_sha384")?,
            },
            21 => Event::MoveStarted {
                to: r.text("to")?,
                epoch: r.u64("epoch")?,
            },
            22 => Event::MoveAborted { to: r.text("to")? },
            23 => Event::MovedIn {
                from: r.text("from")?,
                epoch: r.u64("epoch")?,
            },
            24 => Event::PartitionMovedOut {
                pid: r.u32("pid")?,
                to: r.text("to")?,
                epoch: r.u64("epoch")?,
            },
            25 => Event::PartitionMovedIn {
                pid: r.u32("pid")?,
                from: r.text("from")?,
                epoch: r.u64("epoch")?,
            },
            26 => Event::FleetDomain {
                epoch: r.u32("epoch")?,
                issuer: r.text("issuer")?,
            },
            _ => return Err(Malformed("event")),
        };
        if !r.0.is_empty() {
            return Err(Malformed("bytes after the entry"));
        }
        Ok(Self {
            seq,
            time,
            prev,
            event,
        })
    }
}

fn who(w: Who) -> &'static str {
    match w {
        Who::SecurityOfficer => "so",
        Who::User => "user",
    }
}

fn principal(p: Principal) -> Value {
    match p {
        Principal::Uid(u) => json!({"uid": u}),
        Principal::Gid(g) => json!({"gid": g}),
    }
}

impl Event {
    /// The event as JSON: `{"type": snake_case name, fields...}` (docs/audit.md).
    #[must_use]
    pub fn to_json(&self) -> Value {
        match self {
            Self::PartitionCreated { pid } => json!({"type": "partition_created", "pid": pid}),
            Self::PartitionDeleted { pid } => json!({"type": "partition_deleted", "pid": pid}),
            Self::TokenInitialized => json!({"type": "token_initialized"}),
            Self::PinSet(w) => json!({"type": "pin_set", "who": who(*w)}),
            Self::Login(w) => json!({"type": "login", "who": who(*w)}),
            Self::LoginFailed { who: w, remaining } => {
                json!({"type": "login_failed", "who": who(*w), "remaining": remaining})
            }
            Self::PinLocked(w) => json!({"type": "pin_locked", "who": who(*w)}),
            Self::ObjectCreated {
                handle,
                class,
                key_type,
                origin,
            } => json!({
                "type": "object_created", "handle": handle, "class": class,
                "key_type": key_type, "origin": format!("{origin:?}").to_lowercase(),
            }),
            Self::ObjectDestroyed { handle } => {
                json!({"type": "object_destroyed", "handle": handle})
            }
            Self::AttributesChanged { handle } => {
                json!({"type": "attributes_changed", "handle": handle})
            }
            Self::KeyWrapped {
                handle,
                wrapping_key,
            } => json!({"type": "key_wrapped", "handle": handle, "wrapping_key": wrapping_key}),
            Self::KeyMasked { handle } => json!({"type": "key_masked", "handle": handle}),
            Self::Tamper { source } => json!({"type": "tamper", "source": source}),
            Self::SelfTest { passed, detail } => {
                json!({"type": "self_test", "passed": passed, "detail": detail})
            }
            Self::Checkpoint { signature } => {
                json!({"type": "checkpoint", "signature": hex::encode(signature)})
            }
            Self::PrincipalAllowed(p) => {
                json!({"type": "principal_allowed", "principal": principal(*p)})
            }
            Self::PrincipalRevoked(p) => {
                json!({"type": "principal_revoked", "principal": principal(*p)})
            }
            Self::KeyReported {
                handle,
                report_data,
            } => json!({
                "type": "key_reported", "handle": handle,
                "report_data_sha384": hex::encode(report_data),
            }),
            Self::QuoteServed { command, nonce } => json!({
                "type": "quote_served",
                "command": String::from_utf8_lossy(&command.to_be_bytes()),
                "nonce": hex::encode(nonce),
            }),
            Self::KeyReleased {
                handle,
                authority,
                granted,
            } => json!({
                "type": "key_released", "handle": handle, "authority": authority,
                "granted": granted,
            }),
            Self::ReleasePolicyReplaced {
                handle,
                policy_sha384,
            } => json!({
                "type": "release_policy_replaced", "handle": handle,
                "policy_sha384": hex::encode(policy_sha384),
            }),
            Self::MoveStarted { to, epoch } => {
                json!({"type": "move_started", "to": to, "epoch": epoch})
            }
            Self::MoveAborted { to } => json!({"type": "move_aborted", "to": to}),
            Self::MovedIn { from, epoch } => {
                json!({"type": "moved_in", "from": from, "epoch": epoch})
            }
            Self::PartitionMovedOut { pid, to, epoch } => {
                json!({"type": "partition_moved_out", "pid": pid, "to": to, "epoch": epoch})
            }
            Self::PartitionMovedIn { pid, from, epoch } => {
                json!({"type": "partition_moved_in", "pid": pid, "from": from, "epoch": epoch})
            }
            Self::FleetDomain { epoch, issuer } => {
                json!({"type": "fleet_domain", "epoch": epoch, "issuer": issuer})
            }
        }
    }
}

/// One line of an export: the entry's fields, its hash, and the entry itself.
///
/// # Errors
/// [`Malformed`] if `bytes` is not an entry.
pub fn export_line(pid: u32, bytes: &[u8]) -> Result<Value, Malformed> {
    let e = Entry::decode(bytes)?;
    Ok(json!({
        "pid": pid,
        "seq": e.seq,
        "time": e.time,
        "prev": hex::encode(e.prev),
        "hash": hex::encode(crate::sig::sha384(&[bytes])),
        "event": e.event.to_json(),
        "entry": B64.encode(bytes),
    }))
}

/// The message a checkpoint signs: `"ihsm-audit-checkpoint-v1" || pid (4, BE) ||
/// seq (8, BE) || prev (48)`, its own sequence number and predecessor hash.
#[must_use]
pub fn checkpoint_message(pid: u32, seq: u64, prev: &[u8; 48]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_CONTEXT.len() + 60);
    m.extend_from_slice(CHECKPOINT_CONTEXT);
    m.extend_from_slice(&pid.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev);
    m
}

/// The partition an export is checked against: its id and ECC identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKey {
    /// The partition id (the certificate's `OU=partition PID`).
    pub pid: u32,
    /// Its name (`CN=ihsm partition NAME`).
    pub name: String,
    /// The SEC1 point of its ECC P-384 identity key.
    pub point: Vec<u8>,
}

/// Why a certificate is not a partition identity certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an ihsm partition ECC P-384 identity certificate: {0}")]
pub struct NotAPartitionCertificate(pub &'static str);

impl PartitionKey {
    /// From a partition's ECC identity certificate (DER). The certificate's own
    /// chain is not checked here (`chain::verify_partition_cert` does that with
    /// the device's evidence): the auditor trusts it as given.
    ///
    /// # Errors
    /// [`NotAPartitionCertificate`].
    pub fn from_certificate(der: &[u8]) -> Result<Self, NotAPartitionCertificate> {
        let (rest, c) = X509Certificate::from_der(der)
            .map_err(|_| NotAPartitionCertificate("not DER X.509"))?;
        if !rest.is_empty() {
            return Err(NotAPartitionCertificate("bytes after the certificate"));
        }
        let point = c.public_key().subject_public_key.data.to_vec();
        if point.len() != 97 || point.first() != Some(&4) {
            return Err(NotAPartitionCertificate(
                "its key is not an ECC P-384 point",
            ));
        }
        let attr = |oid: &x509_parser::der_parser::oid::Oid<'_>| -> Option<String> {
            c.subject()
                .iter_attributes()
                .find(|a| a.attr_type() == oid)
                .and_then(|a| a.as_str().ok())
                .map(str::to_owned)
        };
        let name = attr(&x509_parser::oid_registry::OID_X509_COMMON_NAME)
            .and_then(|cn| cn.strip_prefix("ihsm partition ").map(str::to_owned))
            .ok_or(NotAPartitionCertificate("no CN=ihsm partition NAME"))?;
        let pid = attr(&x509_parser::oid_registry::OID_X509_ORGANIZATIONAL_UNIT)
            .and_then(|ou| ou.strip_prefix("partition ").and_then(|p| p.parse().ok()))
            .ok_or(NotAPartitionCertificate("no OU=partition PID"))?;
        Ok(Self { pid, name, point })
    }
}

/// What an export proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportReport {
    /// Entries checked.
    pub entries: u64,
    /// First and last sequence numbers.
    pub first: u64,
    /// Last sequence number.
    pub last: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// The last sequence number a checkpoint vouches for.
    pub verified_through: u64,
    /// Entries after the last checkpoint: chained, but no signature covers them
    /// yet (an export may have been cut there without a trace).
    pub unsigned_tail: u64,
}

/// Why an export does not verify; each names the line (from 1) and entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditRefusal {
    /// The export is empty, too long or not text.
    #[error("the export is empty, longer than {MAX_EXPORT_LEN} bytes, or not UTF-8")]
    Unreadable,
    /// A line is not a JSON object with the export's fields, or its entry does not
    /// decode.
    #[error("line {line}: {what}")]
    Malformed {
        /// The line.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// The export belongs to another partition than the certificate's.
    #[error(
        "line {line}: the entry is partition {found}'s, the certificate partition {expected}'s"
    )]
    OtherPartition {
        /// The line.
        line: usize,
        /// The certificate's partition id.
        expected: u32,
        /// The line's.
        found: u32,
    },
    /// A line's fields differ from its entry's: the line was edited.
    #[error("line {line} (entry {seq}) was edited: its {field} is not its entry's")]
    Edited {
        /// The line.
        line: usize,
        /// The entry's sequence number.
        seq: u64,
        /// Which field.
        field: &'static str,
    },
    /// An entry is missing.
    #[error("line {line}: entry {expected} was dropped (the next entry is {found})")]
    Dropped {
        /// The line where it should be.
        line: usize,
        /// The missing entry.
        expected: u64,
        /// What is there.
        found: u64,
    },
    /// Entries are out of order.
    #[error("line {line}: entries reordered (entry {found} where {expected} belongs)")]
    Reordered {
        /// The line.
        line: usize,
        /// The entry that belongs there.
        expected: u64,
        /// The one that is.
        found: u64,
    },
    /// An entry does not chain to the one before it: one of them was edited.
    #[error("line {line}: entry {seq} does not chain to entry {} (one of them was edited)", seq.saturating_sub(1))]
    Broken {
        /// The line.
        line: usize,
        /// The entry.
        seq: u64,
    },
    /// A checkpoint's signature does not verify with the partition's key.
    #[error("line {line}: checkpoint {seq}'s signature does not verify with the partition's key")]
    BadCheckpoint {
        /// The line.
        line: usize,
        /// The checkpoint's sequence number.
        seq: u64,
    },
    /// No checkpoint vouches for any entry.
    #[error("no checkpoint in the export: nothing in it is signed")]
    NoCheckpoint,
}

fn field<'a>(v: &'a Value, line: usize, name: &str) -> Result<&'a Value, AuditRefusal> {
    v.get(name).ok_or_else(|| AuditRefusal::Malformed {
        line,
        what: format!("no \"{name}\""),
    })
}

/// Verifies an export (JSON lines, docs/audit.md) from the file alone against a
/// partition's identity key: the first line's `prev` is taken as given (an export
/// may start anywhere); everything after must chain, run without gaps, and agree
/// with its entry; every checkpoint must verify.
///
/// # Errors
/// The first [`AuditRefusal`].
pub fn verify_export(text: &[u8], key: &PartitionKey) -> Result<ExportReport, AuditRefusal> {
    if text.is_empty() || text.len() > MAX_EXPORT_LEN {
        return Err(AuditRefusal::Unreadable);
    }
    let text = core::str::from_utf8(text).map_err(|_| AuditRefusal::Unreadable)?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    // Every line's sequence number first, to tell a drop from a reorder.
    let mut parsed = Vec::with_capacity(lines.len());
    for (n, l) in &lines {
        let v: Value = serde_json::from_str(l).map_err(|e| AuditRefusal::Malformed {
            line: *n,
            what: format!("not JSON: {e}"),
        })?;
        let b64 = field(&v, *n, "entry")?
            .as_str()
            .ok_or_else(|| AuditRefusal::Malformed {
                line: *n,
                what: "\"entry\" is not a string".into(),
            })?;
        let bytes = B64.decode(b64).map_err(|_| AuditRefusal::Malformed {
            line: *n,
            what: "\"entry\" is not base64".into(),
        })?;
        let e = Entry::decode(&bytes).map_err(|m| AuditRefusal::Malformed {
            line: *n,
            what: m.to_string(),
        })?;
        parsed.push((*n, v, bytes, e));
    }
    let (first, last) = match (parsed.first(), parsed.last()) {
        (Some(f), Some(l)) => (f.3.seq, l.3.seq),
        _ => return Err(AuditRefusal::Unreadable),
    };
    let mut report = ExportReport {
        entries: 0,
        first,
        last,
        checkpoints: 0,
        verified_through: 0,
        unsigned_tail: 0,
    };
    let mut expected = first;
    let mut prev: Option<[u8; 48]> = None;
    for (i, (line, v, bytes, e)) in parsed.iter().enumerate() {
        let line = *line;
        let pid = field(v, line, "pid")?.as_u64().unwrap_or(u64::MAX);
        if pid != u64::from(key.pid) {
            return Err(AuditRefusal::OtherPartition {
                line,
                expected: key.pid,
                found: u32::try_from(pid).unwrap_or(u32::MAX),
            });
        }
        if e.seq != expected {
            let later = parsed.get(i + 1..).unwrap_or_default();
            return Err(if later.iter().any(|p| p.3.seq == expected) {
                AuditRefusal::Reordered {
                    line,
                    expected,
                    found: e.seq,
                }
            } else {
                AuditRefusal::Dropped {
                    line,
                    expected,
                    found: e.seq,
                }
            });
        }
        // The line's fields are its entry's (what a SIEM reads must be signed).
        let hash = crate::sig::sha384(&[bytes]);
        let edited = |field| AuditRefusal::Edited {
            line,
            seq: e.seq,
            field,
        };
        let checks: [(&'static str, Value); 5] = [
            ("seq", json!(e.seq)),
            ("time", json!(e.time)),
            ("prev", json!(hex::encode(e.prev))),
            ("hash", json!(hex::encode(hash))),
            ("event", e.event.to_json()),
        ];
        for (name, want) in checks {
            if field(v, line, name)? != &want {
                return Err(edited(name));
            }
        }
        if prev.is_some_and(|p| p != e.prev) {
            return Err(AuditRefusal::Broken { line, seq: e.seq });
        }
        if let Event::Checkpoint { signature } = &e.event {
            if !crate::sig::ecdsa_fixed(
                &key.point,
                &checkpoint_message(key.pid, e.seq, &e.prev),
                signature,
            ) {
                return Err(AuditRefusal::BadCheckpoint { line, seq: e.seq });
            }
            report.checkpoints += 1;
            report.verified_through = e.seq;
            report.unsigned_tail = 0;
        } else {
            report.unsigned_tail += 1;
        }
        report.entries += 1;
        prev = Some(hash);
        expected = expected.saturating_add(1);
    }
    if report.checkpoints == 0 {
        return Err(AuditRefusal::NoCheckpoint);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_strict() {
        assert_eq!(Reader(&[0x00]).u64("x"), Ok(0));
        assert_eq!(Reader(&[0x7f]).u64("x"), Ok(127));
        assert_eq!(Reader(&[0x80, 0x01]).u64("x"), Ok(128));
        // Overlong (a final zero byte), truncated, and past u32.
        assert!(Reader(&[0x80, 0x00]).u64("x").is_err());
        assert!(Reader(&[0x80]).u64("x").is_err());
        assert!(Reader(&[0xff, 0xff, 0xff, 0xff, 0x10]).u32("x").is_err());
        assert_eq!(
            Reader(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).u64("x"),
            Ok(u64::MAX)
        );
        assert!(
            Reader(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .u64("x")
                .is_err()
        );
    }

    #[test]
    fn garbage_and_truncations_do_not_decode_and_do_not_panic() {
        let mut e = vec![0x05, 0x80, 0x01, 0x30];
        e.extend([7u8; 48]);
        e.extend([0x05, 0x01, 0x03]); // LoginFailed { user, 3 }
        let d = Entry::decode(&e).unwrap();
        assert_eq!(d.seq, 5);
        assert_eq!(d.time, 128);
        assert_eq!(
            d.event,
            Event::LoginFailed {
                who: Who::User,
                remaining: 3
            }
        );
        for n in 0..e.len() {
            assert!(Entry::decode(&e[..n]).is_err(), "{n}");
        }
        let mut more = e.clone();
        more.push(0);
        assert!(Entry::decode(&more).is_err());
        let mut bad = e.clone();
        *bad.last_mut().unwrap() = 0x80;
        assert!(Entry::decode(&bad).is_err());
        let mut unknown = e[..e.len() - 3].to_vec();
        unknown.push(20);
        assert!(Entry::decode(&unknown).is_err());
    }
}
