//! The ihsm HSM core.
#![forbid(unsafe_code)]
