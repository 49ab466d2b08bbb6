//! The release-policy engine: Azure Key Vault's secure key release grammar
//! (version 1.0.0) over an EAR's claims (docs/attestation.md, "Secure key
//! release").
//!
//! ```json
//! {"version": "1.0.0",
//!  "anyOf": [{"authority": "<verifier>",
//!             "allOf": [{"claim": "submods.ihsm.ear_status", "equals": "affirming"},
//!                       {"claim": "submods.ihsm.ihsm_tcb.svn", "greaterOrEquals": 3}]}]}
//! ```
//!
//! A policy holds for a token when one of its authorities is the token's verifier
//! and that authority's condition holds over the token's claims. A claim is named
//! by a dotted path into the claims' JSON objects. Operators: `equals`,
//! `notEquals` (strings, booleans, numbers), `less`, `lessOrEquals`, `greater`,
//! `greaterOrEquals` (numbers), `exists` (a boolean). A claim that is absent fails
//! every condition but `exists: false`; a comparison of mismatched types fails.
//!
//! Parsing is strict (unknown keys, empty lists, another version, nesting deeper
//! than [`MAX_DEPTH`], more than [`MAX_CONDITIONS`] conditions or a document over
//! [`MAX_POLICY_LEN`] bytes are refused) and every policy has one canonical
//! encoding ([`ReleasePolicy::canonical`]), which is what a key stores.
//!
//! [`ReleasePolicy::implies`] decides, soundly but not completely, whether one
//! policy is at least as strict as another: a key's policy may only be replaced by
//! one that implies it (tightened), never loosened.

use serde_json::{Map, Number, Value};

/// The only grammar version.
pub const VERSION: &str = "1.0.0";
/// Largest policy document accepted.
pub const MAX_POLICY_LEN: usize = 16 * 1024;
/// Deepest nesting of `anyOf`/`allOf` below an authority.
pub const MAX_DEPTH: usize = 8;
/// Most conditions (claim conditions and groups) in one policy.
pub const MAX_CONDITIONS: usize = 256;
/// Longest claim path, authority or string value.
pub const MAX_STRING: usize = 1024;

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Longer than [`MAX_POLICY_LEN`].
    #[error("the release policy is {0} bytes; at most {MAX_POLICY_LEN} are accepted")]
    TooLong(usize),
    /// Not a JSON document.
    #[error("the release policy is not JSON: {0}")]
    Json(String),
    /// Well-formed JSON that is not a policy of this grammar.
    #[error("the release policy is invalid at {at}: {what}")]
    Invalid {
        /// Where, as a JSON path (`anyOf[0].allOf[2]`).
        at: String,
        /// What is wrong there.
        what: &'static str,
    },
    /// Deeper than [`MAX_DEPTH`] or more than [`MAX_CONDITIONS`] conditions.
    #[error(
        "the release policy is too large: at most {MAX_CONDITIONS} conditions nested {MAX_DEPTH} deep"
    )]
    TooComplex,
}

/// A comparison of one claim with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `equals`
    Equals,
    /// `notEquals`
    NotEquals,
    /// `less`
    Less,
    /// `lessOrEquals`
    LessOrEquals,
    /// `greater`
    Greater,
    /// `greaterOrEquals`
    GreaterOrEquals,
    /// `exists`
    Exists,
}

impl Operator {
    const ALL: [Self; 7] = [
        Self::Equals,
        Self::NotEquals,
        Self::Less,
        Self::LessOrEquals,
        Self::Greater,
        Self::GreaterOrEquals,
        Self::Exists,
    ];

    /// The operator's name in the grammar.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Equals => "equals",
            Self::NotEquals => "notEquals",
            Self::Less => "less",
            Self::LessOrEquals => "lessOrEquals",
            Self::Greater => "greater",
            Self::GreaterOrEquals => "greaterOrEquals",
            Self::Exists => "exists",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// A condition: a claim comparison or a group.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `{"claim": PATH, OP: VALUE}`
    Claim {
        /// The dotted claim path.
        claim: String,
        /// The comparison.
        op: Operator,
        /// A string, number or boolean (a boolean for `exists`, a number for the
        /// orderings).
        value: Value,
    },
    /// `{"anyOf": [...]}`: one of them holds.
    AnyOf(Vec<Condition>),
    /// `{"allOf": [...]}`: all of them hold.
    AllOf(Vec<Condition>),
}

/// One authority (a verifier) and what its token must say.
#[derive(Debug, Clone, PartialEq)]
pub struct Authority {
    /// The verifier, as the partition's trusted-verifier list names it.
    pub authority: String,
    /// An `anyOf` or `allOf` group.
    pub condition: Condition,
}

/// A parsed release policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasePolicy {
    /// One of them must hold.
    pub any_of: Vec<Authority>,
}

/// Why a policy did not hold for a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// No authority of the policy is the token's verifier.
    #[error("the release policy names no authority {0:?}")]
    Authority(String),
    /// The first condition that failed, for the first authority that is the
    /// token's verifier.
    #[error("the release policy does not hold: {0}")]
    Condition(String),
}

struct Parser {
    conditions: usize,
}

fn invalid(at: &str, what: &'static str) -> PolicyError {
    PolicyError::Invalid {
        at: if at.is_empty() {
            "the top".into()
        } else {
            at.into()
        },
        what,
    }
}

fn short_string(v: &Value, at: &str) -> Result<String, PolicyError> {
    match v {
        Value::String(s) if s.is_empty() => Err(invalid(at, "an empty string")),
        Value::String(s) if s.len() > MAX_STRING => Err(invalid(at, "a string over 1024 bytes")),
        Value::String(s) => Ok(s.clone()),
        _ => Err(invalid(at, "not a string")),
    }
}

impl Parser {
    fn count(&mut self) -> Result<(), PolicyError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(PolicyError::TooComplex);
        }
        Ok(())
    }

    /// A group (`anyOf`/`allOf`) from an object that holds exactly one of them
    /// and the keys in `others`.
    fn group(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<Condition, PolicyError> {
        if depth > MAX_DEPTH {
            return Err(PolicyError::TooComplex);
        }
        let (key, any) = match (obj.get("anyOf"), obj.get("allOf")) {
            (Some(_), Some(_)) => return Err(invalid(at, "both anyOf and allOf")),
            (Some(v), None) => (("anyOf", v), true),
            (None, Some(v)) => (("allOf", v), false),
            (None, None) => return Err(invalid(at, "neither anyOf nor allOf")),
        };
        let at = format!("{at}{}{}", if at.is_empty() { "" } else { "." }, key.0);
        let Value::Array(items) = key.1 else {
            return Err(invalid(&at, "not an array"));
        };
        if items.is_empty() {
            return Err(invalid(&at, "an empty list"));
        }
        let mut out = Vec::with_capacity(items.len().min(MAX_CONDITIONS));
        for (i, item) in items.iter().enumerate() {
            out.push(self.condition(item, &format!("{at}[{i}]"), depth + 1)?);
        }
        Ok(if any {
            Condition::AnyOf(out)
        } else {
            Condition::AllOf(out)
        })
    }

    fn condition(&mut self, v: &Value, at: &str, depth: usize) -> Result<Condition, PolicyError> {
        self.count()?;
        let Value::Object(obj) = v else {
            return Err(invalid(at, "a condition that is not an object"));
        };
        if !obj.contains_key("claim") {
            if obj.len() != 1 {
                return Err(invalid(at, "a group with keys other than anyOf/allOf"));
            }
            return self.group(obj, at, depth);
        }
        if obj.len() != 2 {
            return Err(invalid(
                at,
                "a claim condition needs exactly claim and one operator",
            ));
        }
        let claim = short_string(&obj["claim"], &format!("{at}.claim"))?;
        if claim.split('.').any(str::is_empty) {
            return Err(invalid(at, "a claim path with an empty part"));
        }
        let Some((name, value)) = obj.iter().find(|(k, _)| k.as_str() != "claim") else {
            return Err(invalid(at, "no operator"));
        };
        let Some(op) = Operator::from_name(name) else {
            return Err(invalid(at, "an unknown operator"));
        };
        let at = format!("{at}.{name}");
        match (op, value) {
            (Operator::Exists, Value::Bool(_)) => {}
            (Operator::Exists, _) => return Err(invalid(&at, "exists takes true or false")),
            (Operator::Equals | Operator::NotEquals, Value::Bool(_) | Value::Number(_)) => {}
            (Operator::Equals | Operator::NotEquals, Value::String(_)) => {
                short_string(value, &at)?;
            }
            (Operator::Equals | Operator::NotEquals, _) => {
                return Err(invalid(&at, "not a string, number or boolean"));
            }
            (_, Value::Number(n)) if n.as_f64().is_some_and(f64::is_finite) => {}
            (_, _) => return Err(invalid(&at, "an ordering takes a number")),
        }
        Ok(Condition::Claim {
            claim,
            op,
            value: value.clone(),
        })
    }
}

impl ReleasePolicy {
    /// Parses a policy document.
    ///
    /// # Errors
    /// [`PolicyError`] naming what is wrong and where.
    pub fn parse(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > MAX_POLICY_LEN {
            return Err(PolicyError::TooLong(bytes.len()));
        }
        // serde_json's own recursion limit (128) bounds the parse; MAX_DEPTH
        // bounds what is accepted.
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| PolicyError::Json(e.to_string()))?;
        let Value::Object(top) = &doc else {
            return Err(invalid("", "not an object"));
        };
        if top.len() != 2 || !top.contains_key("version") || !top.contains_key("anyOf") {
            return Err(invalid("", "a policy has exactly version and anyOf"));
        }
        if top["version"] != VERSION {
            return Err(invalid("version", "not \"1.0.0\""));
        }
        let Value::Array(auths) = &top["anyOf"] else {
            return Err(invalid("anyOf", "not an array"));
        };
        if auths.is_empty() {
            return Err(invalid("anyOf", "an empty list"));
        }
        let mut p = Parser { conditions: 0 };
        let mut any_of = Vec::with_capacity(auths.len().min(MAX_CONDITIONS));
        for (i, a) in auths.iter().enumerate() {
            let at = format!("anyOf[{i}]");
            p.count()?;
            let Value::Object(obj) = a else {
                return Err(invalid(&at, "an authority that is not an object"));
            };
            if obj.len() != 2 {
                return Err(invalid(
                    &at,
                    "an authority has exactly authority and anyOf or allOf",
                ));
            }
            let Some(name) = obj.get("authority") else {
                return Err(invalid(&at, "no authority"));
            };
            let authority = short_string(name, &format!("{at}.authority"))?;
            let condition = p.group(obj, &at, 1)?;
            any_of.push(Authority {
                authority,
                condition,
            });
        }
        Ok(Self { any_of })
    }

    /// The policy as JSON, in one fixed form: keys in the order of the grammar,
    /// no white space. Parsing it gives the same policy.
    #[must_use]
    pub fn canonical(&self) -> Vec<u8> {
        fn cond(c: &Condition) -> Value {
            let mut m = Map::new();
            match c {
                Condition::Claim { claim, op, value } => {
                    m.insert("claim".into(), Value::String(claim.clone()));
                    m.insert(op.name().into(), value.clone());
                }
                Condition::AnyOf(cs) => {
                    m.insert("anyOf".into(), cs.iter().map(cond).collect());
                }
                Condition::AllOf(cs) => {
                    m.insert("allOf".into(), cs.iter().map(cond).collect());
                }
            }
            Value::Object(m)
        }
        let auths: Vec<Value> = self
            .any_of
            .iter()
            .map(|a| {
                let mut m = match cond(&a.condition) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                m.insert("authority".into(), Value::String(a.authority.clone()));
                Value::Object(m)
            })
            .collect();
        let mut top = Map::new();
        top.insert("anyOf".into(), Value::Array(auths));
        top.insert("version".into(), Value::String(VERSION.into()));
        // Every map above is built in its keys' sorted order, so the output is the
        // same whether serde_json's Map sorts (BTreeMap) or keeps insertion order.
        serde_json::to_vec(&Value::Object(top)).unwrap_or_default()
    }

    /// Whether the policy holds for a token from `authority` with these claims
    /// (an EAR already checked: signature, profile, freshness).
    ///
    /// # Errors
    /// [`Refused`] with the first condition that failed.
    pub fn evaluate(&self, authority: &str, claims: &Value) -> Result<(), Refused> {
        let mut first = None;
        for a in self.any_of.iter().filter(|a| a.authority == authority) {
            match holds(&a.condition, claims) {
                Ok(()) => return Ok(()),
                Err(why) => {
                    first.get_or_insert(why);
                }
            }
        }
        Err(first.map_or_else(|| Refused::Authority(authority.into()), Refused::Condition))
    }

    /// Whether this policy is at least as strict as `older`: every token this one
    /// admits, `older` admits too. Sound (true only when it is so) but not
    /// complete: a policy that is stricter in a way these rules do not see is
    /// reported as not implying.
    #[must_use]
    pub fn implies(&self, older: &Self) -> bool {
        self.any_of.iter().all(|new| {
            older.any_of.iter().any(|old| {
                new.authority == old.authority && implies(&new.condition, &old.condition)
            })
        })
    }
}

/// The name a policy gives a verifier (its `authority`): the RFC 7638 JWK
/// thumbprint of the verifier's EAR key, SHA-256 over
/// `{"crv":"P-384","kty":"EC","x":X,"y":Y}` (base64url members, no white space),
/// itself base64url without padding. `None` unless `public_key` is an
/// uncompressed P-384 point (97 bytes, `04 || x || y`).
#[must_use]
pub fn verifier_authority(public_key: &[u8]) -> Option<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let xy = match public_key.split_first() {
        Some((4, xy)) if xy.len() == 96 => xy,
        _ => return None,
    };
    let (x, y) = xy.split_at(48);
    let members = format!(
        r#"{{"crv":"P-384","kty":"EC","x":"{}","y":"{}"}}"#,
        B64.encode(x),
        B64.encode(y)
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, members.as_bytes());
    Some(B64.encode(digest.as_ref()))
}

/// Longest EAR lifetime (`exp - iat`) a release accepts: what bounds the replay
/// cache.
pub const MAX_EAR_LIFETIME_SECS: i64 = 600;
/// Most EARs a [`ReplayCache`] remembers at once; when it is full of unexpired
/// tokens, a release is refused (fail closed) until one expires.
pub const REPLAY_CACHE_LEN: usize = 4096;

/// Why a release was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseRefusal {
    /// No trusted verifier's key verifies the token (`Signature`), or it is
    /// signed by one but not valid now, malformed or of another profile.
    #[error("the EAR is refused: {0}")]
    Ear(#[from] crate::ear::EarRefusal),
    /// No verifier is trusted.
    #[error("the partition trusts no verifier: the SO adds one first")]
    NoVerifier,
    /// The token has no `exp`, or lives longer than [`MAX_EAR_LIFETIME_SECS`].
    #[error("the EAR must expire within {MAX_EAR_LIFETIME_SECS} s of its issue")]
    Lifetime,
    /// The appraisal did not affirm (whatever the policy says).
    #[error("the EAR's status is not affirming")]
    NotAffirming,
    /// No key report affirmed, or the attested key is not an RSA key.
    #[error("the EAR attests no RSA key (a key report of the target key must affirm)")]
    NoAttestedKey,
    /// The attested key's report does not show a key that unwraps and never
    /// leaves its partition (generated there, never extractable, always
    /// sensitive, a token object).
    #[error(
        "the attested key is not a release target: its report must show it generated in its partition, a token object that unwraps and cannot decrypt, never extractable and always sensitive"
    )]
    Target,
    /// The token was used for a release before.
    #[error("the EAR was used before (replay)")]
    Replayed,
    /// Too many tokens used within their lifetime.
    #[error("too many releases within {MAX_EAR_LIFETIME_SECS} s; try again later")]
    Busy,
    /// The release policy does not hold.
    #[error(transparent)]
    Policy(#[from] Refused),
}

/// The EARs already used for a release, until they expire.
#[derive(Debug, Default)]
pub struct ReplayCache {
    /// SHA-256 of the token, and its `exp`.
    seen: Vec<([u8; 32], i64)>,
}

impl ReplayCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn admit(&mut self, token: &str, exp: i64, now: i64) -> Result<(), ReleaseRefusal> {
        self.seen.retain(|&(_, e)| e > now);
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut id = [0u8; 32];
        id.copy_from_slice(d.as_ref());
        if self.seen.iter().any(|(s, _)| *s == id) {
            return Err(ReleaseRefusal::Replayed);
        }
        if self.seen.len() >= REPLAY_CACHE_LEN {
            return Err(ReleaseRefusal::Busy);
        }
        self.seen.push((id, exp));
        Ok(())
    }
}

/// The RSA public key a release wraps to, from an EAR that passed [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseTarget {
    /// Big-endian modulus.
    pub n: Vec<u8>,
    /// Big-endian public exponent.
    pub e: Vec<u8>,
    /// The verifier that vouched for it ([`verifier_authority`]).
    pub authority: String,
    /// The EAR's claims.
    pub claims: Value,
}

/// Decides a release: the EAR verifies with one of `trusted` (SEC1 P-384
/// points), is valid now and short-lived, has not been used before (`cache`
/// remembers it once it passes everything), affirms, attests an RSA key, and
/// `policy` holds for it with its verifier as the authority.
///
/// # Errors
/// [`ReleaseRefusal`], the first reason found.
pub fn authorize(
    token: &str,
    trusted: &[Vec<u8>],
    policy: &ReleasePolicy,
    cache: &mut ReplayCache,
    now: i64,
) -> Result<ReleaseTarget, ReleaseRefusal> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let mut first = None;
    let mut found = None;
    for key in trusted {
        match crate::ear::verify_ear(token, key, now) {
            Ok(claims) => {
                found = Some((key, claims));
                break;
            }
            // A key whose signature verifies says more (expired, another
            // profile) than one that is not the signer's.
            Err(crate::ear::EarRefusal::Signature) => {
                first.get_or_insert(crate::ear::EarRefusal::Signature);
            }
            Err(e) => first = Some(e),
        }
    }
    let Some((key, claims)) = found else {
        return Err(first.map_or(ReleaseRefusal::NoVerifier, ReleaseRefusal::Ear));
    };
    let authority = verifier_authority(key).ok_or(ReleaseRefusal::NoVerifier)?;
    let iat = claims.get("iat").and_then(Value::as_i64);
    let exp = claims.get("exp").and_then(Value::as_i64);
    let exp = match (iat, exp) {
        (Some(i), Some(e)) if e > i && e - i <= MAX_EAR_LIFETIME_SECS => e,
        _ => return Err(ReleaseRefusal::Lifetime),
    };
    let sub = lookup(&claims, "submods.ihsm");
    if sub
        .and_then(|s| s.get("ear_status"))
        .and_then(Value::as_str)
        != Some("affirming")
    {
        return Err(ReleaseRefusal::NotAffirming);
    }
    let key = sub
        .and_then(|s| s.get("ihsm_attested_key"))
        .filter(|k| k.get("kty").and_then(Value::as_str) == Some("RSA"));
    let part = |name: &str| {
        key.and_then(|k| k.get(name))
            .and_then(Value::as_str)
            .and_then(|v| B64.decode(v).ok())
            .filter(|v| !v.is_empty())
    };
    let (Some(n), Some(e)) = (part("n"), part("e")) else {
        return Err(ReleaseRefusal::NoAttestedKey);
    };
    // Whatever the policy says: the destination key must be one that unwraps
    // and never leaves its partition, as its key report proved, and cannot
    // decrypt (C_Decrypt of the wrapped AES key would give it in the clear).
    let attr = |name: &str| {
        sub.and_then(|s| s.get("ihsm_attested_key_attributes"))
            .and_then(|a| a.get(name))
            .and_then(Value::as_bool)
    };
    if attr("unwrap") != Some(true)
        || attr("never_extractable") != Some(true)
        || attr("always_sensitive") != Some(true)
        || attr("local") != Some(true)
        || attr("session") != Some(false)
        || attr("decrypt") != Some(false)
    {
        return Err(ReleaseRefusal::Target);
    }
    policy.evaluate(&authority, &claims)?;
    cache.admit(token, exp, now)?;
    Ok(ReleaseTarget {
        n,
        e,
        authority,
        claims,
    })
}

/// Looks up a dotted path in nested objects.
fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(claims, |v, part| v.as_object()?.get(part))
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite())
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_eq(x, y),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        _ => false,
    }
}

fn numbers_eq(x: &Number, y: &Number) -> bool {
    match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
        (Some(a), Some(b), _, _) => a == b,
        (_, _, Some(a), Some(b)) => a == b,
        _ => x.as_f64().zip(y.as_f64()).is_some_and(|(a, b)| a == b),
    }
}

fn claim_holds(claim: Option<&Value>, op: Operator, value: &Value) -> bool {
    let Some(c) = claim else {
        return op == Operator::Exists && value == &Value::Bool(false);
    };
    match op {
        Operator::Exists => value == &Value::Bool(true),
        Operator::Equals => json_eq(c, value),
        Operator::NotEquals => {
            // Only a claim of the same kind can differ; another kind fails.
            std::mem::discriminant(c) == std::mem::discriminant(value) && !json_eq(c, value)
        }
        ord => match (number(c), number(value)) {
            (Some(c), Some(v)) => match ord {
                Operator::Less => c < v,
                Operator::LessOrEquals => c <= v,
                Operator::Greater => c > v,
                _ => c >= v,
            },
            _ => false,
        },
    }
}

fn holds(c: &Condition, claims: &Value) -> Result<(), String> {
    match c {
        Condition::Claim { claim, op, value } => {
            let found = lookup(claims, claim);
            if claim_holds(found, *op, value) {
                Ok(())
            } else {
                let is = found.map_or_else(|| "absent".to_owned(), |v| format!("{v}"));
                Err(format!("claim {claim} {} {value} (it is {is})", op.name()))
            }
        }
        Condition::AllOf(cs) => cs.iter().try_for_each(|c| holds(c, claims)),
        Condition::AnyOf(cs) => {
            let mut first = None;
            for c in cs {
                match holds(c, claims) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            Err(format!(
                "none of anyOf holds (first: {})",
                first.unwrap_or_default()
            ))
        }
    }
}

/// Whether `a` implies `b` for every set of claims, by syntactic rules that are
/// each valid: equal conditions; `a` implies every member of `b = allOf`; `a`
/// implies one member of `b = anyOf`; one member of `a = allOf` implies `b`;
/// every member of `a = anyOf` implies `b`; a claim comparison implies a weaker
/// one on the same claim.
fn implies(a: &Condition, b: &Condition) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (_, Condition::AllOf(bs)) if bs.iter().all(|b| implies(a, b)) => true,
        (Condition::AnyOf(as_), _) if as_.iter().all(|a| implies(a, b)) => true,
        (_, Condition::AnyOf(bs)) if bs.iter().any(|b| implies(a, b)) => true,
        (Condition::AllOf(as_), _) if as_.iter().any(|a| implies(a, b)) => true,
        (
            Condition::Claim {
                claim: ca,
                op: oa,
                value: va,
            },
            Condition::Claim {
                claim: cb,
                op: ob,
                value: vb,
            },
        ) if ca == cb => claim_implies(*oa, va, *ob, vb),
        _ => false,
    }
}

/// `claim oa va` implies `claim ob vb`.
fn claim_implies(oa: Operator, va: &Value, ob: Operator, vb: &Value) -> bool {
    use Operator as O;
    // Every condition but `exists: false` needs the claim to be present.
    if ob == O::Exists {
        return vb == &Value::Bool(true) && !(oa == O::Exists && va == &Value::Bool(false));
    }
    if oa == O::Equals {
        // The claim is exactly va: b holds if it holds for va.
        return claim_holds(Some(va), ob, vb);
    }
    let (Some(x), Some(y)) = (number(va), number(vb)) else {
        return oa == ob && json_eq(va, vb);
    };
    match (oa, ob) {
        (O::Greater, O::Greater) | (O::GreaterOrEquals, O::GreaterOrEquals) => x >= y,
        (O::Greater, O::GreaterOrEquals) => x >= y,
        (O::GreaterOrEquals, O::Greater) => x > y,
        (O::Less, O::Less) | (O::LessOrEquals, O::LessOrEquals) => x <= y,
        (O::Less, O::LessOrEquals) => x <= y,
        (O::LessOrEquals, O::Less) => x < y,
        // c > x (or >= x) with x >= y makes c != y ... only when x > y, or x == y
        // and strict.
        (O::Greater, O::NotEquals) => x >= y,
        (O::GreaterOrEquals, O::NotEquals) => x > y,
        (O::Less, O::NotEquals) => x <= y,
        (O::LessOrEquals, O::NotEquals) => x < y,
        (O::NotEquals, O::NotEquals) => x == y,
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    const V: &str = "ihsm-verifier";

    fn policy(v: &Value) -> Result<ReleasePolicy, PolicyError> {
        ReleasePolicy::parse(&serde_json::to_vec(v).unwrap())
    }

    fn claims(status: &str, svn: u64) -> Value {
        json!({"eat_profile": "tag:ietf.org,2026:rats/ear#04",
               "submods": {"ihsm": {"ear_status": status,
                                    "ihsm_lifecycle": "production",
                                    "ihsm_tcb": {"svn": svn}}}})
    }

    fn base() -> Value {
        json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [
            {"claim": "submods.ihsm.ear_status", "equals": "affirming"},
            {"claim": "submods.ihsm.ihsm_tcb.svn", "greaterOrEquals": 3}]}]})
    }

    #[test]
    fn a_policy_holds_and_names_the_clause_that_does_not() {
        let p = policy(&base()).unwrap();
        assert_eq!(p.evaluate(V, &claims("affirming", 3)), Ok(()));
        assert_eq!(p.evaluate(V, &claims("affirming", 9)), Ok(()));
        let Err(Refused::Condition(why)) = p.evaluate(V, &claims("contraindicated", 3)) else {
            panic!()
        };
        assert!(
            why.contains("submods.ihsm.ear_status equals \"affirming\""),
            "{why}"
        );
        assert!(why.contains("contraindicated"), "{why}");
        let Err(Refused::Condition(why)) = p.evaluate(V, &claims("affirming", 2)) else {
            panic!()
        };
        assert!(why.contains("svn greaterOrEquals 3 (it is 2)"), "{why}");
        assert_eq!(
            p.evaluate("another", &claims("affirming", 3)),
            Err(Refused::Authority("another".into()))
        );
        let Err(Refused::Condition(why)) = p.evaluate(V, &json!({})) else {
            panic!()
        };
        assert!(why.contains("absent"), "{why}");
    }

    #[test]
    fn operators() {
        let c = json!({"a": 5, "s": "x", "b": true, "f": 2.5, "o": {"p": 1}});
        let t = |op: &str, claim: &str, v: Value| {
            let p = policy(&json!({"version": "1.0.0", "anyOf": [
                {"authority": V, "anyOf": [{"claim": claim, op: v}]}]}))
            .unwrap();
            p.evaluate(V, &c).is_ok()
        };
        assert!(t("equals", "a", json!(5)));
        assert!(t("equals", "a", json!(5.0)));
        assert!(!t("equals", "a", json!("5")));
        assert!(t("equals", "s", json!("x")));
        assert!(t("equals", "b", json!(true)));
        assert!(t("notEquals", "a", json!(6)));
        assert!(!t("notEquals", "a", json!(5)));
        assert!(!t("notEquals", "a", json!("other kind")));
        assert!(!t("notEquals", "missing", json!(1)));
        assert!(t("less", "a", json!(6)));
        assert!(!t("less", "a", json!(5)));
        assert!(t("lessOrEquals", "a", json!(5)));
        assert!(t("greater", "f", json!(2)));
        assert!(!t("greater", "s", json!(2)));
        assert!(t("greaterOrEquals", "a", json!(5)));
        assert!(t("exists", "o.p", json!(true)));
        assert!(!t("exists", "o.q", json!(true)));
        assert!(t("exists", "o.q", json!(false)));
        assert!(!t("exists", "a", json!(false)));
        assert!(!t("equals", "a.b", json!(5)));
    }

    #[test]
    fn malformed_policies_are_refused_with_the_place() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "the top"),
            (json!({"version": "1.0.0"}), "the top"),
            (json!({"version": "2.0.0", "anyOf": [{}]}), "version"),
            (json!({"version": "1.0.0", "anyOf": []}), "anyOf"),
            (json!({"version": "1.0.0", "anyOf": [1]}), "anyOf[0]"),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V}]}),
                "anyOf[0]",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": "", "allOf": [{"claim": "a", "exists": true}]}]}),
                "anyOf[0].authority",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": []}]}),
                "anyOf[0].allOf",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [{"claim": "a"}]}]}),
                "anyOf[0].allOf[0]",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [{"claim": "a", "like": "x"}]}]}),
                "anyOf[0].allOf[0]",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [{"claim": "a", "exists": 1}]}]}),
                "exists",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [{"claim": "a", "less": "1"}]}]}),
                "less",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [{"claim": "a", "equals": [1]}]}]}),
                "equals",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [{"claim": "a..b", "equals": 1}]}]}),
                "anyOf[0].allOf[0]",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [{"claim": "a", "equals": 1, "x": 2}]}]}),
                "anyOf[0].allOf[0]",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [{"anyOf": [{"claim": "a", "exists": true}], "allOf": [{"claim": "a", "exists": true}]}]}]}),
                "anyOf[0].allOf[0]",
            ),
            (
                json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [{"claim": "a", "exists": true}]}], "extra": 1}),
                "the top",
            ),
        ];
        for (doc, at) in cases {
            match policy(&doc) {
                Err(PolicyError::Invalid { at: got, .. }) => {
                    assert!(
                        got.starts_with(at) || got.ends_with(at),
                        "{doc}: at {got}, want {at}"
                    );
                }
                other => panic!("{doc}: {other:?}"),
            }
        }
        assert!(matches!(
            ReleasePolicy::parse(b"{"),
            Err(PolicyError::Json(_))
        ));
        assert!(matches!(
            ReleasePolicy::parse(b"\xff"),
            Err(PolicyError::Json(_))
        ));
        let long = vec![b' '; MAX_POLICY_LEN + 1];
        assert_eq!(
            ReleasePolicy::parse(&long),
            Err(PolicyError::TooLong(MAX_POLICY_LEN + 1))
        );
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let mut c = json!({"claim": "a", "exists": true});
        for _ in 0..MAX_DEPTH + 1 {
            c = json!({"anyOf": [c]});
        }
        let deep = json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [c]}]});
        assert_eq!(policy(&deep), Err(PolicyError::TooComplex));
        let many: Vec<Value> = (0..MAX_CONDITIONS)
            .map(|_| json!({"claim": "a", "exists": true}))
            .collect();
        let wide = json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": many}]});
        assert_eq!(policy(&wide), Err(PolicyError::TooComplex));
    }

    #[test]
    fn the_canonical_form_parses_to_the_same_policy() {
        let text = br#"{ "anyOf" : [ { "allOf": [ {"claim": "submods.ihsm.ear_status", "equals": "affirming"},
            {"greaterOrEquals": 3, "claim": "submods.ihsm.ihsm_tcb.svn"} ], "authority": "ihsm-verifier" } ],
            "version": "1.0.0" }"#;
        let p = ReleasePolicy::parse(text).unwrap();
        let c = p.canonical();
        assert_eq!(ReleasePolicy::parse(&c).unwrap(), p);
        assert_eq!(ReleasePolicy::parse(&c).unwrap().canonical(), c);
        assert_eq!(c, policy(&base()).unwrap().canonical());
    }

    #[test]
    fn tightening_is_recognised_and_loosening_is_not() {
        let old = policy(&base()).unwrap();
        assert!(old.implies(&old));
        // One more condition: tighter.
        let more = policy(
            &json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [
            {"claim": "submods.ihsm.ear_status", "equals": "affirming"},
            {"claim": "submods.ihsm.ihsm_tcb.svn", "greaterOrEquals": 3},
            {"claim": "submods.ihsm.ihsm_lifecycle", "equals": "production"}]}]}),
        )
        .unwrap();
        assert!(more.implies(&old));
        assert!(!old.implies(&more));
        // A higher minimum SVN: tighter; a lower one is looser.
        let higher = policy(
            &json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [
            {"claim": "submods.ihsm.ear_status", "equals": "affirming"},
            {"claim": "submods.ihsm.ihsm_tcb.svn", "greater": 4}]}]}),
        )
        .unwrap();
        assert!(higher.implies(&old));
        assert!(!old.implies(&higher));
        // Another authority added: looser.
        let mut wider = old.clone();
        wider.any_of.push(Authority {
            authority: "other".into(),
            condition: Condition::AllOf(vec![Condition::Claim {
                claim: "x".into(),
                op: Operator::Exists,
                value: Value::Bool(true),
            }]),
        });
        assert!(!wider.implies(&old));
        assert!(old.implies(&wider));
        // A condition turned into an anyOf with an alternative: looser.
        let alt = policy(
            &json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [
            {"anyOf": [{"claim": "submods.ihsm.ear_status", "equals": "affirming"},
                       {"claim": "submods.ihsm.ear_status", "equals": "warning"}]},
            {"claim": "submods.ihsm.ihsm_tcb.svn", "greaterOrEquals": 3}]}]}),
        )
        .unwrap();
        assert!(!alt.implies(&old));
        assert!(old.implies(&alt));
        // The same authority, other claims: neither.
        let other = policy(
            &json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [
            {"claim": "submods.ihsm.ear_status", "exists": true}]}]}),
        )
        .unwrap();
        assert!(old.implies(&other));
        assert!(!other.implies(&old));
    }

    fn signer() -> crate::ear::EarSigner {
        use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        crate::ear::EarSigner::from_pkcs8(der.as_ref()).unwrap()
    }

    fn ear(s: &crate::ear::EarSigner, iat: i64, exp: Option<i64>, sub: Value) -> String {
        let mut c = json!({"eat_profile": crate::ear::EAR_PROFILE, "iat": iat,
                           "submods": {"ihsm": sub}});
        if let Some(e) = exp {
            c["exp"] = json!(e);
        }
        crate::ear::sign(s, &c).unwrap()
    }

    fn rsa_sub(status: &str, svn: u64) -> Value {
        json!({"ear_status": status, "ihsm_tcb": {"svn": svn},
               "ihsm_attested_key": {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
               "ihsm_attested_key_attributes": {"unwrap": true, "never_extractable": true,
                   "always_sensitive": true, "local": true, "session": false,
                   "decrypt": false}})
    }

    #[test]
    fn a_release_is_authorized_once_and_refused_for_each_reason() {
        let s = signer();
        let other = signer();
        let auth = verifier_authority(&s.public_key()).unwrap();
        assert_eq!(auth.len(), 43);
        assert_ne!(Some(auth.clone()), verifier_authority(&other.public_key()));
        let mut doc = base();
        doc["anyOf"][0]["authority"] = json!(auth);
        let p = policy(&doc).unwrap();
        let trusted = vec![other.public_key(), s.public_key()];
        let now = 1_800_000_000;
        let mut cache = ReplayCache::new();
        let good = ear(&s, now - 10, Some(now + 290), rsa_sub("affirming", 3));
        let t = authorize(&good, &trusted, &p, &mut cache, now).unwrap();
        assert_eq!(
            (t.n.as_slice(), t.e.as_slice(), t.authority.as_str()),
            (&[1, 0, 1][..], &[1, 0, 1][..], auth.as_str())
        );
        // The same token again: a replay, even later within its lifetime.
        assert_eq!(
            authorize(&good, &trusted, &p, &mut cache, now + 5),
            Err(ReleaseRefusal::Replayed)
        );
        let refuse = |token: &str, trusted: &[Vec<u8>], now: i64| {
            authorize(token, trusted, &p, &mut ReplayCache::new(), now).unwrap_err()
        };
        // Signed by a verifier the partition does not trust.
        let stranger = ear(&signer(), now, Some(now + 60), rsa_sub("affirming", 3));
        assert_eq!(
            refuse(&stranger, &trusted, now),
            ReleaseRefusal::Ear(crate::ear::EarRefusal::Signature)
        );
        assert_eq!(refuse(&good, &[], now), ReleaseRefusal::NoVerifier);
        // Expired, not yet valid, no exp, too long a life.
        assert_eq!(
            refuse(&good, &trusted, now + 290),
            ReleaseRefusal::Ear(crate::ear::EarRefusal::Expired)
        );
        assert_eq!(
            refuse(&good, &trusted, now - 11),
            ReleaseRefusal::Ear(crate::ear::EarRefusal::Expired)
        );
        let forever = ear(&s, now, None, rsa_sub("affirming", 3));
        assert_eq!(refuse(&forever, &trusted, now), ReleaseRefusal::Lifetime);
        let long = ear(
            &s,
            now,
            Some(now + MAX_EAR_LIFETIME_SECS + 1),
            rsa_sub("affirming", 3),
        );
        assert_eq!(refuse(&long, &trusted, now), ReleaseRefusal::Lifetime);
        // Not affirming, no attested key, an EC key.
        let bad = ear(&s, now, Some(now + 60), rsa_sub("contraindicated", 3));
        assert_eq!(refuse(&bad, &trusted, now), ReleaseRefusal::NotAffirming);
        let nokey = ear(
            &s,
            now,
            Some(now + 60),
            json!({"ear_status": "affirming", "ihsm_tcb": {"svn": 3}}),
        );
        assert_eq!(refuse(&nokey, &trusted, now), ReleaseRefusal::NoAttestedKey);
        let ec = ear(
            &s,
            now,
            Some(now + 60),
            json!({"ear_status": "affirming", "ihsm_tcb": {"svn": 3},
            "ihsm_attested_key": {"kty": "EC", "crv": "P-384", "x": "AQAB", "y": "AQAB"}}),
        );
        assert_eq!(refuse(&ec, &trusted, now), ReleaseRefusal::NoAttestedKey);
        // An RSA key whose report does not show a key that stays and unwraps.
        for (name, bad) in [
            ("unwrap", json!(false)),
            ("never_extractable", json!(false)),
            ("always_sensitive", json!(false)),
            ("local", json!(false)),
            ("session", json!(true)),
            ("decrypt", json!(true)),
        ] {
            let mut sub = rsa_sub("affirming", 3);
            sub["ihsm_attested_key_attributes"][name] = bad;
            let t = ear(&s, now, Some(now + 60), sub);
            assert_eq!(refuse(&t, &trusted, now), ReleaseRefusal::Target, "{name}");
        }
        let mut sub = rsa_sub("affirming", 3);
        sub.as_object_mut()
            .unwrap()
            .remove("ihsm_attested_key_attributes");
        let t = ear(&s, now, Some(now + 60), sub);
        assert_eq!(refuse(&t, &trusted, now), ReleaseRefusal::Target);
        // A policy clause that fails.
        let low = ear(&s, now, Some(now + 60), rsa_sub("affirming", 2));
        assert!(
            matches!(refuse(&low, &trusted, now), ReleaseRefusal::Policy(Refused::Condition(w)) if w.contains("svn"))
        );
        // The policy names another verifier than the one that signed.
        let theirs = ear(&other, now, Some(now + 60), rsa_sub("affirming", 3));
        assert!(matches!(
            refuse(&theirs, &trusted, now),
            ReleaseRefusal::Policy(Refused::Authority(_))
        ));
        // A refused token is not remembered: the cache holds only releases.
        let mut cache = ReplayCache::new();
        assert!(authorize(&low, &trusted, &p, &mut cache, now).is_err());
        assert!(cache.seen.is_empty());
    }

    #[test]
    fn the_replay_cache_is_bounded_and_forgets_expired_tokens() {
        let mut c = ReplayCache::new();
        for i in 0..REPLAY_CACHE_LEN {
            c.admit(&format!("t{i}"), 100, 0).unwrap();
        }
        assert_eq!(c.admit("one more", 100, 0), Err(ReleaseRefusal::Busy));
        assert_eq!(c.admit("t0", 100, 50), Err(ReleaseRefusal::Replayed));
        // Once they expire, room again (and an expired token would be refused by
        // its exp before it reached the cache).
        assert_eq!(c.admit("one more", 200, 100), Ok(()));
        assert_eq!(c.seen.len(), 1);
    }

    proptest::proptest! {
        /// Whatever `implies` says yes to holds on sampled claims: the rules are
        /// sound.
        #[test]
        fn implies_is_sound(svn_a in 0u64..8, svn_b in 0u64..8, ops in 0usize..4, status in 0usize..3, svn in 0u64..8) {
            let ord = ["greater", "greaterOrEquals", "less", "equals"];
            let st = ["affirming", "warning", "contraindicated"];
            let a = policy(&json!({"version": "1.0.0", "anyOf": [{"authority": V, "allOf": [
                {"claim": "submods.ihsm.ihsm_tcb.svn", ord[ops]: svn_a}]}]})).unwrap();
            let b = policy(&json!({"version": "1.0.0", "anyOf": [{"authority": V, "anyOf": [
                {"claim": "submods.ihsm.ihsm_tcb.svn", ord[(ops + 1) % 4]: svn_b},
                {"claim": "submods.ihsm.ear_status", "equals": st[status]}]}]})).unwrap();
            let c = claims(st[(status + 1) % 3], svn);
            if a.implies(&b) && a.evaluate(V, &c).is_ok() {
                proptest::prop_assert!(b.evaluate(V, &c).is_ok());
            }
            if b.implies(&a) && b.evaluate(V, &c).is_ok() {
                proptest::prop_assert!(a.evaluate(V, &c).is_ok());
            }
        }

        /// Garbage never panics; what parses re-encodes to itself.
        #[test]
        fn garbage_is_refused_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(p) = ReleasePolicy::parse(&bytes) {
                let c = p.canonical();
                proptest::prop_assert_eq!(ReleasePolicy::parse(&c).unwrap(), p);
            }
        }
    }
}
