//! The MDF as a library: the relay (sessions, legs, floor control, batched UDP I/O) and its
//! control API. `main.rs` runs it; tests and the relay benchmark use its parts directly.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod error;
pub mod floor;
pub mod io;
pub mod mcptt;
pub mod ports;
pub mod relay;
pub mod session;
pub mod shards;
pub mod stats;
