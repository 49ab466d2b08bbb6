//! The ihsm HSM core: everything inside the HSM boundary once the root of trust has
//! booted and handed over its sealing key.
//!
//! - [`device::Device`]: the state machine (booting, operational, tampered, fatal),
//!   partitions, the tamper response, sensors.
//! - [`partition::Partition`]: a tenant's token — PINs with lockout, quotas,
//!   sessions and login as PKCS#11 models them, objects, every mechanism.
//! - [`attr`]: the one table of attribute rules.
//! - [`audit`]: hash-chained, checkpoint-signed audit logs and their verifier.
//! - `masked`: masked keys, bound to a partition of a device.
//!
//! Key hierarchy: RoT sealing key (stable-identity ladder) -> partition master key
//! (random, in the sealed partition record) -> object records (AES-256-GCM with the
//! partition id, object id and attribute digest as associated data).
#![forbid(unsafe_code)]

pub mod attr;
pub mod audit;
pub mod device;
mod error;
/// Entry points for the cargo-fuzz targets, compiled only when cargo-fuzz builds
/// (`--cfg fuzzing`): no build of the daemon has them.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;
pub(crate) mod key;
mod locked;
pub(crate) mod masked;
pub mod mech;
pub(crate) mod object;
pub(crate) mod ops;
pub mod partition;
pub(crate) mod pin;
pub mod quota;
pub mod session;
#[cfg(all(feature = "test-hooks", debug_assertions))]
mod test_hooks;

/// The maps every call looks up (sessions, logins, handles to objects): keyed by
/// numbers the HSM hands out, hashed with foldhash (seeded per process), several
/// times cheaper than SipHash on a u64 and still not predictable by a tenant.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use device::{Device, DeviceConfig, DeviceState, PartitionPolicy, PartitionSpec, TamperPolicy};
pub use error::{CoreError, Result};
/// What `DeviceConfig::audit_sink` is told of each durable audit entry.
pub use ihsm_store::AuditObserver;
pub use ops::MAX_DATA;
pub use pin::{MAX_FAILED_ATTEMPTS, MAX_PIN_LEN, MIN_PIN_LEN};
