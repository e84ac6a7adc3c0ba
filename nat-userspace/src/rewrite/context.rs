//! What a rewrite depends on besides the bytes ([`Context`]), including the per-packet
//! port translations the pipeline decides: a NAPT binding ([`Napt`]) and the media port
//! allocator ([`MediaPorts`]).

use core::net::IpAddr;

use crate::nat::{addr::canonical, Direction, ExternalAddrs, RewriteConfig};

/// Everything the rewrite depends on besides the bytes.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub config: &'a RewriteConfig,
    /// Read once per packet from the published snapshot.
    pub external: ExternalAddrs,
    pub direction: Direction,
    /// Inbound: the internal address this packet is for, when the caller knows it (flow
    /// table, or the packet's rewritten destination). Otherwise 1:1 rules decide.
    pub internal: Option<IpAddr>,
    /// The UDP port on this NAT's side of the packet: inbound its destination port (the
    /// external port the packet was sent to), outbound its source port. Inbound, a
    /// REGISTER 2xx Contact naming the external address and this port is the UA's own
    /// binding and is restored; `None` (unknown) restores no binding.
    pub local_port: Option<u16>,
    /// Port translation (NAPT) of this packet's internal host: the UDP port on our side
    /// and every SIP `host:port` of that host (Via sent-by, Contact, Request-URI, Route,
    /// From/To when rewritten) change between its internal and its external port; inbound
    /// also the top Via's `rport` when its `received` or sent-by was restored. SDP ports
    /// are not SIP ports and never change by it. `None`: ports are kept (or follow the
    /// rule's static port map).
    pub napt: Option<Napt>,
    /// Media bindings: outbound, the `m=` and `a=rtcp` ports of a rewritten connection
    /// address become the external ports this allocates. `None`: SDP ports are kept (or
    /// follow the rule's static port map).
    pub media: Option<&'a dyn MediaPorts>,
}

/// A NAPT binding, as the rewrite of one packet needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Napt {
    /// The internal host (outbound: the packet's source; inbound: its restored destination).
    pub internal: IpAddr,
    pub internal_port: u16,
    pub external_port: u16,
}

impl Napt {
    /// The port `port` of address `orig` (before the rewrite) that became `new` takes in
    /// `direction`, when the binding changes it.
    #[inline]
    pub fn map(&self, direction: Direction, orig: IpAddr, new: IpAddr, port: u16) -> Option<u16> {
        match direction {
            Direction::Outbound => (canonical(orig) == self.internal && port == self.internal_port)
                .then_some(self.external_port),
            Direction::Inbound => (canonical(new) == self.internal && port == self.external_port)
                .then_some(self.internal_port),
        }
    }
}

/// Allocates media ports: the pipeline's view of the media binding registry, for the one
/// message being rewritten.
pub trait MediaPorts: core::fmt::Debug + Sync {
    /// The external RTP port for the internal RTP address `internal` (RTCP: the next port
    /// of each) in dialog `call` (the hash, [`crate::nat::media::call_hash`], of the
    /// message's first Call-ID value, read by the rewrite's own header pass), whose
    /// address the rewrite wrote as `external` (IPv4-mapped IPv6 as IPv4); `None` keeps
    /// the port. Not asked for a message without a Call-ID (its ports are kept).
    fn media_port(
        &self,
        call: u64,
        internal: core::net::SocketAddr,
        external: core::net::IpAddr,
    ) -> Option<u16>;
}

/// Media ports that depend only on the dialog and the RTP port, with no registry behind
/// them: a port that changes with the dialog, so that two rewrites that read a message's
/// Call-ID or its SDP items differently write different bytes in its `m=` and `a=rtcp`
/// lines. For the checks that compare the fast path with the reference (the
/// `differential` test and fuzz target), not for the daemon.
#[derive(Debug)]
pub struct DialogPorts;

impl MediaPorts for DialogPorts {
    fn media_port(
        &self,
        call: u64,
        internal: core::net::SocketAddr,
        _external: core::net::IpAddr,
    ) -> Option<u16> {
        let h = call ^ u64::from(internal.port()).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Some(10_000 + (h % 20_000) as u16 * 2)
    }
}
