//! `faultproxy --upstream HOST:PORT [--bandwidth BYTES_PER_SEC] [--latency-ms MS]`:
//! the fault proxy as a process of its own, for measurements that must not
//! count the proxy's work as the client's (`cargo xtask bench --scenario
//! compression` puts the clients behind a bandwidth cap with it).
//!
//! Prints one line, `{"url":"http://127.0.0.1:PORT"}`, once it listens, and
//! forwards until its standard input closes (the parent going away ends it).

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use spacelink_faultproxy::FaultProxy;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultproxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let number = |name: &str| -> Result<Option<u64>, String> {
        value(name).map(|v| v.parse::<u64>().map_err(|e| format!("{name} {v}: {e}"))).transpose()
    };
    let upstream: SocketAddr = value("--upstream")
        .ok_or("--upstream HOST:PORT is required")?
        .parse()
        .map_err(|e| format!("--upstream: {e}"))?;
    let bandwidth = number("--bandwidth")?;
    let latency = number("--latency-ms")?.map(Duration::from_millis);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let proxy = FaultProxy::start(upstream).await.map_err(|e| format!("cannot listen: {e}"))?;
        proxy.set_bandwidth(bandwidth);
        if let Some(latency) = latency {
            proxy.set_latency(latency, Duration::ZERO);
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{{\"url\":\"{}\"}}", proxy.url()).and_then(|()| out.flush()).map_err(|e| e.to_string())?;
        drop(out);
        // Until stdin closes: a blocking read on a thread of its own.
        tokio::task::spawn_blocking(|| for _ in std::io::stdin().lock().lines() {}).await.map_err(|e| e.to_string())?;
        proxy.stop();
        Ok(())
    })
}
