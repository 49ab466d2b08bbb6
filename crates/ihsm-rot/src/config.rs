//! The security-relevant configuration: a small TOML file whose exact bytes are
//! measured (SHA-384) into the runtime TCI and signed in the firmware manifest.
//! Changing it without re-signing the manifest stops the device from booting.

use serde::Deserialize;

use crate::error::{Result, RotError};

/// The file provisioning writes when none exists.
pub const DEFAULT_SECURITY_CONFIG: &str = r#"# ihsm security configuration.
#
# The SHA-384 of this file's exact bytes is measured into the runtime (PCR2/PCR3,
# the RT Alias identity) and must match the signed firmware manifest: edit it, then
# re-sign the manifest (`ihsm manifest sign ...`), or the device refuses to boot.

[device]
# true: production posture, no debugger may attach (the daemon is made non-dumpable).
# false: debug unlocked. The device gets a different identity and different sealing
# keys, as Caliptra's debug-unlocked state does, so debug never sees production keys.
debug_locked = true

[tamper]
# What a tamper (the sensor input, a debugger attaching, a store integrity or
# rollback failure) does after zeroizing every volatile secret and latching TAMPERED:
# "zeroize-and-destroy" also destroys the fuse file, so nothing this device sealed
# can ever be opened again; "zeroize" keeps it.
policy = "zeroize-and-destroy"

[access]
# Socket permissions. The daemon also checks each peer's uid/gid (SO_PEERCRED):
# the admin socket takes root, the daemon's own user and admin_gid; a partition
# socket takes its owner's uid or gid and the principals `ihsm partition allow`
# added. Partition sockets are 0666 whatever partition_socket_mode says (kept so
# older files parse): the daemon's check is the rule, and tells a caller it
# refuses why.
admin_socket_mode = 0o600
partition_socket_mode = 0o660
# admin_gid = 0

[network]
# The same protocol over TCP with mutual TLS, for central HSMs beside host HSMs.
# Each client certificate (by SHA-256 fingerprint of its DER) maps to one partition.
enabled = false
# listen = "127.0.0.1:5696"
# certificate = "network/server.pem"
# key = "network/server.key"
# client_ca = "network/client-ca.pem"
# [[network.client]]
# fingerprint = "<64 hex digits>"
# partition = "tenant-a"

# [fleet]
# Which peers this host accepts into its fleet (docs/fleet.md). `trust` is a PEM
# bundle (`ihsm fleet trust`), relative to the state directory: the anchors that
# peers' DICE chains must end in and the vendor keys that sign reference values.
# It is pinned here by its SHA-384, so what the host trusts is measured with this
# file. `refvals` is a directory of signed reference values (`ihsm manifest
# refvals`); they are signed, so they are not pinned.
# trust = "fleet/trust.pem"
# trust_sha384 = "<96 hex digits>"
# refvals = "fleet/refvals"
# accept_development = false
# max_evidence_age_secs = 120
# Masked blobs of a fleet masking domain epoch older than the current one (after
# `ihsm fleet evict`): "open" keeps the last 16 epochs, so they still import (and
# export again under the current one); "refuse" keeps only the current epoch.
# older_masked_epochs = "open"
"#;

/// Parsed security configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// `[device]`.
    pub device: DeviceSection,
    /// `[tamper]`.
    #[serde(default)]
    pub tamper: TamperSection,
    /// `[access]`.
    #[serde(default)]
    pub access: AccessSection,
    /// `[network]`.
    #[serde(default)]
    pub network: NetworkSection,
    /// `[fleet]`: which peers the host accepts.
    #[serde(default)]
    pub fleet: Option<FleetTrustSection>,
}

/// `[fleet]` of the security configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetTrustSection {
    /// The trust bundle (anchors and vendor keys, PEM), relative to the state
    /// directory.
    pub trust: String,
    /// Its SHA-384, 96 hex digits: the daemon refuses a bundle that differs.
    pub trust_sha384: String,
    /// The directory of signed reference values, relative to the state directory.
    pub refvals: String,
    /// Whether development devices may be peers (a development fleet).
    #[serde(default)]
    pub accept_development: bool,
    /// The oldest peer evidence accepted, in seconds.
    #[serde(default = "default_max_evidence_age")]
    pub max_evidence_age_secs: u64,
    /// What becomes of masked blobs of older fleet domain epochs.
    #[serde(default)]
    pub older_masked_epochs: OlderEpochs,
}

/// `[fleet] older_masked_epochs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OlderEpochs {
    /// Keep the last epochs: their blobs import, and export again under the
    /// current one.
    #[default]
    Open,
    /// Keep only the current epoch: older blobs are refused.
    Refuse,
}

fn default_max_evidence_age() -> u64 {
    120
}

/// `[tamper]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TamperSection {
    /// What a tamper destroys.
    #[serde(default)]
    pub policy: TamperPolicyName,
}

/// `[tamper] policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TamperPolicyName {
    /// Zeroize, latch, and destroy the fuse file.
    #[default]
    ZeroizeAndDestroy,
    /// Zeroize and latch.
    Zeroize,
}

/// `[access]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// A group whose members may use the admin socket (besides root and the
    /// daemon's own user).
    #[serde(default)]
    pub admin_gid: Option<u32>,
    /// Permission bits of the admin socket.
    #[serde(default = "default_admin_mode")]
    pub admin_socket_mode: u32,
    /// Read, and no longer used: partition sockets are 0666 and the daemon
    /// admits each peer by its credentials (docs/daemon.md).
    #[serde(default = "default_partition_mode")]
    pub partition_socket_mode: u32,
}

fn default_admin_mode() -> u32 {
    0o600
}

fn default_partition_mode() -> u32 {
    0o660
}

impl Default for AccessSection {
    fn default() -> Self {
        Self {
            admin_gid: None,
            admin_socket_mode: default_admin_mode(),
            partition_socket_mode: default_partition_mode(),
        }
    }
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Whether the TCP listener runs.
    #[serde(default)]
    pub enabled: bool,
    /// Address to listen on.
    #[serde(default)]
    pub listen: Option<String>,
    /// Server certificate chain (PEM), relative to the state directory.
    #[serde(default)]
    pub certificate: Option<String>,
    /// Server private key (PEM, PKCS#8), relative to the state directory.
    #[serde(default)]
    pub key: Option<String>,
    /// CA that issues client certificates (PEM), relative to the state directory.
    #[serde(default)]
    pub client_ca: Option<String>,
    /// Which client certificate reaches which partition.
    #[serde(default, rename = "client")]
    pub clients: Vec<NetworkClient>,
}

/// `[[network.client]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkClient {
    /// SHA-256 of the client certificate's DER, 64 hex digits.
    pub fingerprint: String,
    /// The partition it reaches.
    pub partition: String,
}

/// `[device]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    /// Whether debug is locked (production posture).
    pub debug_locked: bool,
}

impl SecurityConfig {
    /// Parses the TOML text; errors name the offending key.
    ///
    /// # Errors
    /// [`RotError::BadConfig`].
    pub fn parse(text: &str) -> Result<Self> {
        let c: Self = toml::from_str(text)
            .map_err(|e| RotError::BadConfig(e.message().to_owned() + &location(text, e.span())))?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(RotError::BadConfig(format!("{key}: {why}")));
        for (key, mode) in [
            ("access.admin_socket_mode", self.access.admin_socket_mode),
            (
                "access.partition_socket_mode",
                self.access.partition_socket_mode,
            ),
        ] {
            if mode > 0o777 {
                return bad(key, "permission bits must be at most 0o777");
            }
        }
        let n = &self.network;
        if n.enabled {
            for (key, v) in [
                ("network.listen", &n.listen),
                ("network.certificate", &n.certificate),
                ("network.key", &n.key),
                ("network.client_ca", &n.client_ca),
            ] {
                if v.is_none() {
                    return bad(key, "required when network.enabled = true");
                }
            }
            if let Some(l) = &n.listen
                && l.parse::<std::net::SocketAddr>().is_err()
            {
                return bad(
                    "network.listen",
                    "must be an address and port, e.g. \"127.0.0.1:5696\"",
                );
            }
        }
        if let Some(f) = &self.fleet {
            if f.trust_sha384.len() != 96 || !f.trust_sha384.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return bad(
                    "fleet.trust_sha384",
                    "must be the trust bundle's SHA-384, 96 hex digits (`ihsm fleet trust` prints it)",
                );
            }
            if !(10..=86_400).contains(&f.max_evidence_age_secs) {
                return bad("fleet.max_evidence_age_secs", "from 10 to 86400 seconds");
            }
        }
        for c in &n.clients {
            if c.fingerprint.len() != 64 || !c.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad(
                    "network.client.fingerprint",
                    "must be the certificate's SHA-256, 64 hex digits",
                );
            }
        }
        Ok(())
    }
}

fn location(text: &str, span: Option<core::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text
                .get(..r.start)
                .map(|t| t.matches('\n').count() + 1)
                .unwrap_or(0);
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parses() {
        let c = SecurityConfig::parse(DEFAULT_SECURITY_CONFIG).unwrap();
        assert!(c.device.debug_locked);
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let e = SecurityConfig::parse("[device]\ndebug_locked = true\ndebug_lockd = false\n")
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("debug_lockd") && msg.contains("line 3"),
            "{msg}"
        );
        let e = SecurityConfig::parse("[device]\n").unwrap_err().to_string();
        assert!(e.contains("debug_locked"), "{e}");
        let e = SecurityConfig::parse("[device]\ndebug_locked = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(SecurityConfig::parse("\u{0}garbage[[").is_err());
    }

    #[test]
    fn daemon_sections_default_and_are_checked() {
        let c = SecurityConfig::parse("[device]\ndebug_locked = true\n").unwrap();
        assert_eq!(c.tamper.policy, TamperPolicyName::ZeroizeAndDestroy);
        assert_eq!(c.access.admin_socket_mode, 0o600);
        assert!(!c.network.enabled);
        let d = SecurityConfig::parse(DEFAULT_SECURITY_CONFIG).unwrap();
        assert_eq!(d.access, AccessSection::default());
        let base = "[device]\ndebug_locked = true\n";
        for (extra, key) in [
            ("[tamper]\npolicy = \"explode\"\n", "explode"),
            (
                "[access]\nadmin_socket_mode = 0o1777\n",
                "access.admin_socket_mode",
            ),
            ("[network]\nenabled = true\n", "network.listen"),
            (
                "[network]\nenabled = true\nlisten = \"nowhere\"\ncertificate = \"a\"\nkey = \"b\"\nclient_ca = \"c\"\n",
                "network.listen",
            ),
            (
                "[[network.client]]\nfingerprint = \"abc\"\npartition = \"p\"\n",
                "network.client.fingerprint",
            ),
            ("[access]\nadmin_gidd = 5\n", "admin_gidd"),
        ] {
            let e = SecurityConfig::parse(&format!("{base}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
    }
}
