//! The SIP/SDP scanner: zero-copy, allocation-free, results as offsets into the message.
//! It finds things; the rewrite decides what to change. `addr` parses and formats the IP
//! addresses it finds, so the scanner needs nothing above it.

pub mod addr;
pub mod body;
#[cfg(target_arch = "x86_64")]
mod ipv4_simd;
pub mod message;
pub mod scan;
pub mod sdp;
pub mod uri;
