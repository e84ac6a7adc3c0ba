//! The control plane: the daemon's lifecycle (`daemon`), the control socket (`protocol`,
//! `server`, `client`, with `limits` against floods), the external-address sources
//! (`external`, the STUN client `stun`), the one writer of the data-plane snapshot
//! (`writer`), one reading of every counter (`report`) and the Prometheus endpoint
//! (`metrics`). Runs on tokio, off the packet path; it reaches the data path only through
//! published snapshots and counters.

pub mod client;
pub mod daemon;
pub mod external;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod protocol;
pub mod report;
pub mod server;
pub mod stun;
pub mod writer;
