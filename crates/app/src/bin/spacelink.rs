//! `spacelink`: talk to a SpacetimeDB database from the command line, one JSON object per line.
//!
//! ```text
//! spacelink --server http://127.0.0.1:3000 --database guildmaster subscribe "SELECT * FROM player"
//! spacelink --server … --database guildmaster call join '["ada", 1]'
//! spacelink --server … --database guildmaster sql "SELECT * FROM map"
//! spacelink config check spacelink.toml [--profile production]
//! spacelink --server … --database guildmaster generate --out src/bindings.rs --sequenced move_player=seq
//! spacelink generate --schema schema.json --out src/bindings/
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use spacelink::connection::Compression;
use spacelink::printer::{AttachConnection, Exit, Job, Printer, StopPrinting};
use spacelink::sync::SyncListeners;
use spacelink::{Client, ConnectionConfig, Listeners, ModuleSchema};

#[derive(Debug, Parser)]
#[command(
    name = "spacelink",
    version,
    about = "Talk to a SpacetimeDB database; prints one JSON object per line",
    long_about = "Talk to a SpacetimeDB database; prints one JSON object per line.\n\n\
        Values are SATS-JSON, as the server's HTTP API writes typed values: rows as objects by column name; \
        u128/i128 as exact numbers, u256/i256 as \"0x…\" strings; bytes as hex strings; enums as \
        {\"Variant\": payload} (a plain variant {\"Red\": {}}); Option as {\"some\": v} or {\"none\": {}}; \
        Identity as {\"__identity__\": \"0x…\"}, Timestamp as {\"__timestamp_micros_since_unix_epoch__\": n}, \
        TimeDuration as {\"__time_duration_micros__\": n}; floats in their shortest form, and the non-finite \
        ones as the strings \"NaN\", \"inf\", \"-inf\". What `sql` and `subscribe` print, `call` accepts."
)]
struct Args {
    /// The server's base URL.
    #[arg(long, env = "SPACELINK_SERVER_URL", default_value = "http://127.0.0.1:3000")]
    server: String,
    /// The database name or identity.
    #[arg(long, env = "SPACELINK_DATABASE")]
    database: Option<String>,
    /// A token to connect with (default: anonymous; the server issues one).
    #[arg(long, env = "SPACELINK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How the server compresses what it sends: none, brotli or gzip.
    #[arg(long, default_value = "brotli", value_parser = parse_compression)]
    compression: Compression,
    /// Ask for light transaction updates.
    #[arg(long)]
    light: bool,
    /// A PEM file of root certificates to trust besides the platform's (a
    /// private deployment's certificate authority); may be repeated.
    #[arg(long = "extra-root-certificate", value_name = "PEM")]
    extra_root_certificates: Vec<std::path::PathBuf>,
    /// How long `call` and `sql` wait for their answer, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Attempts before a first connection (and the schema fetch) gives up; once
    /// connected, a lost session is retried without limit.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Read the module's schema from this file (the JSON of
    /// `GET /v1/database/<db>/schema?version=9`) instead of fetching it.
    #[arg(long)]
    schema_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Subscribe to queries; print the initial rows and every insert, update and delete until stopped.
    ///
    /// Runs on the client's merged cache: a row that several queries hold
    /// prints once, an update prints as one `update` (`old`, `new`), and after
    /// a reconnect only what really changed prints (phase `reconciled`). Drops
    /// and server restarts are ridden out; the command ends on Ctrl-C or
    /// SIGTERM (exit 0), when the server refuses the queries for good (1), or
    /// when the connection fails (3). Its last line is
    /// `{"event":"exit","code":…,"reason":…}`.
    Subscribe {
        /// SQL queries, e.g. "SELECT * FROM player".
        #[arg(required = true)]
        queries: Vec<String>,
    },
    /// Call a reducer; print whether it committed or failed, and how long it took.
    ///
    /// The arguments are SATS-JSON, as `sql` and `subscribe` print values: a
    /// row or column printed by them is accepted here for a parameter of that
    /// type (also the server's own `/sql` spellings: products as arrays, sums
    /// as `[tag, payload]`).
    Call {
        /// The reducer's name.
        reducer: String,
        /// Its arguments as a JSON array (or object by parameter name).
        #[arg(default_value = "[]")]
        args: String,
    },
    /// Run a one-off SQL query and print the rows.
    ///
    /// Rows print as SATS-JSON objects by column name (`call` accepts them
    /// back). A query on a zero-width table (rows of no bytes) is refused
    /// before it is sent: the 1.3 server cannot answer it.
    Sql {
        /// The query.
        query: String,
    },
    /// Work with settings files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write typed Rust bindings for the module's tables and reducers (they need only the `spacelink` crate).
    Generate {
        /// Read the schema from this file (the JSON of `GET /v1/database/<db>/schema?version=9`)
        /// instead of fetching it from --server/--database.
        #[arg(long)]
        schema: Option<std::path::PathBuf>,
        /// Where to write: a `.rs` file, or a directory (then `<dir>/mod.rs`).
        #[arg(long)]
        out: std::path::PathBuf,
        /// A sequenced reducer and its `u32` sequence parameter, `reducer=param`
        /// (repeatable): its method calls `call_sequenced` with that parameter.
        #[arg(long = "sequenced", value_name = "REDUCER=PARAM")]
        sequenced: Vec<String>,
        /// Leave the output as generated, without running `rustfmt` on it.
        #[arg(long)]
        no_rustfmt: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective settings of FILE (defaults < FILE < SPACELINK_…__… variables), or its errors.
    Check {
        /// The TOML file.
        file: std::path::PathBuf,
        /// The profile: default, local, staging or production.
        #[arg(long, env = "SPACELINK_PROFILE", default_value = "default")]
        profile: String,
    },
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    Compression::from_name(s).ok_or_else(|| format!("`{s}` is not auto, none, brotli or gzip"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    if let Command::Config(ConfigCommand::Check { file, profile }) = &args.command {
        let loader = spacelink::settings::SettingsLoader::new().file(file).profile(profile.as_str());
        return match loader.load() {
            Ok(settings) => {
                println!("# effective settings, profile `{profile}`\n{}", settings.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(2)
            }
        };
    }
    if let Command::Generate { schema, out, sequenced, no_rustfmt } = &args.command {
        return match generate(&args, schema.as_deref(), out, sequenced, *no_rustfmt) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spacelink generate: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let system = actix::System::new();
    match system.block_on(run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            println!("{}", serde_json::json!({ "event": "error", "error": format!("{e:#}") }));
            ExitCode::from(2)
        }
    }
}

/// `spacelink generate`: the schema from a file or the server, the bindings to `out`.
fn generate(
    args: &Args,
    schema_file: Option<&std::path::Path>,
    out: &std::path::Path,
    sequenced: &[String],
    no_rustfmt: bool,
) -> anyhow::Result<()> {
    let mut options = spacelink_codegen::GenerateOptions::default();
    for pair in sequenced {
        options.add_sequenced(pair)?;
    }
    let (schema, from) = match schema_file {
        Some(file) => {
            let json = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            (
                ModuleSchema::from_json(&json).with_context(|| format!("reading {}", file.display()))?,
                file.display().to_string(),
            )
        }
        None => {
            let database = args.database.clone().context("--schema FILE, or --database (or SPACELINK_DATABASE)")?;
            let mut config = ConnectionConfig::new(&args.server, &database);
            config.token = args.token.clone();
            config.validate()?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let schema = runtime.block_on(ModuleSchema::fetch_for(&config)).context("fetching the module's schema")?;
            (schema, format!("{} database {database}", args.server))
        }
    };
    let mut source = spacelink_codegen::generate_for(&schema, &options)?;
    if !no_rustfmt {
        match spacelink_codegen::rustfmt(&source, None) {
            Ok(formatted) => source = formatted,
            Err(e) => eprintln!("spacelink generate: left unformatted ({e})"),
        }
    }
    let path = if out.is_dir() || out.extension().is_none() {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        out.join("mod.rs")
    } else {
        out.to_path_buf()
    };
    std::fs::write(&path, &source).with_context(|| format!("writing {}", path.display()))?;
    let raw = schema.raw();
    let tables = raw.tables.len();
    let reducers = raw.reducers.iter().filter(|r| r.lifecycle.is_none()).count();
    println!(
        "{}",
        serde_json::json!({
            "event": "generated",
            "file": path.display().to_string(),
            "from": from,
            "tables": tables,
            "reducers": reducers,
            "types": raw.types.len(),
            "bytes": source.len(),
        })
    );
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<u8> {
    let database = args.database.clone().context("--database (or SPACELINK_DATABASE) is required")?;
    let mut config = ConnectionConfig::new(&args.server, &database);
    config.token = args.token.clone();
    config.compression = args.compression;
    config.light_mode = args.light;
    for path in &args.extra_root_certificates {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("--extra-root-certificate {}", path.display()))?;
        config.tls.extra_root_certificates.push(pem);
    }
    if let Some(attempts) = args.max_attempts {
        config.retry.max_attempts = attempts;
    }
    config.validate()?;
    let schema = match &args.schema_file {
        Some(path) => {
            let json = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            ModuleSchema::from_json(&json).with_context(|| format!("reading the schema in {}", path.display()))?
        }
        // Bounded and retried on the connection's backoff (a server down at start is waited for).
        None => ModuleSchema::fetch_for(&config).await.context("reading the module's schema")?,
    };
    let mut subscription = None;
    let (job, one_shot) = match args.command {
        Command::Subscribe { queries } => {
            for table in queries.iter().flat_map(|q| schema.zero_width_tables_in(q)) {
                println!(
                    "{}",
                    serde_json::json!({
                        "event": "warning", "table": table,
                        "warning": "the table's rows have no bytes (zero-width): their number cannot be counted, \
                                    and a one-off query on it is refused",
                    })
                );
            }
            subscription = Some(queries.clone());
            (Job::Subscribe(queries), false)
        }
        Command::Call { reducer, args } => {
            // Check the arguments before connecting: a bad call is never sent.
            schema.encode_reducer_args(&reducer, &args)?;
            (Job::Call { reducer, args }, true)
        }
        Command::Sql { query } => {
            // A query the server cannot answer (a zero-width table) is never sent.
            schema.check_one_off_query(&query)?;
            (Job::Sql(query), true)
        }
        Command::Config(_) | Command::Generate { .. } => anyhow::bail!("this command runs without a connection"),
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let schema = Arc::new(schema);
    let printer = Printer::new(schema.clone(), job, Box::new(std::io::stdout()), done_tx).start();
    let listeners = Listeners {
        messages: vec![printer.clone().recipient()],
        states: vec![printer.clone().recipient()],
        resilience: vec![printer.clone().recipient()],
        ..Default::default()
    };
    let mut builder =
        Client::builder().with_connection_config(config).with_schema(schema.clone()).with_listeners(listeners);
    if let Some(queries) = &subscription {
        // One query set on the sync actor, kept across reconnects.
        builder = builder.subscribe(queries).with_sync_listeners(SyncListeners {
            changes: vec![printer.clone().recipient()],
            subscriptions: vec![printer.clone().recipient()],
        });
    }
    let mut app = builder.build_async().await?;
    printer.do_send(AttachConnection { handle: app.connection().clone(), reducers: app.reducer_client().clone() });
    let mut exit = None;
    let code = if one_shot {
        match tokio::time::timeout(Duration::from_secs(args.timeout), done_rx).await {
            Ok(Ok(exit)) => exit.code,
            Ok(Err(_)) => 2,
            Err(_) => {
                println!(
                    "{}",
                    serde_json::json!({ "event": "error", "error": format!("no answer within {} s", args.timeout) })
                );
                4
            }
        }
    } else {
        exit = Some(subscribe_until_stopped(&mut app, done_rx).await?);
        0
    };
    // Nothing prints after the last line.
    let _ = printer.send(StopPrinting).await;
    app.shutdown();
    // Give the close frame a moment to leave.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let code = match exit {
        Some(exit) => {
            println!("{}", serde_json::json!({ "event": "exit", "code": exit.code, "reason": exit.reason }));
            exit.code
        }
        None => code,
    };
    Ok(u8::try_from(code).unwrap_or(2))
}

/// Runs a subscription until Ctrl-C or SIGTERM (exit 0) or until the printer
/// says it ended (the queries refused, the connection failed).
async fn subscribe_until_stopped(app: &mut Client, done: tokio::sync::oneshot::Receiver<Exit>) -> anyhow::Result<Exit> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    // The client queues its events for a game's frame loop; this command has
    // none, so drain the queue (the printer already printed what matters).
    let mut drain = tokio::time::interval(Duration::from_millis(200));
    tokio::pin!(done);
    loop {
        tokio::select! {
            _ = interrupt.recv() => return Ok(Exit { code: 0, reason: "interrupted (SIGINT)".into() }),
            _ = terminate.recv() => return Ok(Exit { code: 0, reason: "terminated (SIGTERM)".into() }),
            exit = &mut done => {
                return Ok(exit.unwrap_or(Exit { code: 2, reason: "the printer stopped".into() }));
            }
            _ = drain.tick() => {
                app.frame_tick();
            }
        }
    }
}
