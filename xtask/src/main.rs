//! `cargo xtask`: the developer tasks of spacelink, in plain Rust (the
//! rust-analyzer xtask pattern). `cargo xtask help` lists them: `doctor`
//! (doctor.rs), `setup` (setup.rs, with rustver.rs for toolchain versions), `server ...` (server.rs), `module ...` (module.rs), `test`
//! (testrun.rs), `chaos` (chaos.rs: the resilience scenarios of
//! crates/app/tests/chaos.rs against a fresh server, printed as a table) and
//! `demo` (demo.rs).

mod chaos;
mod cmd;
mod demo;
mod doctor;
mod module;
mod procs;
mod rustver;
mod server;
mod setup;
mod testrun;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

const HELP: &str = "\
cargo xtask: developer tasks for spacelink

USAGE: cargo xtask <command> [options]

  doctor                   What this machine has and what `demo`/`test` will still install, with
                           rough times. Only looks: installs and writes nothing.
  setup                    Install once, into ${XDG_CACHE_HOME:-~/.cache}/spacelink: a V8 stub,
                           spacetimedb-standalone 1.3.0 (cargo install: 7-9 min the first time)
                           and a wasm32 toolchain new enough for the module (its lock file's
                           highest rust-version; stale package lists are refreshed). A second
                           run only checks (about a second).
  server start   [--dir D] Start a local SpacetimeDB on a free 127.0.0.1 port with a fresh data
                           dir and fresh keys; prints its URL. Reuses one of D that is running.
  server status  [--dir D] Is it running? URL, pid, data dir (exit code 3 if not running).
  server stop    [--dir D] Stop the server started in D (SIGTERM, SIGKILL after 5 s).
  server restart [--dir D] [--down-for SECS]
                           Stop it, optionally stay down SECS, start again on the same port
                           with the same data and keys.
  module build             Build modules/guildmaster to wasm.
  module publish [--clear] [--dir D] [--database NAME]
                           Build, then publish to D's server as `guildmaster` (or NAME);
                           --clear deletes the database's data first.
  test                     Everything CI runs: setup, unit + property tests, a fresh server with
                           the module, the end-to-end tests (#[ignore = \"e2e: ...\"]), a summary.
  chaos                    The resilience scenarios (crates/app/tests/chaos.rs, one at a time) against
                           a fresh server in <repo>/.spacelink/chaos-server; prints a table of them.
  demo                     setup, a server (unless one runs), publish --clear, run the demo.
  help                     This text.

D (the server state directory) defaults to <repo>/.spacelink/server; it holds state.json,
data/, keys/, server.log and owner.json. Progress goes to stderr; results (URLs, the test
summary) to stdout.
";

/// The repository root: the parent of xtask's own directory.
pub fn repo_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// Hand-rolled argument parsing: flags are taken out by name, anything
/// left over is an error.
#[derive(Debug)]
struct Args {
    command: String,
    rest: Vec<String>,
}

impl Args {
    fn flag(&mut self, name: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|a| a != name);
        self.rest.len() != before
    }

    fn value(&mut self, name: &str) -> Result<Option<String>> {
        let prefix = format!("{name}=");
        if let Some(i) = self.rest.iter().position(|a| a.starts_with(&prefix)) {
            let arg = self.rest.remove(i);
            return Ok(Some(arg[prefix.len()..].to_string()));
        }
        let Some(i) = self.rest.iter().position(|a| a == name) else {
            return Ok(None);
        };
        if i + 1 >= self.rest.len() {
            bail!("`{name}` needs a value (see `cargo xtask help`)");
        }
        let value = self.rest.remove(i + 1);
        self.rest.remove(i);
        Ok(Some(value))
    }

    fn dir(&mut self) -> Result<PathBuf> {
        Ok(self.value("--dir")?.map(PathBuf::from).unwrap_or_else(server::default_dir))
    }

    fn finish(self) -> Result<()> {
        if let Some(extra) = self.rest.first() {
            bail!("unexpected argument `{extra}` for `cargo xtask {}` (see `cargo xtask help`)", self.command);
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("\nerror: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  because: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    if argv.is_empty() {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let first = argv.remove(0);
    // `server start`, `module build`: the subcommand is part of the command.
    let command = match first.as_str() {
        "server" | "module" => match argv.first() {
            Some(sub) if !sub.starts_with('-') => format!("{first} {}", argv.remove(0)),
            _ => bail!("`cargo xtask {first}` needs a subcommand (see `cargo xtask help`)"),
        },
        _ => first,
    };
    let mut args = Args { command: command.clone(), rest: argv };
    match command.as_str() {
        "help" => {
            args.finish()?;
            print!("{HELP}");
        }
        "setup" => {
            args.finish()?;
            setup::run()?;
        }
        "doctor" => {
            args.finish()?;
            if !doctor::run()? {
                return Ok(ExitCode::FAILURE);
            }
        }
        "server start" => {
            let dir = args.dir()?;
            args.finish()?;
            let state = server::start(&dir)?;
            println!("{}", state.url);
        }
        "server stop" => {
            let dir = args.dir()?;
            args.finish()?;
            server::stop(&dir)?;
        }
        "server status" => {
            let dir = args.dir()?;
            args.finish()?;
            if !server::status(&dir)? {
                return Ok(ExitCode::from(3));
            }
        }
        "server restart" => {
            let dir = args.dir()?;
            let down_for = match args.value("--down-for")? {
                Some(secs) => Duration::from_secs_f64(
                    secs.parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .with_context(|| format!("--down-for wants seconds (e.g. 2.5), not `{secs}`"))?,
                ),
                None => Duration::ZERO,
            };
            args.finish()?;
            let state = server::restart(&dir, down_for)?;
            println!("{}", state.url);
        }
        "module build" => {
            args.finish()?;
            let wasm = module::build()?;
            println!("{}", wasm.display());
        }
        "module publish" => {
            let clear = args.flag("--clear");
            let dir = args.dir()?;
            let database = args.value("--database")?.unwrap_or_else(|| module::DATABASE.to_string());
            args.finish()?;
            let published = module::publish(&dir, clear, &database)?;
            println!("{}", published.identity);
        }
        "test" => {
            args.finish()?;
            return testrun::run();
        }
        "chaos" => {
            args.finish()?;
            return chaos::run();
        }
        "demo" => {
            args.finish()?;
            demo::run()?;
        }
        "__watchdog" => server::watchdog(&args.rest)?,
        other => bail!("unknown command `{other}`: see `cargo xtask help`"),
    }
    Ok(ExitCode::SUCCESS)
}
