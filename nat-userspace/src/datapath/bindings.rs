//! The pipeline's bindings: NAPT of SIP endpoints (the binding of an outbound packet's
//! source, its registration lifetime) and media bindings learned from SDP (the allocator
//! handed to the rewrite, the dialog's end). Pure like the pipeline: the tables and the
//! sink come in through [`Env`].

use core::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use super::{
    pipeline::{Early, Egress, Env},
    stats::{Batch, Counter},
    DataplaneSnapshot,
};
use crate::{
    nat::{
        media::{MediaBindings, MediaRegistry},
        napt::Bound,
        Direction, L3Mode,
    },
    rewrite::{packet::PacketRewrite, MediaPorts, Napt},
    wire::Layout,
};

/// The media binding registry and where its bindings are installed.
#[derive(Clone, Copy)]
pub struct MediaEnv<'a> {
    pub registry: &'a MediaRegistry,
    pub sink: &'a dyn MediaBindings,
}

/// The rewrite's [`MediaPorts`] for one SIP message: binds in the registry, in the
/// dialog the rewrite names (the dialog's SDP generation begun at the first port).
pub(super) struct MediaAlloc<'a> {
    env: MediaEnv<'a>,
    now_s: u32,
    /// The dialog's SDP generation + 1 once begun (0: not yet).
    generation: core::sync::atomic::AtomicU64,
    /// The dialog the generation was begun in (set with it).
    call: core::sync::atomic::AtomicU64,
    /// The last IPv4 binding asked for and its answer ([`memo_words`]): an `a=rtcp` line
    /// asks again for its section's RTP address, which this message has just bound.
    last: [core::sync::atomic::AtomicU64; 2],
}

/// [`MediaAlloc::last`]'s words: the internal address and port (`ip << 16 | port`, bit
/// 48 set: 0 is no binding), then the external address and port the registry gave it.
fn memo_words(internal: SocketAddrV4, external: Ipv4Addr, port: u16) -> [u64; 2] {
    [
        1 << 48 | u64::from(internal.ip().to_bits()) << 16 | u64::from(internal.port()),
        u64::from(external.to_bits()) << 16 | u64::from(port),
    ]
}

impl MediaAlloc<'_> {
    /// The dialog and the generation begun by this message's SDP, if it named media of
    /// ours.
    fn named(&self) -> Option<(u64, u32)> {
        use core::sync::atomic::Ordering::Relaxed;
        match self.generation.load(Relaxed) {
            0 => None,
            g => Some((self.call.load(Relaxed), (g - 1) as u32)),
        }
    }
}

impl core::fmt::Debug for MediaAlloc<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MediaAlloc")
            .field("named", &self.named())
            .finish_non_exhaustive()
    }
}

impl MediaPorts for MediaAlloc<'_> {
    fn media_port(
        &self,
        call: u64,
        internal: core::net::SocketAddr,
        external: core::net::IpAddr,
    ) -> Option<u16> {
        use core::sync::atomic::Ordering::Relaxed;
        // (One message, one dialog: the rewrite passes the same `call` every time. The
        // memo is of this message only, read and written by its one worker: relaxed.)
        let v4 = match (internal, external) {
            (SocketAddr::V4(i), IpAddr::V4(e)) => Some((i, e)),
            _ => None,
        };
        if let Some((i, e)) = v4 {
            let [key, val] = memo_words(i, e, 0);
            let [k, v] = [self.last[0].load(Relaxed), self.last[1].load(Relaxed)];
            if k == key && v >> 16 == val >> 16 {
                // Bound by this message a moment ago (its RTCP after its RTP): the same
                // answer, without a second lookup in the registry.
                return Some(v as u16);
            }
        }
        let g = match self.named() {
            Some((_, g)) => g,
            None => {
                let g = self.env.registry.begin_sdp();
                self.call.store(call, Relaxed);
                self.generation.store(u64::from(g) + 1, Relaxed);
                g
            }
        };
        let port =
            self.env
                .registry
                .bind(call, g, internal, external, self.env.sink, self.now_s)?;
        if let Some((i, e)) = v4 {
            let [key, val] = memo_words(i, e, port);
            self.last[0].store(key, Relaxed);
            self.last[1].store(val, Relaxed);
        }
        Some(port)
    }
}

/// The dialog of a SIP message and whether the message ends it: `Some((call, true))` for
/// a BYE, a CANCEL or an error final response to INVITE; `Some((call, false))` for any
/// other message with a Call-ID; `None` without one (or a broken start line). A pass of
/// its own over the headers: [`media_alloc`] makes it only for a message whose start
/// line may end a dialog (the rewrite names the dialog of the others).
pub(super) fn dialog_of(msg: &[u8]) -> Option<(u64, bool)> {
    use crate::sip::message::{self as m, StartLine};
    let (start, mut pos) = m::start_line(msg).ok()?;
    let mut call = None;
    let mut cseq_invite = false;
    while let Ok(Some((h, next))) = m::header(msg, pos) {
        if h.kind == m::Kind::CSeq {
            cseq_invite = m::cseq_method(&msg[h.value.clone()]).eq_ignore_ascii_case(b"INVITE");
        } else if call.is_none() {
            // (The rewrite's reading: the dialogs it binds media in are these.)
            call = crate::rewrite::message::dialog(&msg[h.name.clone()], &msg[h.value.clone()]);
        }
        pos = next;
    }
    let ends = match start {
        StartLine::Request { method, .. } => {
            let me = &msg[method];
            me.eq_ignore_ascii_case(b"BYE") || me.eq_ignore_ascii_case(b"CANCEL")
        }
        StartLine::Response { code } => code >= 300 && cseq_invite,
    };
    Some((call?, ends))
}

/// Whether a message starting with `msg`'s start line may end its dialog: a BYE or CANCEL
/// request, a final response of 300 or more (which ends it when its CSeq is INVITE; see
/// [`dialog_of`]). Nothing else needs the dialog before the rewrite. (The start line
/// begins at the first byte, with the method or `SIP/`: a message starting with any
/// other byte than `b`, `c` or `s` in either case — an INVITE — is none of them, told
/// without parsing the line.)
fn may_end_dialog(msg: &[u8]) -> bool {
    use crate::sip::message::{self as m, StartLine};
    if !matches!(msg.first().map(|b| b | 0x20), Some(b'b' | b'c' | b's')) {
        return false;
    }
    match m::start_line(msg) {
        Ok((StartLine::Request { method, .. }, _)) => {
            let me = &msg[method];
            me.eq_ignore_ascii_case(b"BYE") || me.eq_ignore_ascii_case(b"CANCEL")
        }
        Ok((StartLine::Response { code }, _)) => code >= 300,
        Err(_) => false,
    }
}

/// With media NAT on: the dialog of a message that may end it ([`dialog_of`], else
/// `None`), and outbound under `l3 = "snat"` the allocator of its SDP's media ports,
/// which learns the dialog from the rewrite (its header pass reads the Call-ID: no
/// second pass over the headers of every message). (Behind a 1:1 NAT, `l3 = "keep"`,
/// the provider translates media.)
pub(super) fn media_alloc<'a, E: Egress>(
    env: &Env<'a, E>,
    direction: Direction,
    buf: &[u8],
    layout: &Layout,
) -> (Option<(u64, bool)>, Option<MediaAlloc<'a>>) {
    let Some(m) = env.media else {
        return (None, None);
    };
    let msg = layout.udp(buf).and_then(|(_, _, p, n)| buf.get(p..p + n));
    let ending = msg.filter(|m| may_end_dialog(m)).and_then(dialog_of);
    let dp = env.dataplane;
    let alloc = (msg.is_some() && direction == Direction::Outbound && dp.config.l3 == L3Mode::Snat)
        .then(|| MediaAlloc {
            env: m,
            now_s: (env.now_ms / 1000) as u32,
            generation: core::sync::atomic::AtomicU64::new(0),
            call: core::sync::atomic::AtomicU64::new(0),
            last: Default::default(),
        });
    (ending, alloc)
}

/// After a rewrite that is sent on: counts the NAPT translation, ends the dialog's media
/// bindings (BYE, CANCEL, error) or those its new SDP no longer names, and keeps a NAPT
/// binding as long as the registration a REGISTER 2xx grants it.
#[allow(clippy::too_many_arguments)]
pub(super) fn after_rewrite<E: Egress>(
    env: &Env<'_, E>,
    layout: &Layout,
    dport: u16,
    internal: Option<IpAddr>,
    napt: Option<Napt>,
    r: &PacketRewrite,
    dialog: Option<(u64, bool)>,
    alloc: &Option<MediaAlloc<'_>>,
    b: &mut Batch,
) {
    if napt.is_some() {
        b.inc(Counter::NaptTranslated);
    }
    if let Some(m) = env.media {
        match (dialog, alloc.as_ref().and_then(MediaAlloc::named)) {
            // Kept a little longer: the media that trails a BYE stays translated.
            (Some((call, true)), _) => {
                m.registry
                    .end_call_later(call, (env.now_ms / 1000) as u32, m.sink);
            }
            // This SDP named the dialog's media: the bindings it no longer names go.
            (_, Some((call, g))) => {
                m.registry.end_sdp(call, g, m.sink);
            }
            _ => {}
        }
    }
    if let (Some(expires), true, Some(internal)) =
        (r.registered_s, env.dataplane.napt.is_some(), internal)
    {
        let now_s = (env.now_ms / 1000) as u32;
        let port = napt.map_or(dport, |n| n.internal_port);
        let until = now_s.saturating_add(expires);
        env.napt
            .extend(layout.dst, dport, internal, port, now_s, until);
    }
}

/// Starts loading the binding-table slots that handling `frame` (an Ethernet frame that
/// arrived on `side`) will read first; the worker calls this one packet ahead. The keys are
/// the ones [`napt_bind`] and the flow table get for an IPv4 UDP datagram under
/// `l3 = "snat"` with network rules, the external port guessed to be the kept source port;
/// anything else starts nothing. Nothing is read from the lines here, so a wrong guess
/// costs a line fill, never a wrong result. (A profile of the gateway at 4096 flows had
/// ~20 % of its time in the first load of a slot: the tables are far larger than the
/// caches, one random line per table and packet.)
pub(super) fn prefetch(
    dp: &DataplaneSnapshot,
    flows: &crate::nat::flow::FlowTable,
    napt: &crate::nat::napt::NaptTable,
    side: super::pipeline::Side,
    frame: &[u8],
) {
    use crate::nat::flow::FlowKey;
    use crate::wire::{ethernet, ipv4, udp};
    if dp.config.l3 != L3Mode::Snat || !dp.network_rules {
        return;
    }
    // IPv4 (not a later fragment), UDP: the views the pipeline's parse uses.
    let Some((l3, ethernet::ETHERTYPE_IPV4)) =
        ethernet::Frame::new_checked(frame).and_then(|f| f.payload())
    else {
        return;
    };
    let Some(ip) = frame.get(l3..).and_then(ipv4::Packet::new_checked) else {
        return;
    };
    if ip.protocol() != 17 || ip.frag_offset() != 0 {
        return;
    }
    let Some(udp) = frame
        .get(l3 + ip.header_len()..)
        .and_then(udp::Datagram::new_checked)
    else {
        return;
    };
    let (src, dst) = (IpAddr::V4(ip.src()), IpAddr::V4(ip.dst()));
    let (sport, dport) = (udp.src_port(), udp.dst_port());
    match side {
        super::pipeline::Side::Inside => {
            let Some(ext) = dp.external.v4.map(IpAddr::V4) else {
                return;
            };
            if dp.napt.is_some() {
                napt.prefetch_outbound(ext, src, sport);
            }
            flows.prefetch(&FlowKey::new(ext, sport, dst, dport));
        }
        super::pipeline::Side::Outside => {
            flows.prefetch(&FlowKey::new(dst, dport, src, sport));
        }
    }
}

/// The external port of an outbound packet's source (`src`:`sport`) on `new_src` under
/// NAPT (the snapshot's range; without one the port is kept), and the binding for the
/// rewrite when the port changes. No port free: dropped and counted.
pub(super) fn napt_bind<E: Egress>(
    env: &Env<'_, E>,
    new_src: IpAddr,
    src: IpAddr,
    sport: u16,
    now_s: u32,
    b: &mut Batch,
) -> Result<(u16, Option<Napt>), Early> {
    let Some(range) = env.dataplane.napt else {
        return Ok((sport, None));
    };
    let ext_port = match env.napt.outbound(new_src, src, sport, range, now_s) {
        Bound::Existing(p) => p,
        Bound::Preserved(p) => {
            b.inc(Counter::NaptPreserved);
            p
        }
        Bound::Allocated(p) => {
            b.inc(Counter::NaptAllocated);
            p
        }
        Bound::Exhausted => {
            // Without a port of its own it could only leave with another host's port or
            // its internal one: it does not leave.
            b.inc(Counter::DropNatPortsExhausted);
            return Err(Early::Drop(Counter::DropNatPortsExhausted));
        }
    };
    let napt = (ext_port != sport).then(|| Napt {
        internal: crate::nat::addr::canonical(src),
        internal_port: sport,
        external_port: ext_port,
    });
    Ok((ext_port, napt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::media::call_hash;

    /// Only a message whose start line may end its dialog gets the pass of its own over
    /// the headers before the rewrite, and it then says whether the message ends it.
    #[test]
    fn the_dialog_is_read_before_the_rewrite_only_where_it_may_end() {
        let msg = |start: &str, cseq: &str| {
            format!(
                "{start}\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1\r\n\
                 i:  m1@x \r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let call = Some((call_hash(b"m1@x"), true));
        let not_ending = Some((call_hash(b"m1@x"), false));
        let cases = [
            (
                "INVITE sip:b@198.51.100.2 SIP/2.0",
                "1 INVITE",
                false,
                not_ending,
            ),
            ("ACK sip:b@198.51.100.2 SIP/2.0", "1 ACK", false, not_ending),
            ("BYE sip:b@198.51.100.2 SIP/2.0", "2 BYE", true, call),
            ("cancel sip:b@198.51.100.2 SIP/2.0", "1 CANCEL", true, call),
            ("SIP/2.0 200 OK", "1 INVITE", false, not_ending),
            ("SIP/2.0 486 Busy Here", "1 INVITE", true, call),
            ("SIP/2.0 481 Call Does Not Exist", "2 BYE", true, not_ending),
        ];
        for (start, cseq, may_end, dialog) in cases {
            let m = msg(start, cseq);
            assert_eq!(may_end_dialog(m.as_bytes()), may_end, "{start}");
            assert_eq!(dialog_of(m.as_bytes()), dialog, "{start}");
        }
        assert!(!may_end_dialog(b"not SIP at all\r\n\r\n"));
        assert!(!may_end_dialog(b"\r\nBYE sip:b@x SIP/2.0\r\n\r\n"));
        assert!(may_end_dialog(b"Bye sip:b@x SIP/2.0\r\n\r\n"));
        assert!(!may_end_dialog(b"BYEX sip:b@x SIP/2.0\r\n\r\n"));
        assert!(!may_end_dialog(b"SUBSCRIBE sip:b@x SIP/2.0\r\n\r\n"));
        assert!(!may_end_dialog(b"SIP/2.0 299 Hm\r\n\r\n"));
        assert!(may_end_dialog(b"sip/2.0 300 Multiple\r\n\r\n"));
        assert_eq!(
            dialog_of(b"BYE sip:b@x SIP/2.0\r\nCSeq: 2 BYE\r\n\r\n"),
            None
        );
    }

    /// The message's memo answers only the binding it was made for: the same internal
    /// address and port, and the same external address. Anything else asks the registry.
    #[test]
    fn the_memo_answers_only_the_binding_it_holds() {
        use crate::nat::{media::InMemoryBindings, napt::PortRange};
        use core::sync::atomic::Ordering::Relaxed;
        let registry = MediaRegistry::new(PortRange::parse("40000-40099").unwrap());
        let sink = InMemoryBindings::default();
        let alloc = MediaAlloc {
            env: MediaEnv {
                registry: &registry,
                sink: &sink,
            },
            now_s: 1,
            generation: Default::default(),
            call: Default::default(),
            last: Default::default(),
        };
        let (call, ext, ext2) = (
            call_hash(b"memo@x"),
            "203.0.113.1".parse().unwrap(),
            "203.0.113.2".parse().unwrap(),
        );
        let rtp: SocketAddr = "10.0.0.2:20000".parse().unwrap();
        let p = alloc.media_port(call, rtp, ext).unwrap();
        assert_eq!(alloc.media_port(call, rtp, ext), Some(p));
        assert_eq!(registry.counters.installed.load(Relaxed), 1);
        // Another port of the same address: a binding of its own.
        let video = alloc.media_port(call, "10.0.0.2:20002".parse().unwrap(), ext);
        assert!(video.is_some_and(|q| q != p));
        assert_eq!(registry.counters.installed.load(Relaxed), 2);
        // The memo now holds the video binding; the audio one is found in the registry.
        assert_eq!(alloc.media_port(call, rtp, ext), Some(p));
        assert_eq!(registry.counters.installed.load(Relaxed), 2);
        // Another external address: the registry replaces the binding.
        assert!(alloc.media_port(call, rtp, ext2).is_some());
        assert_eq!(registry.counters.removed.load(Relaxed), 1);
        assert_eq!(registry.counters.installed.load(Relaxed), 3);
        assert_eq!(
            sink.list().iter().filter(|(i, _)| *i == rtp).count(),
            1,
            "one binding of the address"
        );
    }
}
