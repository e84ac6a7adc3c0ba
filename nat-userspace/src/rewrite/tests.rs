//! Rule-by-rule and edge-case tests of the message rewrite: each rule of docs/config.md
//! ("What is rewritten") and the edge cases of real SIP.

use core::net::IpAddr;

use super::*;
use crate::{
    nat::{Direction, ExternalAddrs, Net, PortMap, RewriteConfig},
    sip::message::{Malformed, NotSip},
};

const EXT: &str = "203.0.113.10";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cfg(nets: &[&str]) -> RewriteConfig {
    RewriteConfig::networks(nets.iter().map(|n| Net::parse(n).unwrap()))
}

fn ext4() -> ExternalAddrs {
    ExternalAddrs::from_ip(ip(EXT))
}

/// Only an IPv6 external address, 2001:db8::10.
fn ext6() -> ExternalAddrs {
    ExternalAddrs {
        v4: None,
        v6: Some("2001:db8::10".parse().unwrap()),
    }
}

/// Both external addresses: [`EXT`] and 2001:db8::10.
fn ext46() -> ExternalAddrs {
    ExternalAddrs {
        v4: Some(EXT.parse().unwrap()),
        ..ext6()
    }
}

/// A config of `nets` whose first rule maps `ports`.
fn cfg_ports(nets: &[&str], ports: &[(u16, u16)]) -> RewriteConfig {
    let mut c = cfg(nets);
    c.rules[0].ports = PortMap::new(ports).unwrap();
    c
}

fn run_with(
    c: &RewriteConfig,
    ext: ExternalAddrs,
    dir: Direction,
    internal: Option<IpAddr>,
    msg: &[u8],
    tail: usize,
) -> (Vec<u8>, Rewrite) {
    let ctx = Context {
        config: c,
        external: ext,
        direction: dir,
        internal,
        local_port: None,
        napt: None,
        media: None,
    };
    run_ctx(&ctx, msg, tail)
}

/// `msg` rewritten under `ctx` with `tail` bytes of room after it.
fn run_ctx(ctx: &Context<'_>, msg: &[u8], tail: usize) -> (Vec<u8>, Rewrite) {
    let mut buf = msg.to_vec();
    buf.resize(msg.len() + tail, 0xEE);
    let r = rewrite_message(&mut buf, msg.len(), ctx);
    buf.truncate(r.len);
    (buf, r)
}

/// Inbound with [`ext4`], the internal host 10.0.0.5 known, 64 bytes of room.
fn run_in(c: &RewriteConfig, msg: &[u8]) -> (Vec<u8>, Rewrite) {
    run_with(c, ext4(), Direction::Inbound, Some(ip("10.0.0.5")), msg, 64)
}

/// Outbound with [`ext4`] and no internal host known.
fn run_out(c: &RewriteConfig, msg: &[u8], tail: usize) -> (Vec<u8>, Rewrite) {
    run_ctx(&outbound_ctx(c), msg, tail)
}

/// Outbound under `c` to [`ext4`], nothing else known.
fn outbound_ctx(c: &RewriteConfig) -> Context<'_> {
    Context {
        config: c,
        external: ext4(),
        direction: Direction::Outbound,
        internal: None,
        local_port: None,
        napt: None,
        media: None,
    }
}

/// [`run_with`] with no internal host known, on text and back.
fn run_text(
    c: &RewriteConfig,
    ext: ExternalAddrs,
    dir: Direction,
    msg: &str,
    tail: usize,
) -> (String, Rewrite) {
    let (b, r) = run_with(c, ext, dir, None, msg.as_bytes(), tail);
    (String::from_utf8(b).unwrap(), r)
}

/// Outbound with rule 10.0.0.0/24 → 203.0.113.10.
fn out(msg: &str) -> (String, Outcome) {
    out_cfg(&cfg(&["10.0.0.0/24"]), msg)
}

fn out_cfg(c: &RewriteConfig, msg: &str) -> (String, Outcome) {
    let (m, r) = run_text(c, ext4(), Direction::Outbound, msg, 512);
    (m, r.outcome)
}

/// [`out`], asserting the counts of `spec` (see [`assert_counts`]); the text.
#[track_caller]
fn out_counts(msg: &str, spec: &str) -> String {
    out_cfg_counts(&cfg(&["10.0.0.0/24"]), msg, spec)
}

/// [`out_cfg`], asserting the counts of `spec` (see [`assert_counts`]); the text.
#[track_caller]
fn out_cfg_counts(c: &RewriteConfig, msg: &str, spec: &str) -> String {
    let (m, o) = out_cfg(c, msg);
    assert_counts(o, spec);
    m
}

/// [`run_text`] with 64 bytes of room, asserting the counts of `spec` (see
/// [`assert_counts`]); the text.
#[track_caller]
fn text_counts(
    c: &RewriteConfig,
    ext: ExternalAddrs,
    dir: Direction,
    msg: &str,
    spec: &str,
) -> String {
    let (m, r) = run_text(c, ext, dir, msg, 64);
    assert_counts(r.outcome, spec);
    m
}

/// [`inb`], asserting the counts of `spec` (see [`assert_counts`]); the text.
#[track_caller]
fn inb_counts(c: &RewriteConfig, internal: Option<&str>, msg: &str, spec: &str) -> String {
    let (m, o) = inb(c, internal, msg);
    assert_counts(o, spec);
    m
}

fn inb(c: &RewriteConfig, internal: Option<&str>, msg: &str) -> (String, Outcome) {
    let (b, r) = run_with(
        c,
        ext4(),
        Direction::Inbound,
        internal.map(ip),
        msg.as_bytes(),
        512,
    );
    (String::from_utf8(b).unwrap(), r.outcome)
}

#[track_caller]
fn changes(o: Outcome) -> Changes {
    match o {
        Outcome::Rewritten(c) => c,
        other => panic!("expected Rewritten, got {other:?}"),
    }
}

/// Asserts the counts named in `spec` (`"via=1 contact=2"`, `total` for their sum) of a
/// `Rewritten` outcome; the fields not named are not looked at.
#[track_caller]
fn assert_counts(o: Outcome, spec: &str) {
    assert_counts_of("", o, spec);
}

/// [`assert_counts`], naming `case` when it fails.
#[track_caller]
fn assert_counts_of(case: &str, o: Outcome, spec: &str) {
    let Outcome::Rewritten(c) = o else {
        panic!("{case}: expected Rewritten, got {o:?}");
    };
    let fields = c.fields();
    for pair in spec.split_whitespace() {
        let (name, want) = pair.split_once('=').unwrap();
        let got = match fields.iter().find(|(n, _)| *n == name) {
            Some((_, n)) => u32::from(*n),
            None if name == "total" => c.total(),
            None => panic!("no field {name}"),
        };
        assert_eq!(got.to_string(), want, "{case}: {name} in {c:?}");
    }
}

/// A message with `headers` (CRLF-terminated lines, without Content-Length) and `body`,
/// with a correct Content-Length.
fn with_body(headers: &str, body: &str) -> String {
    format!("{headers}Content-Length: {}\r\n\r\n{body}", body.len())
}

/// Content-Length equals the real body length.
fn cl_ok(m: &str) -> bool {
    let (h, b) = m
        .split_once("\r\n\r\n")
        .or_else(|| m.split_once("\n\n"))
        .unwrap();
    let cl = h
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))
                .then(|| v.trim().parse::<usize>().unwrap())
        })
        .unwrap();
    cl == b.len()
}

const INVITE: &str = "INVITE sip:bob@198.51.100.2:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-10.0.0.5;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.6:5060;branch=z9hG4bK-2\r\n\
From: <sip:alice@10.0.0.5>;tag=10.0.0.5\r\n\
To: <sip:bob@198.51.100.2>\r\n\
Call-ID: 1234@10.0.0.5\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@10.0.0.5:5060>\r\n\
Authorization: Digest username=\"a\", uri=\"sip:10.0.0.5\"\r\n\
P-Asserted-Identity: <sip:alice@10.0.0.5>\r\n\
Record-Route: <sip:10.0.0.5;lr>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 132\r\n\
\r\n\
v=0\r\n\
o=alice 1 1 IN IP4 10.0.0.5\r\n\
s=-\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 0\r\n\
a=rtcp:20001 IN IP4 10.0.0.5\r\n\
a=sendrecv\r\n";

#[test]
fn invite_rewrites_exactly_the_rewritable_fields() {
    assert!(cl_ok(INVITE));
    let m = out_counts(
        INVITE,
        "via=1 contact=1 sdp_origin=1 sdp_connection=1 sdp_rtcp=1 content_length=1 \
         request_uri=0 record_route=0 from_to=0",
    );
    assert!(m.contains("Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-10.0.0.5;rport\r\n"));
    for (part, why) in [
        (
            "Via: SIP/2.0/UDP 10.0.0.6:5060;branch=z9hG4bK-2\r\n",
            "second Via untouched",
        ),
        (
            "From: <sip:alice@10.0.0.5>;tag=10.0.0.5\r\n",
            "From only when configured",
        ),
        ("Call-ID: 1234@10.0.0.5\r\n", "Call-ID never"),
        ("Contact: <sip:alice@203.0.113.10:5060>\r\n", "Contact"),
        ("uri=\"sip:10.0.0.5\"", "Authorization never"),
        ("P-Asserted-Identity: <sip:alice@10.0.0.5>", "PAI never"),
        (
            "Record-Route: <sip:10.0.0.5;lr>",
            "Record-Route only when configured",
        ),
    ] {
        assert!(m.contains(part), "{why}: missing {part:?} in:\n{m}");
    }
    contains_all(
        &m,
        &[
            "o=alice 1 1 IN IP4 203.0.113.10\r\n",
            "c=IN IP4 203.0.113.10\r\n",
            "a=rtcp:20001 IN IP4 203.0.113.10\r\n",
            "Content-Length: 144\r\n",
        ],
    );
    assert!(cl_ok(&m));
}

#[test]
fn record_route_route_and_from_to_when_configured() {
    let mut c = cfg(&["10.0.0.0/24"]);
    c.record_route = true;
    c.from_to = true;
    let msg = INVITE.replace(
        "Record-Route: <sip:10.0.0.5;lr>\r\n",
        "Record-Route: <sip:10.0.0.5;lr>, <sip:10.0.0.7;lr>\r\nRoute: <sip:10.0.0.8;lr>\r\n",
    );
    let (m, o) = out_cfg(&c, &msg);
    let ch = changes(o);
    assert_eq!((ch.record_route, ch.route, ch.from_to), (2, 1, 1));
    contains_all(
        &m,
        &[
            "Record-Route: <sip:203.0.113.10;lr>, <sip:203.0.113.10;lr>\r\n",
            "Route: <sip:203.0.113.10;lr>\r\n",
        ],
    );
    assert!(
        m.contains("From: <sip:alice@203.0.113.10>;tag=10.0.0.5\r\n"),
        "tag untouched"
    );
}

#[test]
fn prefix_collision_whole_tokens_only() {
    let c = cfg(&["192.168.1.10/32"]);
    let msg = "OPTIONS sip:x@192.168.1.100 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.100:5060\r\nContact: <sip:a@192.168.1.10>, <sip:b@192.168.1.100>, <sip:c@192.168.1.101>\r\nContent-Length: 0\r\n\r\n";
    let m = out_cfg_counts(&c, msg, "contact=1");
    assert!(
        m.contains("Contact: <sip:a@203.0.113.10>, <sip:b@192.168.1.100>, <sip:c@192.168.1.101>")
    );
    contains_all(
        &m,
        &[
            "sip:x@192.168.1.100 SIP/2.0",
            "Via: SIP/2.0/UDP 192.168.1.100:5060",
        ],
    );
}

/// Messages that come out outbound byte for byte as they went in, `Unchanged`, under the
/// rule named: no address of the rule in a rewritable field.
#[test]
fn untouched_cases() {
    for (name, net, msg) in [
        (
            // The origin's regex turned 110.0.0.12 into 1203.0.113.102.
            "no force-rewrite corruption",
            "10.0.0.0/8",
            "OPTIONS sip:x@110.0.0.12 SIP/2.0\r\nContact: <sip:a@110.0.0.12>\r\nVia: SIP/2.0/UDP 110.0.0.12\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "Contact * untouched",
            "10.0.0.0/24",
            "REGISTER sip:198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.3\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "Call-ID, branch, tags and other headers never rewritten",
            "10.0.0.0/24",
            "REFER sip:b@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.3;branch=z9hG4bK10.0.0.5\r\nCall-ID: 10.0.0.5\r\ni: 10.0.0.5@10.0.0.5\r\nFrom: <sip:a@198.51.100.3>;tag=10.0.0.5\r\nRefer-To: <sip:c@10.0.0.5>\r\nProxy-Authorization: Digest uri=\"sip:10.0.0.5\"\r\nX-Unknown: sip:a@10.0.0.5\r\nContent-Length: 0\r\n\r\n",
        ),
    ] {
        let (m, o) = out_cfg(&cfg(&[net]), msg);
        assert_eq!((o, m.as_str()), (Outcome::Unchanged, msg), "{name}");
    }
}

#[test]
fn port_5060_elsewhere_is_never_touched() {
    let c = cfg_ports(&["10.0.0.0/24"], &[(5060, 15060)]);
    let msg = "INVITE sip:+15551234@carrier.example.net:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9\r\nX-Port: :5060 and :50600\r\nContact: <sip:a@carrier.example.net:5060>, <sip:b@198.51.100.9:5060>, <sip:c@10.0.0.5:50600>\r\nContent-Length: 0\r\n\r\n";
    let (m, _) = out_cfg(&c, msg);
    contains_all(
        &m,
        &[
            "sip:+15551234@carrier.example.net:5060 SIP/2.0",
            "X-Port: :5060 and :50600",
        ],
    );
    assert!(m.contains(
        "<sip:a@carrier.example.net:5060>, <sip:b@198.51.100.9:5060>, <sip:c@203.0.113.10:50600>"
    ));
    assert!(
        m.contains("Via: SIP/2.0/UDP 203.0.113.10:15060;branch=z9"),
        "port changes only with its host"
    );
}

#[test]
fn default_port_written_explicitly_when_mapped() {
    let c = cfg_ports(&["10.0.0.0/24"], &[(5060, 15060), (5061, 15061)]);
    let msg = "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nContact: <sip:a@10.0.0.5>, <sips:b@10.0.0.5>\r\nVia: SIP/2.0/TLS 10.0.0.5\r\nContent-Length: 0\r\n\r\n";
    contains_all(
        &out_cfg(&c, msg).0,
        &[
            "Contact: <sip:a@203.0.113.10:15060>, <sips:b@203.0.113.10:15061>",
            "Via: SIP/2.0/TLS 203.0.113.10:15061",
        ],
    );
}

/// Outbound under 10.0.0.0/24, one case a message: it is rewritten with the counts named
/// (see [`assert_counts`]; none named: the outcome is not looked at) and comes out with
/// every part listed.
#[test]
fn outbound_cases() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "unmapped port keeps its text: an absent port stays absent",
            "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;rport;branch=z9\r\nContact: <sip:a@10.0.0.5>\r\nContent-Length: 0\r\n\r\n",
            "",
            &["Via: SIP/2.0/UDP 203.0.113.10;rport;branch=z9", "Contact: <sip:a@203.0.113.10>"],
        ),
        (
            "top Via only, even in a comma list",
            "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9a, SIP/2.0/UDP 10.0.0.6;branch=z9b\r\nVia: SIP/2.0/UDP 10.0.0.7\r\nContent-Length: 0\r\n\r\n",
            "via=1",
            &["Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9a, SIP/2.0/UDP 10.0.0.6;branch=z9b\r\nVia: SIP/2.0/UDP 10.0.0.7\r\n"],
        ),
        (
            "top Via maddr rewritten, received only inbound",
            "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;maddr=10.0.0.9;received=10.0.0.5\r\nContent-Length: 0\r\n\r\n",
            "via=2",
            &["Via: SIP/2.0/UDP 203.0.113.10;maddr=203.0.113.10;received=10.0.0.5\r\n"],
        ),
        (
            "whitespace before the colon and folded values",
            "OPTIONS sip:b@198.51.100.2 SIP/2.0\r\nVia  \t: SIP/2.0/UDP\r\n 10.0.0.5:5060\r\n ;branch=z9\r\nContact : <sip:a@10.0.0.5>,\r\n\t<sip:b@10.0.0.6>\r\nContent-Length: 0\r\n\r\n",
            "total=3",
            &[
                "Via  \t: SIP/2.0/UDP\r\n 203.0.113.10:5060\r\n ;branch=z9\r\n",
                "Contact : <sip:a@203.0.113.10>,\r\n\t<sip:b@203.0.113.10>\r\n",
            ],
        ),
        (
            "Contact lists: name-addr and addr-spec",
            "OPTIONS sip:b@198.51.100.2 SIP/2.0\r\nContact: \"Alice, Home\" <sip:a@10.0.0.5>;q=0.5, sip:b@10.0.0.6;expires=60\r\nm: sip:10.0.0.7\r\nContent-Length: 0\r\n\r\n",
            "contact=3",
            &["Contact: \"Alice, Home\" <sip:a@203.0.113.10>;q=0.5, sip:b@203.0.113.10;expires=60\r\nm: sip:203.0.113.10\r\n"],
        ),
        (
            "empty SDP and a space after the scheme",
            "INVITE sip:b@198.51.100.2 SIP/2.0\r\nContact: <sip: 10.0.0.5:5060>\r\nContent-Type: application/sdp\r\nContent-Length: 0\r\n\r\n",
            "contact=1",
            &["Contact: <sip: 203.0.113.10:5060>"],
        ),
    ];
    for (name, msg, counts, parts) in cases {
        let (m, o) = out(msg);
        if !counts.is_empty() {
            assert_counts_of(name, o, counts);
        }
        for p in *parts {
            assert!(m.contains(p), "{name}: missing {p:?} in:\n{m}");
        }
    }
}

#[test]
fn register_2xx_and_3xx_contacts_not_rewritten_other_responses_are() {
    let reg200 = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.9;branch=z9\r\nContact: <sip:a@10.0.0.5>;expires=60, <sip:b@10.0.0.6>;expires=30\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(out(reg200).1, Outcome::Unchanged);
    let reg302 = reg200.replace("200 OK", "302 Moved");
    assert_eq!(out(&reg302).1, Outcome::Unchanged);
    let reg401 = reg200.replace("200 OK", "401 Unauthorized");
    assert_eq!(changes(out(&reg401).1).contact, 2);
    let inv200 = reg200.replace("REGISTER", "INVITE");
    assert_eq!(changes(out(&inv200).1).contact, 2);
    // The REGISTER request's own Contact is rewritten.
    let reg = "REGISTER sip:198.51.100.2 SIP/2.0\r\nContact: <sip:a@10.0.0.5>\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(changes(out(reg).1).contact, 1);
}

#[test]
fn compact_forms_and_case_insensitive_names() {
    let msg = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.5\r\nm: <sip:a@10.0.0.5>\r\nf: <sip:a@10.0.0.5>\r\nc: APPLICATION/SDP\r\nl: 19\r\n\r\nc=IN IP4 10.0.0.5\r\n";
    let m = out_counts(
        msg,
        "via=1 contact=1 from_to=0 sdp_connection=1 content_length=1",
    );
    assert!(m.contains("l: 23\r\n"));
    assert!(cl_ok(&m));
    let msg2 = "OPTIONS sip:b@198.51.100.2 SIP/2.0\r\nVIA: SIP/2.0/UDP 10.0.0.5\r\nCONTACT: <sip:a@10.0.0.5>\r\nX-Via: SIP/2.0/UDP 10.0.0.5\r\nContact-Info: <sip:a@10.0.0.5>\r\nContent-Length: 0\r\n\r\n";
    let m = out_counts(msg2, "total=2");
    assert!(m.contains("X-Via: SIP/2.0/UDP 10.0.0.5\r\nContact-Info: <sip:a@10.0.0.5>"));
}

#[test]
fn request_uri_rewritten_outbound_with_escaped_user() {
    let msg = "BYE sip:user;par=u%40example.net@10.0.0.5:5062;transport=udp SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    let m = out_counts(msg, "request_uri=1");
    assert!(m.starts_with(
        "BYE sip:user;par=u%40example.net@203.0.113.10:5062;transport=udp SIP/2.0\r\n"
    ));
}

#[test]
fn ipv6_brackets_in_uri_and_via_and_sdp_without() {
    let mut c = cfg(&["fd00::/8"]);
    c.rules[0].external = None;
    let msg = with_body("INVITE sip:b@[2001:db8::2] SIP/2.0\r\nVia: SIP/2.0/UDP [fd00::5]:5060;branch=z9\r\nContact: <sip:a@[fd00::5]>\r\nContent-Type: application/sdp\r\n", "o=- 1 1 IN IP6 fd00::5\r\nc=IN IP6 fd00::5\r\n");
    let (m, r) = run_text(&c, ext46(), Direction::Outbound, &msg, 256);
    assert_eq!(changes(r.outcome).total(), 5);
    assert!(cl_ok(&m));
    contains_all(
        &m,
        &[
            "Via: SIP/2.0/UDP [2001:db8::10]:5060;branch=z9",
            "Contact: <sip:a@[2001:db8::10]>",
            "o=- 1 1 IN IP6 2001:db8::10\r\nc=IN IP6 2001:db8::10\r\n",
        ],
    );
}

#[test]
fn ip6_line_with_only_an_ipv4_external_is_left_alone_and_counted() {
    let c = cfg(&["fd00::/8", "10.0.0.0/24"]);
    let msg = with_body("INVITE sip:b@198.51.100.2 SIP/2.0\r\nContact: <sip:a@10.0.0.5>\r\nContent-Type: application/sdp\r\n", "c=IN IP6 fd00::5\r\nc=IN IP4 10.0.0.5\r\n");
    let (m, r) = run_text(&c, ext4(), Direction::Outbound, &msg, 256);
    assert_eq!(r.family_mismatch, 1);
    contains_all(&m, &["c=IN IP6 fd00::5\r\nc=IN IP4 203.0.113.10\r\n"]);
}

#[test]
fn ipv4_mapped_ipv6_classified_by_ipv4_and_written_mapped() {
    let msg = &with_body("INVITE sip:b@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP [::ffff:10.0.0.5]:19823\r\nContact: <sip:a@[::ffff:10.0.0.5]>\r\nContent-Type: application/sdp\r\n", "c=IN IP6 ::ffff:10.0.0.5\r\n");
    let m = out_counts(msg, "total=4");
    contains_all(
        &m,
        &[
            "Via: SIP/2.0/UDP [::ffff:203.0.113.10]:19823",
            "Contact: <sip:a@[::ffff:203.0.113.10]>",
            "c=IN IP6 ::ffff:203.0.113.10\r\n",
        ],
    );
    assert!(cl_ok(&m));
}

#[test]
fn crlf_kept_and_lf_only_accepted_and_kept() {
    let lf = INVITE
        .replace("\r\n", "\n")
        .replace("Content-Length: 132", "Content-Length: 124");
    assert!(cl_ok(&lf));
    let (m, o) = out(&lf);
    assert!(matches!(o, Outcome::Rewritten(_)));
    assert!(!m.contains('\r'), "LF stays LF");
    assert!(m.contains("c=IN IP4 203.0.113.10\n"));
    assert!(cl_ok(&m));
    let (m, _) = out(INVITE);
    assert_eq!(
        m.matches("\r\n").count(),
        INVITE.matches("\r\n").count(),
        "CRLF count kept"
    );
    assert_eq!(m.matches('\n').count(), INVITE.matches('\n').count());
}

#[test]
fn mixed_bare_cr_and_cr_cr_lf_line_ends() {
    let msg = "OPTIONS sip:b@198.51.100.2 SIP/2.0\rVia: SIP/2.0/UDP 10.0.0.5\r\r\nContact: <sip:a@10.0.0.5>\nContent-Length: 0\r\n\r\n";
    let m = out_counts(msg, "total=2");
    assert_eq!(m, msg.replace("10.0.0.5", EXT));
}

const MULTIPART: &[u8] = b"INVITE sip:b@198.51.100.2 SIP/2.0\r\n\
Contact: <sip:a@10.0.0.5>\r\n\
Content-Type: multipart/mixed;boundary=unique-boundary-1\r\n\
Content-Length: 265\r\n\
\r\n\
--unique-boundary-1\r\n\
Content-Type: application/sdp\r\n\
\r\n\
v=0\r\n\
c=IN IP4 10.0.0.5\r\n\
m=audio 20000 RTP/AVP 0\r\n\
\r\n\
--unique-boundary-1\r\n\
Content-Type: application/ISUP;version=itu-t92+\r\n\
Content-Disposition: signal;handling=optional\r\n\
\r\n\
\x01\x00\x0d10.0.0.5\r--\x00\xff\r\n\
--unique-boundary-1--\r\n";

#[test]
fn multipart_with_binary_isup_part() {
    assert!(cl_ok_bytes(MULTIPART));
    let (b, r) = run_out(&cfg(&["10.0.0.0/24"]), MULTIPART, 256);
    assert_counts(r.outcome, "contact=1 sdp_connection=1 content_length=1");
    assert!(cl_ok_bytes(&b));
    let find = |hay: &[u8], n: &[u8]| hay.windows(n.len()).any(|w| w == n);
    assert!(find(&b, b"c=IN IP4 203.0.113.10\r\n"));
    assert!(
        find(
            &b,
            b"\x01\x00\x0d10.0.0.5\r--\x00\xff\r\n--unique-boundary-1--\r\n"
        ),
        "ISUP bytes untouched"
    );
}

fn cl_ok_bytes(m: &[u8]) -> bool {
    let pos = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let h = core::str::from_utf8(&m[..pos]).unwrap();
    let cl: usize = h
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    cl == m.len() - pos - 4
}

#[test]
fn nested_multipart_and_signed_untouched() {
    let inner = "--in\r\nContent-Type: application/sdp\r\n\r\nc=IN IP4 10.0.0.5\r\n--in--\r\n";
    let outer = format!("--out\r\nContent-Type: multipart/alternative; boundary=\"in\"\r\n\r\n{inner}\r\n--out--\r\n");
    let msg = format!("INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: multipart/mixed;boundary=out\r\nContent-Length: {}\r\n\r\n{outer}", outer.len());
    let m = out_counts(&msg, "sdp_connection=1");
    assert!(m.contains("c=IN IP4 203.0.113.10\r\n--in--"));
    assert!(cl_ok(&m));
    let signed = msg.replace("multipart/mixed", "multipart/signed");
    assert_eq!(
        out(&signed).1,
        Outcome::Unchanged,
        "signed bodies are never touched"
    );
}

#[test]
fn multipart_boundary_lookalikes_do_not_split() {
    let body = "--b\r\nContent-Type: application/sdp\r\n\r\nc=IN IP4 10.0.0.5\r\na=x:--b2 --\r\n--bb\r\nc=IN IP4 10.0.0.6\r\n--b--\r\n";
    let msg = format!("INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: multipart/mixed;boundary=b\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let (m, o) = out(&msg);
    assert_eq!(
        changes(o).sdp_connection,
        2,
        "--bb is not a delimiter of boundary b"
    );
    assert!(cl_ok(&m));
}

#[test]
fn content_length_absent_stays_absent() {
    let msg = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nContact: <sip:a@10.0.0.5>\r\nContent-Type: application/sdp\r\n\r\nc=IN IP4 10.0.0.5\r\n";
    let m = out_counts(msg, "content_length=0");
    assert!(!m.to_ascii_lowercase().contains("content-length"));
    assert!(m.ends_with("c=IN IP4 203.0.113.10\r\n"));
}

#[test]
fn content_length_with_leading_zeros_is_rewritten_as_a_plain_number() {
    let msg = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: 00019\r\n\r\nc=IN IP4 10.0.0.5\r\n";
    let (m, _) = out(msg);
    assert!(m.contains("Content-Length: 23\r\n"));
    assert!(cl_ok(&m));
    // Unchanged body: the header is left exactly as it was.
    let msg2 = msg
        .replace("10.0.0.5", "10.9.9.9")
        .replace("INVITE sip:b@198", "INVITE sip:b@10.0.0.5:5060;x=198");
    let m2 = out_counts(&msg2, "content_length=0");
    assert!(m2.contains("Content-Length: 00019\r\n"));
}

/// Hardening 4: bytes after the body Content-Length declares went out unchanged (a second
/// request appended in the datagram, with private addresses). They are discarded (RFC 3261
/// section 18.3), both ways; the message is `Rewritten` even when nothing else changed.
#[test]
fn regression_bytes_after_the_declared_body_are_discarded() {
    let c = cfg(&["10.0.0.0/24"]);
    let msg = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: 19\r\n\r\nc=IN IP4 10.0.0.5\r\nc=IN IP4 10.0.0.5\r\n";
    let (m, r) = run_text(&c, ext4(), Direction::Outbound, msg, 512);
    assert_eq!(changes(r.outcome).sdp_connection, 1);
    assert_eq!(
        m,
        "INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: 23\r\n\r\nc=IN IP4 203.0.113.10\r\n"
    );
    assert_eq!(r.trailing_discarded, 19);
    // Nothing to rewrite in the first message: the second is cut all the same.
    let first = "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9\r\nContent-Length: 0\r\n\r\n";
    let second = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060\r\nContact: <sip:a@10.0.0.5>\r\nContent-Length: 0\r\n\r\n";
    let msg = format!("{first}{second}");
    for dir in [Direction::Outbound, Direction::Inbound] {
        let (b, r) = run_with(&c, ext4(), dir, Some(ip("10.0.0.5")), msg.as_bytes(), 0);
        assert_eq!(r.outcome, Outcome::Rewritten(Changes::default()), "{dir:?}");
        assert_eq!(b, first.as_bytes(), "{dir:?}");
        assert_eq!(r.trailing_discarded, second.len());
        assert!(!r.would_leak);
    }
    // Without Content-Length the body runs to the end of the datagram: nothing is cut.
    let (b, r) = run_out(&c, b"OPTIONS sip:x@198.51.100.2 SIP/2.0\r\n\r\nhello", 0);
    assert_eq!((r.outcome, r.trailing_discarded), (Outcome::Unchanged, 0));
    assert!(b.ends_with(b"hello"));
}

#[test]
fn bad_content_lengths_are_malformed() {
    let base = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nContact: <sip:a@10.0.0.5>\r\n";
    // Too large: the body runs to the end of the datagram, the length keeps its excess.
    let m = out_counts(
        &format!(
        "{base}Content-Type: application/sdp\r\nContent-Length: 9999\r\n\r\nc=IN IP4 10.0.0.5\r\n"
    ),
        "sdp_connection=1",
    );
    assert!(m.contains("Content-Length: 10003\r\n"));
    assert_eq!(
        out(&format!("{base}Content-Length: -999\r\n\r\nx")).1,
        Outcome::Malformed(Malformed::BadContentLength)
    );
    assert_eq!(
        out(&format!("{base}Content-Length: 1\r\nl: 2\r\n\r\nxx")).1,
        Outcome::Malformed(Malformed::DuplicateContentLength)
    );
    assert!(
        matches!(
            out(&format!("{base}Content-Length: 1\r\nl: 1\r\n\r\nx")).1,
            Outcome::Rewritten(_)
        ),
        "identical duplicates are harmless"
    );
}

#[test]
fn sdp_hold_rejected_stream_public_fqdn_and_candidates_untouched() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\nc=IN IP4 0.0.0.0\r\nm=audio 0 RTP/AVP 0\r\nc=IN IP4 10.0.0.5\r\nm=audio 20000 RTP/AVP 0\r\nc=IN IP4 198.51.100.7\r\nc=IN IP4 media.example.com\r\na=candidate:1 1 UDP 2130706431 10.0.0.5 20000 typ host\r\n";
    let msg = format!("INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len());
    let m = out_counts(&msg, "sdp_origin=1 sdp_connection=0");
    assert!(
        m.contains("c=IN IP4 0.0.0.0\r\nm=audio 0 RTP/AVP 0\r\nc=IN IP4 10.0.0.5\r\n"),
        "hold + rejected stream"
    );
    assert!(m.contains("c=IN IP4 198.51.100.7\r\nc=IN IP4 media.example.com\r\na=candidate:1 1 UDP 2130706431 10.0.0.5 20000 typ host\r\n"));
}

#[test]
fn sdp_media_ports_only_with_a_port_map_and_count_kept() {
    let sdp = "o=- 1 1 IN IP4 10.0.0.5\r\nc=IN IP4 10.0.0.5/127/2\r\nm=audio 20000/2 RTP/AVP 0\r\na=rtcp:20001 IN IP4 10.0.0.5\r\nm=video 20002 RTP/AVP 96\r\n";
    let msg = format!("INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len());
    let (m, _) = out(&msg);
    assert!(m.contains("c=IN IP4 203.0.113.10/127/2\r\nm=audio 20000/2 RTP/AVP 0\r\na=rtcp:20001 IN IP4 203.0.113.10\r\n"));
    let c = cfg_ports(&["10.0.0.0/24"], &[(20000, 30000), (20001, 30001)]);
    let m = out_cfg_counts(&c, &msg, "sdp_media_port=1 sdp_rtcp=2");
    assert!(m.contains("m=audio 30000/2 RTP/AVP 0\r\na=rtcp:30001 IN IP4 203.0.113.10\r\nm=video 20002 RTP/AVP 96\r\n"));
    assert!(cl_ok(&m));
}

#[test]
fn loopback_unspecified_and_public_never_rewritten() {
    let c = cfg(&["0.0.0.0/0"]);
    let msg = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nContact: <sip:a@127.0.0.1>, <sip:b@0.0.0.0>\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(out_cfg(&c, msg).1, Outcome::Unchanged);
    let public = "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.3\r\nContact: <sip:a@198.51.100.3>\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(out(public).1, Outcome::Unchanged);
}

#[test]
fn content_encoding_gzip_body_untouched() {
    let msg = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Encoding: gzip\r\nContent-Length: 19\r\n\r\nc=IN IP4 10.0.0.5\r\n";
    assert_eq!(out(msg).1, Outcome::Unchanged);
}

#[test]
fn shrinking_and_growing_content_length() {
    let grow = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: 19\r\n\r\nc=IN IP4 10.0.0.5\r\n";
    let (m, _) = out(grow);
    assert!(cl_ok(&m));
    let c = cfg(&["192.168.100.0/24"]);
    let shrink = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: 104\r\n\r\nc=IN IP4 192.168.100.100\r\nc=IN IP4 192.168.100.100\r\nc=IN IP4 192.168.100.100\r\nc=IN IP4 192.168.100.100\r\n";
    let ext = ExternalAddrs::from_ip(ip("1.2.3.4"));
    let (m, r) = run_text(&c, ext, Direction::Outbound, shrink, 0);
    assert!(matches!(r.outcome, Outcome::Rewritten(_)));
    assert!(m.contains("Content-Length: 72\r\n"), "{m}");
    assert!(cl_ok(&m));
}

#[test]
fn too_big_leaves_the_buffer_untouched() {
    let (b, r) = run_out(&cfg(&["10.0.0.0/24"]), INVITE.as_bytes(), 3);
    assert_eq!(r.outcome, Outcome::TooBig);
    assert_eq!(r.len, INVITE.len());
    assert_eq!(b, INVITE.as_bytes());
}

#[test]
fn not_sip_kinds() {
    let mut stun = vec![0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7u8; 12]);
    for (input, kind) in [
        (&b"\r\n\r\n"[..], NotSip::KeepAlive),
        (b"\0\0\0\0", NotSip::KeepAlive),
        (&stun[..], NotSip::Stun),
        (b"hello", NotSip::Other),
        (b"", NotSip::Empty),
    ] {
        let (b, r) = run_out(&cfg(&["10.0.0.0/24"]), input, 16);
        assert_eq!(r.outcome, Outcome::NotSip(kind));
        assert_eq!(b, input);
    }
}

#[test]
fn malformed_messages_are_left_alone() {
    for (msg, why) in [
        (
            "INVITE sip:b@10.0.0.5 SIP/7.0\r\nContact: <sip:a@10.0.0.5>\r\n\r\n",
            Malformed::BadVersion,
        ),
        (
            "INVITE sip:b@10.0.0.5 SIP/2.0\r\nContact <sip:a@10.0.0.5>\r\n\r\n",
            Malformed::BadHeaderLine,
        ),
        (
            "SIP/2.0 4294967301 Big\r\nContact: <sip:a@10.0.0.5>\r\n\r\n",
            Malformed::BadStartLine,
        ),
    ] {
        let (m, o) = out(msg);
        assert_eq!(o, Outcome::Malformed(why), "{msg:?}");
        assert_eq!(m, msg);
    }
}

#[test]
fn disabled_config_is_the_fast_path() {
    let mut c = cfg(&["10.0.0.0/24"]);
    c.enabled = false;
    assert_eq!(out_cfg(&c, INVITE).1, Outcome::Unchanged);
}

#[test]
fn retransmissions_are_byte_identical_and_rewriting_twice_is_once() {
    let (a, _) = out(INVITE);
    let (b, _) = out(INVITE);
    assert_eq!(a, b);
    let (again, o) = out(&a);
    assert_eq!(o, Outcome::Unchanged);
    assert_eq!(again, a);
}

#[test]
fn inbound_restores_request_uri_and_top_via_for_one_to_one() {
    let c = cfg(&["10.0.0.5/32"]);
    let req = "INVITE sip:alice@203.0.113.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.2;branch=z9\r\nContact: <sip:bob@198.51.100.2>\r\nContent-Length: 0\r\n\r\n";
    let m = inb_counts(&c, None, req, "request_uri=1");
    assert!(m.starts_with("INVITE sip:alice@10.0.0.5:5060 SIP/2.0\r\n"));
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9;received=203.0.113.10;rport=5060\r\nContact: <sip:bob@198.51.100.2>\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let m = inb_counts(&c, None, resp, "via=2");
    assert!(m.contains("Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9;received=10.0.0.5;rport=5060\r\n"));
}

#[test]
fn inbound_shared_rule_needs_the_internal_host() {
    let c = cfg(&["10.0.0.0/24"]);
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(inb(&c, None, resp).1, Outcome::Unchanged);
    let (m, _) = inb(&c, Some("10.0.0.77"), resp);
    assert!(m.contains("Via: SIP/2.0/UDP 10.0.0.77:5060;branch=z9"));
}

#[test]
fn inbound_received_ipv6_unbracketed_and_port_map_reversed() {
    let c = cfg_ports(&["fd00::5/128"], &[(5060, 15060)]);
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP [2001:db8::10]:15060;received=2001:db8::10\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let m = text_counts(&c, ext6(), Direction::Inbound, resp, "via=2");
    contains_all(
        &m,
        &["Via: SIP/2.0/UDP [fd00::5]:5060;received=fd00::5\r\n"],
    );
}

#[test]
fn inbound_sdp_naming_the_external_address_is_restored() {
    let msg = "INVITE sip:a@203.0.113.10 SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: 23\r\n\r\nc=IN IP4 203.0.113.10\r\n";
    let m = inb_counts(&cfg(&["10.0.0.5/32"]), None, msg, "sdp_connection=1");
    assert!(m.contains("c=IN IP4 10.0.0.5\r\n"));
    assert!(cl_ok(&m));
}

#[test]
fn per_rule_external_address() {
    let mut c = cfg(&["10.0.0.0/24", "10.0.1.0/24"]);
    c.rules[1].external = Some(ip("203.0.113.11"));
    let msg = "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nContact: <sip:a@10.0.0.5>, <sip:b@10.0.1.5>\r\nContent-Length: 0\r\n\r\n";
    let (m, _) = out_cfg(&c, msg);
    assert!(m.contains("Contact: <sip:a@203.0.113.10>, <sip:b@203.0.113.11>"));
}

/// Past the edit list's capacity (more than a 64 KiB datagram can hold) the message is
/// left whole, reported, and flagged as leaking outbound.
#[test]
fn too_many_addresses_is_reported_not_truncated() {
    let mut msg = String::from("OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nm: ");
    for i in 0..=super::edits::MAX_EDITS {
        if i > 0 {
            msg.push(',');
        }
        msg.push_str("sip:10.0.0.5");
    }
    msg.push_str("\r\nContent-Length: 0\r\n\r\n");
    let c = cfg(&["10.0.0.0/24"]);
    let (b, r) = run_out(&c, msg.as_bytes(), 4096);
    assert_eq!(r.outcome, Outcome::Malformed(Malformed::TooManyAddresses));
    assert_eq!(b, msg.as_bytes());
    assert!(r.would_leak);
}

/// Hardening 3: an INVITE with a Via, SDP `o=`/`c=` and 61 Contacts at an internal
/// address (65 edits with Content-Length) was left untouched (`too_many_addresses`), every
/// private address in it. All are rewritten now.
#[test]
fn regression_61_contacts_via_and_sdp_are_all_rewritten() {
    let mut h = String::from(
        "INVITE sip:bob@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9\r\n",
    );
    for i in 0..61 {
        h.push_str(&format!("Contact: <sip:u{i}@10.0.0.5:5060>\r\n"));
    }
    h.push_str("Content-Type: application/sdp\r\n");
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let msg = with_body(&h, body);
    let m = out_counts(
        &msg,
        "via=1 contact=61 sdp_origin=1 sdp_connection=1 content_length=1",
    );
    assert!(!m.contains("10.0.0.5"), "{m}");
    let new_body = body.replace("10.0.0.5", EXT);
    assert_eq!(
        m,
        msg.replace("10.0.0.5", EXT).replace(
            &format!("Content-Length: {}", body.len()),
            &format!("Content-Length: {}", new_body.len())
        )
    );
    assert!(cl_ok(&m));
}

/// The densest message a datagram can carry: every address in a 64 KiB Contact list is
/// rewritten.
#[test]
fn contacts_filling_a_64_kib_datagram_are_all_rewritten() {
    let mut msg = String::from("OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nm:");
    let mut n = 0;
    while msg.len() + 40 < 65_507 {
        if n > 0 {
            msg.push(',');
        }
        msg.push_str("sip:10.0.0.5");
        n += 1;
    }
    msg.push_str("\r\nl:0\r\n\r\n");
    let c = cfg(&["10.0.0.0/24"]);
    let (m, r) = run_text(&c, ext4(), Direction::Outbound, &msg, 65_536);
    assert_eq!(usize::from(changes(r.outcome).contact), n);
    assert!(n > 5000);
    assert!(!m.contains("10.0.0.5"));
}

// ---------------------------------------------------------------------------------------
// Regressions.

/// A port map must never add a port to `maddr` or `received`: both are a host only.
#[test]
fn regression_port_map_not_appended_to_maddr() {
    // 5070 = 5060: the default port 5060 maps back to 5070 inbound.
    let c = cfg_ports(&["10.0.0.2/32"], &[(5060, 15060), (5070, 5060)]);
    let msg = "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;maddr=10.0.0.2\r\nContent-Length: 0\r\n\r\n";
    let m = out_cfg_counts(&c, msg, "via=2");
    contains_all(
        &m,
        &["Via: SIP/2.0/UDP 203.0.113.10:15060;branch=z9hG4bK1;maddr=203.0.113.10\r\n"],
    );
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.10:15060;branch=z9;received=203.0.113.10;maddr=203.0.113.10;rport=15060\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let m = inb_counts(&c, None, resp, "via=3");
    assert!(
        m.contains(
            "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9;received=10.0.0.2;maddr=10.0.0.2;rport=15060\r\n"
        ),
        "{m}"
    );
}

/// SDP ports follow the address of their own media section: the m= port is mapped only
/// when the section's connection address (media-level c=, else session-level c=) is
/// rewritten; an a=rtcp port only when its own address (else that connection address) is.
#[test]
fn regression_sdp_port_map_follows_media_address() {
    let c = cfg_ports(&["10.0.0.2/32"], &[(20000, 30000), (20001, 30001)]);
    let invite = |sdp: &str| {
        with_body(
            "INVITE sip:b@198.51.100.2 SIP/2.0\r\nContent-Type: application/sdp\r\n",
            sdp,
        )
    };
    // Section 1: another party's stream (its own c=); its a=rtcp names our address.
    // Section 2: no media c=, the session's (ours) applies. Section 3: theirs again, an
    // a=rtcp without an address follows the section's c=.
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 0\r\nc=IN IP4 198.51.100.77\r\na=rtcp:20001 IN IP4 10.0.0.2\r\n\
m=audio 20000 RTP/AVP 0\r\na=rtcp:20001\r\n\
m=video 20000 RTP/AVP 96\r\nc=IN IP4 198.51.100.77\r\na=rtcp:20001\r\n";
    let (m, o) = out_cfg(&c, &invite(sdp));
    assert!(
        m.ends_with(
            "v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 0\r\nc=IN IP4 198.51.100.77\r\na=rtcp:30001 IN IP4 203.0.113.10\r\n\
m=audio 30000 RTP/AVP 0\r\na=rtcp:30001\r\n\
m=video 20000 RTP/AVP 96\r\nc=IN IP4 198.51.100.77\r\na=rtcp:20001\r\n"
        ),
        "{m}"
    );
    assert_counts(
        o,
        "sdp_origin=1 sdp_connection=1 sdp_rtcp=3 sdp_media_port=1",
    );
    assert!(cl_ok(&m));
    // The session's c= is someone else's: our o= does not make the streams ours; a
    // media-level c= of ours does.
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 198.51.100.77\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 0\r\na=rtcp:20001\r\n\
m=audio 20000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\na=rtcp:20001\r\n";
    let (m, o) = out_cfg(&c, &invite(sdp));
    assert!(
        m.ends_with(
            "c=IN IP4 198.51.100.77\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 0\r\na=rtcp:20001\r\n\
m=audio 30000 RTP/AVP 0\r\nc=IN IP4 203.0.113.10\r\na=rtcp:30001\r\n"
        ),
        "{m}"
    );
    assert_counts(o, "sdp_media_port=1 sdp_rtcp=1");
    // A media-level c= with a name (not ours) overrides the session's address of ours.
    let sdp =
        "v=0\r\nc=IN IP4 10.0.0.2\r\nm=audio 20000 RTP/AVP 0\r\nc=IN IP4 media.example.com\r\n";
    let (m, o) = out_cfg(&c, &invite(sdp));
    assert!(
        m.ends_with(
            "c=IN IP4 203.0.113.10\r\nm=audio 20000 RTP/AVP 0\r\nc=IN IP4 media.example.com\r\n"
        ),
        "{m}"
    );
    assert_eq!(changes(o).sdp_media_port, 0);
    // Inbound: the restored address brings the reverse map with it, only where it applies.
    let sdp = "v=0\r\nc=IN IP4 198.51.100.77\r\nm=audio 30000 RTP/AVP 0\r\nm=audio 30000 RTP/AVP 0\r\nc=IN IP4 203.0.113.10\r\n";
    let (m, o) = inb(&c, None, &invite(sdp));
    assert!(
        m.ends_with("c=IN IP4 198.51.100.77\r\nm=audio 30000 RTP/AVP 0\r\nm=audio 20000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n"),
        "{m}"
    );
    assert_eq!(changes(o).sdp_media_port, 1);
}

fn register_200(contacts: &[String]) -> String {
    let mut msg = String::from(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9;received=203.0.113.10;rport=5060\r\n",
    );
    for c in contacts {
        msg.push_str(&format!("Contact: <sip:u@{c}:5060>;expires=60\r\n"));
    }
    msg.push_str("CSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n");
    msg
}

/// A registrar's 2xx lists every binding (dozens): Contacts that are never rewritten take
/// no edit slot, so the top Via is still restored.
#[test]
fn regression_register_2xx_many_contacts() {
    let c = cfg(&["10.0.0.5/32"]);
    let contacts: Vec<String> = (0..70).map(|_| EXT.to_string()).collect();
    let msg = register_200(&contacts);
    let (m, o) = inb(&c, None, &msg);
    let ch = changes(o);
    assert_eq!((ch.via, ch.contact, ch.total()), (2, 0, 2));
    assert_eq!(
        m,
        msg.replacen(
            "203.0.113.10:5060;branch=z9;received=203.0.113.10",
            "10.0.0.5:5060;branch=z9;received=10.0.0.5",
            1
        )
    );
    // CSeq before the Contacts, and outbound: the same.
    let moved = msg.replace("CSeq: 2 REGISTER\r\n", "").replacen(
        "Contact:",
        "CSeq: 2 REGISTER\r\nContact:",
        1,
    );
    let m2 = inb_counts(&c, None, &moved, "total=2");
    assert!(m2.contains("Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9;received=10.0.0.5;"));
    let internal: Vec<String> = (0..70).map(|i| format!("10.0.0.{}", 10 + i)).collect();
    let out_msg = register_200(&internal).replace(
        "203.0.113.10:5060;branch=z9;received=203.0.113.10",
        "10.0.0.5:5060;branch=z9",
    );
    let (m3, o3) = out(&out_msg);
    assert_eq!((changes(o3).via, changes(o3).contact), (1, 0));
    assert_eq!(
        m3,
        out_msg.replacen("10.0.0.5:5060", "203.0.113.10:5060", 1)
    );
}

/// Many Contacts, a few of them ours: only those are rewritten (and only they count
/// against the edit list's capacity).
#[test]
fn many_contacts_only_the_rewritten_ones_take_edits() {
    let mut msg = String::from(
        "SIP/2.0 300 Multiple Choices\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9\r\nCSeq: 1 INVITE\r\n",
    );
    let mut want = msg.replace("10.0.0.5:5060", "203.0.113.10:5060");
    for i in 0..70 {
        let (host, new) = if i % 20 == 7 {
            ("10.0.0.6".to_string(), EXT.to_string())
        } else {
            let h = format!("198.51.100.{}", 10 + i);
            (h.clone(), h)
        };
        msg.push_str(&format!("Contact: <sip:u{i}@{host}>;q=0.5\r\n"));
        want.push_str(&format!("Contact: <sip:u{i}@{new}>;q=0.5\r\n"));
    }
    msg.push_str("Content-Length: 0\r\n\r\n");
    want.push_str("Content-Length: 0\r\n\r\n");
    let (m, o) = out(&msg);
    let ch = changes(o);
    assert_eq!((ch.via, ch.contact, ch.total()), (1, 4, 5));
    assert_eq!(m, want);
}

/// `maddr` in a URI is rewritten (host only) wherever URIs are: Contact, Request-URI,
/// Route/Record-Route and From/To when enabled, inbound too; also with a host name.
#[test]
fn regression_uri_maddr_rewritten() {
    let c = cfg_ports(&["10.0.0.0/24"], &[(5060, 15060)]);
    let msg = "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nContact: <sip:alice@10.0.0.2:5060;maddr=10.0.0.2>\r\nContent-Length: 0\r\n\r\n";
    let m = out_cfg_counts(&c, msg, "contact=2");
    contains_all(
        &m,
        &["Contact: <sip:alice@203.0.113.10:15060;maddr=203.0.113.10>\r\n"],
    );
    let mut c = cfg(&["10.0.0.0/24"]);
    c.record_route = true;
    c.from_to = true;
    let msg = "INVITE sip:bob@10.0.0.7;transport=udp;maddr=10.0.0.7 SIP/2.0\r\n\
Route: <sip:10.0.0.8;lr;maddr=10.0.0.8>\r\n\
Record-Route: <sip:proxy.example.com;lr;maddr=10.0.0.9>\r\n\
From: <sip:alice@example.com;maddr=10.0.0.2>;tag=1\r\n\
To: <sip:bob@198.51.100.2;maddr=198.51.100.3>\r\n\
Contact: sip:alice@pc.example.com;maddr=10.0.0.2, <sip:a@10.0.0.2;MADDR=10.0.0.2?Subject=x>\r\n\
Content-Length: 0\r\n\r\n";
    let m = out_cfg_counts(
        &c,
        msg,
        "request_uri=2 route=2 record_route=1 from_to=1 contact=3",
    );
    let mut want = msg.to_string();
    for a in ["10.0.0.2", "10.0.0.7", "10.0.0.8", "10.0.0.9"] {
        want = want.replace(a, EXT);
    }
    assert_eq!(m, want);
    // Inbound: the external address in maddr goes back with the host.
    let c = cfg(&["10.0.0.5/32"]);
    let req =
        "INVITE sip:alice@203.0.113.10;maddr=203.0.113.10 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    let m = inb_counts(&c, None, req, "request_uri=2");
    assert!(
        m.starts_with("INVITE sip:alice@10.0.0.5;maddr=10.0.0.5 SIP/2.0\r\n"),
        "{m}"
    );
    // IPv6 maddr in a URI: bracketed stays bracketed.
    let c6 = cfg(&["fd00::/8"]);
    let m = text_counts(
        &c6,
        ext6(),
        Direction::Outbound,
        "OPTIONS sip:x@[2001:db8::2] SIP/2.0\r\nContact: <sip:a@[fd00::2];maddr=[fd00::2]>\r\nContent-Length: 0\r\n\r\n",
        "contact=2",
    );
    contains_all(
        &m,
        &["Contact: <sip:a@[2001:db8::10];maddr=[2001:db8::10]>\r\n"],
    );
}

/// An unbracketed IPv6 `maddr` in the top Via is rewritten as written (so is a bracketed one).
#[test]
fn regression_via_maddr_ipv6_unbracketed() {
    let c = cfg(&["fd00::/8"]);
    for (maddr, want) in [("fd00::2", "2001:db8::10"), ("[fd00::2]", "[2001:db8::10]")] {
        let msg = format!("OPTIONS sip:x@[2001:db8::2] SIP/2.0\r\nVia: SIP/2.0/UDP [fd00::2]:5060;branch=z9;maddr={maddr};ttl=1\r\nContent-Length: 0\r\n\r\n");
        let (m, r) = run_text(&c, ext46(), Direction::Outbound, &msg, 64);
        assert_eq!(changes(r.outcome).via, 2, "{m}");
        assert!(
            m.contains(&format!(
                "Via: SIP/2.0/UDP [2001:db8::10]:5060;branch=z9;maddr={want};ttl=1\r\n"
            )),
            "{m}"
        );
    }
}

/// Hardening 4: outbound, an address of ours left in the message is flagged (the caller
/// drops it by default): anywhere in a message that could not be parsed, in a rewritten
/// field that could not be rewritten (no external address of its family). Inbound never;
/// an unparsable message naming only other addresses neither; nor fields never rewritten.
#[test]
fn regression_leftover_internal_addresses_are_flagged_outbound() {
    let c = cfg(&["10.0.0.0/24", "fd00::/64"]);
    let conflicting = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9\r\nContact: <sip:a@10.0.0.5>\r\nContent-Length: 4\r\nContent-Length: 400\r\n\r\nbody";
    let (b, r) = run_out(&c, conflicting.as_bytes(), 64);
    assert_eq!(
        r.outcome,
        Outcome::Malformed(Malformed::DuplicateContentLength)
    );
    assert_eq!(
        b,
        conflicting.as_bytes(),
        "left as it is: the caller decides"
    );
    assert!(r.would_leak);
    let (_, r) = run_in(&c, conflicting.as_bytes());
    assert!(
        !r.would_leak,
        "inbound messages carry internal addresses by design"
    );
    let public = conflicting.replace("10.0.0.5", "198.51.100.5");
    let (_, r) = run_out(&c, public.as_bytes(), 64);
    assert!(!r.would_leak);
    let bad_line = "INVITE sip:b@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP [fd00::5]:5060\r\nno colon here\r\n\r\n";
    let (_, r) = run_out(&c, bad_line.as_bytes(), 64);
    assert_eq!(r.outcome, Outcome::Malformed(Malformed::BadHeaderLine));
    assert!(r.would_leak, "IPv6 too");
    // An IPv6 Contact with only an IPv4 external address stays: a leak.
    let v6 = "OPTIONS sip:x@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5\r\nContact: <sip:a@[fd00::5]>\r\nContent-Length: 0\r\n\r\n";
    let (_, r) = run_out(&c, v6.as_bytes(), 64);
    assert_eq!((changes(r.outcome).via, r.family_mismatch), (1, 1));
    assert!(r.would_leak);
    // Call-ID, branch, tags, lower Vias, From/To (not enabled): by design, no leak.
    let (_, r) = run_out(&c, INVITE.as_bytes(), 512);
    assert!(matches!(r.outcome, Outcome::Rewritten(_)));
    assert!(!r.would_leak);
}

/// Found by the attack test: an SDP body without Content-Type is not parsed (it is no
/// SDP to the rewriter), so its `c=` went out with the internal address. Outbound, a
/// body without Content-Type naming an address of ours is flagged; one naming none is
/// not, and inbound never.
#[test]
fn regression_untyped_body_naming_an_internal_address_is_flagged() {
    let c = cfg(&["10.0.0.0/24"]);
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\nc=IN IP4 10.0.0.5\r\n";
    let msg = format!(
        "INVITE sip:b@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (_, r) = run_out(&c, msg.as_bytes(), 64);
    assert!(
        matches!(r.outcome, Outcome::Rewritten(_)),
        "{:?}",
        r.outcome
    );
    assert!(r.would_leak);
    let (_, r) = run_in(&c, msg.as_bytes());
    assert!(!r.would_leak);
    let public = msg.replace("IN IP4 10.0.0.5", "IN IP4 198.51.100.9");
    let (_, r) = run_out(&c, public.as_bytes(), 64);
    assert!(!r.would_leak);
}

fn register_200_to(contacts: &str) -> String {
    format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9;received=203.0.113.10\r\n\
Contact: {contacts}\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Hardening 11: the registrar's 200 to a REGISTER returns the UA's binding at the
/// external address; it was never restored, and the UA never found its own Contact.
/// Inbound, the bindings naming the external address and the UA's port are restored (the
/// port through the rule's map); other bindings of the address of record stay.
#[test]
fn regression_register_2xx_own_binding_restored_inbound() {
    let c = cfg(&["10.0.0.0/24"]);
    let msg = register_200_to(
        "<sip:alice@203.0.113.10:5060>;expires=3600, <sip:alice@203.0.113.10:5062>;expires=99, \
<sip:alice@198.51.100.7:5060>;expires=50, <sip:alice@203.0.113.10>;expires=20",
    );
    let run = |c: &RewriteConfig, msg: &str, local_port| {
        let ctx = Context {
            config: c,
            external: ext4(),
            direction: Direction::Inbound,
            internal: Some(ip("10.0.0.2")),
            local_port,
            napt: None,
            media: None,
        };
        let (b, r) = run_ctx(&ctx, msg.as_bytes(), 512);
        (String::from_utf8(b).unwrap(), r.outcome)
    };
    let (m, o) = run(&c, &msg, Some(5060));
    let ch = changes(o);
    assert_eq!((ch.via, ch.contact), (2, 2));
    assert!(
        m.contains(
            "Contact: <sip:alice@10.0.0.2:5060>;expires=3600, <sip:alice@203.0.113.10:5062>;expires=99, \
<sip:alice@198.51.100.7:5060>;expires=50, <sip:alice@10.0.0.2>;expires=20\r\n"
        ),
        "{m}"
    );
    // Another UA behind the same address (port 5062) gets its own binding only.
    let (m, o) = run(&c, &msg, Some(5062));
    assert_eq!(changes(o).contact, 1);
    assert!(m.contains("<sip:alice@10.0.0.2:5062>;expires=99"), "{m}");
    assert!(m.contains("<sip:alice@203.0.113.10:5060>;expires=3600"));
    // The port unknown: nothing restored (the bindings take no edit).
    let (_, o) = run(&c, &msg, None);
    assert_eq!(changes(o).contact, 0);
    // With a port map the binding carries the mapped port and gets the UA's back.
    let pm = cfg_ports(&["10.0.0.0/24"], &[(5060, 15060)]);
    let msg = register_200_to("<sip:alice@203.0.113.10:15060>, <sip:alice@203.0.113.10:5060>");
    let (m, o) = run(&pm, &msg, Some(5060));
    assert_eq!(changes(o).contact, 1);
    contains_all(
        &m,
        &["Contact: <sip:alice@10.0.0.2:5060>, <sip:alice@203.0.113.10:5060>\r\n"],
    );
    // Outbound, a registrar's 200 is left alone as before.
    let ctx = Context {
        direction: Direction::Outbound,
        internal: None,
        local_port: Some(5060),
        ..outbound_ctx(&c)
    };
    let (_, o) = run_ctx(
        &ctx,
        register_200_to("<sip:a@10.0.0.9:5060>").as_bytes(),
        64,
    );
    assert_eq!(o.outcome, Outcome::Unchanged);
}

/// The `expires` of the UA's own binding in a REGISTER 200 is reported (the caller keeps
/// the UA's NAPT binding that long); another binding's is not.
#[test]
fn register_200_reports_the_own_bindings_expires() {
    let c = cfg(&["10.0.0.0/24"]);
    let msg = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {EXT}:20000;branch=z9\r\nCSeq: 2 REGISTER\r\n\
         Contact: <sip:u@{EXT}:20007>;expires=60\r\nContact: <sip:u@{EXT}:20000>;expires=3600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let ctx = |local_port| Context {
        config: &c,
        external: ext4(),
        direction: Direction::Inbound,
        internal: Some(ip("10.0.0.2")),
        local_port: Some(local_port),
        napt: Some(Napt {
            internal: ip("10.0.0.2"),
            internal_port: 5060,
            external_port: 20000,
        }),
        media: None,
    };
    for rewrite in [super::rewrite_message, super::reference::rewrite_message] {
        let mut buf = msg.clone().into_bytes();
        buf.resize(msg.len() + 256, 0);
        let r = rewrite(&mut buf, msg.len(), &ctx(20000));
        assert_eq!(r.registered_s, Some(3600));
        let text = String::from_utf8_lossy(&buf[..r.len]).into_owned();
        assert!(
            text.contains("Contact: <sip:u@10.0.0.2:5060>;expires=3600\r\n")
                && text.contains(&format!("Contact: <sip:u@{EXT}:20007>;expires=60\r\n"))
                && text.contains("Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9"),
            "{text}"
        );
        let mut buf = msg.clone().into_bytes();
        buf.resize(msg.len() + 256, 0);
        assert_eq!(rewrite(&mut buf, msg.len(), &ctx(20001)).registered_s, None);
    }
}

/// Asserts that `m` contains every one of `parts`, naming the first one missing.
#[track_caller]
fn contains_all(m: &str, parts: &[&str]) {
    for p in parts {
        assert!(m.contains(p), "missing {p:?} in:\n{m}");
    }
}
