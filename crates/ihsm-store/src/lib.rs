//! The sealed, crash-safe object store of ihsm.
#![forbid(unsafe_code)]
