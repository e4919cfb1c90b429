//! `swarm`: N bot players on spacelink through a fault proxy, watched live,
//! ending in a report and a verdict (what `cargo xtask demo` runs).
//!
//! ```text
//! swarm --server http://127.0.0.1:3000 [--bots 20] [--profile chaos] [--duration 60s]
//! swarm --soak [--seed S] --bots 100 --duration 30m     (what `cargo xtask soak` runs)
//! ```
//!
//! A soak replaces the profile's ladder with random faults drawn from the
//! seed (printed first, so that a failed soak can be replayed with `--seed`)
//! and adds the process's memory and file descriptors to the verdict.
//!
//! The last line is `verdict: ok (...)` or `verdict: FAILED (...)`, and the
//! exit code follows it (0 or 1; 2 when the run could not start).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use spacelink_swarm::faults::ServerControl;
use spacelink_swarm::profile::Profile;
use spacelink_swarm::run::{self, SwarmConfig};
use tokio::sync::watch;

/// Bots on spacelink through a bad network, watched live, ending in a report and a verdict.
#[derive(Debug, Parser)]
#[command(name = "swarm")]
struct Args {
    /// The SpacetimeDB server (on this machine).
    #[arg(long, env = "SPACELINK_SERVER_URL", default_value = "http://127.0.0.1:3000")]
    server: String,
    /// The database (guildmaster, with its `act` reducer).
    #[arg(long, env = "SPACELINK_DATABASE", default_value = "guildmaster")]
    database: String,
    /// How many bots.
    #[arg(long, default_value_t = 20)]
    bots: usize,
    /// The worst network profile of the schedule: good, mobile, bad or chaos.
    #[arg(long, default_value = "chaos")]
    profile: Profile,
    /// How long the schedule runs (`60s`, `2m`, `90`; up to a day); the catch-up and the verdict follow.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// The server directory of `cargo xtask server` (for restarts and freezes).
    #[arg(long, env = "SPACELINK_SERVER_DIR")]
    server_dir: Option<PathBuf>,
    /// The xtask binary (for `server restart`).
    #[arg(long, env = "SPACELINK_XTASK_BIN")]
    xtask: Option<PathBuf>,
    /// Where the report goes.
    #[arg(long, default_value = "target/swarm")]
    out: PathBuf,
    /// Progress lines even on a terminal.
    #[arg(long)]
    plain: bool,
    /// A soak: random faults drawn from a seed instead of the profile's
    /// ladder, and the process's memory and file descriptors judged.
    #[arg(long)]
    soak: bool,
    /// The soak's seed (default: a fresh one, printed first); implies `--soak`.
    #[arg(long)]
    seed: Option<u64>,
}

/// `60s`, `2m`, `1500ms` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let v: f64 = number.parse().map_err(|_| format!("`{s}`: not a duration (say 60s, 2m or 1500ms)"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" | "min" => v * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (s, ms or m)")),
    };
    if !(1.0..=86_400.0).contains(&secs) {
        return Err(format!("`{s}`: between 1 s and a day"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("swarm: no runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(swarm(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("swarm: {e:#}");
            println!("verdict: FAILED (the swarm could not run: {e})");
            ExitCode::from(2)
        }
    }
}

async fn swarm(args: Args) -> anyhow::Result<bool> {
    let (interrupt, interrupted) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nCtrl-C: stopping the faults, checking and writing the report (Ctrl-C again to quit now)");
            let _ = interrupt.send(true);
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    let mut config = SwarmConfig::new(args.server.trim_end_matches('/'));
    config.database = args.database;
    config.bots = args.bots.clamp(1, 200);
    config.profile = args.profile;
    config.duration = args.duration;
    config.server = ServerControl { dir: args.server_dir, xtask: args.xtask };
    config.out_dir = args.out;
    config.live = !args.plain && std::io::stdout().is_terminal();
    if args.soak || args.seed.is_some() {
        let seed = args.seed.unwrap_or_else(spacelink_swarm::soak::fresh_seed);
        println!("soak: seed {seed} (replay: --seed {seed} with the same --bots and --duration)");
        config.soak(seed);
    }
    println!(
        "swarm: {} bots, {}, {:.0} s, server {} (database {}){}",
        config.bots,
        config.soak_seed.map_or_else(|| format!("profile {}", config.profile), |s| format!("soak (seed {s})")),
        config.duration.as_secs_f64(),
        config.server_url,
        config.database,
        if config.server.available() { "" } else { "; no server control: restarts and freezes left out" }
    );
    let outcome = run::run(config, interrupted).await.context("the swarm run")?;
    let r = &outcome.report;
    println!(
        "swarm: {} bots ran {:.0} s; calls: {} actions sent, {} acknowledged, {} retried, {} lost; {} moves; {} reconnects; {} rows synced{}",
        r.bots,
        r.ran_s,
        r.calls.sent,
        r.calls.acknowledged,
        r.calls.retried,
        r.calls.lost,
        r.moves.sent,
        r.recovery.reconnects,
        r.rows_synced,
        r.cpu_share.map(|c| format!("; swarm CPU {:.0} % of a core", c * 100.0)).unwrap_or_default()
    );
    for problem in r.verdict.problems.iter().take(10) {
        println!("  problem: {problem}");
    }
    println!("report: {} (figures: {})", outcome.html.display(), outcome.json.display());
    println!("{}", r.verdict.line());
    Ok(r.verdict.ok)
}
