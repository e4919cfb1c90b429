//! `cargo xtask demo`: from a fresh clone to the running demo in one command.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::{self, Step};
use crate::server::{self, Paths, ServerGuard};
use crate::{module, setup};

pub fn run() -> Result<()> {
    setup::run()?;

    let dir = server::default_dir();
    let paths = Paths::new(&dir)?;
    // Reuse a running developer server; otherwise start one and stop it after.
    let (guard, url) = match server::running(&paths)? {
        Some(state) => {
            eprintln!("==> using the running server {} (pid {}); it stays running afterwards", state.url, state.pid);
            (None, state.url)
        }
        None => {
            let (guard, state) = ServerGuard::start(&dir)?;
            (Some(guard), state.url)
        }
    };

    module::publish(&dir, true, module::DATABASE)?;

    let step = Step::new("run the demo (cargo run -p spacelink --example demo)");
    let mut demo = cmd::cargo();
    cmd::scrub_cargo_run_env(&mut demo)
        .current_dir(crate::repo_root())
        .args(["run", "--quiet", "-p", "spacelink", "--example", "demo", "--"])
        .args(["--server", &url, "--database", module::DATABASE]);
    let status = cmd::run_status(&mut demo, "demo", Duration::from_secs(3600)).context("could not run the demo")?;
    step.done();

    if let Some(guard) = guard {
        guard.stop()?;
    }
    if !status.success() {
        bail!(
            "the demo exited with {status}. Run it again against a server you keep: \
             `cargo xtask server start`, `cargo xtask module publish --clear`, then \
             `cargo run -p spacelink --example demo -- --server <url> --database guildmaster`"
        );
    }
    Ok(())
}
