//! `cargo xtask setup` and the wasm toolchain's version, for real: a cached
//! compiler too old for the module is replaced (or refused), and a machine
//! whose package lists are stale, as a fresh Debian 12 image's are, still
//! ends with a module that builds.
//!
//! Each test gives setup a cache of its own (`XDG_CACHE_HOME`), so the
//! machine's `~/.cache/spacelink` is only read: its already built
//! spacetimedb-standalone is linked in, since the server build (8-13 minutes)
//! is not what these tests are about. They download Debian's rustc-web
//! (about 200 MB), so they are end-to-end tests run by `cargo xtask test`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// apt and the module's target directory are shared: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// A stand-in for an old cached rustc-web: only `--version` is asked of it.
const OLD_RUSTC: &str = "#!/bin/sh\necho 'rustc 1.85.0 (4d91de4e4 2025-02-17) (built from a source tarball)'\n";

fn real_cache() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"),
    }
    .join("spacelink")
}

/// A fresh `XDG_CACHE_HOME` whose spacelink cache holds only the machine's
/// server build (a link to it).
fn private_cache(name: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("spacelink-setup-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let cache = base.join("spacelink");
    fs::create_dir_all(&cache).expect("create the test cache");
    let server = real_cache().join("stdb-1.3.0");
    assert!(
        server.join(".spacelink-ok").is_file(),
        "{} is not set up: run `cargo xtask setup` first (cargo xtask test does)",
        server.display()
    );
    std::os::unix::fs::symlink(&server, cache.join("stdb-1.3.0")).expect("link the server build");
    base
}

fn plant_old_toolchain(cache: &Path) {
    let root = cache.join("rust-web/root");
    let rustc = root.join("usr/bin/rustc");
    fs::create_dir_all(rustc.parent().expect("parent")).expect("mkdir");
    fs::write(&rustc, OLD_RUSTC).expect("write the stand-in rustc");
    fs::set_permissions(&rustc, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir_all(root.join("usr/lib/rustlib/src/rust/library")).expect("std sources");
    fs::write(cache.join("rust-web/.spacelink-ok"), "rustc 1.85.0\n").expect("marker");
}

fn xtask(xdg: &Path, apt_config: Option<&Path>, args: &[&str]) -> (bool, String) {
    xtask_env(xdg, apt_config, args, &[])
}

fn xtask_env(xdg: &Path, apt_config: Option<&Path>, args: &[&str], env: &[(&str, &Path)]) -> (bool, String) {
    let mut cmd = Command::new(XTASK);
    cmd.args(args).env("XDG_CACHE_HOME", xdg).envs(env.iter().copied());
    if let Some(conf) = apt_config {
        cmd.env("APT_CONFIG", conf);
    }
    let Output { status, stdout, stderr } = cmd.output().expect("run xtask");
    let text = format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    println!("$ xtask {}\n{text}", args.join(" "));
    (status.success(), text)
}

fn cached_rustc_version(xdg: &Path) -> String {
    let root = xdg.join("spacelink/rust-web/root");
    let out = Command::new(root.join("usr/bin/rustc"))
        .arg("--version")
        .env("LD_LIBRARY_PATH", root.join("usr/lib/x86_64-linux-gnu"))
        .output()
        .expect("run the cached rustc");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `rustc 1.96.0 (...)` → (1, 96).
fn minor(version_line: &str) -> (u32, u32) {
    let v = version_line.split_whitespace().nth(1).unwrap_or_default();
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn rustup_has_wasm_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "wasm32-unknown-unknown"))
        .unwrap_or(false)
}

#[test]
#[ignore = "e2e: downloads Debian's rustc-web"]
fn a_cached_toolchain_too_old_for_the_module_is_refused_then_replaced() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if rustup_has_wasm_target() {
        println!("rustup has the wasm32 target here: setup never looks at rust-web; nothing to test");
        return;
    }
    let xdg = private_cache("old");
    let cache = xdg.join("spacelink");
    plant_old_toolchain(&cache);

    // `module build` does not try to build with it: it says what to run.
    let (ok, text) = xtask(&xdg, None, &["module", "build"]);
    assert!(!ok, "module build with a 1.85 toolchain must fail before building:\n{text}");
    assert!(text.contains("the cached wasm toolchain is rustc 1.85.0, older than the 1.88.0"), "{text}");
    assert!(text.contains("Run `cargo xtask setup`"), "{text}");
    assert!(!text.contains("Compiling"), "nothing is compiled with a toolchain known to be too old:\n{text}");

    // `setup` replaces it.
    let (ok, text) = xtask(&xdg, None, &["setup"]);
    assert!(ok, "setup must replace the old toolchain:\n{text}");
    assert!(text.contains("the cached rust-web toolchain is rustc 1.85.0, older than the 1.88.0"), "{text}");
    let version = cached_rustc_version(&xdg);
    assert!(minor(&version) >= (1, 88), "setup left `{version}` in the cache");

    // A second run keeps the new one and installs nothing.
    let (ok, text) = xtask(&xdg, None, &["setup"]);
    assert!(ok, "{text}");
    assert!(text.contains("wasm32 toolchain: cached"), "{text}");
    let _ = fs::remove_dir_all(&xdg);
}

/// An apt configuration whose lists are only bookworm's main suite, as a
/// fresh Debian 12 image ships them (no bookworm-security, which carries the
/// new rustc-web), in folders of its own: the machine's lists stay as they are.
fn stale_apt(base: &Path) -> Option<PathBuf> {
    let lists = base.join("apt/lists");
    fs::create_dir_all(lists.join("partial")).expect("lists dir");
    fs::create_dir_all(base.join("apt/cache/archives/partial")).expect("cache dir");
    let mut copied = 0;
    for entry in fs::read_dir("/var/lib/apt/lists").ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name().to_string_lossy().to_string();
        let bookworm_main = name.contains("_debian_dists_bookworm_")
            && (name.ends_with("_InRelease") || name.contains("_main_binary-"));
        if bookworm_main {
            fs::copy(entry.path(), lists.join(&name)).ok()?;
            copied += 1;
        }
    }
    if copied < 2 {
        return None;
    }
    let conf = base.join("apt/apt.conf");
    fs::write(
        &conf,
        format!("Dir::State::Lists \"{}/\";\nDir::Cache \"{}/\";\n", lists.display(), base.join("apt/cache").display()),
    )
    .expect("write apt.conf");
    Some(conf)
}

#[test]
#[ignore = "e2e: downloads Debian's rustc-web"]
fn setup_on_stale_package_lists_refreshes_them_and_the_module_builds() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if rustup_has_wasm_target() || Command::new("apt-cache").arg("--version").output().is_err() {
        println!("no Debian toolchain path on this machine (rustup has wasm32, or no apt): nothing to test");
        return;
    }
    let xdg = private_cache("stale");
    let Some(conf) = stale_apt(&xdg) else {
        println!("no bookworm lists in /var/lib/apt/lists to make stale ones from: nothing to test");
        return;
    };
    let policy = Command::new("apt-cache").args(["policy", "rustc-web"]).env("APT_CONFIG", &conf).output();
    let policy = String::from_utf8_lossy(&policy.expect("apt-cache policy").stdout).to_string();
    println!("stale lists: {policy}");
    let candidate = policy.lines().find_map(|l| l.trim().strip_prefix("Candidate:")).unwrap_or("").trim().to_string();
    assert!(
        candidate.starts_with("1.85") || candidate.is_empty() || candidate == "(none)",
        "the copied bookworm/main lists were meant to offer an old rustc-web, not `{candidate}`"
    );

    let (ok, text) = xtask(&xdg, Some(&conf), &["setup"]);
    assert!(ok, "setup on stale lists must refresh them and install a new enough toolchain:\n{text}");
    assert!(text.contains("the lists may be stale, running `apt-get update`"), "{text}");
    let version = cached_rustc_version(&xdg);
    assert!(minor(&version) >= (1, 88), "setup left `{version}` in the cache");

    // Its own target directory: a build with another compiler's std sources
    // would make the usual module build start from scratch.
    let (ok, text) = xtask_env(
        &xdg,
        Some(&conf),
        &["module", "build"],
        &[("SPACELINK_MODULE_TARGET_DIR", &xdg.join("module-target"))],
    );
    assert!(ok, "the module must build with the toolchain setup installed:\n{text}");
    assert!(text.contains("guildmaster.wasm"), "{text}");
    let _ = fs::remove_dir_all(&xdg);
}
