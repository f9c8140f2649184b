//! The shape of the code, as ARCHITECTURE.md draws it: no module of the
//! host crate depends on itself through others, and no source file (500
//! lines) or function (80) grows past what one sitting can read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest a source file may grow (ARCHITECTURE.md's rules of the house).
const MAX_LINES: usize = 500;
/// Longest a function outside the tests may grow, signature to closing brace.
const MAX_FN_LINES: usize = 80;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `kernel/build.rs` -> `kernel::build`, `kernel/mod.rs` -> `kernel`, `lib.rs` -> ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The modules a file's non-test code names through `crate::`.
fn references(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    // Comments (doc links included) name modules without using them.
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or(text)
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let code = code.as_str();
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            // `use crate::{a::X, b};`
            let end = list.find('}').unwrap_or(list.len());
            paths.extend(list[..end].split(',').map(|s| s.trim().to_string()));
        } else {
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            paths.push(rest[..end].to_string());
        }
    }
    paths
        .iter()
        .filter_map(|p| {
            // The longest prefix of the path that is a module.
            let segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
            (1..=segs.len()).rev().map(|n| segs[..n].join("::")).find(|m| modules.contains(m))
        })
        .collect()
}

/// Each module and the modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut g = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let m = module_of(&src, f);
        let mut refs = references(&text, &modules);
        refs.remove(&m);
        g.insert(m, refs);
    }
    g
}

/// A cycle through `g`, if there is one, as the modules along it.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(m: &str, g: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|m| visit(m, g, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_of_the_host_crate_depends_on_itself() {
    let g = graph();
    assert!(g.len() > 30, "the module graph was not read: {g:?}");
    assert!(g["kernel::spec"].contains("kernel::build"), "references are not being found: {:?}", g["kernel::spec"]);
    if let Some(cycle) = find_cycle(&g) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.insert("c".to_string(), BTreeSet::new());
    assert!(find_cycle(&g).is_none());
}

#[test]
fn the_pipeline_never_reaches_up_into_the_commands() {
    let g = graph();
    // The crate root (lib.rs, "") stands above cli/: it re-exports the entry.
    for (m, refs) in g.iter().filter(|(m, _)| !m.starts_with("cli") && !m.is_empty()) {
        let up: Vec<&String> = refs.iter().filter(|r| r.starts_with("cli")).collect();
        assert!(up.is_empty(), "{m} depends on {up:?}: nothing below cli/ sees the command line, clap's types included");
    }
}

/// The folders in pipeline order: each may use those before it (and the
/// shared top-level modules, rank 0), never one after it. Nothing below
/// `cli/` reads the command line: cli/ turns it into the layers' requests.
fn rank(module: &str) -> usize {
    match module.split("::").next().unwrap_or_default() {
        "kernel" => 1,
        "run" => 2,
        "guest" => 3,
        "judge" => 4,
        "cli" => 5,
        // The root, and the fuzz targets' entry points it exports: above all.
        "" | "fuzzing" => 6,
        _ => 0,
    }
}

#[test]
fn each_folder_uses_only_the_folders_before_it_in_the_pipeline() {
    let g = graph();
    let mut upward = Vec::new();
    for (m, refs) in &g {
        for r in refs.iter().filter(|r| rank(r) > rank(m)) {
            upward.push(format!("{m} -> {r}"));
        }
    }
    assert!(upward.is_empty(), "uses against the pipeline (kernel < run < guest < judge < cli): {upward:?}");
}

/// Every source file of the three crates.
fn all_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for krate in ["repro", "agent", "proto"] {
        sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src"), &mut files);
    }
    files
}

#[test]
fn no_source_file_is_longer_than_500_lines() {
    let long: Vec<String> = all_sources()
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{} ({n} lines)", f.display()))
        .collect();
    assert!(long.is_empty(), "split these by what they do: {long:?}");
}

/// The functions of `text` (up to its tests) longer than `max` lines, as
/// (name, lines): a function is its `fn` line to the closing brace at the
/// same indentation (rustfmt's layout).
fn long_functions(text: &str, max: usize) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let sig = ["pub(crate) ", "pub(super) ", "pub "].iter().fold(body, |b, p| b.strip_prefix(p).unwrap_or(b));
        let sig = sig.strip_prefix("async ").unwrap_or(sig);
        let Some(name) = sig.strip_prefix("fn ").map(|r| r.split(['(', '<']).next().unwrap_or_default()) else { continue };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(n) = lines[i + 1..].iter().position(|l| l.trim_end() == close).map(|n| n + 2) {
            if n > max {
                out.push((name.to_string(), n));
            }
        }
    }
    out
}

#[test]
fn the_function_length_rule_measures_functions() {
    let text = "fn a() {\n    x();\n}\n\npub(crate) async fn b(\n    y: u8,\n) -> u8 {\n    1\n}\n#[cfg(test)]\nfn c() {\n}\n";
    assert_eq!(long_functions(text, 2), [("a".to_string(), 3), ("b".to_string(), 5)]);
    assert!(long_functions(text, 5).is_empty());
}

#[test]
fn no_function_is_longer_than_80_lines_outside_the_tests() {
    let long: Vec<String> = all_sources()
        .iter()
        .flat_map(|f| {
            long_functions(&std::fs::read_to_string(f).unwrap(), MAX_FN_LINES)
                .into_iter()
                .map(move |(name, n)| format!("{}: {name} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by what they do: {long:?}");
}

/// The fast set (the default filter) and the tests its guard covers
/// (REPRO_FORBID_BOOT, fastset.rs) are one expression, written twice in
/// .config/nextest.toml since nextest has no way to name it once.
#[test]
fn the_fast_set_and_its_guard_name_the_same_tests() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.config/nextest.toml")).unwrap();
    let value = |key: &str, after: &str| -> String {
        let from = &text[text.find(after).unwrap_or_else(|| panic!("no {after} in nextest.toml"))..];
        let line = from.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or_else(|| panic!("no {key} after {after}"));
        line.split_once('=').unwrap().1.trim().trim_matches('"').to_string()
    };
    let fast = value("default-filter", "[profile.default]");
    let guarded = value("filter", "[[profile.default.scripts]]");
    assert_eq!(fast, guarded, "the fast set and the tests REPRO_FORBID_BOOT guards differ");
}

/// The host crate's source files, as (path under src/, code up to the tests).
fn host_code() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap().to_string();
            (f.strip_prefix(&src).unwrap().display().to_string(), code)
        })
        .collect()
}

/// Everything repro prints goes through text.rs (terminal-safe, a closed
/// stdout is the interrupt, not a panic): no `println!` or `eprintln!`
/// outside it, tests aside.
#[test]
fn nothing_prints_around_text_rs() {
    let mut found = Vec::new();
    for (f, code) in host_code().iter().filter(|(f, _)| f != "text.rs") {
        for (i, line) in code.lines().enumerate() {
            if (line.contains("println!(") || line.contains("print!(")) && !line.trim_start().starts_with("//") {
                found.push(format!("{f}:{}", i + 1));
            }
        }
    }
    assert!(found.is_empty(), "print through crate::text (out, outln, err, errln): {found:?}");
}

/// Every session (a guest's, the host agent's, a resumed one's) is driven
/// by guest/drive.rs: the stream (guest/stream.rs) is read in one place, so
/// a fix to its limits, checkpoints or ending is made once.
#[test]
fn one_function_drives_every_session() {
    let callers: Vec<String> = host_code().into_iter().filter(|(_, code)| code.contains("stream::stream(")).map(|(f, _)| f).collect();
    assert_eq!(callers, ["guest/drive.rs"], "start a session through guest::drive::drive");
}

/// The catalog is loaded once per command, by cli/requests.rs, and handed
/// down in the request: a private $REPRO_CATALOG is read and checked once,
/// and no layer below reads the environment for it.
#[test]
fn the_catalog_is_loaded_once_by_cli() {
    let loaders: Vec<String> = host_code()
        .into_iter()
        .filter(|(f, code)| code.contains("Catalog::builtin(") && f != "kernel/catalog.rs" && f != "fuzzing.rs")
        .map(|(f, _)| f)
        .collect();
    assert_eq!(loaders, ["cli/requests.rs"], "take the catalog from the request (cli::requests::catalog)");
}

/// Every child goes through child.rs (its own process group, ended with
/// repro; a bounded wait for short tools): a file that makes a Command
/// hands each to `child::own`, `own_async` or `child::output` (tests aside).
#[test]
fn every_child_goes_through_child_rs() {
    let mut bypass = Vec::new();
    for (f, code) in host_code().iter().filter(|(f, _)| f != "child.rs") {
        let made = code.matches("Command::new(").count();
        let owned = ["child::own(", "child::own_async(", "child::output("].iter().map(|w| code.matches(w).count()).sum::<usize>();
        if made > owned {
            bypass.push(format!("{f} ({made} commands, {owned} through child.rs)"));
        }
    }
    assert!(bypass.is_empty(), "run children through crate::child: {bypass:?}");
}

/// clap stays in cli/: below it, the layers take requests in their own
/// types, and no code outside cli/ names clap at all (comments aside).
#[test]
fn clap_is_only_in_cli() {
    let outside: Vec<String> = host_code()
        .into_iter()
        .filter(|(f, code)| !f.starts_with("cli/") && code.lines().any(|l| l.contains("clap") && !l.trim_start().starts_with("//")))
        .map(|(f, _)| f)
        .collect();
    assert!(outside.is_empty(), "clap outside cli/: {outside:?}");
}
