//! sipnat: a kernel-bypass SIP NAT rewriter.
//!
//! Module map (see ARCHITECTURE.md):
//! - [`nat`]: address classification, NAT rules, external-address snapshot.
//! - [`sip`]: the zero-copy SIP/SDP scanner (finds byte ranges, changes nothing).
//! - [`rewrite`]: the pure rewrite of a SIP message / whole packet.
//! - [`xdp`]: the XDP steering program seen from userspace (load, attach, maps, counters).
//! - [`sys`]: OS wrappers (privileges, limits, interfaces).
//! - [`cli`]: the `sipnat` command line, one module per subcommand.

extern crate alloc;

pub mod cli;
pub mod config;
pub mod nat;
pub mod rewrite;
pub mod sip;
pub mod sys;
pub mod wire;
pub mod xdp;
