//! Which rustc can build the module, and what the machine offers.
//!
//! The module's crates (spacetimedb 1.3.2) declare `rust-version = "1.88"`; a
//! wasm toolchain older than that fails deep inside `cargo build` with an
//! error a newcomer cannot act on. Setup therefore compares every toolchain
//! it could use (the cached rust-web, rustup's own rustc when it has the wasm
//! target, Debian's `rustc-web` candidate before downloading it) with
//! [`module_min_rustc`], which reads the module's locked packages.
//!
//! Everything here is plain parsing of command output, so the decisions are
//! unit-tested on recorded `rustc --version`, `apt-cache policy` and
//! `cargo metadata` outputs.

use std::fmt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;

/// A rustc release: `1.88.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RustVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for RustVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The lowest rustc `modules/guildmaster` builds with, as its lock file says
/// today. Used only when `cargo metadata` cannot answer (offline, no cargo);
/// a unit test keeps it equal to what the lock file says.
pub const MODULE_MIN_RUSTC_FALLBACK: RustVersion = RustVersion { major: 1, minor: 88, patch: 0 };

impl RustVersion {
    /// `1.88`, `1.88.0`, `1.96.0-beta.1` (the pre-release part is ignored).
    pub fn parse(s: &str) -> Option<RustVersion> {
        let core = s.trim().split(['-', '+', ' ']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(RustVersion { major, minor, patch })
    }

    /// `rustc 1.85.0 (4d91de4e4 2025-02-17) (built from a source tarball)`.
    pub fn from_rustc_version(out: &str) -> Option<RustVersion> {
        let line = out.lines().find(|l| l.trim_start().starts_with("rustc "))?;
        RustVersion::parse(line.trim_start().strip_prefix("rustc ")?)
    }

    /// A Debian version of rustc-web: `1.85.0+dfsg3-1~deb12u3`,
    /// `1:1.96.0+dfsg1-1~deb12u2` (an epoch is dropped).
    pub fn from_debian_version(v: &str) -> Option<RustVersion> {
        let v = v.trim();
        let v = match v.split_once(':') {
            Some((epoch, rest)) if epoch.chars().all(|c| c.is_ascii_digit()) => rest,
            _ => v,
        };
        RustVersion::parse(v.split(['+', '~']).next()?)
    }
}

/// What `apt-cache policy PKG` says of one package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AptPolicy {
    /// The installed Debian version, if any.
    pub installed: Option<String>,
    /// The version `apt-get download PKG` would fetch, if any.
    pub candidate: Option<String>,
}

impl AptPolicy {
    /// Parses `apt-cache policy` output for a single package. `(none)`, and
    /// an empty output (a package no list knows), mean no version.
    pub fn parse(out: &str) -> AptPolicy {
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(str::trim)
                .filter(|v| !v.is_empty() && *v != "(none)")
                .map(str::to_string)
        };
        AptPolicy { installed: field("Installed:"), candidate: field("Candidate:") }
    }

    /// The candidate as a rustc release.
    pub fn candidate_rust(&self) -> Option<RustVersion> {
        self.candidate.as_deref().and_then(RustVersion::from_debian_version)
    }
}

/// The highest `rust_version` among the packages of a `cargo metadata` JSON
/// document (the module's locked dependency graph).
pub fn max_rust_version_in_metadata(metadata: &serde_json::Value) -> Option<RustVersion> {
    metadata
        .get("packages")?
        .as_array()?
        .iter()
        .filter_map(|p| p.get("rust_version")?.as_str())
        .filter_map(RustVersion::parse)
        .max()
}

/// The lowest rustc the module at `module_dir` builds with: the highest
/// `rust-version` its locked packages declare (`cargo metadata --locked`,
/// about a second, no build). Falls back to [`MODULE_MIN_RUSTC_FALLBACK`]
/// when cargo cannot answer, saying so. `offline` keeps cargo from fetching
/// the module's crates (for `doctor`, which changes nothing).
pub fn module_min_rustc(module_dir: &Path, offline: bool) -> RustVersion {
    match min_rustc_from_lock(module_dir, offline) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "    could not read the module's rust-version requirements ({e:#}); \
                 assuming rustc {MODULE_MIN_RUSTC_FALLBACK}"
            );
            MODULE_MIN_RUSTC_FALLBACK
        }
    }
}

fn min_rustc_from_lock(module_dir: &Path, offline: bool) -> Result<RustVersion> {
    let mut cargo = cmd::cargo();
    cmd::scrub_foreign_build_env(&mut cargo)
        .args(["metadata", "--locked", "--format-version", "1", "--manifest-path"])
        .arg(module_dir.join("Cargo.toml"))
        .current_dir(module_dir);
    if offline {
        cargo.arg("--offline");
    }
    let out = cmd::output(&mut cargo)?;
    let metadata: serde_json::Value = serde_json::from_str(&out).context("cargo metadata did not print JSON")?;
    match max_rust_version_in_metadata(&metadata) {
        Some(v) => Ok(v),
        None => bail!("no package of {} declares a rust-version", module_dir.display()),
    }
}

/// `apt-cache policy PKG`, parsed; an empty policy where apt-cache is absent
/// or fails.
pub fn apt_policy(package: &str) -> AptPolicy {
    match cmd::output(Command::new("apt-cache").args(["policy", package])) {
        Ok(out) => AptPolicy::parse(&out),
        Err(_) => AptPolicy::default(),
    }
}

/// What to do with Debian's rustc-web candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateVerdict {
    /// New enough: download it.
    Use(RustVersion),
    /// Older than needed, or none: the lists may be stale.
    TooOld(Option<RustVersion>),
}

pub fn judge_candidate(policy: &AptPolicy, needed: RustVersion) -> CandidateVerdict {
    match policy.candidate_rust() {
        Some(v) if v >= needed => CandidateVerdict::Use(v),
        other => CandidateVerdict::TooOld(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded on a fresh Debian 12 image: the lists as the image ships
    /// them know only bookworm/main's rustc-web.
    const POLICY_STALE: &str = "rustc-web:
  Installed: (none)
  Candidate: 1.85.0+dfsg3-1~deb12u3
  Version table:
     1.85.0+dfsg3-1~deb12u3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
";

    /// The same machine after `apt-get update`: bookworm-security has 1.96.
    const POLICY_FRESH: &str = "rustc-web:
  Installed: (none)
  Candidate: 1.96.0+dfsg1-1~deb12u2
  Version table:
     1.96.0+dfsg1-1~deb12u2 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     1.85.0+dfsg3-1~deb12u3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
";

    /// A machine whose lists have never been fetched.
    const POLICY_UNKNOWN: &str = "";
    const POLICY_NONE: &str = "rustc-web:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n";

    const NEEDED: RustVersion = RustVersion { major: 1, minor: 88, patch: 0 };

    #[test]
    fn parses_versions() {
        assert_eq!(RustVersion::parse("1.88"), Some(NEEDED));
        assert_eq!(RustVersion::parse("1.88.0"), Some(NEEDED));
        assert_eq!(RustVersion::parse("1.96.0-beta.1").map(|v| v.minor), Some(96));
        assert_eq!(RustVersion::parse("one.two"), None);
        assert_eq!(RustVersion::parse("1.2.3.4"), None);
        assert_eq!(RustVersion::parse(""), None);
        assert!(RustVersion::parse("1.85.0").unwrap_or(NEEDED) < NEEDED);
        assert!(RustVersion::parse("1.100.0").unwrap_or(NEEDED) > NEEDED);
    }

    #[test]
    fn parses_rustc_version_lines() {
        let rustup = "rustc 1.93.1 (01f6ddf75 2026-02-11)\n";
        let debian = "rustc 1.85.0 (4d91de4e4 2025-02-17) (built from a source tarball)\n";
        assert_eq!(RustVersion::from_rustc_version(rustup).map(|v| v.to_string()), Some("1.93.1".into()));
        assert_eq!(RustVersion::from_rustc_version(debian).map(|v| v.to_string()), Some("1.85.0".into()));
        assert_eq!(RustVersion::from_rustc_version("bash: rustc: not found"), None);
    }

    #[test]
    fn parses_debian_versions() {
        let v = |s| RustVersion::from_debian_version(s).map(|v| v.to_string());
        assert_eq!(v("1.85.0+dfsg3-1~deb12u3"), Some("1.85.0".into()));
        assert_eq!(v("1:1.96.0+dfsg1-1~deb12u2"), Some("1.96.0".into()));
        assert_eq!(v("1.96.0~beta.3-1"), Some("1.96.0".into()));
        assert_eq!(v("garbage"), None);
    }

    #[test]
    fn stale_lists_offer_a_compiler_too_old_for_the_module() {
        let policy = AptPolicy::parse(POLICY_STALE);
        assert_eq!(policy.installed, None);
        assert_eq!(policy.candidate.as_deref(), Some("1.85.0+dfsg3-1~deb12u3"));
        assert_eq!(
            judge_candidate(&policy, NEEDED),
            CandidateVerdict::TooOld(Some(RustVersion { major: 1, minor: 85, patch: 0 }))
        );
    }

    #[test]
    fn fresh_lists_offer_one_new_enough() {
        let policy = AptPolicy::parse(POLICY_FRESH);
        assert_eq!(
            judge_candidate(&policy, NEEDED),
            CandidateVerdict::Use(RustVersion { major: 1, minor: 96, patch: 0 })
        );
    }

    #[test]
    fn no_candidate_is_too_old() {
        assert_eq!(judge_candidate(&AptPolicy::parse(POLICY_UNKNOWN), NEEDED), CandidateVerdict::TooOld(None));
        assert_eq!(judge_candidate(&AptPolicy::parse(POLICY_NONE), NEEDED), CandidateVerdict::TooOld(None));
    }

    #[test]
    fn metadata_max_rust_version() {
        let doc = serde_json::json!({ "packages": [
            { "name": "a", "rust_version": "1.64" },
            { "name": "b", "rust_version": null },
            { "name": "spacetimedb-sats", "rust_version": "1.88.0" },
            { "name": "c" },
            { "name": "d", "rust_version": "1.70.0" },
        ]});
        assert_eq!(max_rust_version_in_metadata(&doc), Some(NEEDED));
        assert_eq!(max_rust_version_in_metadata(&serde_json::json!({ "packages": [] })), None);
    }

    /// The fallback constant must say what the module's lock file says.
    /// `cargo metadata` may need to fetch the module's crates once.
    #[test]
    fn fallback_matches_the_module_lock_file() {
        let module = crate::repo_root().join("modules").join("guildmaster");
        match min_rustc_from_lock(&module, false) {
            Ok(v) => assert_eq!(
                v, MODULE_MIN_RUSTC_FALLBACK,
                "modules/guildmaster/Cargo.lock now needs rustc {v}: update MODULE_MIN_RUSTC_FALLBACK"
            ),
            Err(e) => panic!("cargo metadata on {} failed: {e:#}", module.display()),
        }
    }
}
