//! Config errors as people read them: [`Problem`]s with a line and column, serde's and
//! toml's messages rewritten into "key, cause, fix" ([`explain`]), "did you mean" for
//! unknown keys, and the span tree ([`SpanTree`]) that finds the position of any value.

use std::fmt;

/// One problem in a config file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A config file that cannot be used: every problem found, each with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let message = shorten_message(&p.message);
            if p.line == 0 {
                write!(f, "{}: {message}", self.file)?;
            } else {
                write!(f, "{}:{}:{}: {message}", self.file, p.line, p.column)?;
            }
        }
        Ok(())
    }
}

/// The most characters of a value (or key) a message quotes; a longer one is cut and
/// ends in "…".
pub const MAX_QUOTED: usize = 80;
/// The most characters of one message, whatever it quotes.
pub const MAX_MESSAGE: usize = 1000;

/// Cuts what `s` quotes (between backticks or double quotes) to [`MAX_QUOTED`] characters
/// and the whole to [`MAX_MESSAGE`], each cut marked with "…": a 50 MB value must not be
/// echoed whole into a terminal, a reply or the log.
pub fn shorten_message(s: &str) -> std::borrow::Cow<'_, str> {
    fn cut(out: &mut String, s: &str, max: usize) {
        match s.char_indices().nth(max) {
            Some((i, _)) => {
                out.push_str(&s[..i]);
                out.push('…');
            }
            None => out.push_str(s),
        }
    }
    if s.chars().count() <= MAX_QUOTED {
        return s.into();
    }
    let mut out = String::with_capacity(s.len().min(MAX_MESSAGE + 8));
    let mut rest = s;
    while let Some(i) = rest.find(['`', '"']) {
        let (before, from) = rest.split_at(i);
        let q = &from[..1];
        out.push_str(before);
        out.push_str(q);
        let inner = &from[1..];
        match inner.find(q) {
            Some(j) => {
                cut(&mut out, &inner[..j], MAX_QUOTED);
                out.push_str(q);
                rest = &inner[j + 1..];
            }
            None => {
                cut(&mut out, inner, MAX_QUOTED);
                rest = "";
            }
        }
        if out.len() > 4 * MAX_MESSAGE {
            rest = "";
            break;
        }
    }
    out.push_str(rest);
    let mut short = String::with_capacity(MAX_MESSAGE + 4);
    cut(&mut short, &out, MAX_MESSAGE);
    short.into()
}

impl std::error::Error for ConfigError {}

pub(crate) type Span = std::ops::Range<usize>;

/// 1-based line and column of the start of `span` in `text` (0, 0 for "no position").
pub(crate) fn position(text: &str, span: &Span) -> (usize, usize) {
    if span.start == 0 && span.end == 0 {
        return (0, 0);
    }
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Problems in file order; those without a position last.
pub(crate) fn sort_problems(list: &mut [Problem]) {
    list.sort_by_key(|p| (p.line == 0, p.line, p.column));
}

/// The keys of every table, as the structs above define them (a unit test checks them
/// against serde's own lists): for "did you mean `inside`?" and "it belongs in [nat]".
pub(crate) const SECTIONS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "interfaces",
            "nat",
            "rewrite",
            "media",
            "control",
            "datapath",
            "log",
        ],
    ),
    (
        "interfaces",
        &[
            "inside",
            "outside",
            "queues",
            "sip_ports",
            "on_failure",
            "attach_mode",
            "steer_fragments",
        ],
    ),
    (
        "nat",
        &[
            "external_ip",
            "external_ip6",
            "allow_private_external",
            "l3",
            "local_nets",
            "rule",
            "flow_table_size",
            "flow_idle_timeout",
            "port_range",
        ],
    ),
    ("nat.rule", &["internal", "external", "ports"]),
    (
        "rewrite",
        &["enabled", "record_route", "from_to", "malformed", "leak"],
    ),
    ("control", &["socket", "metrics", "group", "bpffs"]),
    (
        "datapath",
        &[
            "frames",
            "ring_size",
            "batch",
            "copy_fill",
            "busy_poll",
            "busy_poll_idle_us",
            "nice",
            "rt_priority",
            "reassembly_memory",
            "reassembly_timeout_ms",
            "max_fragments",
            "max_datagram",
        ],
    ),
    ("media", &["enabled", "port_range", "idle_timeout"]),
    ("log", &["level"]),
];

/// Where every key's value is in the text, for error positions: a second, best-effort
/// parse into a tree of spans (toml's `Spanned`, spoken to directly so that any value
/// can be wrapped; tables written with dotted keys have no span of their own).
pub(crate) mod spans {
    use std::{fmt, ops::Range};

    use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    // serde_spanned's (and toml_datetime's) private protocol with toml's deserializer. If
    // a toml upgrade changes it, spans come out `None` (positions degrade to the section
    // header or none) and the unit test `span_tree_finds_values` fails.
    pub(crate) const NAME: &str = "$__serde_spanned_private_Spanned";
    pub(crate) const START: &str = "$__serde_spanned_private_start";
    pub(crate) const END: &str = "$__serde_spanned_private_end";
    pub(crate) const VALUE: &str = "$__serde_spanned_private_value";
    const DATETIME: &str = "$__toml_private_datetime";

    #[derive(Debug, Default)]
    pub(crate) struct SpanTree {
        pub span: Option<Range<usize>>,
        pub kind: Kind,
    }

    #[derive(Debug, Default)]
    pub(crate) enum Kind {
        #[default]
        Leaf,
        Table(Vec<(String, SpanTree)>),
        Array(Vec<SpanTree>),
    }

    impl SpanTree {
        /// The tree of `text`; empty when it is not valid TOML.
        pub fn parse(text: &str) -> SpanTree {
            toml::from_str(text).unwrap_or_default()
        }

        /// The node at `path` (keys; array elements by index).
        pub fn get(&self, path: &[&str]) -> Option<&SpanTree> {
            let Some((first, rest)) = path.split_first() else {
                return Some(self);
            };
            match &self.kind {
                Kind::Table(t) => t.iter().find(|(k, _)| k == first)?.1.get(rest),
                Kind::Array(a) => a.get(first.parse::<usize>().ok()?)?.get(rest),
                Kind::Leaf => None,
            }
        }

        /// The path of the smallest node whose span holds byte `off` (the root: empty).
        pub fn path_at(&self, off: usize) -> Vec<String> {
            let mut best = None;
            self.find(off, &mut Vec::new(), &mut best);
            best.map(|(_, p)| p).unwrap_or_default()
        }

        fn find(
            &self,
            off: usize,
            path: &mut Vec<String>,
            best: &mut Option<(usize, Vec<String>)>,
        ) {
            // (The root's span is empty; it is the default answer.)
            if let Some(s) = self.span.as_ref().filter(|s| !s.is_empty()) {
                let len = s.end - s.start;
                if s.contains(&off) && best.as_ref().is_none_or(|(l, _)| len <= *l) {
                    *best = Some((len, path.clone()));
                }
            }
            match &self.kind {
                Kind::Table(t) => {
                    for (k, n) in t {
                        path.push(k.clone());
                        n.find(off, path, best);
                        path.pop();
                    }
                }
                Kind::Array(a) => {
                    for (i, n) in a.iter().enumerate() {
                        path.push(i.to_string());
                        n.find(off, path, best);
                        path.pop();
                    }
                }
                Kind::Leaf => {}
            }
        }
    }

    struct NodeVisitor;

    impl<'de> Visitor<'de> for NodeVisitor {
        type Value = SpanTree;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any TOML value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<SpanTree, E> {
            Ok(SpanTree::default())
        }
        fn visit_i64<E>(self, _: i64) -> Result<SpanTree, E> {
            Ok(SpanTree::default())
        }
        fn visit_u64<E>(self, _: u64) -> Result<SpanTree, E> {
            Ok(SpanTree::default())
        }
        fn visit_f64<E>(self, _: f64) -> Result<SpanTree, E> {
            Ok(SpanTree::default())
        }
        fn visit_str<E>(self, _: &str) -> Result<SpanTree, E> {
            Ok(SpanTree::default())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<SpanTree, A::Error> {
            let mut v = Vec::new();
            while let Some(n) = a.next_element()? {
                v.push(n);
            }
            Ok(SpanTree {
                span: None,
                kind: Kind::Array(v),
            })
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<SpanTree, A::Error> {
            let Some(first) = a.next_key::<String>()? else {
                return Ok(SpanTree {
                    span: None,
                    kind: Kind::Table(Vec::new()),
                });
            };
            if first == START {
                let start: usize = a.next_value()?;
                let _ = a.next_key::<String>()?;
                let end: usize = a.next_value()?;
                let _ = a.next_key::<String>()?;
                let Bare(mut n) = a.next_value()?;
                n.span = Some(start..end);
                return Ok(n);
            }
            if first == DATETIME {
                let _: IgnoredAny = a.next_value()?;
                return Ok(SpanTree::default());
            }
            let mut t = vec![(first, a.next_value()?)];
            while let Some(k) = a.next_key::<String>()? {
                let n = a.next_value()?;
                t.push((k, n));
            }
            Ok(SpanTree {
                span: None,
                kind: Kind::Table(t),
            })
        }
    }

    /// A node, asking toml for its span.
    impl<'de> Deserialize<'de> for SpanTree {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_struct(NAME, &[START, END, VALUE], NodeVisitor)
        }
    }

    /// The value inside a span (asking again would wrap it again, forever).
    struct Bare(SpanTree);

    impl<'de> Deserialize<'de> for Bare {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(NodeVisitor).map(Bare)
        }
    }
}

use spans::{Kind, SpanTree};

/// `nat.rule.ports` from `["nat", "rule", "0", "ports", "5060"]`: keys without array
/// indices (and without port-map keys, which are numbers too).
pub(crate) fn dotted(path: &[String]) -> String {
    path.iter()
        .filter(|s| s.parse::<usize>().is_err())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(".")
}

/// How a table is written: `[interfaces]`, `a [[nat.rule]] section`, `the top level`.
pub(crate) fn table_name(dotted: &str) -> String {
    match dotted {
        "" => "the top level".into(),
        "nat.rule" => "[[nat.rule]]".into(),
        s => format!("[{s}]"),
    }
}

/// The names in backticks in `s` (serde's "expected one of `a`, `b`").
pub(crate) fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The valid name `key` is most likely a misspelling of.
pub(crate) fn closest<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    let k = key.to_ascii_lowercase();
    valid
        .iter()
        .map(|v| (edit_distance(&k, v), *v))
        .filter(|(d, v)| {
            *d <= (k.len() / 3).max(1) || (k.len() >= 4 && (v.starts_with(&k) || k.starts_with(v)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// serde's names for what it expected, as a user would write it.
pub(crate) fn wanted(e: &str) -> String {
    match e {
        "a string" => "a quoted string".into(),
        "path string" => "a quoted path".into(),
        "a boolean" => "true or false".into(),
        "u16" => "a port number from 1 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "i32" => "a whole number".into(),
        "a sequence" => "an array ([...])".into(),
        "a map" | "a table of port numbers" => "an inline table, e.g. { 5060 = 15060 }".into(),
        s if s.starts_with("struct ") => "a [section] table".into(),
        s => s.into(),
    }
}

/// serde's names for what it found, as a user would read it.
pub(crate) fn found(u: &str) -> String {
    let quoted = |s: &str| s.split('`').nth(1).map(str::to_string);
    match u.split_once(' ').map_or(u, |(w, _)| w) {
        "integer" => quoted(u).map_or(u.into(), |v| format!("the number {v}")),
        "floating" => quoted(u).map_or(u.into(), |v| format!("the number {v}")),
        "boolean" => quoted(u).unwrap_or_else(|| u.into()),
        "string" => format!("the string {}", u.trim_start_matches("string ")),
        "map" => "a table".into(),
        "sequence" => "an array".into(),
        _ => u.into(),
    }
}

/// One sentence (cause and fix, naming the key) for a toml syntax or serde error.
pub(crate) fn explain(text: &str, e: &toml::de::Error) -> String {
    let raw = e.message().trim();
    if text.parse::<toml::Table>().is_err() {
        let joined = raw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        let hint = if raw.contains("duplicate key") {
            "; each key, and each [section], may appear only once"
        } else if raw.starts_with("invalid string") {
            "; put text in double quotes, e.g. inside = \"eth1\""
        } else if raw.starts_with("invalid basic string")
            || raw.starts_with("invalid literal string")
        {
            "; end the string with its quote on the same line"
        } else if raw.starts_with("invalid escape sequence") {
            "; write a backslash as \\\\, or use single quotes"
        } else {
            ""
        };
        return format!("TOML syntax error: {joined}{hint}");
    }
    let tree = SpanTree::parse(text);
    let mut path = e.span().map(|s| tree.path_at(s.start)).unwrap_or_default();
    // `[[interfaces]]`: serde reads a struct from an array too, so the error would be
    // about its first field.
    if let Some(section) = path.first().filter(|s| {
        SECTIONS[0].1.contains(&s.as_str())
            && matches!(
                tree.get(&[s.as_str()]).map(|n| &n.kind),
                Some(Kind::Array(_))
            )
    }) {
        return format!(
            "[{section}] must be a single table, not an array of tables: write [{section}] (single brackets), once"
        );
    }
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (key, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let valid = backticked(tail);
        // The table is the one with exactly these keys (its position may be unknown:
        // dotted keys); else where the error points.
        let here = match SECTIONS.iter().find(|(_, keys)| **keys == valid[..]) {
            Some((s, _)) => s.to_string(),
            None => {
                if path.last().map(String::as_str) == Some(key) {
                    path.pop();
                }
                dotted(&path)
            }
        };
        return unknown_key(&tree, &here, key, &valid);
    }
    let key = dotted(&path);
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let (value, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = tail.split_once("expected ").map_or("", |(_, x)| x);
        return format!("{key} cannot be `{value}`: use {expected}");
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ") {
        let (got, want) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
        if key == "nat.rule" {
            return format!(
                "nat.rule must be an array of tables, not {}: write each rule as a [[nat.rule]] section (double brackets)",
                found(got)
            );
        }
        return format!("{key} must be {}, not {}", wanted(want), found(got));
    }
    if let Some(rest) = raw.strip_prefix("invalid value: ") {
        let (got, want) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
        let value = got.split('`').nth(1).unwrap_or(got);
        let want = if key == "interfaces.queues" {
            format!("a queue number from 0 to {}", nat_common::MAX_QUEUES - 1)
        } else {
            wanted(want)
        };
        return format!("{key} value {value} is out of range: use {want}");
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        if key == "nat.rule" && field == "internal" {
            return "this [[nat.rule]] has no `internal`: add the addresses it rewrites, e.g. internal = \"10.0.0.0/24\"".into();
        }
        return format!("{} has no `{field}`: add it", table_name(&key));
    }
    if key.is_empty() || raw.starts_with(&key) {
        raw.to_string()
    } else {
        format!("{key}: {raw}")
    }
}

/// An unknown key `key` in table `here` (dotted; "" for the top level), whose valid keys
/// serde listed as `valid`.
pub(crate) fn unknown_key(tree: &SpanTree, here: &str, key: &str, valid: &[&str]) -> String {
    let close = closest(key, valid);
    // The table where the same key is valid.
    let home = SECTIONS
        .iter()
        .find(|(s, keys)| *s != here && keys.contains(&key))
        .map(|(s, _)| *s);
    if here.is_empty() {
        let is_table = matches!(tree.get(&[key]).map(|n| &n.kind), Some(Kind::Table(_)));
        if !is_table {
            return match home {
                Some("nat.rule") => {
                    format!("`{key}` is outside any section: put it in a [[nat.rule]] section")
                }
                Some(s) => format!("`{key}` is outside any section: put it under [{s}]"),
                None => format!("unknown key `{key}` outside any section: remove it"),
            };
        }
        let sections = valid
            .iter()
            .map(|s| format!("[{s}]"))
            .collect::<Vec<_>>()
            .join(", ");
        return match close {
            Some(c) => format!("unknown section [{key}]: did you mean [{c}]?"),
            None => format!("unknown section [{key}]: remove it (the sections are {sections})"),
        };
    }
    let at = table_name(here);
    let belongs = home.map(|s| match s {
        "" => format!("[{key}] is a section of its own"),
        "nat" if key == "rule" => "rules are [[nat.rule]] sections".into(),
        "nat.rule" => "it belongs in a [[nat.rule]] section".into(),
        s => format!("it belongs in [{s}]"),
    });
    match (close, belongs) {
        (Some(c), Some(b)) => match b.strip_prefix("it ") {
            Some(rest) => {
                format!("unknown key `{key}` in {at}: did you mean `{c}`? (`{key}` {rest})")
            }
            None => format!("unknown key `{key}` in {at}: did you mean `{c}`? ({b})"),
        },
        (Some(c), None) => format!("unknown key `{key}` in {at}: did you mean `{c}`?"),
        (None, Some(b)) if b.starts_with("it ") => {
            format!("unknown key `{key}` in {at}: {b}, move it there")
        }
        (None, Some(b)) => format!("unknown key `{key}` in {at}: {b}"),
        (None, None) => {
            format!(
                "unknown key `{key}` in {at}: remove it (valid keys: {})",
                valid.join(", ")
            )
        }
    }
}

/// Collects problems with positions.
pub(crate) struct Problems<'a> {
    pub(crate) text: &'a str,
    pub(crate) tree: SpanTree,
    pub(crate) list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Problems {
            text,
            tree: SpanTree::parse(text),
            list: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, span: &Span, message: String) {
        let (line, column) = position(self.text, span);
        self.list.push(Problem {
            line,
            column,
            message,
        });
    }

    /// A problem at the value at `path` ([`Problems::at`]).
    pub(crate) fn add_at(&mut self, path: &[&str], message: String) {
        let span = self.at(path);
        self.add(&span, message);
    }

    /// The value at `path`; if it is not in the file, the nearest enclosing table that is
    /// (its header); else no position.
    pub(crate) fn at(&self, path: &[&str]) -> Span {
        (1..=path.len())
            .rev()
            .find_map(|n| {
                self.tree
                    .get(&path[..n])?
                    .span
                    .clone()
                    .filter(|s| *s != (0..0))
            })
            .unwrap_or(0..0)
    }

    /// `span` (of a `Spanned` field) when it has one, else [`Problems::at`] `path`.
    pub(crate) fn at_or(&self, span: &Span, path: &[&str]) -> Span {
        if *span == (0..0) {
            self.at(path)
        } else {
            span.clone()
        }
    }

    /// The position of a port-map key: in the text before its value.
    pub(crate) fn key_at(&self, path: &[&str], key: &str) -> Span {
        let v = self.at(path);
        match self.text[..v.start.min(self.text.len())].rfind(key) {
            Some(k) if v != (0..0) => k..k + key.len(),
            _ => v,
        }
    }
}
