//! Files that must be whole after a crash: the fuses, the store's monotonic
//! counter, the tamper latch, manifests and key files are each written with
//! [`write_atomic`]. It lives here, in the lowest crate that both the root of trust
//! and the store link, so that there is one of it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A step of [`write_atomic`] failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct WriteError {
    /// The step: "cannot create", "cannot write", "cannot sync", "cannot rename
    /// into place", "cannot sync directory".
    pub what: &'static str,
    /// The file (or directory) of that step.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

fn step(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_owned();
    move |source| WriteError { what, path, source }
}

/// Writes `data` to `path` with permission bits `mode` so that a crash leaves
/// either the old file or the new one: a temporary file beside it (a random name, so
/// two writers never share one), fsync, rename over, fsync of the directory. On an
/// error the temporary file is removed and `path` is as it was.
///
/// # Errors
/// [`WriteError`] naming the step that failed (the random name's RNG failing is
/// "cannot create").
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), WriteError> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: [u8; 8] = crate::rand::array().map_err(|_| WriteError {
        what: "cannot create",
        path: path.to_owned(),
        source: std::io::Error::other("no random bytes for the temporary file's name"),
    })?;
    let suffix: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.tmp.{suffix}"));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(step("cannot create", &tmp))?;
        f.write_all(data).map_err(step("cannot write", &tmp))?;
        f.sync_all().map_err(step("cannot sync", &tmp))?;
        fs::rename(&tmp, path).map_err(step("cannot rename into place", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The directory holding `path` (`.` for a bare file name).
#[must_use]
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory, so that renames and links in it are durable.
///
/// # Errors
/// [`WriteError`] "cannot sync directory".
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(step("cannot sync directory", dir))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn replaces_whole_with_its_mode_and_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("ihsm-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
        // A directory that does not exist: the first step fails, and says so.
        let e = write_atomic(&dir.join("missing/f"), b"x", 0o600).unwrap_err();
        assert_eq!(e.what, "cannot create");
        assert!(e.to_string().contains("missing"), "{e}");
        // A target that is a directory: the rename fails, the temporary goes.
        fs::create_dir_all(dir.join("d/inner")).unwrap();
        let e = write_atomic(&dir.join("d"), b"x", 0o600).unwrap_err();
        assert_eq!(e.what, "cannot rename into place");
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(parent(Path::new("f")), Path::new("."));
    }
}
