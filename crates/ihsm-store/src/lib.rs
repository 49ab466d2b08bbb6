//! The sealed, crash-safe object store of ihsm.
#![forbid(unsafe_code)]

mod backend;
mod counter;
mod error;
mod header;
mod records;
mod store;
mod tx;

pub use counter::COUNTER_FILE_LEN;
pub use error::StoreError;
pub use store::{OpenReport, Store};
pub use tx::WriteTx;

#[cfg(test)]
mod tamper_tests;
