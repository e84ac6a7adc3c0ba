//! The documentation against the code: every command and flag is documented
//! (`docs/cli.md`, `docs/loadtest.md`), every documented `sipnat` command line parses
//! (README.md and `docs/`), every counter and metric family is described
//! (`docs/metrics.md`), every relative link of README.md, ARCHITECTURE.md and `docs/`
//! resolves, and the README stays a front door (≤ 250 lines). (The config keys are checked
//! by `tests/config_golden.rs` against `docs/config.md`.)

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{CommandFactory, Parser};
use common::topo::{await_condition, Topo};
use sipnat::{cli::Cli, datapath::stats::Counter};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// One document, by its path from the repository root.
fn doc(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The documents named, concatenated.
fn docs(rels: &[&str]) -> String {
    rels.iter().map(|r| doc(r)).collect::<Vec<_>>().join("\n")
}

/// README.md, ARCHITECTURE.md and every `docs/*.md`, by path from the root.
fn all_docs() -> Vec<String> {
    let mut v = vec!["README.md".to_string(), "ARCHITECTURE.md".to_string()];
    let dir = root().join("docs");
    let mut md: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    md.sort();
    assert!(md.len() >= 6, "docs/ has only {md:?}");
    v.extend(md);
    v
}

/// Lines inside ``` blocks, with the block's info string.
fn code_lines(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lang: Option<String> = None;
    for line in text.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            lang = match lang {
                None => Some(info.trim().to_string()),
                Some(_) => None,
            };
        } else if let Some(l) = &lang {
            out.push((l.clone(), line.to_string()));
        }
    }
    out
}

/// Every `$ sipnat ...` line (captured output) and every `sipnat ...` line of a ```sh
/// block is a command line this build accepts.
#[test]
fn documented_command_lines_parse() {
    let text = docs(&all_docs().iter().map(String::as_str).collect::<Vec<_>>());
    let mut checked = 0;
    for (lang, line) in code_lines(&text) {
        let cmd = match line.strip_prefix("$ ") {
            Some(c) => c,
            None if lang == "sh" => line.as_str(),
            None => continue,
        };
        let cmd = cmd.split('#').next().unwrap().trim();
        if !cmd.starts_with("sipnat ") {
            continue;
        }
        let cmd = cmd.split('|').next().unwrap();
        let args: Vec<&str> = cmd.split_whitespace().collect();
        if let Err(e) = Cli::try_parse_from(&args) {
            panic!("docs: `{cmd}` does not parse:\n{e}");
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} command lines found");
}

/// Every subcommand (`sipnat set external-ip`, `sipnat xdp watch`, ...) and every long
/// option appears in the CLI reference (`docs/cli.md`, or `docs/loadtest.md` for
/// `sipnat loadtest`).
#[test]
fn every_command_and_option_is_documented() {
    let text = docs(&["docs/cli.md", "docs/loadtest.md"]);
    let mut missing = Vec::new();
    fn walk(cmd: &clap::Command, path: &str, text: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                if !["help", "version"].contains(&long) && !text.contains(&format!("--{long}")) {
                    missing.push(format!("{path} --{long}"));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let p = format!("{path} {}", sub.get_name());
            if !text.contains(&p) {
                missing.push(p.clone());
            }
            walk(sub, &p, text, missing);
        }
    }
    walk(&Cli::command(), "sipnat", &text, &mut missing);
    assert!(
        missing.is_empty(),
        "docs/cli.md and docs/loadtest.md do not document {missing:?}"
    );
}

/// Every worker counter and XDP verdict has a row (`| `name` | help |`); the worker
/// counters' help texts are the ones the code exports.
#[test]
fn every_counter_is_described() {
    let text = doc("docs/metrics.md");
    let mut missing = Vec::new();
    for c in Counter::ALL {
        let row = format!("| `{}` | {} |", c.name(), c.help());
        if !text.contains(&row) {
            missing.push(row);
        }
    }
    for v in nat_common::stat::NAMES {
        if !text.contains(&format!("| `{v}` |")) {
            missing.push(v.to_string());
        }
    }
    assert!(missing.is_empty(), "docs/metrics.md lacks {missing:#?}");
}

/// Every family a running daemon exports on /metrics is described.
#[test]
fn every_metric_family_is_described() {
    crate::privileged_or_skip!();
    let t = Topo::new("docs");
    let cfg = t.config_full("gw", "", "metrics = \"127.0.0.1:9560\"", "");
    let sipnat = t.start_sipnat(&cfg);
    let mut body = String::new();
    await_condition("metrics served", Duration::from_secs(10), || {
        let out =
            t.gw.exec_any(&["curl", "-sf", "http://127.0.0.1:9560/metrics"]);
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    let families: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(families.len() > Counter::COUNT, "{body}");
    let text = doc("docs/metrics.md");
    let undocumented: Vec<&str> = families
        .iter()
        .copied()
        .filter(|f| {
            if let Some(c) = f.strip_prefix("sipnat_worker_") {
                return !text.contains(&format!("| `{c}` |"));
            }
            if let Some(x) = f.strip_prefix("sipnat_xsk_") {
                return !text.contains(&format!("| `{x}` |"));
            }
            !text.contains(&format!("| `{f}` |"))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/metrics.md lacks metric families {undocumented:?}"
    );
    assert_eq!(sipnat.stop(), Some(0));
}

/// The README is a front door, not a manual.
#[test]
fn readme_is_short() {
    let n = doc("README.md").lines().count();
    assert!(
        n <= 250,
        "README.md has {n} lines (at most 250): move detail into docs/"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces turned into `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Lines outside ``` blocks, numbered from 1.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence = false;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        } else if !fence {
            out.push((n + 1, line));
        }
    }
    out
}

/// The anchors of a Markdown file's headings (a repeated heading gets `-1`, `-2`, ...).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.len() - line.trim_start_matches('#').len();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = anchor(&line[hashes..]);
        let mut a = base.clone();
        let mut k = 0;
        while out.contains(&a) {
            k += 1;
            a = format!("{base}-{k}");
        }
        out.insert(a);
    }
    out
}

/// The targets of the inline links (`[text](target)`, `![alt](target)`) of a line, code
/// spans left out.
fn link_targets(line: &str) -> Vec<String> {
    let mut prose = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            prose.push_str(part);
        }
    }
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        out.push(target.to_string());
        rest = &rest[end..];
    }
    out
}

/// Every relative link of README.md, ARCHITECTURE.md and docs/*.md names a file that exists,
/// and a `#anchor` one of that file's headings.
#[test]
fn every_doc_link_resolves() {
    let root = root();
    let mut checked = 0;
    let mut broken = Vec::new();
    for rel in all_docs() {
        let text = doc(&rel);
        let base = root.join(&rel).parent().expect("a folder").to_path_buf();
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, frag) = target.split_once('#').unwrap_or((&target, ""));
                let file = if path.is_empty() {
                    root.join(&rel)
                } else {
                    base.join(path)
                };
                if !file.exists() {
                    broken.push(format!("{rel}:{n}: {target}: no such file"));
                    continue;
                }
                if !frag.is_empty() {
                    let heads = anchors(&std::fs::read_to_string(&file).unwrap_or_default());
                    if !heads.contains(frag) {
                        broken.push(format!("{rel}:{n}: {target}: no such heading"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 40, "only {checked} links found");
}

/// The link checker itself: anchors as GitHub makes them, links in code spans ignored.
#[test]
fn the_link_checker_reads_markdown_as_github_does() {
    assert_eq!(
        anchor("What happens when something fails"),
        "what-happens-when-something-fails"
    );
    assert_eq!(
        anchor("`sipnat enable`, `sipnat disable`"),
        "sipnat-enable-sipnat-disable"
    );
    assert_eq!(
        anchor("(a) NAT gateway: `l3 = \"snat\"`"),
        "a-nat-gateway-l3--snat"
    );
    let a = anchors("# T\n## Keys\n```sh\n# not a heading\n```\n## Keys\n#nope\n");
    assert_eq!(
        a,
        ["t", "keys", "keys-1"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    assert_eq!(
        link_targets("see [x](a.md#b), `[y](c.md)` and ![i](p.svg \"t\")"),
        vec!["a.md#b".to_string(), "p.svg".to_string()]
    );
}
