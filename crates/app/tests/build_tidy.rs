//! What spacelink imposes on a game's build, checked with `cargo tree`: by
//! default no `log` max-level feature (a game's `trace!` stays its own), no
//! Prometheus exporter, no `reqwest` and no test code (the `testsuite`
//! features); and the features that bring them do bring them.

use std::process::Command;

/// `cargo tree` of `spacelink`'s normal dependencies, one package a line
/// with the features it is built with (`name vX.Y.Z [f1,f2]`).
fn tree(features: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "tree",
        "--offline",
        "--locked",
        "-e",
        "normal",
        "-p",
        "spacelink",
        "--prefix",
        "none",
        "-f",
        "{p} [{f}]",
    ]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let out = command.output().expect("cargo runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn lines_with<'a>(tree: &'a str, what: &str) -> Vec<&'a str> {
    tree.lines().filter(|l| l.contains(what)).collect()
}

#[test]
fn by_default_a_game_gets_no_log_level_cap_no_exporter_no_reqwest_and_no_test_code() {
    let tree = tree(&[]);
    assert!(tree.contains("spacelink-telemetry"), "not a tree of spacelink? {tree}");
    for unwanted in ["max_level_", "metrics-exporter-prometheus v", "reqwest v", "testsuite"] {
        let found = lines_with(&tree, unwanted);
        assert!(found.is_empty(), "`{unwanted}` in spacelink's default tree: {found:#?}");
    }
}

#[test]
fn the_features_that_bring_them_do() {
    let tree = tree(&["prometheus", "tls", "testsuite"]);
    for wanted in ["metrics-exporter-prometheus v", "reqwest v", "testsuite"] {
        assert!(!lines_with(&tree, wanted).is_empty(), "`{wanted}` missing with its feature");
    }
    assert!(lines_with(&tree, "max_level_").is_empty(), "no feature caps `log`'s level");
}
