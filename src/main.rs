//! The `tenantgate` command: parse the command line, load the config, hand over
//! to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Postgres proxy that keeps tenants apart on shared servers.
#[derive(Parser, Debug)]
#[command(name = "tenantgate", version, about)]
struct Cli {
    /// Path to routing.toml.
    #[arg(long, short, global = true, default_value = "routing.toml")]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve (the default).
    Run,
    /// Validate the config, print a summary; exit non-zero listing every error.
    Check,
    /// Print the shard (and schema) that serves TENANT.
    Route {
        /// Tenant id.
        tenant: String,
    },
    /// Start throwaway local shards with sample tenants and serve them.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = tenantgate::demo::DEFAULT_LISTEN)]
        listen: String,
        /// Keep the demo directory on exit.
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // The worker count comes from the config when serving it.
    let command = cli.command.unwrap_or(Command::Run);
    let workers = match &command {
        Command::Run => tenantgate::config::load_file(&cli.config)
            .ok()
            .and_then(|c| c.server.workers),
        _ => None,
    };
    // One worker: a current-thread runtime (no work stealing, no wake-ups
    // between worker threads). More: a work-stealing pool of that size.
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tenantgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::Run => runtime.block_on(serve(cli.config)),
        Command::Check => check(&cli.config),
        Command::Route { tenant } => route(&cli.config, &tenant),
        Command::Demo { listen, keep } => {
            let opts = tenantgate::demo::DemoOptions {
                listen,
                keep,
                ..Default::default()
            };
            match runtime.block_on(tenantgate::demo::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tenantgate demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal, not a log file or a pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

fn load(path: &std::path::Path) -> Result<tenantgate::config::Config, ExitCode> {
    tenantgate::config::load_file(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::FAILURE
    })
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok(config) => {
            print!("{}", tenantgate::config::summary(&config));
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn route(path: &std::path::Path, tenant: &str) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // What the proxy would refuse as a tenant id has no home either.
    if let Err(e) = tenantgate::tenant::validate_tenant_id(tenant, []) {
        eprintln!("tenantgate: {}", e.message);
        return ExitCode::FAILURE;
    }
    match tenantgate::router::Router::new(&config).route(tenant) {
        Ok(r) => {
            match (&r.schema, r.dedicated) {
                (Some(schema), _) => println!("{tenant} -> shard {} schema {schema}", r.shard),
                (None, true) => println!("{tenant} -> shard {} (dedicated)", r.shard),
                (None, false) => println!("{tenant} -> shard {}", r.shard),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tenantgate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: PathBuf) -> ExitCode {
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let proxy = match tenantgate::server::Proxy::bind_with_path(config, Some(path)).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tenantgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let token = proxy.shutdown_token();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown requested: draining");
        token.cancel();
    });
    if let Ok(addr) = proxy.local_addr() {
        tracing::info!(%addr, "tenantgate listening");
    }
    match proxy.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tenantgate: {e}");
            ExitCode::FAILURE
        }
    }
}
