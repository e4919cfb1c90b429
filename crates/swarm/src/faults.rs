//! Carries a [`Schedule`] out: the phases' links and the loss bursts,
//! latency spikes, blackholes and cuts on the fault proxy, the restarts and
//! freezes on the server's process (found through the server directory
//! `cargo xtask server` keeps, and restarted with `xtask server restart`). A
//! frozen server is always thawed, and a blackhole ended with its connections
//! reset, whatever ends the run.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use spacelink_faultproxy::FaultProxy;
use tokio::sync::watch;

use crate::profile::{Fault, Link, Schedule};
use crate::stats::lock;

/// The server's process, when the swarm may touch it.
#[derive(Debug, Clone, Default)]
pub struct ServerControl {
    /// The directory of `cargo xtask server` (its `state.json` names the pid).
    pub dir: Option<PathBuf>,
    /// The xtask binary (for `server restart`).
    pub xtask: Option<PathBuf>,
}

impl ServerControl {
    /// Whether restarts and freezes can be made.
    pub fn available(&self) -> bool {
        self.dir.is_some() && self.xtask.is_some()
    }

    fn pid(&self) -> Option<Pid> {
        let dir = self.dir.as_ref()?;
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).ok()?).ok()?;
        Some(Pid::from_raw(i32::try_from(state["pid"].as_u64()?).ok()?))
    }

    /// `xtask server restart --dir DIR` (blocking: run it off the runtime's threads).
    fn restart(&self) -> Result<(), String> {
        let (Some(dir), Some(xtask)) = (&self.dir, &self.xtask) else { return Err("no server control".into()) };
        // In a process group of its own: a Ctrl-C at the terminal must not
        // stop it between stopping the server and starting it again.
        let out = Command::new(xtask)
            .process_group(0)
            .args(["server", "restart", "--dir"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running {}: {e}", xtask.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("failed").to_string())
        }
    }
}

/// A frozen server: thawed when dropped.
#[derive(Debug)]
struct Frozen(Pid);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// What happened to the faults, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultRecord {
    /// Seconds since the start.
    pub t: f64,
    /// What.
    pub what: String,
    /// Whether it could be made.
    pub ok: bool,
    /// Why not, or how long it took.
    pub note: String,
}

/// The log of faults made, shared with the view.
pub type FaultLog = Arc<Mutex<Vec<FaultRecord>>>;

/// The delay of a loss burst: 0.4 to 1.4 s, order kept (a TCP retransmission stall).
const BURST_LATENCY: Duration = Duration::from_millis(900);
/// Its spread.
const BURST_JITTER: Duration = Duration::from_millis(500);

fn apply_link(proxy: &FaultProxy, link: Link) {
    proxy.set_latency(link.latency, link.jitter);
    proxy.set_bandwidth(link.bandwidth);
}

/// Delays every byte by `latency ± jitter` for `for_`, then puts `link`
/// back (unless something else changed the latency meanwhile).
fn spike(proxy: &FaultProxy, latency: Duration, jitter: Duration, for_: Duration, link: Link) {
    proxy.set_latency(latency, jitter);
    let proxy = proxy.clone();
    tokio::spawn(async move {
        tokio::time::sleep(for_).await;
        if proxy.faults().latency == latency {
            apply_link(&proxy, link);
        }
    });
}

/// Runs the schedule from `started` until its end or until `stop` turns true;
/// the proxy is clean and the server thawed when it returns.
pub async fn run(
    schedule: Schedule,
    proxy: FaultProxy,
    server: ServerControl,
    started: Instant,
    log: FaultLog,
    mut stop: watch::Receiver<bool>,
) {
    let record = |what: String, ok: bool, note: String| {
        lock(&log).push(FaultRecord { t: started.elapsed().as_secs_f64(), what, ok, note });
    };
    // Every moment something changes: phase starts and fault starts.
    let mut moments: Vec<(Duration, Option<usize>, Option<usize>)> = schedule
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| (p.from, Some(i), None))
        .chain(schedule.faults.iter().enumerate().map(|(i, f)| (f.at, None, Some(i))))
        .collect();
    moments.sort_by_key(|m| m.0);
    for (at, phase, fault) in moments {
        tokio::select! {
            () = tokio::time::sleep_until((started + at).into()) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if let Some(i) = phase {
            let p = &schedule.phases[i];
            apply_link(&proxy, p.profile.link());
            record(format!("phase {}", p.name), true, p.profile.link().to_string());
        }
        let Some(i) = fault else { continue };
        let fault = schedule.faults[i].fault;
        let link = schedule.phase_at(at).map_or(crate::profile::Profile::Good.link(), |p| p.profile.link());
        match fault {
            Fault::Cut => {
                proxy.cut_all();
                record(fault.to_string(), true, format!("{} connections", proxy.live()));
            }
            Fault::LossBurst { for_ } => {
                spike(&proxy, BURST_LATENCY, BURST_JITTER, for_, link);
                record(fault.to_string(), true, String::new());
            }
            Fault::LatencySpike { latency, for_ } => {
                spike(&proxy, latency, latency / 10, for_, link);
                record(fault.to_string(), true, String::new());
            }
            Fault::Blackhole { for_ } => {
                proxy.set_blackhole(true);
                record(fault.to_string(), true, format!("{} connections", proxy.live()));
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(for_).await;
                    end_blackhole(&proxy).await;
                });
            }
            Fault::ServerRestart => {
                let server = server.clone();
                let began = Instant::now();
                let result =
                    tokio::task::spawn_blocking(move || server.restart()).await.unwrap_or(Err("panicked".into()));
                let took = format!("back after {:.1} s", began.elapsed().as_secs_f64());
                match result {
                    Ok(()) => record(fault.to_string(), true, took),
                    Err(e) => record(fault.to_string(), false, e),
                }
            }
            Fault::ServerFreeze { for_ } => match server.pid() {
                Some(pid) if kill(pid, Signal::SIGSTOP).is_ok() => {
                    let frozen = Frozen(pid);
                    record(fault.to_string(), true, format!("pid {pid}"));
                    tokio::select! {
                        () = tokio::time::sleep(for_) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    drop(frozen);
                }
                _ => record(fault.to_string(), false, "the server's pid is unknown".into()),
            },
        }
    }
    if proxy.faults().blackhole {
        end_blackhole(&proxy).await;
    }
    proxy.heal();
    proxy.set_refuse(false);
}

/// Ends a blackhole the way TCP would: the connections that lived through
/// it are reset, then new bytes flow again. (Forwarding again on the same
/// connections would hand the peers a stream with a hole in it, which TCP
/// never does: it retransmits, or the connection dies.)
async fn end_blackhole(proxy: &FaultProxy) {
    proxy.cut_all();
    // The cut happens when the connection tasks next run.
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.set_blackhole(false);
}
