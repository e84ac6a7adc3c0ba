//! Reference checks for rewritten SIP, written independently of the rewriter's scanner
//! (simple line/token logic), shared by the corpus and property tests.

use std::net::IpAddr;

use sipnat::nat::{ExternalAddrs, RewriteConfig};

pub const EXT4: &str = "203.0.113.10";
pub const EXT6: &str = "2001:db8::10";

/// Both external addresses, [`EXT4`] and [`EXT6`].
pub fn ext() -> sipnat::nat::ExternalAddrs {
    sipnat::nat::ExternalAddrs {
        v4: Some(EXT4.parse().unwrap()),
        v6: Some(EXT6.parse().unwrap()),
    }
}

pub fn lines(b: &[u8]) -> Vec<&[u8]> {
    // Lines split at LF, CR LF, CR (terminators excluded).
    let mut out = Vec::new();
    let mut s = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' || b[i] == b'\r' {
            out.push(&b[s..i]);
            if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            s = i + 1;
        }
        i += 1;
    }
    out.push(&b[s..]);
    out
}

/// Splits a line into tokens: delimiters are single-byte tokens; bracketed IPv6 stays whole.
pub fn tokens(l: &[u8]) -> Vec<&[u8]> {
    let delim = |c: u8| b" \t;,<>@\"=:/".contains(&c);
    let mut out = Vec::new();
    let mut i = 0;
    while i < l.len() {
        if l[i] == b'[' {
            let e = l[i..]
                .iter()
                .position(|&c| c == b']')
                .map_or(l.len(), |p| i + p + 1);
            out.push(&l[i..e]);
            i = e;
        } else if delim(l[i]) {
            out.push(&l[i..i + 1]);
            i += 1;
        } else {
            let s = i;
            while i < l.len() && !delim(l[i]) && l[i] != b'[' {
                i += 1;
            }
            out.push(&l[s..i]);
        }
    }
    out
}

/// SDP lines are split at spaces and '/' only (IPv6 there is unbracketed).
pub fn sdp_tokens(l: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut s = 0;
    for (i, &c) in l.iter().enumerate() {
        if c == b' '
            || c == b'/'
            || (i == 1 && c == b'=')
            || (c == b':' && l.starts_with(b"a=rtcp:") && i == 6)
        {
            out.push(&l[s..i]);
            out.push(&l[i..i + 1]);
            s = i + 1;
        }
    }
    out.push(&l[s..]);
    out
}

pub fn as_ip(tok: &[u8]) -> Option<IpAddr> {
    let t = std::str::from_utf8(tok).ok()?;
    t.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

pub fn in_rules(cfg: &RewriteConfig, a: IpAddr) -> bool {
    cfg.rule_for(a).is_some()
}

pub fn is_external(a: IpAddr) -> bool {
    let e = ExternalAddrs {
        v4: Some(EXT4.parse().unwrap()),
        v6: Some(EXT6.parse().unwrap()),
    };
    e.contains(a)
}

/// Which rewritable field a line belongs to (`None`: a line that must never change).
fn line_kinds(cfg: &RewriteConfig, msg: &[u8]) -> Vec<Option<&'static str>> {
    let ls = lines(msg);
    let mut kinds = Vec::with_capacity(ls.len());
    let mut in_body = false;
    let mut current: Option<&'static str> = None;
    let mut seen_via = false;
    for (i, l) in ls.iter().enumerate() {
        if i == 0 {
            kinds.push((!l.starts_with(b"SIP/")).then_some("request-line"));
            continue;
        }
        if in_body {
            let k = if l.starts_with(b"c=")
                || l.starts_with(b"o=")
                || l.starts_with(b"a=rtcp:")
                || l.starts_with(b"m=")
            {
                Some("sdp")
            } else {
                None
            };
            kinds.push(k);
            continue;
        }
        if l.is_empty() {
            in_body = true;
            kinds.push(None);
            continue;
        }
        if l[0] == b' ' || l[0] == b'\t' {
            kinds.push(current); // continuation line
            continue;
        }
        let name = l.split(|&c| c == b':').next().unwrap_or(b"");
        let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
        current = match name.as_str() {
            "via" | "v" if !seen_via => {
                seen_via = true;
                Some("via")
            }
            "contact" | "m" => Some("contact"),
            "content-length" | "l" => Some("content-length"),
            "route" | "record-route" if cfg.record_route => Some("route"),
            "from" | "f" | "to" | "t" if cfg.from_to => Some("from-to"),
            _ => None,
        };
        kinds.push(current);
    }
    kinds
}

/// Only rewritable fields change, and within them only tokens that were a rule's private
/// address (now the external address), Content-Length values, and SDP ports.
pub fn only_rewritable_tokens_changed(
    name: &str,
    cfg: &RewriteConfig,
    before: &[u8],
    after: &[u8],
) {
    let (lb, la) = (lines(before), lines(after));
    assert_eq!(lb.len(), la.len(), "{name}: line count changed");
    let kinds = line_kinds(cfg, before);
    for ((b, a), kind) in lb.iter().zip(&la).zip(kinds) {
        if b == a {
            continue;
        }
        let Some(kind) = kind else {
            panic!(
                "{name}: a line that is not a rewritable field changed:\n-{}\n+{}",
                String::from_utf8_lossy(b),
                String::from_utf8_lossy(a)
            );
        };
        if kind == "content-length" {
            continue;
        }
        let sdp = kind == "sdp";
        let (tb, ta) = if sdp {
            (sdp_tokens(b), sdp_tokens(a))
        } else {
            (tokens(b), tokens(a))
        };
        assert_eq!(
            tb.len(),
            ta.len(),
            "{name}: token structure changed:\n-{}\n+{}",
            String::from_utf8_lossy(b),
            String::from_utf8_lossy(a)
        );
        for (x, y) in tb.iter().zip(&ta) {
            if x == y {
                continue;
            }
            let (Some(xa), Some(ya)) = (as_ip(x), as_ip(y)) else {
                panic!(
                    "{name}: non-address token changed: {:?} → {:?} in line\n-{}\n+{}",
                    String::from_utf8_lossy(x),
                    String::from_utf8_lossy(y),
                    String::from_utf8_lossy(b),
                    String::from_utf8_lossy(a)
                );
            };
            assert!(
                in_rules(cfg, xa),
                "{name}: rewrote {xa}, which no rule covers"
            );
            assert!(
                is_external(ya) || ya.to_string().contains(EXT4),
                "{name}: {xa} became {ya}, not the external address"
            );
        }
    }
}

/// Addresses in rewritable fields (independent extraction): R-URI, top Via sent-by,
/// Contact values, SDP c=/o=/a=rtcp. Returns (field, address).
pub fn rewritable_addresses(msg: &[u8]) -> Vec<(String, IpAddr)> {
    let text = String::from_utf8_lossy(msg);
    let mut out = Vec::new();
    // Unfold headers first (continuation lines start with SP/HT).
    let (head, body) = match text.find("\r\n\r\n").or_else(|| text.find("\n\n")) {
        Some(p) => (&text[..p], &text[p..]),
        None => (&text[..], ""),
    };
    let mut unfolded: Vec<String> = Vec::new();
    for l in head.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if (l.starts_with(' ') || l.starts_with('\t')) && !unfolded.is_empty() {
            let last = unfolded.last_mut().unwrap();
            last.push(' ');
            last.push_str(l.trim());
        } else {
            unfolded.push(l.to_string());
        }
    }
    let host_after = |s: &str| -> Option<IpAddr> {
        let s = s.trim_start();
        if let Some(r) = s.strip_prefix('[') {
            return r.split(']').next()?.parse().ok();
        }
        let h: String = s
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
            .collect();
        h.parse().ok()
    };
    let uri_host = |u: &str| -> Option<IpAddr> {
        let lower = u.to_ascii_lowercase();
        let start = lower
            .find("sips:")
            .map(|p| p + 5)
            .or_else(|| lower.find("sip:").map(|p| p + 4))?;
        let rest = &u[start..];
        let end = rest.find(['>', '"']).unwrap_or(rest.len());
        let rest = &rest[..end];
        let host = match rest.find('@') {
            Some(p) => &rest[p + 1..],
            None => rest,
        };
        host_after(host)
    };
    if let Some(first) = unfolded.first() {
        let mut parts = first.split_whitespace();
        if let (Some(m), Some(u)) = (parts.next(), parts.next()) {
            if !m.starts_with("SIP/") {
                if let Some(a) = uri_host(u) {
                    out.push(("request-uri".into(), a));
                }
            }
        }
    }
    let mut via_done = false;
    let mut register_2xx = false;
    if let Some(first) = unfolded.first() {
        let code_2xx_3xx = first.starts_with("SIP/2.0 2") || first.starts_with("SIP/2.0 3");
        let register = unfolded.iter().any(|l| {
            let ll = l.to_ascii_lowercase();
            ll.starts_with("cseq") && ll.trim_end().ends_with("register")
        });
        register_2xx = code_2xx_3xx && register;
    }
    for l in unfolded.iter().skip(1) {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if (name == "via" || name == "v") && !via_done {
            via_done = true;
            // after the transport token: "SIP/2.0/UDP host"
            let v = value.split(',').next().unwrap_or("");
            let after = v.splitn(3, '/').nth(2).unwrap_or("");
            let after = after.trim_start();
            let sent_by = after.split_once([' ', '\t']).map_or("", |x| x.1);
            if let Some(a) = host_after(sent_by) {
                out.push(("via".into(), a));
            }
        } else if (name == "contact" || name == "m") && !register_2xx {
            for part in value.split(',') {
                if let Some(a) = uri_host(part) {
                    out.push(("contact".into(), a));
                }
            }
        }
    }
    for l in body.split(['\n', '\r']) {
        let toks: Vec<&str> = l.split(' ').collect();
        let addr = if l.starts_with("c=") && toks.len() >= 3 {
            toks[2].split('/').next()
        } else if l.starts_with("o=") && toks.len() >= 3 {
            toks.last().copied()
        } else if l.starts_with("a=rtcp:") && toks.len() == 4 {
            Some(toks[3])
        } else {
            None
        };
        if let Some(a) = addr.and_then(|a| a.parse().ok()) {
            out.push((l.chars().take(2).collect(), a));
        }
    }
    out
}

/// Content-Length value and the number of bytes after the header section.
pub fn cl_and_rest(msg: &[u8]) -> Option<(usize, usize)> {
    let t = msg;
    let p = t
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| t.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))?;
    let head = String::from_utf8_lossy(&t[..p]);
    let cl = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim().to_ascii_lowercase();
        (n == "content-length" || n == "l")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    })?;
    Some((cl, t.len() - p))
}

/// Does `msg` name an address starting with `prefix` as an address (after `@`, a space,
/// `=` or `<`), outside the opaque Call-ID? (Inside a token such as a branch parameter it
/// is no address.)
pub fn names_address(msg: &[u8], prefix: &str) -> bool {
    names(msg, prefix, false)
}

/// [`names_address`] for exactly `addr` (not followed by another digit).
pub fn names_address_exactly(msg: &[u8], addr: &str) -> bool {
    names(msg, addr, true)
}

fn names(msg: &[u8], text: &str, whole: bool) -> bool {
    String::from_utf8_lossy(msg)
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("call-id") && !l.starts_with("i:")
        })
        .any(|l| {
            ["@", " ", "=", "<"].iter().any(|p| {
                let needle = format!("{p}{text}");
                l.match_indices(&needle).any(|(i, _)| {
                    !whole || !l[i + needle.len()..].starts_with(|c: char| c.is_ascii_digit())
                })
            })
        })
}
