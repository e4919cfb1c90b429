//! `cargo xtask setup`: installs, once, into a cache outside the repository
//! (`${XDG_CACHE_HOME:-$HOME/.cache}/spacelink`):
//!
//! 1. `v8-stub/librusty_v8.a`: a static library standing in for V8, which
//!    spacetimedb-standalone 1.3.0 links but only uses for JS modules;
//! 2. `stdb-1.3.0/bin/spacetimedb-standalone`, built by `cargo install`;
//! 3. a wasm32 toolchain: the rustup target if installed, else Debian's
//!    `rustc-web` unpacked into `rust-web/root`.
//!
//! Each piece writes a marker file (`.spacelink-ok`) only after it succeeded;
//! a second run finds everything cached and takes about a second.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::{self, fmt_duration, Step};
use crate::procs;
use crate::rustver::{self, CandidateVerdict, RustVersion};

pub const STDB_VERSION: &str = "1.3.0";
const MARKER: &str = ".spacelink-ok";

/// The C symbols of rusty_v8's static library that spacetimedb-standalone
/// 1.3.0 references (its V8 host is an unfinished stub).
const V8_SYMBOLS: [&str; 7] = [
    "v8__Platform__NewDefaultPlatform",
    "v8__V8__Initialize",
    "v8__V8__InitializePlatform",
    "std__shared_ptr__v8__Platform__CONVERT__std__unique_ptr",
    "std__shared_ptr__v8__Platform__COPY",
    "std__shared_ptr__v8__Platform__get",
    "std__shared_ptr__v8__Platform__reset",
];

/// Debian packages for the rust-web toolchain, used when `apt-cache` cannot
/// tell us the current names.
const RUST_WEB_FALLBACK: [&str; 5] =
    ["rustc-web", "rust-web-src", "libstd-rust-web-dev", "libstd-rust-web-1.96", "libllvm22"];

/// `${XDG_CACHE_HOME:-$HOME/.cache}/spacelink`.
pub fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set: set one of them")?;
            PathBuf::from(home).join(".cache")
        }
    };
    Ok(base.join("spacelink"))
}

pub fn v8_archive(cache: &Path) -> PathBuf {
    cache.join("v8-stub").join("librusty_v8.a")
}

pub fn stdb_root(cache: &Path) -> PathBuf {
    cache.join(format!("stdb-{STDB_VERSION}"))
}

pub fn stdb_bin(cache: &Path) -> PathBuf {
    stdb_root(cache).join("bin").join("spacetimedb-standalone")
}

pub fn rust_web_root(cache: &Path) -> PathBuf {
    cache.join("rust-web").join("root")
}

/// The unpacked rust-web toolchain.
#[derive(Debug, Clone)]
pub struct RustWeb {
    pub rustc: PathBuf,
    pub lib_dir: PathBuf,
}

impl RustWeb {
    pub fn at(cache: &Path) -> Self {
        let root = rust_web_root(cache);
        RustWeb { rustc: root.join("usr/bin/rustc"), lib_dir: root.join("usr/lib/x86_64-linux-gnu") }
    }

    /// `rustc --version` of the unpacked compiler, if it runs.
    pub fn version(&self) -> Result<String> {
        let out = cmd::output(Command::new(&self.rustc).arg("--version").env("LD_LIBRARY_PATH", &self.lib_dir))?;
        Ok(out.trim().to_string())
    }

    /// The standard library sources `-Zbuild-std` needs.
    pub fn std_sources(&self) -> PathBuf {
        self.lib_dir.parent().map(|usr_lib| usr_lib.join("rustlib/src/rust/library")).unwrap_or_default()
    }
}

/// How the wasm module gets built on this machine.
#[derive(Debug, Clone)]
pub enum WasmToolchain {
    /// `rustup target add wasm32-unknown-unknown` was done: plain cargo build.
    Rustup,
    /// Debian's rustc-web from the cache, with `-Zbuild-std`.
    RustWeb(RustWeb),
}

/// Whether rustup has the wasm32 target (false if rustup is absent).
pub fn rustup_has_wasm_target() -> bool {
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "list", "--installed"]);
    match cmd::output(&mut rustup) {
        Ok(out) => out.lines().any(|l| l.trim() == "wasm32-unknown-unknown"),
        Err(_) => false,
    }
}

/// The wasm toolchain, without installing anything: rustup's target when its
/// rustc is new enough for the module, else the cached rust-web if it is.
pub fn wasm_toolchain(cache: &Path) -> Result<WasmToolchain> {
    let needed = rustver::module_min_rustc(&crate::module::module_dir(), false);
    let rustup = rustup_wasm_rustc();
    if rustup.is_some_and(|v| v >= needed) {
        return Ok(WasmToolchain::Rustup);
    }
    let web = RustWeb::at(cache);
    if !web.rustc.is_file() {
        bail!(
            "no wasm32 toolchain: {} and {} does not exist.\n\
             Run `cargo xtask setup` (unpacks Debian's rustc-web into the cache), or, with internet \
             access, `rustup target add wasm32-unknown-unknown`.",
            match rustup {
                Some(v) =>
                    format!("rustup's wasm32 target comes with rustc {v}, older than the {needed} the module needs"),
                None => "rustup has no wasm32-unknown-unknown target".to_string(),
            },
            web.rustc.display()
        );
    }
    let version = check_rust_web(&web)?;
    if version < needed {
        bail!(
            "the cached wasm toolchain is rustc {version}, older than the {needed} the module needs.\n\
             Run `cargo xtask setup`: it replaces it with a newer Debian rustc-web."
        );
    }
    Ok(WasmToolchain::RustWeb(web))
}

fn write_marker(dir: &Path, what: &str) -> Result<()> {
    let text = format!("{what}\nverified by `cargo xtask setup` at {}\n", cmd::rfc3339_utc(cmd::unix_now()));
    fs::write(dir.join(MARKER), text).with_context(|| format!("writing the marker file in {}", dir.display()))
}

fn has_marker(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

/// `cargo xtask setup`.
pub fn run() -> Result<()> {
    let start = Instant::now();
    let cache = cache_dir()?;
    fs::create_dir_all(&cache).with_context(|| format!("creating the cache directory {}", cache.display()))?;
    eprintln!("setup: cache directory {}", cache.display());
    ensure_v8_stub(&cache)?;
    // The toolchain first: it takes a minute at most, and a machine that
    // cannot get one learns it before the server's long build, not after.
    ensure_wasm_toolchain(&cache)?;
    ensure_stdb(&cache)?;
    eprintln!("setup: everything is in place ({})", fmt_duration(start.elapsed()));
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. The V8 stub.

const V8_STUB_HEADER: &str = r#"/* Written by `cargo xtask setup` (spacelink). It stands in for rusty_v8's
 * prebuilt static library, which cannot be downloaded here. SpacetimeDB 1.3.0
 * links these symbols but only calls them for JavaScript modules; wasm
 * modules never reach them. Each one reports the call and aborts. */
#include <stdio.h>
#include <stdlib.h>

static void spacelink_v8_stub_called(const char *name) {
    fprintf(stderr, "spacelink V8 stub: %s was called, but this spacetimedb-standalone "
                    "was built without V8: JavaScript modules are not supported (wasm modules are)\n",
            name);
    abort();
}

"#;

fn v8_stub_source() -> String {
    let mut src = String::from(V8_STUB_HEADER);
    for sym in V8_SYMBOLS {
        src.push_str(&format!("void {sym}(void) {{ spacelink_v8_stub_called(\"{sym}\"); }}\n"));
    }
    src
}

/// Whether a static archive mentions all seven symbols (its symbol table
/// holds their names).
fn archive_has_symbols(archive: &Path) -> bool {
    let Ok(bytes) = fs::read(archive) else {
        return false;
    };
    V8_SYMBOLS.iter().all(|sym| bytes.windows(sym.len()).any(|window| window == sym.as_bytes()))
}

fn ensure_v8_stub(cache: &Path) -> Result<()> {
    let step = Step::new("V8 stub (librusty_v8.a)");
    let archive = v8_archive(cache);
    let dir = archive.parent().context("the V8 stub path has no parent directory")?;
    if archive.is_file() && (has_marker(dir) || archive_has_symbols(&archive)) {
        if !has_marker(dir) {
            write_marker(dir, "V8 stub: librusty_v8.a defines the seven symbols")?;
        }
        step.finish(&format!("cached, {}", archive.display()));
        return Ok(());
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = fs::remove_file(dir.join(MARKER));
    let source = dir.join("stub.c");
    let object = dir.join("stub.o");
    fs::write(&source, v8_stub_source()).with_context(|| format!("writing {}", source.display()))?;
    let _ = fs::remove_file(&archive);
    cmd::output(Command::new("gcc").args(["-c", "-O2", "-fPIC", "-o"]).arg(&object).arg(&source))
        .context("compiling the V8 stub failed: install gcc (e.g. `apt-get install gcc`)")?;
    cmd::output(Command::new("ar").arg("rcs").arg(&archive).arg(&object))
        .context("archiving the V8 stub failed: install binutils (e.g. `apt-get install binutils`)")?;
    if !archive_has_symbols(&archive) {
        bail!(
            "{} was built but does not contain the seven V8 symbols; delete {} and run `cargo xtask setup` again",
            archive.display(),
            dir.display()
        );
    }
    write_marker(dir, "V8 stub: librusty_v8.a defines the seven symbols")?;
    step.finish(&format!("built, {}", archive.display()));
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. spacetimedb-standalone.

/// Runs `spacetimedb-standalone --version`, returning its first line.
fn stdb_version(bin: &Path) -> Result<String> {
    let out = cmd::output(Command::new(bin).arg("--version"))?;
    Ok(out.lines().next().unwrap_or_default().trim().to_string())
}

/// Pids of running `cargo install ... spacetimedb-standalone... --root ROOT`
/// processes installing into `root` (started by hand or by another xtask).
pub fn running_stdb_installs(root: &Path) -> Vec<u32> {
    let me = std::process::id();
    procs::all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| procs::cmdline(pid).is_some_and(|args| is_stdb_install_into(&args, root)))
        .collect()
}

/// Whether a command line is `cargo install ... spacetimedb-standalone...`
/// with `--root root`.
fn is_stdb_install_into(args: &[String], root: &Path) -> bool {
    let is_cargo = args
        .first()
        .is_some_and(|a| Path::new(a).file_name().is_some_and(|f| f.to_string_lossy().starts_with("cargo")));
    let root_arg = args
        .iter()
        .position(|a| a == "--root")
        .and_then(|i| args.get(i + 1).map(String::as_str))
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--root=")));
    is_cargo
        && args.iter().any(|a| a == "install")
        && args.iter().any(|a| a.starts_with("spacetimedb-standalone"))
        && root_arg.is_some_and(|r| Path::new(r) == root)
}

fn ensure_stdb(cache: &Path) -> Result<()> {
    let step = Step::new(format!("spacetimedb-standalone {STDB_VERSION}"));
    let root = stdb_root(cache);
    let bin = stdb_bin(cache);
    if bin.is_file() && has_marker(&root) {
        step.finish(&format!("cached, {}", bin.display()));
        return Ok(());
    }
    if bin.is_file() {
        let version = stdb_version(&bin).with_context(|| {
            format!(
                "{} exists but does not run: delete {} and run `cargo xtask setup` again",
                bin.display(),
                root.display()
            )
        })?;
        write_marker(&root, &version)?;
        step.finish(&format!("cached ({version}), {}", bin.display()));
        return Ok(());
    }

    let others = running_stdb_installs(&root);
    if !others.is_empty() {
        wait_for_other_install(cache, &others)?;
        if bin.is_file() {
            let version = stdb_version(&bin)?;
            write_marker(&root, &version)?;
            step.finish(&format!("installed by the other process ({version}), {}", bin.display()));
            return Ok(());
        }
        bail!(
            "the other `cargo install` of spacetimedb-standalone ended without producing {}.\n\
             Look at its output (by hand: {}), then run `cargo xtask setup` again.",
            bin.display(),
            cache.join("install.log").display()
        );
    }

    let archive = v8_archive(cache);
    eprintln!(
        "    building spacetimedb-standalone {STDB_VERSION} from crates.io: about 440 crates, \
         7-9 minutes on 2 cores, once per machine"
    );
    let mut install = cmd::cargo();
    cmd::scrub_foreign_build_env(&mut install)
        .args(["install", "--locked"])
        .arg(format!("spacetimedb-standalone@{STDB_VERSION}"))
        .arg("--root")
        .arg(&root)
        .env("RUSTY_V8_ARCHIVE", &archive)
        .current_dir(cache);
    cmd::run_streamed(&mut install, "cargo install spacetimedb-standalone", Duration::from_secs(30)).with_context(
        || {
            format!(
                "installing spacetimedb-standalone failed. Check cargo's output above: a network \
                 error can simply be retried with `cargo xtask setup`; an error building `v8` \
                 means the V8 stub is wrong (delete {} and retry)",
                archive.parent().unwrap_or(cache).display()
            )
        },
    )?;
    let version =
        stdb_version(&bin).with_context(|| format!("cargo install finished but {} does not run", bin.display()))?;
    write_marker(&root, &version)?;
    step.finish(&format!("installed ({version}), {}", bin.display()));
    Ok(())
}

fn wait_for_other_install(cache: &Path, pids: &[u32]) -> Result<()> {
    let log = cache.join("install.log");
    eprintln!(
        "    another `cargo install` of spacetimedb-standalone is running (pid {}): waiting for it \
         instead of starting a second one",
        pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    );
    let start = Instant::now();
    let log_for_beat = log.clone();
    let beat = cmd::Heartbeat::start_with("waiting for the other install", Duration::from_secs(30), move || {
        cmd::last_line(&log_for_beat).map(|l| format!("{} says `{l}`", "install.log"))
    });
    while pids.iter().any(|&pid| procs::alive(pid)) {
        if start.elapsed() > Duration::from_secs(45 * 60) {
            bail!(
                "the other install (pid {pids:?}) has run for 45 minutes; check it (`ps`, {}), \
                 stop it if it hangs, and run `cargo xtask setup` again",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(beat);
    eprintln!("    the other install ended after {} of waiting", fmt_duration(start.elapsed()));
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. The wasm toolchain.

/// rustup's rustc, when rustup has the wasm32 target: its version.
fn rustup_wasm_rustc() -> Option<RustVersion> {
    if !rustup_has_wasm_target() {
        return None;
    }
    let mut rustc = Command::new("rustc");
    cmd::scrub_foreign_build_env(&mut rustc).arg("--version");
    cmd::output(&mut rustc).ok().as_deref().and_then(RustVersion::from_rustc_version)
}

fn ensure_wasm_toolchain(cache: &Path) -> Result<()> {
    let step = Step::new("wasm32 toolchain");
    let needed = rustver::module_min_rustc(&crate::module::module_dir(), false);
    eprintln!(
        "    the module needs rustc {needed} or newer (the highest rust-version in modules/guildmaster/Cargo.lock)"
    );
    match rustup_wasm_rustc() {
        Some(v) if v >= needed => {
            step.finish(&format!(
                "rustup has wasm32-unknown-unknown with rustc {v}: plain `cargo build`, nothing to install"
            ));
            return Ok(());
        }
        Some(v) => eprintln!(
            "    rustup has wasm32-unknown-unknown, but its rustc is {v}: too old for the module \
             (`rustup update` fixes that); using Debian's rustc-web instead"
        ),
        None => {}
    }
    let web = RustWeb::at(cache);
    let dir = cache.join("rust-web");
    if web.rustc.is_file() {
        match check_rust_web(&web) {
            Ok(version) if version >= needed => {
                if !has_marker(&dir) {
                    write_marker(&dir, &format!("rustc {version}"))?;
                }
                step.finish(&format!("cached, rustc {version} in {}", rust_web_root(cache).display()));
                return Ok(());
            }
            Ok(version) => eprintln!(
                "    the cached rust-web toolchain is rustc {version}, older than the {needed} the module \
                 needs: replacing it"
            ),
            Err(e) => eprintln!("    the cached rust-web toolchain does not work ({e:#}); unpacking it again"),
        }
    }
    let _ = fs::remove_file(dir.join(MARKER));
    install_rust_web(cache, needed)?;
    let version = check_rust_web(&web)?;
    if version < needed {
        bail!(
            "the rust-web toolchain just installed is rustc {version}, but the module needs {needed}; \
             delete {} and run `cargo xtask setup` again",
            dir.display()
        );
    }
    write_marker(&dir, &format!("rustc {version}"))?;
    step.finish(&format!("installed, rustc {version} in {}", rust_web_root(cache).display()));
    Ok(())
}

/// The unpacked toolchain's version, after checking it has what
/// `-Zbuild-std` needs.
fn check_rust_web(web: &RustWeb) -> Result<RustVersion> {
    let version = web.version()?;
    let std_src = web.std_sources();
    if !std_src.is_dir() {
        bail!("{} is missing (package rust-web-src): -Zbuild-std needs it", std_src.display());
    }
    RustVersion::from_rustc_version(&version)
        .with_context(|| format!("{} --version printed `{version}`, not a rustc version", web.rustc.display()))
}

/// Parses `apt-cache depends` output: the names after `Depends:` (real
/// packages only, not `<virtual>` ones).
pub fn parse_apt_depends(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .filter(|name| !name.starts_with('<') && !name.is_empty())
        .map(str::to_string)
        .collect()
}

/// The packages to download: rustc-web and rust-web-src, plus, transitively,
/// their dependencies named `libstd-rust-web*` or `libllvm*` (the versions in
/// those names change with Debian updates).
fn rust_web_packages() -> Vec<String> {
    let wanted = |name: &str| name.starts_with("libstd-rust-web") || name.starts_with("libllvm");
    let mut found: BTreeSet<String> = ["rustc-web", "rust-web-src"].map(String::from).into();
    let mut queue: Vec<String> = found.iter().cloned().collect();
    while let Some(pkg) = queue.pop() {
        let Ok(out) = cmd::output(Command::new("apt-cache").args(["depends", &pkg])) else {
            continue;
        };
        for dep in parse_apt_depends(&out) {
            if wanted(&dep) && found.insert(dep.clone()) {
                queue.push(dep);
            }
        }
    }
    let has_std = found.iter().any(|p| p.starts_with("libstd-rust-web-1"));
    let has_llvm = found.iter().any(|p| p.starts_with("libllvm"));
    if !has_std || !has_llvm {
        eprintln!(
            "    apt-cache did not name the rust-web dependencies; using the known names {}",
            RUST_WEB_FALLBACK.join(" ")
        );
        return RUST_WEB_FALLBACK.map(String::from).to_vec();
    }
    found.into_iter().collect()
}

/// How to get a new enough compiler when Debian offers none.
fn toolchain_fix_hint(needed: RustVersion) -> String {
    format!(
        "Either\n  - refresh the package lists and run setup again: `sudo apt-get update && cargo xtask setup` \
         (Debian 12 carries a new enough rustc-web in bookworm-security: check that \
         /etc/apt/sources.list or /etc/apt/sources.list.d/ names `bookworm-security`), or\n  - \
         with internet access, use rustup's target instead: `rustup update && rustup target add \
         wasm32-unknown-unknown` (rustc {needed} or newer)."
    )
}

fn apt_get_update() -> Result<()> {
    let mut update = Command::new("apt-get");
    update.arg("update");
    cmd::run_streamed(&mut update, "apt-get update", Duration::from_secs(20))
}

/// Debian's rustc-web candidate, refreshing the package lists once if it is
/// missing or older than `needed` (a fresh machine's lists can be stale).
fn rust_web_candidate(needed: RustVersion) -> Result<RustVersion> {
    let policy = rustver::apt_policy("rustc-web");
    let found = match rustver::judge_candidate(&policy, needed) {
        CandidateVerdict::Use(v) => return Ok(v),
        CandidateVerdict::TooOld(found) => found,
    };
    let shown = found.map_or("no rustc-web".to_string(), |v| format!("rustc-web {v}"));
    eprintln!(
        "    the package lists offer {shown}, older than the {needed} the module needs: \
         the lists may be stale, running `apt-get update`"
    );
    if let Err(e) = apt_get_update() {
        bail!(
            "no wasm toolchain new enough: the package lists offer {shown} and the module needs rustc \
             {needed}, and `apt-get update` failed ({e:#}).\n{}",
            toolchain_fix_hint(needed)
        );
    }
    match rustver::judge_candidate(&rustver::apt_policy("rustc-web"), needed) {
        CandidateVerdict::Use(v) => {
            eprintln!("    after `apt-get update` the candidate is rustc-web {v}");
            Ok(v)
        }
        CandidateVerdict::TooOld(after) => bail!(
            "no wasm toolchain new enough: even after `apt-get update` Debian offers {}, and the module \
             needs rustc {needed} or newer. Nothing was built.\n{}",
            after.map_or("no rustc-web".to_string(), |v| format!("rustc-web {v}")),
            toolchain_fix_hint(needed)
        ),
    }
}

fn install_rust_web(cache: &Path, needed: RustVersion) -> Result<()> {
    if cmd::find_program("apt-get").is_none() || cmd::find_program("dpkg").is_none() {
        bail!(
            "no wasm32 toolchain: rustup has no wasm32-unknown-unknown target (with rustc {needed} or \
             newer) and there is no apt-get/dpkg to fetch Debian's rustc-web.\n\
             Install the target with `rustup target add wasm32-unknown-unknown` and run \
             `cargo xtask setup` again."
        );
    }
    let candidate = rust_web_candidate(needed)?;
    eprintln!("    Debian's rustc-web {candidate}: downloading it and its standard library");
    let debs = cache.join("rust-web").join("debs");
    let packages = rust_web_packages();
    eprintln!("    packages: {}", packages.join(" "));
    if debs.exists() {
        fs::remove_dir_all(&debs).with_context(|| format!("removing {}", debs.display()))?;
    }
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;

    let download = |label: &str| -> Result<()> {
        let mut apt = Command::new("apt-get");
        apt.arg("download").args(&packages).current_dir(&debs);
        cmd::run_streamed(&mut apt, label, Duration::from_secs(20))
    };
    if let Err(first) = download("apt-get download") {
        eprintln!("    apt-get download failed ({first:#}); updating the package lists and retrying");
        apt_get_update().context(
            "apt-get update failed: run `cargo xtask setup` as root (or `sudo apt-get update` first), \
             or install the wasm32 target another way (`rustup target add wasm32-unknown-unknown`)",
        )?;
        download("apt-get download (retry)").context(
            "apt-get download failed: run as root or install rustc-web yourself \
             (packages: rustc-web rust-web-src and their libstd-rust-web/libllvm dependencies), \
             then run `cargo xtask setup` again",
        )?;
    }

    let root = rust_web_root(cache);
    let staging = cache.join("rust-web").join("root.partial");
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    fs::create_dir_all(&staging)?;
    let mut extracted = 0;
    for entry in fs::read_dir(&debs).with_context(|| format!("reading {}", debs.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            cmd::output(Command::new("dpkg").arg("-x").arg(&path).arg(&staging))
                .with_context(|| format!("unpacking {}", path.display()))?;
            extracted += 1;
        }
    }
    if extracted < packages.len() {
        bail!(
            "apt-get downloaded {extracted} of {} packages into {}; run `cargo xtask setup` again",
            packages.len(),
            debs.display()
        );
    }
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    fs::rename(&staging, &root).with_context(|| format!("moving {} to {}", staging.display(), root.display()))?;
    eprintln!("    unpacked {extracted} packages into {}", root.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_defines_every_symbol_once() {
        let src = v8_stub_source();
        for sym in V8_SYMBOLS {
            assert_eq!(src.matches(&format!("void {sym}(void)")).count(), 1, "{sym}");
        }
    }

    #[test]
    fn detects_an_install_into_our_root() {
        let root = Path::new("/c/spacelink/stdb-1.3.0");
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(is_stdb_install_into(
            &args("/x/bin/cargo install --locked spacetimedb-standalone@1.3.0 --root /c/spacelink/stdb-1.3.0"),
            root
        ));
        assert!(!is_stdb_install_into(
            &args("cargo install --locked spacetimedb-standalone@1.3.0 --root /elsewhere"),
            root
        ));
        assert!(!is_stdb_install_into(&args("cargo build --root /c/spacelink/stdb-1.3.0"), root));
    }

    #[test]
    fn apt_depends_parsing() {
        let out = "rustc-web\n  Depends: libc6\n  Depends: libstd-rust-web-dev\n  \
                   Depends: <libc-dev>\n    libc6-dev\n  Conflicts: rustc\n  Recommends: cargo-web\n";
        assert_eq!(parse_apt_depends(out), ["libc6", "libstd-rust-web-dev"]);
    }
}
