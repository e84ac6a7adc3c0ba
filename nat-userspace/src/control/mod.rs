//! The control plane: the daemon's lifecycle, the control socket (protocol, server, client)
//! and, later, external-address sources and metrics. Runs on tokio, off the packet path;
//! it reaches the data path only through published snapshots and counters.

pub mod client;
pub mod daemon;
pub mod external;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod report;
pub mod server;
pub mod stun;
