//! `ihsm key ...`: keys in a partition, through its socket, logged in as its user.
//! Nothing here prints a secret: sensitive values are never readable, and the
//! commands ask only for public attributes.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use cryptoki_sys as ck;
use ihsm_client::Client;
use ihsm_proto::attr::{AttrResult, AttrValue, Attribute};
use ihsm_proto::mech::{Hash, Mechanism, PssParams};
use ihsm_proto::types::UserType;
use ihsm_rot::state::StateDir;
use serde::Serialize;

use crate::{CliResult, Failure, output, partition_socket, read_pin};

#[derive(Debug, clap::Args)]
pub(crate) struct Login {
    /// The partition.
    #[arg(long, short = 'p')]
    partition: String,
    /// File holding the partition's user PIN (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pin_file: PathBuf,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Which {
    /// The key's label.
    #[arg(long)]
    label: Option<String>,
    /// The object handle (from `ihsm key list`).
    #[arg(long)]
    handle: Option<u64>,
}

/// A key by its label or its CKA_ID.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct KeyRef {
    /// The key's label.
    #[arg(long)]
    label: Option<String>,
    /// The key's CKA_ID, hex.
    #[arg(long, value_name = "HEX")]
    id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Every object the user sees.
    List {
        #[command(flatten)]
        login: Login,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// One object's public attributes.
    Show {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        which: Which,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate keys inside the HSM (token objects, sensitive, unextractable).
    Generate {
        #[command(flatten)]
        login: Login,
        /// What to generate.
        #[arg(long = "type", value_enum)]
        kind: KeyType,
        /// Label (with `--count`, `LABEL-0`, `LABEL-1`, ...).
        #[arg(long)]
        label: String,
        /// CKA_ID, hex.
        #[arg(long)]
        id: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// `unwrap`: a key pair that only wraps and unwraps (no sign, verify,
        /// encrypt or decrypt): the destination of a secure key release.
        #[arg(long, value_enum)]
        usage: Option<Usage>,
        /// A release policy (JSON, docs/attestation.md §5) for a secret key: it
        /// is made extractable, and leaves only through `ihsm key release`.
        #[arg(long, value_name = "FILE")]
        release_policy: Option<PathBuf>,
    },
    /// A key's release policy: `show` it, or `set` a tighter one (only tightened:
    /// the new policy must imply the old; a Security Officer session may replace
    /// the policy of a key it sees, through PKCS#11).
    ReleasePolicy {
        #[command(subcommand)]
        what: ReleasePolicyCommand,
    },
    /// Secure key release: the key, wrapped with CKM_RSA_AES_KEY_WRAP to the RSA
    /// key an EAR attests (`ihsm verify evidence --key-policy unwrap-target
    /// --ear-out`), if the key's release policy admits that EAR.
    Release {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        key: KeyRef,
        /// The EAR (the JWT `--ear-out` wrote).
        #[arg(long, value_name = "FILE")]
        ear: PathBuf,
        /// Where to write the wrapped key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Unwrap a released key (CKM_RSA_AES_KEY_WRAP, AES-256, OAEP SHA-256) with an
    /// unwrap key of this partition, as a new token secret key.
    Unwrap {
        #[command(flatten)]
        login: Login,
        /// The unwrap key's label (the private key of `generate --usage unwrap`).
        #[arg(long)]
        with: String,
        /// The wrapped key.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// The new key's label.
        #[arg(long)]
        label: String,
        /// The new key's type.
        #[arg(long = "type", value_enum, default_value = "aes")]
        kind: UnwrapType,
    },
    /// Trust a verifier's EAR key in a partition (its Security Officer): an ECC
    /// P-384 public key object marked CKA_TRUSTED, which releases accept EARs from.
    TrustVerifier {
        /// The partition.
        #[arg(long, short = 'p')]
        partition: String,
        /// File holding the partition's Security Officer PIN.
        #[arg(long, value_name = "FILE")]
        so_pin_file: PathBuf,
        /// The verifier's public key (PEM, as `openssl pkey -pubout` writes it).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// A label for it.
        #[arg(long)]
        label: String,
    },
    /// Destroy keys.
    Delete {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        which: Which,
        /// Delete every object with the label, not just one.
        #[arg(long)]
        all: bool,
    },
    /// Sign a file with a private (or HMAC) key.
    Sign {
        #[command(flatten)]
        login: Login,
        /// The key's label.
        #[arg(long)]
        label: String,
        /// The mechanism.
        #[arg(long, value_enum)]
        mechanism: SignMech,
        /// The data.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Where to write the signature.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// ECDSA signatures as DER (what `openssl dgst -verify` reads) rather than
        /// PKCS#11's r || s.
        #[arg(long)]
        der: bool,
    },
    /// A key attestation report (docs/attestation.md §2), signed inside the HSM
    /// by the partition's identity keys: ES384 then ML-DSA-87 COSE_Sign1. Of a key
    /// pair, the private key's report (it carries the public key).
    Attest {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        key: KeyRef,
        /// Up to 128 bytes, hex: the verifier's nonce, or the hash of one
        /// (zero-padded; default all zeros).
        #[arg(long, value_name = "HEX")]
        report_data: Option<String>,
        /// Where to write the report.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a key pair's public key (SubjectPublicKeyInfo, PEM).
    Public {
        #[command(flatten)]
        login: Login,
        /// The key's label.
        #[arg(long)]
        label: String,
        /// Where to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReleasePolicyCommand {
    /// Print the key's release policy (its canonical JSON).
    Show {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        key: KeyRef,
    },
    /// Replace it: by the user, only with a tighter one.
    Set {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        key: KeyRef,
        /// The new policy (JSON).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
    },
    /// Replace it with any policy, as the partition's Security Officer, who names
    /// the key by label or CKA_ID (the SO cannot see private keys); the
    /// partition's audit log records it (`release_policy_replaced`).
    Replace {
        /// The partition.
        #[arg(long, short = 'p')]
        partition: String,
        /// File holding the partition's Security Officer PIN.
        #[arg(long, value_name = "FILE")]
        so_pin_file: PathBuf,
        #[command(flatten)]
        key: KeyRef,
        /// The new policy (JSON).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
    },
}

/// Usages `ihsm key generate --usage` sets.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Usage {
    /// Wrap and unwrap only.
    Unwrap,
}

/// Key types `ihsm key unwrap` makes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum UnwrapType {
    Aes,
    Secret,
}

/// Key types `ihsm key generate` makes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KeyType {
    Aes128,
    Aes192,
    Aes256,
    /// A 32-byte generic secret (HMAC).
    Secret,
    EcP256,
    EcP384,
    EcP521,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Mldsa44,
    Mldsa65,
    Mldsa87,
    Mlkem512,
    Mlkem768,
    Mlkem1024,
}

/// Signature mechanisms of `ihsm key sign`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SignMech {
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
    RsaPkcsSha256,
    RsaPkcsSha384,
    RsaPkcsSha512,
    RsaPssSha256,
    RsaPssSha384,
    RsaPssSha512,
    Eddsa,
    Mldsa,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

fn pss(h: Hash) -> PssParams {
    PssParams {
        hash: h,
        mgf: h.mgf1(),
        salt_len: h.output_len() as u64,
    }
}

impl SignMech {
    fn mechanism(self) -> Mechanism {
        match self {
            Self::EcdsaSha256 => Mechanism::EcdsaHash(Hash::Sha256),
            Self::EcdsaSha384 => Mechanism::EcdsaHash(Hash::Sha384),
            Self::EcdsaSha512 => Mechanism::EcdsaHash(Hash::Sha512),
            Self::RsaPkcsSha256 => Mechanism::RsaPkcsHash(Hash::Sha256),
            Self::RsaPkcsSha384 => Mechanism::RsaPkcsHash(Hash::Sha384),
            Self::RsaPkcsSha512 => Mechanism::RsaPkcsHash(Hash::Sha512),
            Self::RsaPssSha256 => Mechanism::RsaPssHash(pss(Hash::Sha256)),
            Self::RsaPssSha384 => Mechanism::RsaPssHash(pss(Hash::Sha384)),
            Self::RsaPssSha512 => Mechanism::RsaPssHash(pss(Hash::Sha512)),
            Self::Eddsa => Mechanism::EdDsa,
            Self::Mldsa => Mechanism::MlDsa,
            Self::HmacSha256 => Mechanism::Hmac(Hash::Sha256),
            Self::HmacSha384 => Mechanism::Hmac(Hash::Sha384),
            Self::HmacSha512 => Mechanism::Hmac(Hash::Sha512),
        }
    }

    fn key_class(self) -> u64 {
        match self {
            Self::HmacSha256 | Self::HmacSha384 | Self::HmacSha512 => ck::CKO_SECRET_KEY,
            _ => ck::CKO_PRIVATE_KEY,
        }
    }
}

/// (mechanism, template of a secret key, extra template of a public key); a
/// secret key when the last is `None`.
type Plan = (Mechanism, Vec<Attribute>, Option<Vec<Attribute>>);

impl KeyType {
    fn plan(self) -> Plan {
        let ul = Attribute::ulong;
        let ec = |p: &[u8]| {
            (
                Mechanism::EcKeyPairGen,
                vec![],
                Some(vec![Attribute::bytes(ck::CKA_EC_PARAMS, p.to_vec())]),
            )
        };
        let rsa = |bits| {
            (
                Mechanism::RsaKeyPairGen,
                vec![],
                Some(vec![ul(ck::CKA_MODULUS_BITS, bits)]),
            )
        };
        let mldsa = |set| {
            (
                Mechanism::MlDsaKeyPairGen,
                vec![],
                Some(vec![ul(ck::CKA_PARAMETER_SET, set)]),
            )
        };
        let mlkem = |set| {
            (
                Mechanism::MlKemKeyPairGen,
                vec![],
                Some(vec![ul(ck::CKA_PARAMETER_SET, set)]),
            )
        };
        match self {
            Self::Aes128 => (Mechanism::AesKeyGen, vec![ul(ck::CKA_VALUE_LEN, 16)], None),
            Self::Aes192 => (Mechanism::AesKeyGen, vec![ul(ck::CKA_VALUE_LEN, 24)], None),
            Self::Aes256 => (Mechanism::AesKeyGen, vec![ul(ck::CKA_VALUE_LEN, 32)], None),
            Self::Secret => (
                Mechanism::GenericSecretKeyGen,
                vec![ul(ck::CKA_VALUE_LEN, 32)],
                None,
            ),
            Self::EcP256 => ec(P256),
            Self::EcP384 => ec(P384),
            Self::EcP521 => ec(P521),
            Self::Ed25519 => (
                Mechanism::EcEdwardsKeyPairGen,
                vec![],
                Some(vec![Attribute::bytes(ck::CKA_EC_PARAMS, ED25519.to_vec())]),
            ),
            Self::Rsa2048 => rsa(2048),
            Self::Rsa3072 => rsa(3072),
            Self::Rsa4096 => rsa(4096),
            Self::Mldsa44 => mldsa(1),
            Self::Mldsa65 => mldsa(2),
            Self::Mldsa87 => mldsa(3),
            Self::Mlkem512 => mlkem(1),
            Self::Mlkem768 => mlkem(2),
            Self::Mlkem1024 => mlkem(3),
        }
    }
}

fn connect(state: &StateDir, login: &Login) -> Result<(Client, u64), Failure> {
    let pin = read_pin(&login.pin_file)?;
    let mut c = Client::connect_as(partition_socket(state, &login.partition), "ihsm")?;
    let s = c.open_session(true)?;
    c.login(s, UserType::User, &pin)?;
    Ok((c, s))
}

fn label_attr(label: &str) -> Attribute {
    Attribute::bytes(ck::CKA_LABEL, label.as_bytes().to_vec())
}

fn class_name(c: u64) -> &'static str {
    match c {
        ck::CKO_DATA => "data",
        ck::CKO_CERTIFICATE => "certificate",
        ck::CKO_PUBLIC_KEY => "public",
        ck::CKO_PRIVATE_KEY => "private",
        ck::CKO_SECRET_KEY => "secret",
        _ => "other",
    }
}

fn key_type_name(t: u64) -> String {
    match t {
        ck::CKK_AES => "AES".into(),
        ck::CKK_GENERIC_SECRET => "generic secret".into(),
        ck::CKK_EC => "EC".into(),
        ck::CKK_EC_EDWARDS => "EdDSA".into(),
        ck::CKK_RSA => "RSA".into(),
        ck::CKK_ML_DSA => "ML-DSA".into(),
        ck::CKK_ML_KEM => "ML-KEM".into(),
        other => format!("0x{other:x}"),
    }
}

/// The public attributes `ihsm key` shows, with names.
const SHOWN: &[(u64, &str)] = &[
    (ck::CKA_CLASS, "class"),
    (ck::CKA_KEY_TYPE, "key_type"),
    (ck::CKA_LABEL, "label"),
    (ck::CKA_ID, "id"),
    (ck::CKA_UNIQUE_ID, "unique_id"),
    (ck::CKA_TOKEN, "token"),
    (ck::CKA_PRIVATE, "private"),
    (ck::CKA_SENSITIVE, "sensitive"),
    (ck::CKA_EXTRACTABLE, "extractable"),
    (ck::CKA_ALWAYS_SENSITIVE, "always_sensitive"),
    (ck::CKA_NEVER_EXTRACTABLE, "never_extractable"),
    (ck::CKA_LOCAL, "local"),
    (ck::CKA_SIGN, "sign"),
    (ck::CKA_VERIFY, "verify"),
    (ck::CKA_ENCRYPT, "encrypt"),
    (ck::CKA_DECRYPT, "decrypt"),
    (ck::CKA_WRAP, "wrap"),
    (ck::CKA_UNWRAP, "unwrap"),
    (ck::CKA_DERIVE, "derive"),
    (ck::CKA_VALUE_LEN, "value_len"),
    (ck::CKA_MODULUS_BITS, "modulus_bits"),
    (ck::CKA_EC_PARAMS, "ec_params"),
    (ck::CKA_EC_POINT, "ec_point"),
    (ck::CKA_PARAMETER_SET, "parameter_set"),
];

#[derive(Serialize)]
struct Shown {
    handle: u64,
    attributes: std::collections::BTreeMap<&'static str, serde_json::Value>,
}

fn value_json(ty: u64, v: &AttrValue) -> serde_json::Value {
    match (ty, v) {
        (ck::CKA_CLASS, AttrValue::Ulong(c)) => class_name(*c).into(),
        (ck::CKA_KEY_TYPE, AttrValue::Ulong(t)) => key_type_name(*t).into(),
        (ck::CKA_LABEL, AttrValue::Bytes(b)) => String::from_utf8_lossy(b).into_owned().into(),
        (_, AttrValue::Bool(b)) => (*b).into(),
        (_, AttrValue::Ulong(u)) => (*u).into(),
        (_, AttrValue::Bytes(b)) => hex::encode(b).into(),
    }
}

fn describe(c: &mut Client, s: u64, h: u64) -> Result<Shown, Failure> {
    let types: Vec<u64> = SHOWN.iter().map(|(t, _)| *t).collect();
    let values = c.get_attributes(s, h, types)?;
    let mut attributes = std::collections::BTreeMap::new();
    for ((ty, name), v) in SHOWN.iter().zip(values) {
        match v {
            AttrResult::Value(v) => {
                attributes.insert(*name, value_json(*ty, &v));
            }
            AttrResult::Sensitive => {
                attributes.insert(*name, "(sensitive)".into());
            }
            AttrResult::Invalid => {}
        }
    }
    Ok(Shown {
        handle: h,
        attributes,
    })
}

fn select(c: &mut Client, s: u64, which: &Which) -> Result<Vec<u64>, Failure> {
    match (&which.label, which.handle) {
        (_, Some(h)) => Ok(vec![h]),
        (Some(l), None) => {
            let found = c.find(s, vec![label_attr(l)])?;
            if found.is_empty() {
                return Err(Failure(format!("no object labelled {l:?}")));
            }
            Ok(found)
        }
        (None, None) => Err(Failure("give --label or --handle".into())),
    }
}

fn find_one(c: &mut Client, s: u64, label: &str, class: u64) -> Result<u64, Failure> {
    let found = c.find(
        s,
        vec![label_attr(label), Attribute::ulong(ck::CKA_CLASS, class)],
    )?;
    match found.as_slice() {
        [h] => Ok(*h),
        [] => Err(Failure(format!(
            "no {} key labelled {label:?}",
            class_name(class)
        ))),
        more => Err(Failure(format!(
            "{} {} keys are labelled {label:?}; use a unique label",
            more.len(),
            class_name(class)
        ))),
    }
}

/// The key `r` names: of a key pair the private key, else the secret or public
/// key; exactly one of the first class that has any. Returns it and a description.
fn find_key(c: &mut Client, s: u64, r: &KeyRef) -> Result<(u64, String), Failure> {
    let (attr, what) = match (&r.label, &r.id) {
        (Some(l), _) => (label_attr(l), format!("label {l:?}")),
        (None, Some(id)) => {
            let b = hex::decode(id.trim()).map_err(|e| Failure(format!("--id is not hex: {e}")))?;
            (Attribute::bytes(ck::CKA_ID, b), format!("id {id}"))
        }
        (None, None) => return Err(Failure("give --label or --id".into())),
    };
    for class in [ck::CKO_PRIVATE_KEY, ck::CKO_SECRET_KEY, ck::CKO_PUBLIC_KEY] {
        let found = c.find(
            s,
            vec![attr.clone(), Attribute::ulong(ck::CKA_CLASS, class)],
        )?;
        match found.as_slice() {
            [] => {}
            [h] => return Ok((*h, format!("the {} key with {what}", class_name(class)))),
            more => {
                return Err(Failure(format!(
                    "{} {} keys have {what}; use one that is unique",
                    more.len(),
                    class_name(class)
                )));
            }
        }
    }
    Err(Failure(format!("no key with {what}")))
}

/// ECDSA r || s as a DER `ECDSA-Sig-Value`.
fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let mut v: &[u8] = v;
        while v.len() > 1 && v[0] == 0 {
            v = &v[1..];
        }
        let mut out = vec![0x02];
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        let len = v.len() + usize::from(pad);
        out.extend(der_len(len));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    }
    fn der_len(len: usize) -> Vec<u8> {
        if len < 0x80 {
            vec![len as u8]
        } else if len < 0x100 {
            vec![0x81, len as u8]
        } else {
            vec![0x82, (len >> 8) as u8, len as u8]
        }
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let body: Vec<u8> = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    out.extend(der_len(body.len()));
    out.extend(body);
    out
}

pub(crate) fn run(state: &StateDir, cmd: KeyCommand) -> CliResult {
    match cmd {
        KeyCommand::List { login, json } => {
            let (mut c, s) = connect(state, &login)?;
            let handles = c.find(s, vec![])?;
            let mut shown = Vec::with_capacity(handles.len());
            for h in handles {
                shown.push(describe(&mut c, s, h)?);
            }
            if json {
                return output::print_json(&shown);
            }
            let cell = |k: &Shown, n: &str| {
                k.attributes.get(n).map_or_else(String::new, |v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            };
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|k| {
                    vec![
                        k.handle.to_string(),
                        cell(k, "class"),
                        cell(k, "key_type"),
                        cell(k, "label"),
                        cell(k, "id"),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no objects in partition {}", login.partition);
            } else {
                output::table(&["HANDLE", "CLASS", "TYPE", "LABEL", "ID"], &rows);
            }
            Ok(())
        }
        KeyCommand::Show { login, which, json } => {
            let (mut c, s) = connect(state, &login)?;
            let mut shown = Vec::new();
            for h in select(&mut c, s, &which)? {
                shown.push(describe(&mut c, s, h)?);
            }
            if json {
                return output::print_json(&shown);
            }
            for k in shown {
                println!("object {}", k.handle);
                for (n, v) in &k.attributes {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    println!("  {n:<18} {v}");
                }
            }
            Ok(())
        }
        KeyCommand::Generate {
            login,
            kind,
            label,
            id,
            count,
            usage,
            release_policy,
        } => {
            let id = id
                .map(|h| hex::decode(h.trim()).map_err(|_| Failure("--id must be hex".into())))
                .transpose()?;
            let (mech, mut secret, mut public) = kind.plan();
            let mut private = Vec::new();
            if let Some(Usage::Unwrap) = usage {
                let Some(p) = public.as_mut() else {
                    return Err(Failure(
                        "--usage unwrap makes a key pair: give an RSA type".into(),
                    ));
                };
                let no = |t| Attribute::bool(t, false);
                p.extend([
                    Attribute::bool(ck::CKA_WRAP, true),
                    no(ck::CKA_VERIFY),
                    no(ck::CKA_ENCRYPT),
                ]);
                private.extend([
                    Attribute::bool(ck::CKA_UNWRAP, true),
                    no(ck::CKA_SIGN),
                    no(ck::CKA_DECRYPT),
                ]);
            }
            if let Some(path) = &release_policy {
                if public.is_some() {
                    return Err(Failure(
                        "--release-policy is for secret keys (AES or generic)".into(),
                    ));
                }
                let p = std::fs::read(path)
                    .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
                secret.push(Attribute::bytes(
                    ihsm_proto::attr::CKA_IHSM_RELEASE_POLICY,
                    p,
                ));
                secret.push(Attribute::bool(ck::CKA_EXTRACTABLE, true));
            }
            let (mut c, s) = connect(state, &login)?;
            let bar = indicatif::ProgressBar::new(u64::from(count));
            if count > 1 {
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} keys, {per_sec}, {eta} left",
                    )
                    .map_err(|e| Failure(e.to_string()))?,
                );
            } else {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let mut made = Vec::new();
            for i in 0..count {
                let l = if count > 1 {
                    format!("{label}-{i}")
                } else {
                    label.clone()
                };
                let mut common = vec![Attribute::bool(ck::CKA_TOKEN, true), label_attr(&l)];
                if let Some(id) = &id {
                    common.push(Attribute::bytes(ck::CKA_ID, id.clone()));
                }
                match &public {
                    None => {
                        let mut t = secret.clone();
                        t.extend(common);
                        let h = c.generate_key(s, mech.clone(), t)?;
                        made.push(format!("{l}: secret key {h}"));
                    }
                    Some(p) => {
                        let mut pt = p.clone();
                        pt.extend(common.clone());
                        let mut st = private.clone();
                        st.extend(common);
                        let (pk, sk) = c.generate_key_pair(s, mech.clone(), pt, st)?;
                        made.push(format!("{l}: public key {pk}, private key {sk}"));
                    }
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            if count > 3 {
                println!(
                    "generated {count} {kind:?} keys labelled {label}-0 .. {label}-{} in partition {}",
                    count - 1,
                    login.partition
                );
            } else {
                for m in made {
                    println!("{m}");
                }
            }
            Ok(())
        }
        KeyCommand::Delete { login, which, all } => {
            let (mut c, s) = connect(state, &login)?;
            let handles = select(&mut c, s, &which)?;
            if handles.len() > 1 && !all {
                return Err(Failure(format!(
                    "{} objects match; pass --all to delete them all",
                    handles.len()
                )));
            }
            for h in &handles {
                c.destroy_object(s, *h)?;
            }
            println!("deleted {} object(s)", handles.len());
            Ok(())
        }
        KeyCommand::Sign {
            login,
            label,
            mechanism,
            input,
            out,
            der,
        } => {
            let data = std::fs::read(&input)
                .map_err(|e| Failure(format!("cannot read {}: {e}", input.display())))?;
            let (mut c, s) = connect(state, &login)?;
            let key = find_one(&mut c, s, &label, mechanism.key_class())?;
            let mut sig = c.sign_once(s, mechanism.mechanism(), key, data)?;
            if der {
                if !matches!(
                    mechanism,
                    SignMech::EcdsaSha256 | SignMech::EcdsaSha384 | SignMech::EcdsaSha512
                ) {
                    return Err(Failure("--der applies to ECDSA signatures only".into()));
                }
                sig = ecdsa_der(&sig);
            }
            std::fs::write(&out, &sig)
                .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
            println!("{} ({} bytes)", out.display(), sig.len());
            Ok(())
        }
        KeyCommand::Attest {
            login,
            key,
            report_data,
            out,
        } => {
            let data = match report_data {
                Some(h) => hex::decode(h.trim())
                    .map_err(|e| Failure(format!("--report-data is not hex: {e}")))?,
                None => Vec::new(),
            };
            if data.len() > 128 {
                return Err(Failure(format!(
                    "--report-data is {} bytes; at most 128 (a nonce, or the hash of one)",
                    data.len()
                )));
            }
            let (mut c, s) = connect(state, &login)?;
            let (h, what) = find_key(&mut c, s, &key)?;
            let report = c.key_report(s, h, &data)?;
            std::fs::write(&out, &report)
                .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
            println!(
                "{}: key report of {what} ({} bytes, ES384 + ML-DSA-87)",
                out.display(),
                report.len()
            );
            Ok(())
        }
        KeyCommand::ReleasePolicy { what } => match what {
            ReleasePolicyCommand::Show { login, key } => {
                let (mut c, s) = connect(state, &login)?;
                let (h, what) = find_key(&mut c, s, &key)?;
                match c
                    .get_attributes(s, h, vec![ihsm_proto::attr::CKA_IHSM_RELEASE_POLICY])?
                    .pop()
                {
                    Some(AttrResult::Value(AttrValue::Bytes(ref b))) => {
                        println!("{}", String::from_utf8_lossy(b));
                        Ok(())
                    }
                    _ => Err(Failure(format!("{what} has no release policy"))),
                }
            }
            ReleasePolicyCommand::Set { login, key, policy } => {
                let p = std::fs::read(&policy)
                    .map_err(|e| Failure(format!("cannot read {}: {e}", policy.display())))?;
                let (mut c, s) = connect(state, &login)?;
                let (h, what) = find_key(&mut c, s, &key)?;
                c.set_attributes(
                    s,
                    h,
                    vec![Attribute::bytes(
                        ihsm_proto::attr::CKA_IHSM_RELEASE_POLICY,
                        p,
                    )],
                )?;
                println!("release policy of {what} replaced");
                Ok(())
            }
            ReleasePolicyCommand::Replace {
                partition,
                so_pin_file,
                key,
                policy,
            } => {
                let p = std::fs::read(&policy)
                    .map_err(|e| Failure(format!("cannot read {}: {e}", policy.display())))?;
                let mut selector = Vec::new();
                if let Some(l) = &key.label {
                    selector.push(label_attr(l));
                }
                if let Some(id) = &key.id {
                    let b = hex::decode(id.trim())
                        .map_err(|e| Failure(format!("--id is not hex: {e}")))?;
                    selector.push(Attribute::bytes(ck::CKA_ID, b));
                }
                let pin = read_pin(&so_pin_file)?;
                let mut c = Client::connect_as(partition_socket(state, &partition), "ihsm")?;
                let s = c.open_session(true)?;
                c.login(s, UserType::SecurityOfficer, &pin)?;
                let h = c.replace_release_policy(s, selector, p)?;
                println!("release policy of key {h} replaced by the Security Officer (audited)");
                Ok(())
            }
        },
        KeyCommand::Release {
            login,
            key,
            ear,
            out,
        } => {
            let token = std::fs::read(&ear)
                .map_err(|e| Failure(format!("cannot read {}: {e}", ear.display())))?;
            let (mut c, s) = connect(state, &login)?;
            let (h, what) = find_key(&mut c, s, &key)?;
            let wrapped = c.wrap_key(s, Mechanism::KeyRelease { ear: token }, 0, h)?;
            std::fs::write(&out, &wrapped)
                .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
            println!(
                "{}: {what}, released wrapped (CKM_RSA_AES_KEY_WRAP, {} bytes)",
                out.display(),
                wrapped.len()
            );
            Ok(())
        }
        KeyCommand::Unwrap {
            login,
            with,
            input,
            label,
            kind,
        } => {
            let wrapped = std::fs::read(&input)
                .map_err(|e| Failure(format!("cannot read {}: {e}", input.display())))?;
            let (mut c, s) = connect(state, &login)?;
            let k = find_one(&mut c, s, &with, ck::CKO_PRIVATE_KEY)?;
            let key_type = match kind {
                UnwrapType::Aes => ck::CKK_AES,
                UnwrapType::Secret => ck::CKK_GENERIC_SECRET,
            };
            let mech = Mechanism::RsaAesKeyWrap {
                aes_bits: 256,
                oaep: ihsm_proto::mech::OaepParams {
                    hash: Hash::Sha256,
                    mgf: Hash::Sha256.mgf1(),
                    label: Vec::new(),
                },
            };
            let mut template = vec![
                Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                Attribute::ulong(ck::CKA_KEY_TYPE, key_type),
                Attribute::bool(ck::CKA_TOKEN, true),
                label_attr(&label),
            ];
            template.extend(match kind {
                UnwrapType::Aes => [
                    Attribute::bool(ck::CKA_ENCRYPT, true),
                    Attribute::bool(ck::CKA_DECRYPT, true),
                ],
                UnwrapType::Secret => [
                    Attribute::bool(ck::CKA_SIGN, true),
                    Attribute::bool(ck::CKA_VERIFY, true),
                ],
            });
            let h = c.unwrap_key(s, mech, k, wrapped, template)?;
            println!("{label}: secret key {h}, unwrapped with {with:?}");
            Ok(())
        }
        KeyCommand::TrustVerifier {
            partition,
            so_pin_file,
            key,
            label,
        } => {
            let bytes = std::fs::read(&key)
                .map_err(|e| Failure(format!("cannot read {}: {e}", key.display())))?;
            let spki = pem::parse(&bytes)
                .ok()
                .filter(|p| p.tag() == "PUBLIC KEY")
                .map(pem::Pem::into_contents)
                .ok_or_else(|| Failure(format!("{} is not a PEM PUBLIC KEY", key.display())))?;
            // A P-384 SubjectPublicKeyInfo: 23 bytes of algorithm and BIT STRING
            // head, then the 97-byte point.
            let point = match spki.len().checked_sub(97).and_then(|i| spki.get(i..)) {
                Some(p) if spki.len() == 120 && p.first() == Some(&4) => p.to_vec(),
                _ => {
                    return Err(Failure(format!(
                        "{} is not an ECC P-384 public key",
                        key.display()
                    )));
                }
            };
            let mut ec_point = vec![0x04, 0x61];
            ec_point.extend(&point);
            let pin = read_pin(&so_pin_file)?;
            let mut c = Client::connect_as(partition_socket(state, &partition), "ihsm")?;
            let s = c.open_session(true)?;
            c.login(s, UserType::SecurityOfficer, &pin)?;
            let h = c.create_object(
                s,
                vec![
                    Attribute::ulong(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
                    Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_EC),
                    Attribute::bytes(ck::CKA_EC_PARAMS, P384.to_vec()),
                    Attribute::bytes(ck::CKA_EC_POINT, ec_point),
                    Attribute::bool(ck::CKA_VERIFY, true),
                    Attribute::bool(ck::CKA_TRUSTED, true),
                    Attribute::bool(ck::CKA_TOKEN, true),
                    label_attr(&label),
                ],
            )?;
            let authority = ihsm_verify::release::verifier_authority(&point).unwrap_or_default();
            println!("{label}: trusted verifier {h} in {partition}, authority {authority}");
            Ok(())
        }
        KeyCommand::Public { login, label, out } => {
            let (mut c, s) = connect(state, &login)?;
            let key = find_one(&mut c, s, &label, ck::CKO_PUBLIC_KEY)?;
            let spki = match c
                .get_attributes(s, key, vec![ck::CKA_PUBLIC_KEY_INFO])?
                .pop()
            {
                Some(AttrResult::Value(AttrValue::Bytes(ref b))) if !b.is_empty() => b.clone(),
                _ => return Err(Failure(format!("{label:?} has no public key info"))),
            };
            let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
            std::fs::write(&out, pem.as_bytes())
                .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
            println!("{}", out.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_der_encoding() {
        // r with the high bit set gets a zero pad; s with leading zeros is trimmed.
        let mut raw = vec![0x80; 32];
        raw.extend(std::iter::repeat_n(0, 31));
        raw.push(5);
        let d = ecdsa_der(&raw);
        assert_eq!(&d[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert_eq!(d[4], 0);
        assert_eq!(&d[37..], &[0x02, 0x01, 0x05]);
    }
}
