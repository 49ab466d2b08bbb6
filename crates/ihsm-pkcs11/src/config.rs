//! Where the partition sockets are: `IHSM_SOCKET` (one socket), else
//! `IHSM_STATE` (every socket in its `partitions/`), else the first of
//! `$XDG_CONFIG_HOME/ihsm/pkcs11.toml` (`~/.config/...`) and
//! `/etc/ihsm/pkcs11.toml`, else `/var/lib/ihsm`, the packaged daemon's state.
//!
//! ```toml
//! state = "/var/lib/ihsm"            # every partition socket of this daemon
//! sockets = ["/run/app/tenant.sock"]  # and/or these sockets
//! transport = "socket"               # no shared-memory rings (default "ring")
//! ```
//!
//! `IHSM_TRANSPORT` (`ring` or `socket`), when set, overrides `transport`.
//!
//! **Fleet mode**: `IHSM_FLEET=HOST=SOCKET[,HOST=SOCKET...]`, else (when neither
//! `IHSM_SOCKET` nor `IHSM_STATE` is set) a `fleet` table in the file, names each
//! fleet host's socket for the partition:
//!
//! ```toml
//! [fleet]
//! host-0 = "/var/lib/ihsm/partitions/tenant.sock"
//! host-1 = "/run/ihsm-host-1/tenant.sock"
//! ```
//!
//! The slots are then the routes' partitions, and a session follows its
//! partition when it moves (docs/fleet.md, "The application keeps running").

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    #[serde(default)]
    pub(crate) state: Option<PathBuf>,
    #[serde(default)]
    pub(crate) sockets: Vec<PathBuf>,
    /// How requests travel on a local socket.
    #[serde(default)]
    pub(crate) transport: Transport,
    /// Fleet mode: each fleet host's socket for the partition.
    #[serde(default)]
    pub(crate) fleet: std::collections::BTreeMap<String, PathBuf>,
}

/// The fleet routes (host, socket), empty outside fleet mode.
pub(crate) fn fleet() -> Result<Vec<(String, PathBuf)>, ConfigError> {
    if let Some(v) = std::env::var_os("IHSM_FLEET").filter(|s| !s.is_empty()) {
        return routes(&v.to_string_lossy());
    }
    // IHSM_SOCKET and IHSM_STATE name the sockets, and no file is read.
    if ["IHSM_SOCKET", "IHSM_STATE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
    {
        return Ok(Vec::new());
    }
    for f in config_files() {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ConfigError(format!("{}: {e}", f.display()))),
        };
        let c = parse(&text).map_err(|e| ConfigError(format!("{}: {e}", f.display())))?;
        return Ok(c.fleet.into_iter().collect());
    }
    Ok(Vec::new())
}

/// `IHSM_FLEET`'s `HOST=SOCKET[,HOST=SOCKET...]`.
fn routes(v: &str) -> Result<Vec<(String, PathBuf)>, ConfigError> {
    {
        v.split(',')
            .map(|r| {
                r.split_once('=')
                    .filter(|(h, p)| !h.is_empty() && !p.is_empty())
                    .map(|(h, p)| (h.to_owned(), PathBuf::from(p)))
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "IHSM_FLEET: {r:?} is not HOST=SOCKET (routes are separated by commas)"
                        ))
                    })
            })
            .collect()
    }
}

/// `transport` in `pkcs11.toml`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    /// Shared-memory rings where the daemon offers them (the default).
    #[default]
    Ring,
    /// Every request on the socket.
    Socket,
}

/// Whether to use shared-memory rings: `IHSM_TRANSPORT` if set, else the
/// first configuration file's `transport`, else yes.
pub(crate) fn rings() -> bool {
    if std::env::var_os("IHSM_TRANSPORT").is_some_and(|v| !v.is_empty()) {
        return ihsm_client::rings_allowed_by_env();
    }
    for f in config_files() {
        if let Ok(text) = std::fs::read_to_string(&f) {
            return parse(&text).map_or(true, |c| c.transport == Transport::Ring);
        }
    }
    true
}

/// Parses `pkcs11.toml`.
pub(crate) fn parse(text: &str) -> Result<File, String> {
    toml::from_str(text).map_err(|e| e.message().to_owned())
}

/// Why no sockets could be found.
#[derive(Debug)]
pub(crate) struct ConfigError(pub(crate) String);

fn scan(state: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(ihsm_proto::layout::partition_dir(state)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| ihsm_proto::layout::partition_of(p).is_some())
        .collect();
    out.sort();
    out
}

fn config_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => v.push(PathBuf::from(x).join("ihsm/pkcs11.toml")),
        _ => {
            if let Some(h) = std::env::var_os("HOME") {
                v.push(PathBuf::from(h).join(".config/ihsm/pkcs11.toml"));
            }
        }
    }
    v.push(PathBuf::from("/etc/ihsm/pkcs11.toml"));
    v
}

/// The candidate sockets, in a stable order.
pub(crate) fn sockets() -> Result<Vec<PathBuf>, ConfigError> {
    let routes = fleet()?;
    if !routes.is_empty() {
        return Ok(routes.into_iter().map(|(_, p)| p).collect());
    }
    if let Some(s) = std::env::var_os("IHSM_SOCKET").filter(|s| !s.is_empty()) {
        return Ok(vec![PathBuf::from(s)]);
    }
    if let Some(d) = std::env::var_os("IHSM_STATE").filter(|s| !s.is_empty()) {
        return Ok(scan(Path::new(&d)));
    }
    for f in config_files() {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ConfigError(format!("{}: {e}", f.display()))),
        };
        let c = parse(&text).map_err(|e| ConfigError(format!("{}: {e}", f.display())))?;
        let mut out = c.state.as_deref().map(scan).unwrap_or_default();
        out.extend(c.sockets);
        return Ok(out);
    }
    Ok(scan(Path::new("/var/lib/ihsm")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_routes_from_the_environment_and_the_file() {
        let r = routes("host-0=/a/t.sock,host-1=/b/t.sock").unwrap();
        assert_eq!(
            r,
            vec![
                ("host-0".to_owned(), PathBuf::from("/a/t.sock")),
                ("host-1".to_owned(), PathBuf::from("/b/t.sock")),
            ]
        );
        for bad in ["host-0", "=/a", "host-0=", "a=/x,,b=/y"] {
            let e = routes(bad).unwrap_err();
            assert!(e.0.contains("HOST=SOCKET"), "{bad}: {}", e.0);
        }
        let f = parse("[fleet]\nhost-0 = \"/a/t.sock\"\nhost-1 = \"/b/t.sock\"\n").unwrap();
        assert_eq!(f.fleet.len(), 2);
        assert!(parse("[fleet]\nhost-0 = 3\n").is_err());
        assert!(parse("").unwrap().fleet.is_empty());
    }
}
