//! What an address written as text is to the rewriter: local (a private address of the
//! inside), public, never rewritten (loopback, unspecified, broadcast) or not an address.
//! The question of the origin's `isPrivateIP` and of the `PrivateIPDetection` benchmark:
//! [`classify`] is the fast answer, [`reference`] the plain one it is tested against.

use crate::{
    nat::{
        addr::{never_rewritten, never_rewritten_v4},
        rules::LocalV4,
        RewriteConfig,
    },
    sip::addr::{parse_ip, with_ipv4_word, with_ipv4_word_in},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextClass {
    /// In the config's local networks.
    Local,
    Public,
    /// Loopback / unspecified / broadcast.
    NeverRewritten,
    NotAnAddress,
}

/// The class of `text` under `cfg`, whose IPv4 local networks `local` holds (built once,
/// [`LocalV4::of`]): an IPv4 text read as one word and its networks compared in the
/// vector register the reading leaves it in, the reading and the compares in one function
/// ([`with_ipv4_word_in`]: one call per text); anything else as [`reference`] does.
#[inline]
pub fn classify(cfg: &RewriteConfig, local: &LocalV4, text: &[u8]) -> TextClass {
    // (The two arms' matches are written out in each: one closure shared by both, its
    // answer packed for the fallback, was 36 instructions more for the six addresses of
    // `PrivateIPDetection`.)
    if let Some((nets, masks)) = local.words() {
        return with_ipv4_word_in(text, nets, masks, |v4| match v4 {
            None => not_v4(cfg, text),
            Some((v4, _)) if never_rewritten_v4(v4) => TextClass::NeverRewritten,
            Some((_, true)) => TextClass::Local,
            Some(_) => TextClass::Public,
        });
    }
    // (More IPv4 local networks than `LocalV4` holds.)
    with_ipv4_word(text, |v4| match v4 {
        None => not_v4(cfg, text),
        Some(v4) if never_rewritten_v4(v4) => TextClass::NeverRewritten,
        Some(v4) if local.is_local(cfg, v4.into()) => TextClass::Local,
        Some(_) => TextClass::Public,
    })
}

/// [`reference`] of a text that is not an IPv4 word (out of line: the word's path stays
/// small).
#[inline(never)]
fn not_v4(cfg: &RewriteConfig, text: &[u8]) -> TextClass {
    reference(cfg, text)
}

/// The class of `text` under `cfg`: parsed with [`parse_ip`], then
/// [`never_rewritten`] and [`RewriteConfig::is_local`].
pub fn reference(cfg: &RewriteConfig, text: &[u8]) -> TextClass {
    match parse_ip(text) {
        None => TextClass::NotAnAddress,
        Some(a) if never_rewritten(a) => TextClass::NeverRewritten,
        Some(a) if cfg.is_local(a) => TextClass::Local,
        Some(_) => TextClass::Public,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::Net;

    #[test]
    fn fast_equals_reference() {
        let v6_local = RewriteConfig {
            local_nets: vec![
                Net::parse("::ffff:0:0/96").unwrap(),
                Net::parse("198.51.100.0/24").unwrap(),
            ],
            ..RewriteConfig::default()
        };
        let texts = [
            "192.168.1.1",
            "10.0.0.1",
            "172.16.0.1",
            "203.0.113.1",
            "8.8.8.8",
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "255.255.255.255",
            "255.255.255.254",
            "198.51.100.7",
            "010.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "",
            "x",
            "::1",
            "::",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "2001:db8::1",
            "fe80::1%eth0",
        ];
        // More IPv4 local networks than `LocalV4` holds (its fallback path).
        let many = RewriteConfig {
            local_nets: (0..12)
                .map(|i| Net::parse(&format!("{}.0.0.0/8", 190 + i)).unwrap())
                .chain([Net::parse("10.0.0.0/8").unwrap()])
                .collect(),
            ..RewriteConfig::default()
        };
        assert!(LocalV4::of(&many).words().is_none());
        for cfg in [RewriteConfig::default(), v6_local, many] {
            let local = LocalV4::of(&cfg);
            for t in texts {
                let t = t.as_bytes();
                assert_eq!(
                    classify(&cfg, &local, t),
                    reference(&cfg, t),
                    "{:?} {:?}",
                    String::from_utf8_lossy(t),
                    cfg.local_nets
                );
            }
        }
    }
}
