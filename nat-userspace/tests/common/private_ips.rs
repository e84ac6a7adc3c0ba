//! The PrivateIPDetection input (`private-ip-detection.txt` of the bench inputs): six
//! addresses, each with the class the rewriter must give it. Shared by `tests/no_alloc.rs`
//! and the criterion benches (which include this file by path).

use sipnat::{
    nat::{addr::never_rewritten, RewriteConfig},
    sip::addr::parse_ip,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// In the local networks.
    Private,
    Public,
    /// Loopback / unspecified / broadcast.
    NeverRewritten,
    NotAnAddress,
}

/// The class of the address text `text` under `config`.
#[inline]
pub fn classify(config: &RewriteConfig, text: &[u8]) -> Class {
    match parse_ip(text) {
        None => Class::NotAnAddress,
        Some(a) if never_rewritten(a) => Class::NeverRewritten,
        Some(a) if config.is_local(a) => Class::Private,
        Some(_) => Class::Public,
    }
}

/// The addresses of the file's text `file` (lines `ADDRESS EXPECTED`) with their expected
/// classes, each checked with [`classify`] under the default config; there are six.
pub fn addresses(file: &[u8]) -> Vec<(Vec<u8>, Class)> {
    let file = std::str::from_utf8(file).expect("UTF-8");
    let config = RewriteConfig::default();
    let mut out = Vec::new();
    for l in file.lines().filter(|l| !l.trim().is_empty()) {
        let (addr, want) = l.split_once(' ').expect("`address expected` lines");
        let want = match want.trim() {
            "true" => Class::Private,
            "false" => Class::Public,
            "loopback-never-rewritten" => Class::NeverRewritten,
            w => panic!("unknown expectation {w:?}"),
        };
        assert_eq!(classify(&config, addr.as_bytes()), want, "{addr}");
        out.push((addr.as_bytes().to_vec(), want));
    }
    assert_eq!(out.len(), 6, "the origin's op is six addresses");
    out
}
