//! The PrivateIPDetection input (`private-ip-detection.txt` of the bench inputs): six
//! addresses, each with the class the rewriter must give it. Shared by `tests/no_alloc.rs`
//! and the criterion benches (which include this file by path).

pub use sipnat::rewrite::classify::classify as fast;
use sipnat::{
    nat::{rules::LocalV4, RewriteConfig},
    rewrite::classify::TextClass as Class,
};

/// The class of the address text `text` under `config`: the reference answer (the fast
/// one, `rewrite::classify::classify`, is tested against it in the library).
#[inline]
pub fn classify(config: &RewriteConfig, text: &[u8]) -> Class {
    sipnat::rewrite::reference::classify(config, text)
}

/// The addresses of the file's text `file` (lines `ADDRESS EXPECTED`) with their expected
/// classes, each checked with [`classify`] and [`fast`] under the default config; there
/// are six.
pub fn addresses(file: &[u8]) -> Vec<(Vec<u8>, Class)> {
    let file = std::str::from_utf8(file).expect("UTF-8");
    let config = RewriteConfig::default();
    let mut out = Vec::new();
    for l in file.lines().filter(|l| !l.trim().is_empty()) {
        let (addr, want) = l.split_once(' ').expect("`address expected` lines");
        let want = match want.trim() {
            "true" => Class::Local,
            "false" => Class::Public,
            "loopback-never-rewritten" => Class::NeverRewritten,
            w => panic!("unknown expectation {w:?}"),
        };
        assert_eq!(classify(&config, addr.as_bytes()), want, "{addr}");
        assert_eq!(
            fast(&config, &LocalV4::of(&config), addr.as_bytes()),
            want,
            "fast: {addr}"
        );
        out.push((addr.as_bytes().to_vec(), want));
    }
    assert_eq!(out.len(), 6, "the origin's op is six addresses");
    out
}
