//! sipnat: a kernel-bypass SIP NAT rewriter.
//!
//! Module map (see ARCHITECTURE.md):
//! - [`datapath`]: AF_XDP workers, reassembly, flow table, next hops, slow path.
//! - [`nat`]: address classification, NAT rules, external-address snapshot.
//! - [`sip`]: the zero-copy SIP/SDP scanner (finds byte ranges, changes nothing).
//! - [`rewrite`]: the pure rewrite of a SIP message / whole packet.
//! - [`snapshot`]: lock-free publication of config/address snapshots to the workers.
//! - [`xdp`]: the XDP steering program seen from userspace (load, attach, maps, counters).
//! - [`sys`]: OS wrappers (privileges, limits, interfaces).
//! - [`control`]: the daemon lifecycle and the control socket.
//! - [`loadtest`]: `sipnat loadtest`, the AF_XDP SIP generator and verifying receiver.
//! - [`cli`]: the `sipnat` command line, one module per subcommand.

extern crate alloc;

pub mod cli;
pub mod config;
pub mod control;
pub mod datapath;
pub mod loadtest;
pub mod nat;
pub mod rewrite;
pub mod sip;
pub mod snapshot;
pub mod sys;
pub mod wire;
pub mod xdp;
