//! The top-level modules of `nat-userspace/src` form layers that only point down: no cycle
//! between them. A module's dependencies are the `crate::X` paths in its files (`use
//! crate::X::…`, `use crate::{X, Y::…}` and paths in code such as `crate::X::f()`),
//! comments left out; test code inside `src/` counts too (it is compiled with the module).
//! On a cycle the test prints it with the files that make each edge.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Cycles known and accepted, as the sorted module names of each (none: keep it so).
const KNOWN_CYCLES: &[&[&str]] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules: `src/X.rs` and `src/X/` (but for `lib.rs` and `main.rs`).
fn top_modules(src: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(src).expect("src/") {
        let e = e.expect("src/ entry");
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if path.is_dir() {
            out.insert(name);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "lib" && stem != "main" {
                out.insert(stem.to_string());
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The files of top-level module `m`.
fn module_files(src: &Path, m: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let file = src.join(format!("{m}.rs"));
    if file.is_file() {
        v.push(file);
    }
    let dir = src.join(m);
    if dir.is_dir() {
        rust_files(&dir, &mut v);
    }
    v.sort();
    v
}

/// The code alone: `//` comments (doc comments included), `/* */` blocks and the contents
/// of string literals are dropped (a `//` inside a string is not a comment, and a message
/// that names a module is not a dependency).
fn strip_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
                out.push('"');
            }
            i += 1;
            continue;
        } else if c == b'"' && !(i > 0 && b[i - 1] == b'\'' && b.get(i + 1) == Some(&b'\'')) {
            in_str = true;
        } else if b[i..].starts_with(b"//") {
            i = text[i..].find('\n').map_or(b.len(), |n| i + n);
            continue;
        } else if b[i..].starts_with(b"/*") {
            i = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            continue;
        }
        let ch = text[i..].chars().next().expect("a char");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of every path in a `{…}` use group starting at `s` (just after `{`).
fn group_heads(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut item_start = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if c.is_whitespace() => {}
            _ if item_start && depth == 0 => {
                item_start = false;
                let id = ident(&s[i..]);
                if !id.is_empty() {
                    out.push(id.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// The top-level modules a text refers to through `crate::`.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let code = strip_comments(text);
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + 7..];
        if let Some(group) = after.strip_prefix('{') {
            out.extend(group_heads(group));
        } else {
            let id = ident(after);
            if !id.is_empty() {
                out.insert(id.to_string());
            }
        }
        rest = after;
    }
    out
}

/// module → (dependency → files of the module that use it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graph() -> Graph {
    let src = src();
    let mods = top_modules(&src);
    assert!(mods.len() >= 10, "only {mods:?} under {}", src.display());
    let mut g = Graph::new();
    for m in &mods {
        let deps = g.entry(m.clone()).or_default();
        for f in module_files(&src, m) {
            let text =
                std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let rel = f
                .strip_prefix(&src)
                .expect("under src")
                .display()
                .to_string();
            for t in crate_refs(&text) {
                if &t != m && mods.contains(&t) {
                    deps.entry(t).or_default().insert(rel.clone());
                }
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g[v].keys() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().expect("on the stack");
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// A component: the shortest cycle through each of its modules, as `a -> b -> … -> a`,
/// then every edge inside it with the files that make it.
fn describe(g: &Graph, comp: &[String]) -> String {
    let inside: BTreeSet<&str> = comp.iter().map(String::as_str).collect();
    let mut shown = BTreeSet::new();
    let mut s = format!("modules {{{}}}:", comp.join(", "));
    for m in comp {
        let path = shortest_cycle(g, m, &inside);
        // The same cycle from another start: rotate to its smallest module.
        let ring = &path[..path.len() - 1];
        let k = (0..ring.len()).min_by_key(|&i| ring[i]).unwrap_or(0);
        let key: Vec<&str> = ring[k..].iter().chain(&ring[..k]).copied().collect();
        if shown.insert(key) {
            s.push_str(&format!("\n  cycle {}", path.join(" -> ")));
        }
    }
    for a in comp {
        for (b, files) in &g[a] {
            if inside.contains(b.as_str()) {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                s.push_str(&format!("\n    {a} -> {b}: {}", files.join(", ")));
            }
        }
    }
    s
}

fn shortest_cycle<'a>(g: &'a Graph, start: &'a str, inside: &BTreeSet<&str>) -> Vec<&'a str> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in g[v].keys().map(String::as_str) {
            if !inside.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![v];
                let mut x = v;
                while x != start {
                    x = prev[x];
                    path.push(x);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start]
}

#[test]
fn top_level_modules_have_no_cycle() {
    let g = graph();
    for (m, deps) in &g {
        eprintln!(
            "{m} -> {}",
            deps.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let found = cycles(&g);
    let known: Vec<Vec<String>> = KNOWN_CYCLES
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect();
    let new: Vec<String> = found
        .iter()
        .filter(|c| !known.contains(c))
        .map(|c| describe(&g, c))
        .collect();
    assert!(
        new.is_empty(),
        "cycles between top-level modules of nat-userspace/src (a module may only use \
         modules below it):\n{}",
        new.join("\n")
    );
    let gone: Vec<&Vec<String>> = known.iter().filter(|c| !found.contains(c)).collect();
    assert!(
        gone.is_empty(),
        "known cycles that are gone, remove them from KNOWN_CYCLES: {gone:?}"
    );
}

/// The parser and the cycle finder on small inputs.
#[test]
fn the_checker_reads_paths_and_finds_cycles() {
    let text = "//! see crate::cli\nuse crate::{nat::{addr, Net}, wire::udp as u, sip};\n\
                use crate::rewrite::packet; /* crate::xdp */\n\
                fn f() { let s = \"// crate::sys\"; crate::config::x(); }\n";
    let refs: Vec<String> = crate_refs(text).into_iter().collect();
    assert_eq!(refs, ["config", "nat", "rewrite", "sip", "wire"]);
    let mut g = Graph::new();
    let edge = |g: &mut Graph, a: &str, b: &str| {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert(format!("{a}.rs"));
        g.entry(b.into()).or_default();
    };
    edge(&mut g, "a", "b");
    edge(&mut g, "b", "c");
    edge(&mut g, "c", "a");
    edge(&mut g, "c", "d");
    assert_eq!(
        cycles(&g),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
    let d = describe(&g, &cycles(&g)[0]);
    assert!(d.contains("cycle a -> b -> c -> a\n"), "{d}");
    assert!(!d.contains("cycle b"), "one cycle shown once: {d}");
    let mut acyclic = Graph::new();
    edge(&mut acyclic, "a", "b");
    edge(&mut acyclic, "a", "c");
    edge(&mut acyclic, "b", "c");
    assert!(cycles(&acyclic).is_empty());
}
