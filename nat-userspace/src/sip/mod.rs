//! The SIP/SDP scanner: zero-copy, allocation-free, results as offsets into the message.
//! It finds things; `crate::rewrite` decides what to change.

pub mod body;
pub mod message;
pub mod scan;
pub mod sdp;
pub mod uri;
