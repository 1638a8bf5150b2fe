//! clap subcommands: serve, demo-server, token, policy, audit.
//!
//! Every error ends the process with one clear line on stderr and a non-zero exit code.

pub use crate::policy_cli::PolicyCommand;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH};

#[derive(Parser, Debug)]
#[command(
    name = "toolgate",
    version,
    about = "A security proxy for AI agents' MCP tool calls"
)]
pub struct Cli {
    /// The configuration file (TOML); environment variables override it.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy.
    Serve,
    /// A small MCP server over stdio whose tools act only on a sandbox folder (used by the default config).
    DemoServer {
        /// The folder the file tools act in.
        #[arg(long, default_value = "./sandbox")]
        sandbox: PathBuf,
    },
    /// Print an HS256 agent token signed with the configured dev secret.
    Token(TokenArgs),
    /// Test and evaluate Rego policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Verify and export the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The agent id (`sub`).
    #[arg(long)]
    pub sub: String,
    #[arg(long)]
    pub tenant: Option<String>,
    /// A role; repeat for several.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Lifetime: 90, 45s, 30m, 1h, 2d.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit 1 if it is broken.
    Verify {
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        /// A signed checkpoint file kept outside the database (e.g. `<chain>-latest.json` of
        /// audit.checkpoint_dir): the chain must reach it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Stream an export of the audit log.
    Export {
        #[arg(long, value_parser = ["csv", "json", "ndjson"])]
        format: String,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        /// Output file (default: stdout).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Also write a manifest (SHA-256 of the export, newest signed checkpoints) to this file.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("toolgate: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `error: cause: cause` on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // The one place the process environment is read; everything after works from the typed Config.
    let env: HashMap<String, String> = std::env::vars().collect();
    let load = || Config::load(&cli.config, &env);
    match cli.command {
        Command::DemoServer { sandbox } => {
            crate::demo_server::run(&sandbox)
                .with_context(|| format!("demo server on {}", sandbox.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(args) => {
            let config = load()?;
            let ttl =
                crate::auth::parse_ttl(&args.ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            let token = crate::auth::mint_hs256(
                &config.auth,
                &args.sub,
                args.tenant.as_deref(),
                &args.roles,
                ttl,
            )?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(cmd) => crate::policy_cli::run(cmd, load),
        Command::Serve => {
            let config = load()?;
            // The one outbound client: the OTLP exporter and the proxy (upstreams, checkpoint sink) share it.
            let client = crate::outbound::client();
            let tracing = crate::telemetry::traces::install(
                &crate::telemetry::logs::LogSettings {
                    debug: config.telemetry.debug,
                    filter: config.telemetry.log.clone(),
                },
                &config.telemetry,
                &client,
            )?;
            let served = runtime()?.block_on(serve(config, client));
            // Export the spans still queued, however serve ended.
            tracing.shutdown();
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify {
            start,
            end,
            checkpoint,
        }) => {
            let config = load()?;
            let intact = runtime()?.block_on(crate::audit::cli::verify_command(
                &config.audit,
                start.as_deref(),
                end.as_deref(),
                checkpoint.as_deref(),
            ))?;
            Ok(if intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Audit(AuditCommand::Export {
            format,
            start,
            end,
            output,
            manifest,
        }) => {
            let config = load()?;
            let format = format
                .parse()
                .map_err(|_| anyhow::anyhow!("--format must be csv, json or ndjson"))?;
            runtime()?.block_on(crate::audit::cli::export_command(
                &config.audit,
                format,
                start.as_deref(),
                end.as_deref(),
                output.as_deref(),
                manifest.as_deref(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn serve(config: Config, client: crate::outbound::HttpClient) -> anyhow::Result<()> {
    let listen = config.listen;
    // The certificate and key are checked before anything starts: a bad file is one clear start-up error.
    let tls = match config.tls.files()? {
        Some(files) => Some(std::sync::Arc::new(
            crate::server::tls::ListenerTls::load(&files).context("TLS on the listener")?,
        )),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let app = crate::app::App::start_with(config, client).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let first = app
        .config
        .upstreams
        .first()
        .map(|u| u.name.clone())
        .unwrap_or_default();
    tracing::info!(
        listen = %addr,
        upstreams = ?app.config.upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        tls = tls.is_some(),
        first_call = %format!("TOKEN=$(toolgate token --sub agent-1) && curl -s {scheme}://{addr}/mcp/{first} -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{{\"_meta\":{{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}}}}'"),
        "toolgate ready"
    );
    crate::server::serve(listener, app.clone(), tls, shutdown_signal()).await;
    tracing::info!("shutting down: draining the audit log");
    // The last second's agent counts, before the database is left.
    if let Err(e) = app.agents.flush().await {
        tracing::warn!(error = %e, "the last agent counts were not stored");
    }
    // The baselines as they are now, and any alert still queued, so a restart resumes from here.
    if let Err(e) = app.behaviour.snapshot().await {
        tracing::warn!(error = %e, "the last baseline snapshot was not stored");
    }
    if let Err(e) = app.alerts.store_raised().await {
        tracing::warn!(error = %e, "alerts raised at shutdown were not stored");
    }
    if let Err(e) = app.runs.flush().await {
        tracing::warn!(error = %e, "the last run call counts were not stored");
    }
    // SIEM sinks finish their attempt and give their leases up before the log closes.
    app.siem.stop().await;
    app.audit.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
