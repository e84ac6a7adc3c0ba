//! sipnat: a kernel-bypass SIP NAT rewriter.
//!
//! Module map (see ARCHITECTURE.md; layers point only down, `tests/module_graph.rs`):
//! - [`datapath`]: AF_XDP umem, ports, workers, the pipeline, next hops, slow path.
//! - [`wire`]: packet header views, checksums, frame builders, the STUN codec.
//! - [`ip`]: IP fragment reassembly and refragmentation (pure).
//! - [`nat`]: address classification, NAT rules and decisions (`Direction`, `L3Action`),
//!   the inbound flow table, external-address snapshot.
//! - [`sip`]: the zero-copy SIP/SDP scanner (finds byte ranges, changes nothing) and the
//!   IP-address text parser it uses.
//! - [`rewrite`]: the pure rewrite of a SIP message / whole packet.
//! - [`snapshot`]: lock-free publication of config/address snapshots to the workers.
//! - [`xdp`]: the XDP steering program seen from userspace (load, attach, maps, counters).
//! - [`sys`]: OS wrappers (privileges, limits, interfaces).
//! - [`config`]: the TOML config file, its validation and lowering.
//! - [`control`]: the daemon lifecycle, the control socket, external sources, metrics.
//! - [`loadtest`]: `sipnat loadtest`, the AF_XDP SIP generator and verifying receiver.
//! - [`cli`]: the `sipnat` command line, one module per subcommand.

extern crate alloc;

pub mod cli;
pub mod config;
pub mod control;
pub mod datapath;
pub mod ip;
pub mod loadtest;
pub mod nat;
pub mod rewrite;
pub mod sip;
pub mod snapshot;
pub mod sys;
pub mod wire;
pub mod xdp;
