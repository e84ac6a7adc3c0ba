//! sipnat: a kernel-bypass SIP NAT rewriter.
//!
//! Module map (see ARCHITECTURE.md):
//! - [`xdp`]: the XDP steering program seen from userspace (load, attach, maps, counters).
//! - [`sys`]: OS wrappers (privileges, limits, interfaces).
//! - [`cli`]: the `sipnat` command line, one module per subcommand.

pub mod cli;
pub mod sys;
pub mod xdp;
