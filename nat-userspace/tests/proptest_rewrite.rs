//! Property tests: generated SIP messages with random header casing, compact forms,
//! folding, CRLF or LF, extra whitespace, and addresses inside and outside the rules.
//! Invariants: the message is rewritten or unchanged (never malformed), Content-Length
//! equals the body, no rule address is left in a rewritable field, nothing but rule
//! addresses and Content-Length changes, rewriting twice equals once, and a retransmission
//! gives byte-identical output.

mod common;

use common::{
    rewrite::outbound,
    sipcheck::{cl_and_rest, in_rules, only_rewritable_tokens_changed, rewritable_addresses},
};
use proptest::prelude::*;
use sipnat::{
    nat::{Net, RewriteConfig},
    rewrite::{rewrite_message, Outcome},
};

fn config() -> RewriteConfig {
    RewriteConfig::networks(
        ["10.0.0.0/24", "fd00::/8"]
            .iter()
            .map(|n| Net::parse(n).unwrap()),
    )
}

/// An address as written in a URI / Via: inside a rule, private but outside, public,
/// never-rewritten, or a name.
fn uri_host() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u8..255).prop_map(|x| format!("10.0.0.{x}")),
        (1u8..255).prop_map(|x| format!("[fd00::{x:x}]")),
        (1u8..255).prop_map(|x| format!("10.0.1.{x}")), // private, but no rule covers it
        (1u8..255).prop_map(|x| format!("192.168.7.{x}")),
        (1u8..255).prop_map(|x| format!("198.51.100.{x}")),
        Just("127.0.0.1".to_string()),
        Just("0.0.0.0".to_string()),
        Just("[::ffff:10.0.0.9]".to_string()),
        Just("host.example.com".to_string()),
        Just("10.0.0.1.example.com".to_string()),
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (1024u16..65535).prop_map(|p| format!(":{p}"))
    ]
}

/// A header name in long or compact form, randomly cased, with optional LWS before ':'.
fn name(long: &'static str, compact: Option<&'static str>) -> impl Strategy<Value = String> {
    let forms: Vec<&'static str> = std::iter::once(long).chain(compact).collect();
    (prop::sample::select(forms), any::<u64>(), 0usize..3).prop_map(|(n, bits, ws)| {
        let cased: String = n
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if bits >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        format!("{cased}{}", [" ", "  ", " \t"][..ws].concat())
    })
}

#[derive(Debug, Clone)]
struct Msg {
    text: String,
}

fn sdp_addr() -> impl Strategy<Value = (String, &'static str)> {
    prop_oneof![
        (1u8..255).prop_map(|x| (format!("10.0.0.{x}"), "IP4")),
        (1u8..255).prop_map(|x| (format!("fd00::{x:x}"), "IP6")),
        (1u8..255).prop_map(|x| (format!("198.51.100.{x}"), "IP4")),
        Just(("0.0.0.0".to_string(), "IP4")),
        Just(("::ffff:10.0.0.3".to_string(), "IP6")),
        Just(("media.example.com".to_string(), "IP4")),
    ]
}

fn message() -> impl Strategy<Value = Msg> {
    let via = (name("Via", Some("v")), uri_host(), port(), any::<bool>());
    let contacts = prop::collection::vec((uri_host(), port(), any::<bool>()), 1..4);
    let contact = (name("Contact", Some("m")), contacts, any::<bool>());
    let sdp = prop::collection::vec(sdp_addr(), 1..5);
    (
        prop_oneof![Just("INVITE"), Just("OPTIONS"), Just("MESSAGE"), Just("SIP/2.0 200 OK")],
        uri_host(),
        via,
        contact,
        name("Content-Length", Some("l")),
        name("Content-Type", Some("c")),
        sdp,
        any::<bool>(), // CRLF or LF
        any::<bool>(), // SDP or no body
    )
        .prop_map(|(method, ruri, (vn, vh, vp, vfold), (cn, cs, cfold), ln, tn, sdp, crlf, with_sdp)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut m = String::new();
            if method.starts_with("SIP/") {
                m.push_str(method);
            } else {
                m.push_str(&format!("{method} sip:bob@{ruri} SIP/2.0"));
            }
            m.push_str(nl);
            let fold = |f: bool| if f { format!("{nl} ") } else { " ".to_string() };
            m.push_str(&format!("{vn}: SIP/2.0/UDP{}{vh}{vp};branch=z9hG4bK{vh};rport{nl}", fold(vfold)));
            m.push_str(&format!("Via: SIP/2.0/UDP 10.0.0.77:5060;branch=z9hG4bK-second{nl}"));
            m.push_str(&format!("Call-ID: {}@{vh}{nl}", vh.len()));
            m.push_str(&format!("From: <sip:alice@{vh}>;tag=1{nl}To: <sip:bob@{ruri}>{nl}CSeq: 1 INVITE{nl}"));
            let vals: Vec<String> = cs
                .iter()
                .map(|(h, p, angle)| if *angle { format!("\"A, B\" <sip:u@{h}{p}>;q=0.5") } else { format!("sip:u@{h}{p}") })
                .collect();
            m.push_str(&format!("{cn}: {}{nl}", vals.join(&format!(",{}", fold(cfold)))));
            let body = if with_sdp {
                let mut b = format!("v=0{nl}o=- 1 1 IN {} {}{nl}s=-{nl}", sdp[0].1, sdp[0].0);
                for (i, (a, t)) in sdp.iter().enumerate() {
                    b.push_str(&format!("c=IN {t} {a}{nl}m=audio {} RTP/AVP 0{nl}a=rtcp:{} IN {t} {a}{nl}a=candidate:1 1 UDP 1 {a} 9 typ host{nl}", 20000 + 2 * i, 20001 + 2 * i));
                }
                m.push_str(&format!("{tn}: application/sdp{nl}"));
                b
            } else {
                String::new()
            };
            m.push_str(&format!("{ln}: {}{nl}{nl}", body.len()));
            m.push_str(&body);
            Msg { text: m }
        })
}

fn rewrite(cfg: &RewriteConfig, input: &[u8]) -> (Vec<u8>, Outcome, u16) {
    let mut buf = input.to_vec();
    buf.resize(input.len() + 2048, 0);
    let ctx = outbound(cfg);
    let r = rewrite_message(&mut buf, input.len(), &ctx);
    buf.truncate(r.len);
    (buf, r.outcome, r.family_mismatch)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_messages_keep_the_invariants(m in message()) {
        let cfg = config();
        let input = m.text.as_bytes();
        let (out, outcome, mismatch) = rewrite(&cfg, input);
        prop_assert!(matches!(outcome, Outcome::Rewritten(_) | Outcome::Unchanged), "{outcome:?} for\n{}", m.text);
        if let Outcome::Unchanged = outcome {
            prop_assert_eq!(&out[..], input);
        }
        let (cl, rest) = cl_and_rest(&out).expect("Content-Length present");
        prop_assert_eq!(cl, rest, "Content-Length != body in\n{}", String::from_utf8_lossy(&out));
        prop_assert_eq!(mismatch, 0);
        for (field, a) in rewritable_addresses(&out) {
            prop_assert!(!in_rules(&cfg, a), "{} still carries {} in\n{}", field, a, String::from_utf8_lossy(&out));
        }
        only_rewritable_tokens_changed("generated", &cfg, input, &out);
        // Idempotence and retransmission determinism.
        let (again, o2, _) = rewrite(&cfg, &out);
        prop_assert_eq!(o2, Outcome::Unchanged);
        prop_assert_eq!(&again, &out);
        let (retrans, _, _) = rewrite(&cfg, input);
        prop_assert_eq!(&retrans, &out);
    }

    /// Arbitrary bytes never panic and never change when not rewritten.
    #[test]
    fn arbitrary_bytes_are_safe(bytes in prop::collection::vec(any::<u8>(), 0..600), tail in 0usize..64) {
        let cfg = config();
        let mut buf = bytes.clone();
        buf.resize(bytes.len() + tail, 0);
        let ctx = outbound(&cfg);
        let r = rewrite_message(&mut buf, bytes.len(), &ctx);
        prop_assert!(r.len <= buf.len());
        if !matches!(r.outcome, Outcome::Rewritten(_)) {
            prop_assert_eq!(&buf[..bytes.len()], &bytes[..]);
        }
    }

    /// Real-looking SIP with random byte corruption: never panics, output bounded.
    #[test]
    fn corrupted_messages_are_safe(m in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let cfg = config();
        let mut input = m.text.into_bytes();
        for (i, b) in flips {
            let at = i.index(input.len());
            input[at] = b;
        }
        let (out, outcome, _) = rewrite(&cfg, &input);
        if !matches!(outcome, Outcome::Rewritten(_)) {
            prop_assert_eq!(out, input);
        }
    }
}
