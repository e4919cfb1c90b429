//! One swarm run from start to verdict: the fault proxy in front of the
//! server, the bots through it, the schedule carried out while the view
//! watches, then the faults stop, the bots catch up, the world holds still
//! (the NPC tick paused) and the verdict is checked against the server; the
//! report is written whatever happened (Ctrl-C included).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use spacelink::ModuleSchema;
use spacelink_faultproxy::FaultProxy;
use tokio::sync::watch;

use crate::bot::{self, Bot, BotConfig, Mode};
use crate::faults::{self, FaultLog, ServerControl};
use crate::game;
use crate::profile::{Profile, Schedule};
use crate::report::{Report, RunFigures};
use crate::resources::{self, ResourceSample};
use crate::soak;
use crate::stats::{lock, percentile, BotStats, SharedStats, SharedTape, Tape, Timeline, Totals};
use crate::verdict::{self, Oracle, Verdict};
use crate::view::{Snapshot, View};

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// How many bots (default 20).
    pub bots: usize,
    /// The worst profile the schedule reaches (default `chaos`).
    pub profile: Profile,
    /// How long the schedule runs (default 60 s; the catch-up and the
    /// verdict come after it).
    pub duration: Duration,
    /// The server (loopback only).
    pub server_url: String,
    /// The database.
    pub database: String,
    /// The server's process, for restarts and freezes.
    pub server: ServerControl,
    /// Where the report goes.
    pub out_dir: PathBuf,
    /// A live view (else progress lines).
    pub live: bool,
    /// One move per bot per this period (default 100 ms).
    pub input_every: Duration,
    /// One action per bot per this period (default 500 ms).
    pub act_every: Duration,
    /// Longest wait for the bots to catch up after the faults (default 20 s).
    pub settle_within: Duration,
    /// A soak: random faults drawn from this seed ([`crate::soak`]) instead
    /// of the profile's ladder, and the process's memory and file
    /// descriptors judged ([`crate::resources`]). `None`: a demo run.
    pub soak_seed: Option<u64>,
}

impl SwarmConfig {
    /// The defaults, against `server_url`.
    pub fn new(server_url: impl Into<String>) -> Self {
        SwarmConfig {
            bots: 20,
            profile: Profile::Chaos,
            duration: Duration::from_secs(60),
            server_url: server_url.into(),
            database: "guildmaster".into(),
            server: ServerControl::default(),
            out_dir: PathBuf::from("target/swarm"),
            live: false,
            input_every: Duration::from_millis(100),
            act_every: Duration::from_millis(500),
            settle_within: Duration::from_secs(20),
            soak_seed: None,
        }
    }
}

impl SwarmConfig {
    /// Makes this run a soak on `seed`: [`soak::schedule`]'s faults, the
    /// resources judged, the soak's gentler pace ([`soak::INPUT_EVERY`],
    /// [`soak::ACT_EVERY`]) and a longer catch-up ([`soak::SETTLE_WITHIN`]).
    pub fn soak(&mut self, seed: u64) {
        self.soak_seed = Some(seed);
        self.input_every = soak::INPUT_EVERY;
        self.act_every = soak::ACT_EVERY;
        self.settle_within = soak::SETTLE_WITHIN;
    }
}

/// What a run leaves.
#[derive(Debug)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// The HTML page.
    pub html: PathBuf,
    /// The JSON figures.
    pub json: PathBuf,
}

/// The loopback address of `url` (`http://127.0.0.1:PORT`): the swarm talks to nothing else.
pub fn loopback(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// servers"))?;
    let host_port = rest.split('/').next().unwrap_or(rest).replace("localhost", "127.0.0.1");
    let addr: SocketAddr = host_port.parse().with_context(|| format!("{url}: not HOST:PORT"))?;
    if !addr.ip().is_loopback() {
        bail!("{url}: the swarm only talks to a server on this machine (127.0.0.1)");
    }
    Ok(addr)
}

/// Reads the bots' figures.
fn snapshot_bots(stats: &[SharedStats]) -> Vec<BotStats> {
    stats.iter().map(|s| lock(s).clone()).collect()
}

/// The CPU this process used so far, in seconds (user + system).
fn cpu_seconds() -> Option<f64> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(usage.user_time()) + secs(usage.system_time()))
}

/// Runs the swarm; `interrupted` turns true on Ctrl-C.
pub async fn run(config: SwarmConfig, mut interrupted: watch::Receiver<bool>) -> anyhow::Result<Outcome> {
    let upstream = loopback(&config.server_url)?;
    let schema = Arc::new(
        ModuleSchema::fetch(&config.server_url, &config.database, None)
            .await
            .with_context(|| format!("reading the schema of {} on {}", config.database, config.server_url))?,
    );
    if schema.reducer(game::ACT_REDUCER).is_none() {
        bail!("the module has no `act` reducer: publish the current modules/guildmaster (`cargo xtask module publish --clear`)");
    }
    let url = config.server_url.clone();
    let db = config.database.clone();
    let oracle = tokio::task::spawn_blocking(move || Oracle::new(&url, &db)).await??;
    let proxy = FaultProxy::start(upstream).await.context("starting the fault proxy")?;
    let schedule = match config.soak_seed {
        Some(seed) => soak::schedule(seed, config.duration, config.server.available()),
        None => Schedule::new(config.profile, config.duration, config.server.available()),
    };
    let profile = if config.soak_seed.is_some() { "soak".to_string() } else { config.profile.to_string() };
    let tape: SharedTape = Arc::new(Mutex::new(Tape::default()));
    let fault_log: FaultLog = Arc::new(Mutex::new(Vec::new()));
    let cpu_start = cpu_seconds();
    let started = Instant::now();
    let (stop_faults, faults_stopped) = watch::channel(false);
    let faults_task = tokio::spawn(faults::run(
        schedule.clone(),
        proxy.clone(),
        config.server.clone(),
        started,
        fault_log.clone(),
        faults_stopped,
    ));

    // The bots, a few milliseconds apart.
    let stats: Vec<SharedStats> = (0..config.bots).map(|_| Arc::new(Mutex::new(BotStats::default()))).collect();
    let (mode_tx, mode_rx) = watch::channel(Mode::Play);
    let mut tasks = Vec::new();
    for (i, shared) in stats.iter().enumerate() {
        let bot_config = BotConfig {
            name: format!("bot-{:02}", i + 1),
            map_id: game::MAPS[i % game::MAPS.len()].0,
            url: proxy.url(),
            database: config.database.clone(),
            schema: schema.clone(),
            seed: (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
            input_every: config.input_every,
            act_every: config.act_every,
        };
        let (shared, tape) = (shared.clone(), tape.clone());
        let name = bot_config.name.clone();
        match tokio::task::spawn_blocking(move || Bot::start(bot_config, shared, tape, started)).await? {
            Ok(bot) => tasks.push(tokio::spawn(bot::drive(bot, mode_rx.clone()))),
            Err(e) => {
                let mut s = lock(&stats[i]);
                s.name = name;
                s.state = crate::stats::BotState::Failed;
                tracing::warn!(error = %e, "a bot could not start");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut view = View::new(config.live);
    let mut timeline = Timeline::default();
    let mut last_p50 = None;
    let mut next_sample = started + Duration::from_secs(1);
    let show = |view: &mut View, stage: &str, p50: Option<f64>| {
        let elapsed = started.elapsed();
        let phase = schedule.phase_at(elapsed).map_or("calm".to_string(), |p| p.name.clone());
        view.show(&Snapshot {
            elapsed,
            duration: schedule.duration(),
            profile: profile.clone(),
            phase,
            fault: schedule.fault_at(elapsed).map(|f| f.to_string()),
            stage: stage.to_string(),
            bots: snapshot_bots(&stats),
            p50_ms: p50,
        });
    };
    let sample = |timeline: &mut Timeline| {
        let elapsed = started.elapsed();
        let round_trips = std::mem::take(&mut lock(&tape).round_trips);
        let phase = schedule.phase_at(elapsed).map_or("calm".to_string(), |p| p.name.clone());
        let fault = schedule.fault_at(elapsed).map(|f| f.to_string());
        timeline.sample(elapsed, &phase, fault, Totals::of(&snapshot_bots(&stats)), &round_trips);
        percentile(&round_trips, 0.5)
    };

    // The process's own memory and descriptors, a reading every few seconds.
    let every = (schedule.duration() / 120).clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut readings: Vec<ResourceSample> = Vec::new();
    let mut next_reading = started;
    let read_resources = |stats: &[SharedStats]| {
        let (rss_kib, fds) = resources::read_self().unwrap_or_default();
        let committed = snapshot_bots(stats).iter().map(|b| b.calls.committed).sum();
        ResourceSample { t: started.elapsed().as_secs_f64(), rss_kib, fds, committed }
    };

    // The schedule.
    let end = started + schedule.duration();
    let mut was_interrupted = *interrupted.borrow();
    while Instant::now() < end && !was_interrupted {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = interrupted.wait_for(|i| *i) => {}
        }
        was_interrupted = *interrupted.borrow();
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            last_p50 = sample(&mut timeline).or(last_p50);
        }
        if Instant::now() >= next_reading {
            next_reading += every;
            readings.push(read_resources(&stats));
        }
        show(&mut view, "running", last_p50);
    }

    // The faults stop; the bots catch up.
    let _ = stop_faults.send(true);
    let _ = faults_task.await;
    let _ = mode_tx.send(Mode::Settle);
    let settle_end = Instant::now()
        + if was_interrupted { config.settle_within.min(Duration::from_secs(10)) } else { config.settle_within };
    let oracle_for_tick = oracle.clone();
    let paused_tick = tokio::task::spawn_blocking(move || pause_npc_tick(&oracle_for_tick)).await.ok().flatten();
    // Give the last NPC moves and the bots' last answers a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let bots = snapshot_bots(&stats);
        let ready = bots.iter().all(|b| b.caught_up || b.state == crate::stats::BotState::Failed);
        if ready || Instant::now() >= settle_end {
            break;
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            last_p50 = sample(&mut timeline).or(last_p50);
        }
        show(&mut view, "settling", last_p50);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last_p50 = sample(&mut timeline).or(last_p50);
    show(&mut view, "checking", last_p50);
    // The last reading: the faults over, the bots caught up and still connected.
    let end_reading = read_resources(&stats);

    // The verdict, with the bots still connected but quiet.
    let _ = mode_tx.send(Mode::Stop);
    let mut bots = Vec::new();
    for task in tasks {
        if let Ok(bot) = task.await {
            bots.push(bot);
        }
    }
    let ran_s = started.elapsed().as_secs_f64();
    let (oracle_v, schema_v) = (oracle.clone(), schema.clone());
    let (bots, verdict) = tokio::task::spawn_blocking(move || {
        let v = verdict::check(&oracle_v, &schema_v, &bots);
        (bots, v)
    })
    .await?;
    let mut verdict: Verdict = verdict;
    if bots.len() < config.bots {
        verdict.ok = false;
        verdict.problems.insert(0, format!("only {} of {} bots started", bots.len(), config.bots));
    }
    if config.soak_seed.is_some() {
        let calm_start = schedule.phases.first().map_or(0.0, |p| p.to.as_secs_f64());
        verdict.add_resources(resources::judge(&readings, calm_start, end_reading, config.bots));
    }
    readings.push(end_reading);
    if let Some(ms) = paused_tick {
        let o = oracle.clone();
        let _ = tokio::task::spawn_blocking(move || o.call("set_npc_tick", &format!("[{ms}]"))).await;
    }
    for bot in &bots {
        bot.shutdown();
    }
    proxy.stop();
    view.close();

    let cpu_share = cpu_start.zip(cpu_seconds()).map(|(a, b)| (b - a) / ran_s.max(1e-3));
    let tape = std::mem::take(&mut *lock(&tape));
    let report = Report::new(RunFigures {
        bots: config.bots,
        profile,
        seed: config.soak_seed,
        schedule: &schedule,
        ran_s,
        interrupted: was_interrupted,
        faults: lock(&fault_log).clone(),
        timeline: timeline.samples,
        round_trips: &tape.all_round_trips,
        recoveries: tape.recoveries,
        per_bot: snapshot_bots(&stats),
        cpu_share,
        resources: readings,
        verdict,
    });
    std::fs::create_dir_all(&config.out_dir).with_context(|| format!("creating {}", config.out_dir.display()))?;
    let dir = config.out_dir.canonicalize().unwrap_or(config.out_dir.clone());
    let html = dir.join("swarm-report.html");
    let json = dir.join("swarm-report.json");
    std::fs::write(&html, report.html()).with_context(|| format!("writing {}", html.display()))?;
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    // Let the clients close their sessions.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Outcome { report, html, json })
}

/// Runs the swarm to its planned end on a runtime of its own (two workers,
/// no Ctrl-C): what the end-to-end tests do.
pub fn run_to_end(config: SwarmConfig) -> anyhow::Result<Outcome> {
    let (_interrupt, interrupted) = watch::channel(false);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(config, interrupted))
}

/// Pauses the NPC tick so that the world holds still for the verdict;
/// returns the interval to restore (`None`: it was not running, or the
/// server would not say).
fn pause_npc_tick(oracle: &Oracle) -> Option<u64> {
    // config: (id, npc_tick_ms, max_step).
    let rows = oracle.sql_json("SELECT * FROM config").ok()?;
    let ms = rows.first()?.get(1)?.as_u64()?;
    if ms == 0 {
        return None;
    }
    oracle.call("set_npc_tick", "[0]").ok()?;
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_are_accepted() {
        assert_eq!(loopback("http://127.0.0.1:3000").expect("loopback"), "127.0.0.1:3000".parse().expect("addr"));
        assert!(loopback("http://localhost:3000/").is_ok());
        assert!(loopback("http://10.0.0.1:3000").is_err());
        assert!(loopback("https://127.0.0.1:3000").is_err());
    }
}
