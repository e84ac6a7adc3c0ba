//! Address classification and NAT rules: which addresses are rewritten, to what, and which
//! traffic is internal. Pure data and functions; no sockets, no packets.

pub mod addr;
pub mod decide;
pub mod external;
pub mod flow;
pub mod media;
pub mod napt;
pub mod rules;

pub use decide::{Direction, L3Action};
pub use external::ExternalAddrs;
pub use rules::{L3Mode, LeakPolicy, MalformedPolicy, Net, PortMap, RewriteConfig, Rule};
