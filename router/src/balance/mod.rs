//! Endpoint selection. Pingora ships round-robin and consistent hashing, neither of which
//! knows about per-replica concurrency; [`p2c`] is Sluice's least-request selector.

pub mod p2c;

pub use p2c::{has_capacity, select, Candidate};
