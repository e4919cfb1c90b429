//! Tidy: rules of the code base checked by reading the source tree, run by
//! a plain `cargo test` (rust-analyzer's way): each rule is a test that walks
//! `crates/` (and `xtask/`) and names every file and line that breaks it.
//!
//! *Library code* is what a game links: `crates/*/src`, minus each file's
//! `#[cfg(test)]` module (at the end of the file, by the code base's habit)
//! and minus comments (doc examples are docs). An exception to a rule is an
//! entry of a named allowlist below, with the reason and the issue that
//! removes it; an entry that no longer matches anything fails, so the list
//! only shrinks.

use std::fs;
use std::path::{Path, PathBuf};

/// The repository's root (this crate is `xtask/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the repository").to_path_buf()
}

/// Every `.rs` file under `dir`, sorted, skipping build output.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A file's path from the root, with `/`.
fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Crates under `crates/` that are not the library: the swarm plays the test
/// game (it is that game's client, named after its tables on purpose).
const NOT_LIBRARY: &[&str] = &["swarm"];

/// Library code: each `crates/*/src` file with its lines numbered, cut at
/// its test module, comments dropped.
fn library_code() -> Vec<(String, Vec<(usize, String)>)> {
    rust_files(&root().join("crates"))
        .into_iter()
        .filter(|p| relative(p).split('/').nth(2) == Some("src"))
        .filter(|p| relative(p).split('/').nth(1).is_none_or(|krate| !NOT_LIBRARY.contains(&krate)))
        .map(|p| {
            let text = read(&p);
            let lines: Vec<&str> = text.lines().collect();
            let end = lines
                .windows(2)
                .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod "))
                .unwrap_or(lines.len());
            let code = lines[..end]
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.trim_start().starts_with("//"))
                .map(|(i, l)| (i + 1, (*l).to_string()))
                .collect();
            (relative(&p), code)
        })
        .collect()
}

/// The string literals of one line of code (plain `"…"` ones, escapes kept).
fn string_literals(line: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' if bytes.get(i + 2) == Some(&b'\'') => i += 3, // a char literal such as '"'
            b'\'' if bytes.get(i + 1) == Some(&b'\\') => i += 4, // an escaped char literal
            b'/' if bytes.get(i + 1) == Some(&b'/') => break,    // a trailing comment
            b'"' => {
                let start = i + 1;
                i = start;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                found.push(&line[start..i.min(line.len())]);
                i += 1;
            }
            _ => i += 1,
        }
    }
    found
}

/// Findings of `check` over library code, minus the allowed files; fails
/// naming each finding, and each allowlist entry that matched nothing.
fn check_library(rule: &str, allowed: &[(&str, &str)], check: impl Fn(&str) -> bool) {
    let mut findings = Vec::new();
    let mut used = vec![false; allowed.len()];
    for (file, lines) in library_code() {
        for (n, line) in &lines {
            if !check(line) {
                continue;
            }
            match allowed.iter().position(|(f, _)| *f == file) {
                Some(k) => used[k] = true,
                None => findings.push(format!("{file}:{n}: {}", line.trim())),
            }
        }
    }
    let stale: Vec<_> = allowed.iter().zip(used).filter(|(_, used)| !used).map(|((f, _), _)| *f).collect();
    assert!(findings.is_empty(), "{rule}:\n{}", findings.join("\n"));
    assert!(stale.is_empty(), "{rule}: allowlist entries that no longer match, remove them: {stale:?}");
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let mut missing = Vec::new();
    for path in [rust_files(&root().join("crates")), rust_files(&root().join("xtask"))].concat() {
        let text = read(&path);
        let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        // The generator's output says so in its first line (`crates/codegen/src/lib.rs`).
        if !first.starts_with("//!") && !first.starts_with("// Generated by `spacelink generate`") {
            missing.push(relative(&path));
        }
    }
    assert!(missing.is_empty(), "files without a module doc (`//!`) first:\n{}", missing.join("\n"));
}

/// Metric names written outside `metric_names.rs`, allowed until their file is
/// free to change (issue 25).
const METRIC_NAME_ALLOWED: &[(&str, &str)] =
    &[("crates/connection/src/metric_names.rs", "the one place where names are written")];

#[test]
fn metric_names_are_written_only_in_metric_names() {
    check_library(
        "a metric name literal outside crates/connection/src/metric_names.rs (add a constant there and use it)",
        METRIC_NAME_ALLOWED,
        |line| {
            string_literals(line).iter().any(|s| {
                s.strip_prefix("spacelink_").is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()))
            })
        },
    );
    // The one place, checked too: it must exist where the rule points.
    assert!(root().join("crates/connection/src/metric_names.rs").is_file());
}

/// `DecodeLimits::default()` in library code, allowed with a reason.
const DEFAULT_LIMITS_ALLOWED: &[(&str, &str)] = &[
    ("crates/connection/src/config.rs", "where the configuration's documented default is set: the one place"),
    ("crates/connection/src/testing.rs", "a test fake (`ScriptedConnection`) decoding what tests script"),
];

#[test]
fn decode_limits_come_from_the_configuration() {
    check_library(
        "`DecodeLimits::default()` in library code: take the limits from the configuration",
        DEFAULT_LIMITS_ALLOWED,
        |line| line.contains("DecodeLimits::default()"),
    );
}

/// The tables of our test game (modules/guildmaster).
const GAME_TABLES: &[&str] =
    &["map", "player", "entity", "npc", "item", "inventory", "npc_tick_schedule", "config", "all_types"];

/// Whether a string literal names a game table: the whole literal, or after
/// `FROM` or `JOIN` in SQL.
fn names_a_game_table(literal: &str) -> bool {
    if GAME_TABLES.contains(&literal) {
        return true;
    }
    let words: Vec<&str> = literal.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    words.windows(2).any(|w| {
        (w[0].eq_ignore_ascii_case("from") || w[0].eq_ignore_ascii_case("join")) && GAME_TABLES.contains(&w[1])
    })
}

#[test]
fn library_code_names_no_game_table() {
    check_library("a table of the test game named in library code (the library is generic)", &[], |line| {
        // A `Debug` field may be called `entity` or `config`: a name of ours, not a table.
        let code = line.split(".field(\"").next().unwrap_or(line);
        string_literals(code).into_iter().any(names_a_game_table)
    });
}

/// The one place `unsafe` is allowed (the workspace denies it).
const UNSAFE_ALLOWED: &str = "crates/sync/src/table.rs";

#[test]
fn unsafe_code_is_only_the_prefetch_hint() {
    check_library(
        "`unsafe` in library code (the workspace denies it; the one exception is the prefetch hint)",
        &[(UNSAFE_ALLOWED, "a prefetch hint: Rust's safe one (`std::hint::prefetch_write`) is not stable yet")],
        |line| ["unsafe {", "unsafe fn", "unsafe impl", "unsafe_code)"].iter().any(|code| line.contains(code)),
    );
    // Nor an `allow` of it anywhere else: tests, examples, xtask.
    let allow = ["allow(", "unsafe_code)"].concat();
    let mut found = Vec::new();
    for path in [rust_files(&root().join("crates")), rust_files(&root().join("xtask"))].concat() {
        let file = relative(&path);
        let text = read(&path);
        let count = text.matches(&allow).count();
        let expected = usize::from(file == UNSAFE_ALLOWED);
        if count != expected {
            found.push(format!("{file}: {count} (expected {expected})"));
        }
    }
    assert!(found.is_empty(), "`{allow}` where it should not be:\n{}", found.join("\n"));
}

#[test]
fn readme_code_blocks_do_not_unwrap() {
    let readme = read(&root().join("README.md"));
    let mut in_block = false;
    let mut found = Vec::new();
    for (n, line) in readme.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if in_block && line.contains("unwrap()") {
            found.push(format!("README.md:{}: {}", n + 1, line.trim()));
        }
    }
    assert!(found.is_empty(), "README examples must show error handling, not `unwrap()`:\n{}", found.join("\n"));
}

#[test]
fn the_scanners_see_what_they_should() {
    assert_eq!(string_literals(r#"f("a", '"', "b\"c") // "d""#), vec!["a", r#"b\"c"#]);
    assert!(names_a_game_table("player"));
    assert!(names_a_game_table("SELECT * FROM npc WHERE x = 1"));
    assert!(!names_a_game_table("players"));
    assert!(!names_a_game_table("the config is wrong"));
}
