//! The ihsm fleet: hosts, each its own ihsm device, coordinated through etcd.
//!
//! etcd is the fleet's registry and is trusted for nothing: what a host publishes
//! (its [`record::HostRecord`]) is bound by its own attested quotes, and whoever
//! reads it appraises it with `ihsm-verify` against the fleet's
//! [`policy::FleetPolicy`] (docs/fleet.md). etcd can make the fleet unavailable;
//! it cannot make a host accept a forged peer.
#![forbid(unsafe_code)]

pub mod domain;
pub mod peer;
pub mod placement;
pub mod policy;
pub mod record;
pub mod registry;
pub mod testing;
pub mod trust;

pub use policy::{AppraisalCache, FleetPolicy, HostRefusal, HostView, SignedRefvals};
pub use record::{Evidence, HostBody, HostRecord};
pub use registry::{Attester, FleetError, MemberConfig, MemberState, Membership, Registry};
pub use trust::{TrustBundle, TrustError};
