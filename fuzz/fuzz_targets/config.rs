//! Configuration files: the daemon's `ihsmd.toml` (`Config::parse` of
//! crates/ihsmd/src/config.rs, through `ihsmd::fuzz`) and the PKCS#11 module's
//! `pkcs11.toml`. Input: `which u8 | text`. Nothing may panic; a file that
//! parses parses again to the same configuration.
#![no_main]

use ihsmd::fuzz::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if which & 1 == 0 {
        if let Ok(c) = Config::parse(text) {
            assert_eq!(Config::parse(text).unwrap(), c);
            let _ = c.metrics_addr();
            let _ = c.daemon.slow_requests_per_partition();
        }
    } else if let Ok(c) = ihsm_pkcs11::fuzz::config(text) {
        assert_eq!(ihsm_pkcs11::fuzz::config(text).unwrap(), c);
    }
});
