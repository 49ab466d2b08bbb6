//! The security-relevant configuration: a small TOML file whose exact bytes are
//! measured (SHA-384) into the runtime TCI and signed in the firmware manifest.
//! Changing it without re-signing the manifest stops the device from booting.

use serde::Deserialize;

use crate::error::{Result, RotError};

/// The file provisioning writes when none exists.
pub const DEFAULT_SECURITY_CONFIG: &str = "\
# ihsm security configuration.
#
# The SHA-384 of this file's exact bytes is measured into the runtime (PCR2/PCR3,
# the RT Alias identity) and must match the signed firmware manifest: edit it, then
# re-sign the manifest (`ihsm manifest sign ...`), or the device refuses to boot.

[device]
# true: production posture, no debugger may attach (the daemon is made non-dumpable).
# false: debug unlocked. The device gets a different identity and different sealing
# keys, as Caliptra's debug-unlocked state does, so debug never sees production keys.
debug_locked = true
";

/// Parsed security configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// `[device]`.
    pub device: DeviceSection,
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
        toml::from_str(text)
            .map_err(|e| RotError::BadConfig(e.message().to_owned() + &location(text, e.span())))
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
}
