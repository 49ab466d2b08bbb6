//! `ihsm manifest ...`: sign and inspect firmware manifests, make signing keys.

use std::path::PathBuf;

use clap::Subcommand;
use ihsm_rot::keyset::KeySet;
use ihsm_rot::manifest::{self, Manifest};
use ihsm_rot::state::{StateDir, default_body, measure_file};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{CliResult, Failure, output};

#[derive(Debug, Subcommand)]
pub(crate) enum ManifestCommand {
    /// Sign a manifest for a firmware image and security configuration.
    Sign {
        /// Vendor key set directory (public keys of every index; private keys of the
        /// signing indices).
        #[arg(long, value_name = "DIR")]
        vendor_keys: PathBuf,
        /// Index of the signing ECC P-384 vendor key.
        #[arg(long, default_value_t = 0)]
        ecc_index: u32,
        /// Index of the signing ML-DSA-87 vendor key.
        #[arg(long, default_value_t = 0)]
        mldsa_index: u32,
        /// Owner key set to countersign with.
        #[arg(long, value_name = "DIR")]
        owner_keys: Option<PathBuf>,
        /// Firmware security version number (0..=128).
        #[arg(long)]
        svn: u32,
        /// The firmware image (default: the ihsmd beside this ihsm).
        #[arg(long, value_name = "FILE")]
        image: Option<PathBuf>,
        /// The security configuration (default: STATE/security.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Vendor validity start (RFC 3339); certificates of this firmware carry it.
        #[arg(long, requires = "not_after")]
        not_before: Option<String>,
        /// Vendor validity end (RFC 3339).
        #[arg(long, requires = "not_before")]
        not_after: Option<String>,
        /// Owner validity start (RFC 3339); wins over the vendor's.
        #[arg(long, requires_all = ["owner_not_after", "owner_keys"])]
        owner_not_before: Option<String>,
        /// Owner validity end (RFC 3339).
        #[arg(long, requires = "owner_not_before")]
        owner_not_after: Option<String>,
        /// Where to write (default: STATE/manifest.bin).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Write the signed reference values (docs/attestation.md §3) of a manifest:
    /// what a genuine device booting it measures, signed ES384 + ML-DSA-87 by the
    /// vendor keys. PCR0/1 depend on the device's fuses, given by the flags.
    Refvals {
        /// The signed manifest.
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Vendor key set directory (the private keys of the indices that signed
        /// the manifest).
        #[arg(long, value_name = "DIR")]
        vendor_keys: PathBuf,
        /// The fused lifecycle of the devices described.
        #[arg(long, value_enum, default_value = "production")]
        lifecycle: RefLifecycle,
        /// The fused minimum SVN of the devices (default: 0, as `ihsm provision`).
        #[arg(long, default_value_t = 0)]
        svn: u32,
        /// The lowest firmware SVN a verifier accepts (default: the manifest's SVN).
        #[arg(long)]
        min_svn: Option<u32>,
        /// The fused owner key hash (hex, 96 digits); without it no owner is fused
        /// and the manifest's owner key (or zeros) is measured.
        #[arg(long, value_name = "HEX")]
        owner_key_hash: Option<String>,
        /// The owner key set whose hash is fused (instead of --owner-key-hash).
        #[arg(long, value_name = "DIR", conflicts_with = "owner_key_hash")]
        owner_keys: Option<PathBuf>,
        /// The devices run with `debug_locked = false`.
        #[arg(long)]
        debug_unlocked: bool,
        /// Where to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print a manifest.
    Show {
        /// The manifest file.
        file: PathBuf,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a key set (ECC P-384 and ML-DSA-87 key pairs) for a vendor or owner.
    Keygen {
        /// Directory to create.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Key pairs per algorithm (1..=4; an owner uses 1).
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Print the hashes to fuse for a vendor (and owner) key set.
    Hashes {
        /// Vendor key set directory.
        #[arg(long, value_name = "DIR")]
        vendor_keys: PathBuf,
        /// Owner key set directory.
        #[arg(long, value_name = "DIR")]
        owner_keys: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum RefLifecycle {
    /// Lifecycle 3.
    Production,
    /// Development devices: lifecycle 1 (manufacturing), as `ihsm provision --dev`.
    Development,
}

fn timestamp(s: &str, what: &str) -> Result<u64, Failure> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| Failure(format!("{what} is not an RFC 3339 time ({e}): {s}")))?;
    u64::try_from(t.unix_timestamp()).map_err(|_| Failure(format!("{what} is before 1970: {s}")))
}

fn window(
    nb: Option<String>,
    na: Option<String>,
    what: &str,
) -> Result<Option<(u64, u64)>, Failure> {
    match (nb, na) {
        (Some(nb), Some(na)) => {
            let (b, a) = (timestamp(&nb, what)?, timestamp(&na, what)?);
            if b == 0 || b > a {
                return Err(Failure(format!(
                    "{what}: not-before must be after 1970 and not after not-after"
                )));
            }
            Ok(Some((b, a)))
        }
        _ => Ok(None),
    }
}

pub(crate) fn run(state: &StateDir, cmd: ManifestCommand) -> CliResult {
    match cmd {
        ManifestCommand::Sign {
            vendor_keys,
            ecc_index,
            mldsa_index,
            owner_keys,
            svn,
            image,
            config,
            not_before,
            not_after,
            owner_not_before,
            owner_not_after,
            out,
        } => {
            let vendor = KeySet::load(&vendor_keys)?;
            let owner = owner_keys.as_deref().map(KeySet::load).transpose()?;
            let image_digest = match &image {
                Some(p) => measure_file(p)?,
                None => crate::firmware_image(None)?,
            };
            let config_path = config.unwrap_or_else(|| state.security_config());
            let config_bytes = std::fs::read(&config_path)
                .map_err(|e| Failure(format!("cannot read {}: {e}", config_path.display())))?;
            let text = std::str::from_utf8(&config_bytes)
                .map_err(|_| Failure(format!("{} is not UTF-8", config_path.display())))?;
            ihsm_rot::config::SecurityConfig::parse(text)?;
            let config_digest = ihsm_crypto::hash::sha384(&config_bytes);
            let mut body = default_body(svn, &image_digest, &config_digest);
            body.vendor_validity = window(not_before, not_after, "--not-before/--not-after")?;
            body.owner_validity = window(
                owner_not_before,
                owner_not_after,
                "--owner-not-before/--owner-not-after",
            )?;
            let owner_signer = owner.as_ref().map(KeySet::owner_signer).transpose()?;
            let bytes = manifest::sign(
                &body,
                &vendor.vendor_signer(ecc_index, mldsa_index)?,
                owner_signer.as_ref(),
            )?;
            let out = out.unwrap_or_else(|| state.manifest());
            ihsm_rot::fuses::write_atomic(&out, &bytes, 0o644)?;
            println!("{} ({} bytes, SVN {svn})", out.display(), bytes.len());
            println!("  image   {}", hex::encode(image_digest));
            println!("  config  {}", hex::encode(config_digest));
            Ok(())
        }
        ManifestCommand::Refvals {
            manifest,
            vendor_keys,
            lifecycle,
            svn,
            min_svn,
            owner_key_hash,
            owner_keys,
            debug_unlocked,
            out,
        } => {
            let bytes = std::fs::read(&manifest)
                .map_err(|e| Failure(format!("cannot read {}: {e}", manifest.display())))?;
            let m = Manifest::parse(&bytes)?;
            let vendor = KeySet::load(&vendor_keys)?;
            let signer = vendor.vendor_signer(
                m.header.vendor_ecc_key_index,
                m.header.vendor_mldsa_key_index,
            )?;
            let owner = match (owner_key_hash, owner_keys) {
                (Some(h), _) => Some(
                    hex::decode(h.trim())
                        .ok()
                        .and_then(|b| <[u8; 48]>::try_from(b).ok())
                        .ok_or_else(|| Failure("--owner-key-hash must be 96 hex digits".into()))?,
                ),
                (None, Some(dir)) => Some(KeySet::load(&dir)?.owner_key_hash()?),
                (None, None) => None,
            };
            let facts = ihsm_rot::refvals::DeviceFacts {
                lifecycle: match lifecycle {
                    RefLifecycle::Production => ihsm_rot::fuses::Lifecycle::Production,
                    RefLifecycle::Development => ihsm_rot::fuses::Lifecycle::Manufacturing,
                },
                debug_locked: !debug_unlocked,
                fused_svn: svn,
                vendor_key_hash: vendor.vendor_key_hash()?,
                owner_key_hash: owner,
                svn_min: min_svn.unwrap_or(m.header.svn),
            };
            let r = ihsm_rot::refvals::ReferenceValues::compute(&m, &facts);
            let sealed = r.seal(signer.ecc, signer.mldsa)?;
            ihsm_rot::fuses::write_atomic(&out, &sealed, 0o644)?;
            println!("{} ({} bytes)", out.display(), sealed.len());
            println!("  fmc fwid  {}", hex::encode(r.fmc_fwid));
            for (i, p) in r.pcrs.iter().enumerate() {
                println!("  pcr{i}      {}", hex::encode(p));
            }
            println!("  svn min   {}", r.svn_min);
            Ok(())
        }
        ManifestCommand::Show { file, json } => {
            let bytes = std::fs::read(&file)
                .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
            let m = Manifest::parse(&bytes)?;
            if json {
                output::print_json(&m.summary())
            } else {
                output::print_manifest(&m.summary());
                Ok(())
            }
        }
        ManifestCommand::Keygen { out, count } => {
            KeySet::generate(&out, count)?.write(None)?;
            println!(
                "wrote {count} ECC P-384 and {count} ML-DSA-87 key pairs to {}",
                out.display()
            );
            println!("private keys (*.key.pem, mode 0600) sign; keep them offline");
            Ok(())
        }
        ManifestCommand::Hashes {
            vendor_keys,
            owner_keys,
        } => {
            let vendor = KeySet::load(&vendor_keys)?;
            println!(
                "vendor key hash  {}",
                hex::encode(vendor.vendor_key_hash()?)
            );
            if let Some(dir) = owner_keys {
                println!(
                    "owner key hash   {}",
                    hex::encode(KeySet::load(&dir)?.owner_key_hash()?)
                );
            }
            Ok(())
        }
    }
}
