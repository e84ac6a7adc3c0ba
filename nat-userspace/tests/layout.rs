//! The layout stays readable: no non-test source file over [`MAX_FILE_LINES`] lines and no
//! function over [`MAX_FN_LINES`] lines outside tests, in `nat-userspace/src`,
//! `nat-common/src` and `xtask/src`.
//!
//! Test code does not count: `#[cfg(test)]` items (`mod tests { … }`, test-only functions)
//! are left out of a file's count, and a file declared `#[cfg(test)] mod x;` is left out
//! whole. Functions are `fn name` items with their brace-matched bodies; comments, strings
//! and character literals are blanked first so that a brace in them does not count.
//! On failure the test prints every offender with its size.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 900;
const MAX_FN_LINES: usize = 120;

/// Offenders accepted for now, as (path from the workspace root, function name or `""` for
/// the file). Only code that another change is rewriting at the same time may be here:
/// the fast rewriter path (`rewrite/`, `sip/`, `datapath/pipeline.rs`). Shrink it, never
/// grow it.
const ALLOWED: &[(&str, &str)] = &[];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every `.rs` file below `root`.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let (mut dirs, mut files) = (vec![root.to_path_buf()], Vec::new());
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for p in entries.map(|e| e.expect("entry").path()) {
            match p.is_dir() {
                true => dirs.push(p),
                false if p.extension().is_some_and(|x| x == "rs") => files.push(p),
                false => {}
            }
        }
    }
    files
}

/// `text` with comments, string literals (plain, byte and raw) and character literals
/// replaced by spaces; newlines are kept, so byte offsets and line numbers do not move.
fn blank(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident_before = |i: usize| i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    while i < b.len() {
        let c = b[i];
        if b[i..].starts_with(b"//") {
            let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
            wipe(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            // Block comments nest in Rust.
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            wipe(&mut out, i, j);
            i = j;
        } else if (c == b'r' || (c == b'b' && b.get(i + 1) == Some(&b'r'))) && !ident_before(i) {
            // A raw string r"…", r#"…"#, br"…"?
            let mut j = i + if c == b'b' { 2 } else { 1 };
            let hashes = b[j..].iter().take_while(|&&x| x == b'#').count();
            j += hashes;
            if b.get(j) == Some(&b'"') {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let end = b[j + 1..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |n| j + 1 + n + close.len());
                wipe(&mut out, j + 1, end - close.len());
                i = end;
            } else {
                i += 1;
            }
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            wipe(&mut out, i + 1, j);
            i = j + 1;
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{..}', '{') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                wipe(&mut out, i + 1, j);
                i = j + 1;
            } else {
                let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                if b.get(i + 1 + ch_len) == Some(&b'\'') {
                    wipe(&mut out, i + 1, i + 1 + ch_len);
                    i += 2 + ch_len;
                } else {
                    i += 1;
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The byte just past the `}` that closes the `{` at `open`.
fn matching_brace(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, &c) in code.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// From `from` (just past an item's start), the `{` that opens its body, or `None` if a
/// `;` at bracket depth 0 comes first (a declaration such as `mod tests;` or a trait method
/// without a body).
fn body_start(code: &[u8], from: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (j, &c) in code.iter().enumerate().skip(from) {
        match c {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'{' if depth == 0 => return Some(j),
            b';' if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

fn line_of(code: &[u8], at: usize) -> usize {
    code[..at.min(code.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
}

#[derive(Debug, Default)]
struct FileReport {
    /// Lines outside test code.
    lines: usize,
    /// (function name, first line (1-based), lines) of every function outside test code.
    fns: Vec<(String, usize, usize)>,
    /// Names of modules this file declares `#[cfg(test)] mod name;` (test-only files).
    test_mods: Vec<String>,
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn analyse(text: &str) -> FileReport {
    let code = blank(text);
    let total_lines = text.lines().count();
    let mut report = FileReport::default();
    // Test ranges, as line spans [first, last] (0-based).
    let mut test_spans: Vec<(usize, usize)> = Vec::new();
    let needle = b"#[cfg(test)]";
    let mut i = 0;
    while let Some(n) = code[i..].windows(needle.len()).position(|w| w == needle) {
        let at = i + n;
        let after = at + needle.len();
        match body_start(&code, after) {
            Some(open) => {
                let end = matching_brace(&code, open);
                test_spans.push((line_of(&code, at), line_of(&code, end.saturating_sub(1))));
                i = end;
            }
            None => {
                // `#[cfg(test)] mod name;` declares a test-only file; other declarations
                // (a `use`) are one line.
                let semi = code[after..]
                    .iter()
                    .position(|&c| c == b';')
                    .map_or(code.len(), |p| after + p);
                let decl = String::from_utf8_lossy(&code[after..semi]);
                let words: Vec<&str> = decl.split_whitespace().collect();
                if let Some(k) = words.iter().position(|w| *w == "mod") {
                    if let Some(name) = words.get(k + 1) {
                        report.test_mods.push((*name).to_string());
                    }
                }
                test_spans.push((line_of(&code, at), line_of(&code, semi)));
                i = semi + 1;
            }
        }
    }
    let in_test = |line: usize| test_spans.iter().any(|&(a, z)| a <= line && line <= z);
    let test_lines: usize = {
        let mut v = vec![false; total_lines + 1];
        for &(a, z) in &test_spans {
            for x in v.iter_mut().take(z.min(total_lines) + 1).skip(a) {
                *x = true;
            }
        }
        v.iter().filter(|&&x| x).count()
    };
    report.lines = total_lines.saturating_sub(test_lines);

    let mut j = 0;
    while j + 2 < code.len() {
        let is_fn = code[j..].starts_with(b"fn")
            && (j == 0 || !is_ident(code[j - 1]))
            && code[j + 2].is_ascii_whitespace();
        if !is_fn {
            j += 1;
            continue;
        }
        let mut k = j + 2;
        while k < code.len() && code[k].is_ascii_whitespace() {
            k += 1;
        }
        let name_start = k;
        while k < code.len() && is_ident(code[k]) {
            k += 1;
        }
        let name = String::from_utf8_lossy(&code[name_start..k]).into_owned();
        if name.is_empty() {
            j += 2;
            continue;
        }
        if let Some(open) = body_start(&code, k) {
            let first = line_of(&code, j);
            let last = line_of(&code, matching_brace(&code, open).saturating_sub(1));
            if !in_test(first) {
                report.fns.push((name, first + 1, last - first + 1));
            }
        }
        // Go on inside the body: nested functions are counted too.
        j = k;
    }
    report
}

#[test]
fn files_and_functions_stay_small() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["nat-userspace/src", "nat-common/src", "xtask/src"] {
        files.extend(rust_files(&root.join(dir)));
    }
    files.sort();
    let reports: Vec<(String, FileReport)> = files
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{rel}: {e}"));
            (rel, analyse(&text))
        })
        .collect();
    // Files that a parent declares `#[cfg(test)] mod name;` are test code.
    let mut test_only: Vec<String> = Vec::new();
    for (rel, r) in &reports {
        let dir = rel
            .strip_suffix("/mod.rs")
            .or_else(|| rel.strip_suffix("/lib.rs"))
            .or_else(|| rel.strip_suffix("/main.rs"))
            .map(str::to_string)
            .unwrap_or_else(|| rel.trim_end_matches(".rs").to_string());
        for m in &r.test_mods {
            test_only.push(format!("{dir}/{m}.rs"));
            test_only.push(format!("{dir}/{m}/mod.rs"));
        }
    }
    let allowed = |rel: &str, name: &str| {
        ALLOWED
            .iter()
            .any(|&(p, n)| p == rel && (n.is_empty() || n == name))
    };
    let mut offenders = Vec::new();
    let mut tolerated = Vec::new();
    for (rel, r) in &reports {
        if test_only.iter().any(|t| t == rel) {
            continue;
        }
        if r.lines > MAX_FILE_LINES {
            let line = format!("{rel}: {} lines (max {MAX_FILE_LINES})", r.lines);
            if allowed(rel, "") {
                tolerated.push(line);
            } else {
                offenders.push(line);
            }
        }
        for (name, first, lines) in &r.fns {
            if *lines > MAX_FN_LINES {
                let line = format!("{rel}:{first}: fn {name}: {lines} lines (max {MAX_FN_LINES})");
                if allowed(rel, name) {
                    tolerated.push(line);
                } else {
                    offenders.push(line);
                }
            }
        }
    }
    for t in &tolerated {
        println!("allowed: {t}");
    }
    assert!(
        offenders.is_empty(),
        "{} offender(s):\n{}",
        offenders.len(),
        offenders.join("\n")
    );
}

#[test]
fn the_checker_skips_tests_strings_and_comments() {
    let src = "fn a() {\n    let s = \"}}}\"; // }\n    let c = '}';\n    let r = r#\"{\"#;\n}\n\
               /* fn b() { */\n\
               fn lt<'a>(x: &'a [u8; 4]) -> &'a u8 {\n    &x[0]\n}\n\
               #[cfg(test)]\nmod tests {\n    fn t() {\n    }\n}\n\
               #[cfg(test)]\nmod more;\n";
    let r = analyse(src);
    let fns: Vec<(&str, usize, usize)> =
        r.fns.iter().map(|(n, a, l)| (n.as_str(), *a, *l)).collect();
    assert_eq!(fns, vec![("a", 1, 5), ("lt", 7, 3)]);
    assert_eq!(r.test_mods, vec!["more".to_string()]);
    // 16 lines, 7 of them test code.
    assert_eq!(r.lines, 9);
}
