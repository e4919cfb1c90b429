//! `spacelink`: talk to a SpacetimeDB database from the command line, one JSON object per line.
//!
//! ```text
//! spacelink --server http://127.0.0.1:3000 --database guildmaster subscribe "SELECT * FROM player"
//! spacelink --server … --database guildmaster call join '["ada", 1]'
//! spacelink --server … --database guildmaster sql "SELECT * FROM map"
//! spacelink config check spacelink.toml [--profile production]
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use spacelink::connection::Compression;
use spacelink::printer::{AttachConnection, Job, Printer};
use spacelink::{Client, ConnectionConfig, Listeners, ModuleSchema};

#[derive(Debug, Parser)]
#[command(name = "spacelink", version, about = "Talk to a SpacetimeDB database; prints one JSON object per line")]
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Subscribe to queries; print the initial rows and every insert, update and delete until stopped.
    Subscribe {
        /// SQL queries, e.g. "SELECT * FROM player".
        #[arg(required = true)]
        queries: Vec<String>,
    },
    /// Call a reducer; print whether it committed or failed, and how long it took.
    Call {
        /// The reducer's name.
        reducer: String,
        /// Its arguments as a JSON array (or object by parameter name).
        #[arg(default_value = "[]")]
        args: String,
    },
    /// Run a one-off SQL query and print the rows.
    Sql {
        /// The query.
        query: String,
    },
    /// Work with settings files.
    #[command(subcommand)]
    Config(ConfigCommand),
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
    Compression::from_name(s).ok_or_else(|| format!("`{s}` is not none, brotli or gzip"))
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
    let system = actix::System::new();
    match system.block_on(run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            println!("{}", serde_json::json!({ "event": "error", "error": format!("{e:#}") }));
            ExitCode::from(2)
        }
    }
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
    config.validate()?;
    // Bounded and retried on the connection's backoff (a server down at start is waited for).
    let schema = ModuleSchema::fetch_for(&config).await.context("reading the module's schema")?;
    let (job, one_shot) = match args.command {
        Command::Subscribe { queries } => (Job::Subscribe(queries), false),
        Command::Call { reducer, args } => {
            // Check the arguments before connecting: a bad call is never sent.
            schema.encode_reducer_args(&reducer, &args)?;
            (Job::Call { reducer, args }, true)
        }
        Command::Sql { query } => (Job::Sql(query), true),
        Command::Config(_) => anyhow::bail!("config commands run without a connection"),
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let schema = Arc::new(schema);
    let printer = Printer::new(schema.clone(), job, Box::new(std::io::stdout()), done_tx).start();
    let listeners = Listeners {
        messages: vec![printer.clone().recipient()],
        states: vec![printer.clone().recipient()],
        identities: vec![],
        resilience: vec![printer.clone().recipient()],
    };
    let app = Client::builder()
        .with_connection_config(config)
        .with_schema(schema.clone())
        .with_listeners(listeners)
        .build_async()
        .await?;
    printer.do_send(AttachConnection { handle: app.connection().clone(), reducers: app.reducer_client().clone() });
    let code = if one_shot {
        match tokio::time::timeout(Duration::from_secs(args.timeout), done_rx).await {
            Ok(Ok(code)) => code,
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
        tokio::select! {
            _ = tokio::signal::ctrl_c() => 0,
            code = done_rx => code.unwrap_or(2),
        }
    };
    app.shutdown();
    // Give the close frame a moment to leave.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(u8::try_from(code).unwrap_or(2))
}
