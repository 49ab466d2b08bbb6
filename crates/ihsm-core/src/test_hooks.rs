//! Test builds only: reveals a partition's keys to the hygiene test
//! (`crates/ihsmd/tests/hygiene.rs`), which has to know them to search the
//! daemon's memory for them once the partition is deleted or the device tampered
//! with.
//!
//! Compiled only with the `test-hooks` feature *and* debug assertions: ihsmd
//! turns the feature on from its dev-dependencies alone, so cargo enables it only
//! when it builds tests (the daemon binary that `cargo test` builds for its
//! integration tests has it), and an optimised build has no hook even when the
//! feature is asked for. Even then it does nothing unless [`REVEAL_DIR`] names a
//! directory in the daemon's environment.

use std::io::Write;

use ihsm_crypto::{ExposeSecret, Secret};
use zeroize::Zeroizing;

/// The environment variable that arms the hook: a directory, where each
/// partition's keys are written as they are loaded.
pub(crate) const REVEAL_DIR: &str = "IHSM_TEST_REVEAL_DIR";

/// Writes `partition-PID.keys` into [`REVEAL_DIR`]: one line each of `master`,
/// `mask` and `identity` (the PKCS#8 DER), in hex. A failure is ignored: the test
/// that reads the file fails without it.
pub(crate) fn reveal(pid: u32, master: &Secret<32>, mask: &Secret<32>, identity_der: &[u8]) {
    let Some(dir) = std::env::var_os(REVEAL_DIR) else {
        return;
    };
    let text = Zeroizing::new(format!(
        "master {}\nmask {}\nidentity {}\n",
        hex::encode(master.expose_secret()),
        hex::encode(mask.expose_secret()),
        hex::encode(identity_der),
    ));
    let path = std::path::Path::new(&dir).join(format!("partition-{pid}.keys"));
    if let Ok(mut f) = std::fs::File::create(path) {
        let _ = f.write_all(text.as_bytes());
    }
}
