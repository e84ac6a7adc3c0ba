//! The rewrite: pure functions from (bytes, config snapshot, external address, direction)
//! to edited bytes and an [`Outcome`]. No sockets, no time, no allocation.
//!
//! - [`fast`]: the rewrite everything calls ([`rewrite_message`], and
//!   [`packet::rewrite_packet`] for whole packets): the exact parsers of [`message`], run
//!   only where an address of ours can be (a [`Gate`] per snapshot and direction).
//! - [`message`]: one SIP message (a UDP payload) in a buffer with tailroom: the exact
//!   scanner and rewriter.
//! - `decide`: what each address of a message becomes (decided once per message).
//! - [`packet`]: a whole frame or IP packet: L2/L3/L4 framing, SNAT, lengths, checksums.
//! - [`classify`]: what an address text is (local, public, never rewritten).
//! - [`reference`]: the rewriter without the fast path (every field parsed, the UDP
//!   checksum summed over the whole datagram), kept to prove the fast path exact (the
//!   `differential` test and fuzz target) and to measure it against (benches).

pub mod changes;
pub mod classify;
pub mod context;
mod decide;
pub mod edits;
pub mod fast;
pub mod message;
pub mod packet;

pub use fast::{rewrite_message, rewrite_message_in, Gate};
pub use message::{Changes, Context, MediaPorts, Napt, Outcome, Rewrite};

/// The exact rewriter without the fast path: every field that could hold an address is
/// parsed, the UDP checksum is summed over the whole datagram before and after. Same
/// signatures as the fast path's functions (without the gate); the same output, byte for
/// byte, and the same outcome.
pub mod reference {
    pub use super::classify::reference as classify;
    pub use super::message::{rewrite_message, rewrite_message_in};
    pub use super::packet::{
        reference_rewrite_packet as rewrite_packet,
        reference_rewrite_packet_in as rewrite_packet_in,
    };
}

#[cfg(test)]
mod tests;
