//! The rewrite: pure functions from (bytes, config snapshot, external address, direction)
//! to edited bytes and an [`Outcome`]. No sockets, no time, no allocation.
//!
//! - [`message`]: one SIP message (a UDP payload) in a buffer with tailroom.
//! - [`packet`]: a whole frame or IP packet: L2/L3/L4 framing, SNAT, lengths, checksums.

pub mod edits;
pub mod message;
pub mod packet;

pub use message::{rewrite_message, rewrite_message_in, Changes, Context, Outcome, Rewrite};

#[cfg(test)]
mod tests;
