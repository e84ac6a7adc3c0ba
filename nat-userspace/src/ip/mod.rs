//! IP datagrams above the wire views: fragment reassembly ([`reasm`]) and
//! refragmentation ([`frag`]). Pure algorithms over byte buffers: no sockets, no rings,
//! no time source (the caller passes the clock).

pub mod frag;
pub mod reasm;

#[cfg(test)]
mod test_frames;
