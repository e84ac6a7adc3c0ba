//! The repository is self-contained: a fresh clone has everything its tests, benches and
//! scripts read. No tracked text file names a path outside the repository (a sibling
//! folder next to the clone, the machine it was developed on, or a `../` chain that climbs
//! above the repository root), and the test data in `testdata/` is present and intact.
//!
//! The needles are built from pieces so that this file does not match its own search (nor
//! a plain `grep` for them over the repository).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

#[allow(dead_code)]
#[path = "common/testdata.rs"]
mod testdata;

use testdata::workspace_root;

/// Substrings that name a place outside the repository: the folder the test data used to
/// live in (a sibling of the repository), the development machine's work folder, and the
/// specification the project was written from, which is not in the repository (a comment
/// citing one of its sections sends the reader to a document they do not have).
fn needles() -> [String; 5] {
    let sibling = ["sha", "red"].concat();
    let spec = ["SP", "EC"].concat();
    [
        format!("../{sibling}"),
        format!("{sibling}/"),
        ["/wo", "rk/"].concat(),
        format!("{spec} \u{a7}"),
        format!("{spec}.md"),
    ]
}

/// Files to check: `git ls-files` (tracked, plus untracked files that are not ignored, so a
/// new file is checked before it is committed); without git, a walk of the tree that skips
/// `.git` and every `target` folder. Paths relative to `root`.
fn repo_files(root: &Path) -> (Vec<PathBuf>, &'static str) {
    let git = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output();
    if let Ok(out) = git {
        if out.status.success() && !out.stdout.is_empty() {
            let mut v: Vec<PathBuf> = out
                .stdout
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
                .filter(|p| root.join(p).is_file())
                .collect();
            v.sort();
            v.dedup();
            return (v, "git ls-files");
        }
    }
    let mut v = Vec::new();
    walk(root, Path::new(""), &mut v);
    v.sort();
    (v, "directory walk")
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let dir = root.join(rel);
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let e = e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let name = e.file_name();
        // `.git` is a folder in a clone and a file pointing to the main one in a worktree.
        if name == ".git" {
            continue;
        }
        let child = rel.join(&name);
        let ty = e
            .file_type()
            .unwrap_or_else(|e| panic!("{}: {e}", child.display()));
        if ty.is_dir() {
            if name != "target" {
                walk(root, &child, out);
            }
        } else if ty.is_file() {
            out.push(child);
        }
    }
}

/// Text files worth checking: sources, scripts, manifests, docs, configs. Test data
/// (`.sip`, `.dat`, captures, fuzz seeds) is not: it is third-party bytes or messages.
fn is_checked_text(rel: &Path, bytes: &[u8]) -> bool {
    const EXT: &[&str] = &[
        "rs",
        "sh",
        "bash",
        "toml",
        "py",
        "md",
        "yml",
        "yaml",
        "txt",
        "c",
        "h",
        "xml",
        "tmpl",
        "service",
        "cfg",
        "conf",
        "json",
        "expected",
        "dict",
        "in",
        "gitignore",
        "gitattributes",
    ];
    if bytes.contains(&0) {
        return false;
    }
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or("");
    EXT.contains(&ext)
        || name.starts_with('.') && EXT.contains(&name.trim_start_matches('.'))
        || matches!(name, "Makefile" | "Dockerfile" | "Justfile")
        || bytes.starts_with(b"#!")
}

/// How deep `rel`'s folder is below the repository root (`a/b/c.rs` → 2).
fn depth(rel: &Path) -> usize {
    rel.parent().map_or(0, |p| p.components().count())
}

/// The depth of the crate folder of a Rust file: the nearest ancestor with a Cargo.toml
/// (what `CARGO_MANIFEST_DIR` is), or the root.
fn crate_depth(root: &Path, rel: &Path) -> usize {
    let mut dir = rel.parent();
    while let Some(d) = dir {
        if root.join(d).join("Cargo.toml").is_file() {
            return d.components().count();
        }
        dir = d.parent();
    }
    0
}

/// Lengths of the `../` chains in a line (a final `..` without a slash counts too).
fn up_chains(line: &str) -> Vec<usize> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        let starts = b[i] == b'.' && b[i + 1] == b'.' && (i == 0 || b[i - 1] != b'.');
        if !starts {
            i += 1;
            continue;
        }
        let mut k = 0;
        let mut j = i;
        loop {
            let dots = j + 1 < b.len() && b[j] == b'.' && b[j + 1] == b'.';
            let after = b.get(j + 2).copied();
            match (dots, after) {
                (true, Some(b'/')) => {
                    k += 1;
                    j += 3;
                }
                (true, a)
                    if k > 0 && !a.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.') =>
                {
                    k += 1;
                    j += 2;
                    break;
                }
                _ => break,
            }
        }
        if k > 0 {
            out.push(k);
        }
        i = j.max(i + 2);
    }
    out
}

/// Every offence in one file's text: (line number, what, the line).
fn offences(root: &Path, rel: &Path, text: &str) -> Vec<(usize, String, String)> {
    let needles = needles();
    let is_rs = rel.extension().is_some_and(|e| e == "rs");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        for needle in &needles {
            if line.contains(needle.as_str()) {
                out.push((n + 1, format!("names `{needle}`"), line.to_string()));
            }
        }
        // A `../` chain may climb at most to the repository root from where it is resolved:
        // the crate folder when the path is built on CARGO_MANIFEST_DIR, else the file's own
        // folder (includes, scripts' own directory, Markdown links, manifest paths).
        let manifest_relative = is_rs
            && lines[n.saturating_sub(2)..=n]
                .iter()
                .any(|l| l.contains("CARGO_MANIFEST_DIR"));
        let base = if manifest_relative {
            crate_depth(root, rel)
        } else {
            depth(rel)
        };
        for k in up_chains(line) {
            if k > base {
                out.push((
                    n + 1,
                    format!("climbs {k} folders from depth {base}, above the repository root"),
                    line.to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn no_file_refers_to_a_path_outside_the_repository() {
    let root = workspace_root();
    let (files, how) = repo_files(&root);
    let mut checked = 0;
    let mut bad = Vec::new();
    for rel in &files {
        let bytes = testdata::read(&root.join(rel));
        if !is_checked_text(rel, &bytes) {
            continue;
        }
        checked += 1;
        for (n, what, line) in offences(&root, rel, &String::from_utf8_lossy(&bytes)) {
            bad.push(format!("{}:{n}: {what}: {}", rel.display(), line.trim()));
        }
    }
    eprintln!(
        "self-contained: {checked} text files of {} checked ({how}), {} offences",
        files.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "paths outside the repository (use testdata/ or the repository's own folders):\n{}",
        bad.join("\n")
    );
    assert!(
        checked >= 100,
        "only {checked} text files found under {}",
        root.display()
    );
    for must in [
        "nat-userspace/tests/self_contained.rs",
        "README.md",
        "ARCHITECTURE.md",
        "docs/deploy.md",
        "docs/config.md",
        "testdata/README.md",
        "fuzz/gen_seeds.py",
        "benches/loadtest-vs-kagen.sh",
    ] {
        assert!(
            files.iter().any(|f| f == Path::new(must)),
            "{must} was not among the checked files"
        );
    }
}

/// The detector itself: each kind of offence is caught, and in-repository paths are not.
#[test]
fn the_detector_catches_each_kind_of_outside_path() {
    let root = workspace_root();
    let sibling = ["sha", "red"].concat();
    let rs = Path::new("nat-userspace/tests/x.rs");
    let flagged = |rel: &Path, text: &str| !offences(&root, rel, text).is_empty();
    // The old default of the corpus and bench tests.
    let up2 = "../".repeat(2);
    let old = format!("concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{up2}{sibling}/bench-inputs\")");
    assert!(flagged(rs, &old));
    assert!(flagged(
        Path::new("README.md"),
        &format!("(`../{sibling}/x`)")
    ));
    assert!(flagged(Path::new("a.sh"), &format!("B=$ROOT/../{sibling}")));
    assert!(flagged(
        Path::new("x.py"),
        &["open(\"/wo", "rk/x\")"].concat()
    ));
    // Climbing above the root without naming anything.
    let up3 = "../".repeat(3);
    assert!(flagged(
        Path::new("fuzz/x.py"),
        &format!("p = HERE + '/{up3}x'")
    ));
    let manifest_up2 = format!(
        "concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{}x\")",
        "../".repeat(2)
    );
    assert!(flagged(rs, &manifest_up2));
    assert_eq!(up_chains(&format!("\"{}..\"", "../".repeat(2))), vec![3]);
    // Inside the repository: fine.
    let ok_rs = "concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/../testdata/corpus\")";
    assert!(!flagged(rs, ok_rs), "{:?}", offences(&root, rs, ok_rs));
    assert!(!flagged(
        Path::new("fuzz/README.md"),
        "[up](../README.md) and `a..b`"
    ));
    assert!(!flagged(
        Path::new("bench/x.sh"),
        "source \"$(dirname \"$0\")/../bench/lib.sh\""
    ));
    assert!(!flagged(rs, "let shared = Arc::new(x); // shared state"));
    // A section of a specification that is not in the repository.
    let spec = ["SP", "EC"].concat();
    assert!(flagged(
        rs,
        &format!("/// The default (\u{a7}3 of {spec}.md).")
    ));
    assert!(flagged(
        rs,
        &format!("//! The flow table ({spec} \u{a7}2).")
    ));
    assert!(!flagged(
        Path::new("bench/ab.sh"),
        &format!("NAMES=() declare -A {spec}=()")
    ));
}

/// The test data is in the repository and byte-exact: every corpus file is listed in
/// `SHA256SUMS` and matches it (line-ending conversion by git would break it), and the
/// files the tests and benches read are there.
#[test]
fn testdata_is_present_and_matches_its_checksums() {
    let root = workspace_root();
    let corpus = root.join("testdata/corpus");
    for must in [
        "testdata/README.md",
        "testdata/corpus/README.md",
        "testdata/corpus/pcap/ipv6frag.pcap",
        "testdata/bench-inputs/README.md",
        "testdata/bench-inputs/header-rewriting.sip",
        "testdata/bench-inputs/carrier-invite-sdp.sip",
    ] {
        let p = root.join(must);
        assert!(p.is_file(), "test data missing: {}", p.display());
    }
    let sums = String::from_utf8(testdata::read(&corpus.join("SHA256SUMS"))).expect("UTF-8");
    let listed: Vec<&str> = sums
        .lines()
        .map(|l| l.split_once("  ").expect("`<sum>  <path>` lines").1)
        .collect();
    let mut present = Vec::new();
    walk(&corpus, Path::new(""), &mut present);
    let mut present: Vec<String> = present
        .iter()
        .filter(|p| *p != Path::new("SHA256SUMS"))
        .map(|p| format!("./{}", p.display()))
        .collect();
    present.sort();
    let mut listed_sorted: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    listed_sorted.sort();
    assert_eq!(
        present, listed_sorted,
        "SHA256SUMS lists exactly the corpus files"
    );
    let out = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&corpus)
        .output()
        .expect("sha256sum (coreutils)");
    assert!(
        out.status.success(),
        "{}: SHA256SUMS does not match:\n{}{}",
        corpus.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("testdata: {} corpus files match SHA256SUMS", listed.len());
}
