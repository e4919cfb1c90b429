//! `cargo xtask module build|publish`: the server module modules/guildmaster
//! (its own crate and lock file, outside the workspace) built to wasm and
//! published to the server of a state directory.
//!
//! Publishing is `PUT /v1/database/<name>` with the wasm as body and the
//! owner's bearer token; `?clear=true` deletes an existing database of that
//! name first (spacetimedb-client-api 1.3.0, routes/database.rs, `publish`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cmd::{self, Step};
use crate::server::{self, Paths};
use crate::setup::{self, WasmToolchain};

pub const DATABASE: &str = "guildmaster";

pub fn module_dir() -> PathBuf {
    crate::repo_root().join("modules").join("guildmaster")
}

/// The module's cargo target directory: `modules/guildmaster/target`, or
/// `SPACELINK_MODULE_TARGET_DIR` (tests that build with another toolchain use
/// one of their own, so the usual build stays warm).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("SPACELINK_MODULE_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => module_dir().join("target"),
    }
}

pub fn wasm_path() -> PathBuf {
    target_dir().join("wasm32-unknown-unknown/release/guildmaster.wasm")
}

/// rustup's `rust-lld` for the host, which links wasm for the rust-web rustc.
fn rust_lld(module_dir: &Path) -> Result<PathBuf> {
    let mut rustc = Command::new("rustc");
    cmd::scrub_foreign_build_env(&mut rustc).current_dir(module_dir);
    let sysroot = cmd::output(rustc.args(["--print", "sysroot"]))?;
    let mut rustc = Command::new("rustc");
    cmd::scrub_foreign_build_env(&mut rustc).current_dir(module_dir);
    let version = cmd::output(rustc.arg("-vV"))?;
    let host = version.lines().find_map(|l| l.strip_prefix("host: ")).unwrap_or("x86_64-unknown-linux-gnu").trim();
    let lld = Path::new(sysroot.trim()).join("lib/rustlib").join(host).join("bin/rust-lld");
    if !lld.is_file() {
        bail!(
            "{} not found: the wasm link step needs rustup's rust-lld (it ships with rustup's \
             toolchains; `rustup toolchain install stable` restores it)",
            lld.display()
        );
    }
    Ok(lld)
}

/// `module build`: returns the path of the built wasm.
pub fn build() -> Result<PathBuf> {
    let dir = module_dir();
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "{} not found: the module crate modules/guildmaster is missing from this checkout",
            dir.join("Cargo.toml").display()
        );
    }
    let toolchain = setup::wasm_toolchain(&setup::cache_dir()?)?;
    let step = Step::new("build modules/guildmaster to wasm");
    let mut cargo = cmd::cargo();
    cmd::scrub_foreign_build_env(&mut cargo).current_dir(&dir).env("CARGO_TARGET_DIR", target_dir());
    match &toolchain {
        WasmToolchain::Rustup => {
            eprintln!("    toolchain: rustup's wasm32-unknown-unknown target");
            cargo.args(["build", "--release", "--target", "wasm32-unknown-unknown"]);
        }
        WasmToolchain::RustWeb(web) => {
            eprintln!(
                "    toolchain: Debian rustc-web from the cache with -Zbuild-std \
                 (about 1 minute the first time, seconds after)"
            );
            let lld = rust_lld(&dir)?;
            cargo
                .env("LD_LIBRARY_PATH", &web.lib_dir)
                .env("RUSTC", &web.rustc)
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", lld)
                .args(["build", "--release", "-Zbuild-std=std,panic_abort", "--target", "wasm32-unknown-unknown"]);
        }
    }
    cmd::run_streamed(&mut cargo, "cargo build (wasm)", Duration::from_secs(30)).context(
        "building modules/guildmaster failed: see the compiler output above. If the errors are in \
         spacetimedb crates, check that the module's Cargo.lock pins the spacetimedb-* crates to 1.3.2",
    )?;
    let wasm = wasm_path();
    let size =
        fs::metadata(&wasm).with_context(|| format!("the build finished but {} is missing", wasm.display()))?.len();
    eprintln!("    {} ({} KiB)", wasm.display(), size / 1024);
    step.done();
    Ok(wasm)
}

/// The owner identity's token, made with `POST /v1/identity` the first time
/// and kept in DIR/owner.json so that every publish is by the same owner.
fn owner_token(paths: &Paths, url: &str) -> Result<String> {
    if let Ok(text) = fs::read_to_string(&paths.owner) {
        let saved: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON: delete it", paths.owner.display()))?;
        if let Some(token) = saved.get("token").and_then(Value::as_str) {
            return Ok(token.to_string());
        }
        bail!("{} has no \"token\": delete it", paths.owner.display());
    }
    let response = ureq::post(&format!("{url}/v1/identity"))
        .timeout(Duration::from_secs(10))
        .call()
        .map_err(|e| http_error(e, "POST /v1/identity"))?;
    let body: Value =
        serde_json::from_str(&response.into_string()?).context("POST /v1/identity did not answer JSON")?;
    let token =
        body.get("token").and_then(Value::as_str).context("POST /v1/identity answered without a token")?.to_string();
    let owner = json!({
        "identity": body.get("identity").cloned().unwrap_or(Value::Null),
        "token": token,
        "server_url": url,
        "created_at": cmd::rfc3339_utc(cmd::unix_now()),
    });
    fs::write(&paths.owner, serde_json::to_string_pretty(&owner)? + "\n")
        .with_context(|| format!("writing {}", paths.owner.display()))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&paths.owner, fs::Permissions::from_mode(0o600))?;
    eprintln!(
        "    new owner identity {} (token kept in {})",
        first_string(&owner["identity"]).unwrap_or_default(),
        paths.owner.display()
    );
    Ok(token)
}

fn http_error(e: ureq::Error, what: &str) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, response) => {
            let body = response.into_string().unwrap_or_default();
            anyhow::anyhow!("{what} answered HTTP {code}: {body}")
        }
        ureq::Error::Transport(t) => {
            anyhow::anyhow!("{what}: could not reach the server ({t}); check it with `cargo xtask server status`")
        }
    }
}

/// The first string inside a JSON value: identities are serialized as
/// `{"__identity__": "0x..."}` by the server, as plain strings elsewhere.
pub fn first_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.values().find_map(first_string),
        Value::Array(items) => items.iter().find_map(first_string),
        _ => None,
    }
}

/// What a successful publish answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub identity: String,
    /// "created" or "updated".
    pub op: String,
}

/// Parses the server's `PublishResult` JSON.
pub fn parse_publish_result(body: &str) -> Result<Published> {
    let value: Value = serde_json::from_str(body).with_context(|| format!("the server answered: {body}"))?;
    let Some(success) = value.get("Success") else {
        bail!("the server did not publish: {body}");
    };
    Ok(Published {
        identity: success.get("database_identity").and_then(first_string).unwrap_or_else(|| "?".into()),
        op: success.get("op").and_then(Value::as_str).unwrap_or("published").to_string(),
    })
}

/// `module publish`: builds, then publishes to the running server of `dir`.
pub fn publish(dir: &Path, clear: bool, database: &str) -> Result<Published> {
    let wasm = build()?;
    let paths = Paths::new(dir)?;
    let Some(state) = server::running(&paths)? else {
        bail!(
            "no server is running for {}: start one with `cargo xtask server start{}`",
            paths.dir.display(),
            if paths.dir == server::default_dir() { String::new() } else { format!(" --dir {}", paths.dir.display()) }
        );
    };
    let step = Step::new(format!(
        "publish {database} to {}{}",
        state.url,
        if clear { " (--clear: existing data is deleted)" } else { "" }
    ));
    let token = owner_token(&paths, &state.url)?;
    let bytes = fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let url = format!("{}/v1/database/{database}{}", state.url, if clear { "?clear=true" } else { "" });
    eprintln!("    PUT {url} ({} KiB)", bytes.len() / 1024);
    let response = ureq::put(&url)
        .timeout(Duration::from_secs(300))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/wasm")
        .send_bytes(&bytes);
    let body = match response {
        Ok(response) => response.into_string()?,
        Err(ureq::Error::Status(code, response)) => {
            let body = response.into_string().unwrap_or_default();
            let hint = match code {
                400 => "\nIf the schema changed incompatibly, republish with `--clear` (deletes the data).",
                401 | 403 => {
                    "\nThe owner token was refused. Its identity must own the database: if the \
                              server's keys or data changed, `cargo xtask server start` makes a fresh \
                              server (and a new owner)."
                }
                _ => "",
            };
            bail!(
                "publishing {database} failed: HTTP {code}: {body}{hint}\nThe server log ({}) may say more.",
                paths.log.display()
            );
        }
        Err(e) => return Err(http_error(e, &format!("PUT {url}"))),
    };
    let published = parse_publish_result(&body)?;
    step.finish(&format!("{} {database}, database identity {}", published.op, published.identity));
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_result() {
        let body =
            r#"{"Success":{"domain":"guildmaster","database_identity":{"__identity__":"0xc200ab"},"op":"created"}}"#;
        assert_eq!(
            parse_publish_result(body).expect("success"),
            Published { identity: "0xc200ab".into(), op: "created".into() }
        );
        assert!(parse_publish_result(r#"{"PermissionDenied":{"name":"guildmaster"}}"#).is_err());
    }
}
