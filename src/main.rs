//! The `lectern` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use lectern::accounts::Role;
use lectern::config::Config;
use lectern::App;
use serde::Serialize;

/// Lectern: a self-hostable lecture-video back end.
///
/// Settings come from built-in defaults, then the TOML file given with --config, then
/// LECTERN_* environment variables, then these flags. With nothing configured, Lectern keeps
/// everything under ./data (SQLite database, stored objects, scratch space).
#[derive(Parser)]
#[command(name = "lectern", version, about, long_about)]
struct Cli {
    /// TOML configuration file (same keys as the LECTERN_* variables, lower-cased, without the prefix).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Where the embedded defaults keep the SQLite file, objects and scratch space [default: ./data].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Database URL: sqlite://FILE or postgres://… [default: SQLite in the data dir].
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (API and streaming). Creates and migrates the data dir on first start.
    Serve(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Transcoding workers to run in this process's pool; 0 for none [default: one per CPU].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account with any role (this is how the first admin is made).
    Create {
        /// Login email (normalized to lower case).
        #[arg(long)]
        email: String,
        /// Password, 8 characters or more; `-` reads it from the first line of standard input.
        #[arg(long)]
        password: String,
        /// student, instructor or admin.
        #[arg(long, default_value = "student")]
        role: Role,
        /// Display name [default: the part of the email before the @].
        #[arg(long)]
        name: Option<String>,
    },
}

/// Flags that override configuration; absent flags leave the lower layers alone.
#[derive(Serialize, Default)]
struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("lectern: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut overrides = Overrides { data_dir: cli.data_dir, database_url: cli.database_url, ..Default::default() };
    if let Command::Serve(args) = &cli.command {
        overrides.listen = args.listen;
        overrides.workers = args.workers;
    }
    let cfg = Config::load(cli.config.as_deref(), std::env::vars(), overrides)?;
    lectern::telemetry::init(cfg.log_format, &cfg.log_filter);
    tracing::debug!(config = ?cfg, "configuration");

    match cli.command {
        Command::Serve(_) => serve(cfg).await,
        Command::Migrate => {
            let app = App::start(cfg).await?;
            println!("database is up to date\n{}", app.describe());
            Ok(())
        }
        Command::User(UserCommand::Create { email, password, role, name }) => {
            let password = if password == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
                line.trim_end_matches(['\r', '\n']).to_string()
            } else {
                password
            };
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or("user").to_string());
            let app = App::start(cfg).await?;
            let user = app
                .state
                .accounts
                .create_user(&email, &password, &name, role)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created {} {} (id {})", user.role, user.email, user.id);
            Ok(())
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.listen;
    let app = App::start(cfg).await?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    println!("Lectern listening on http://{addr}\n{}\nAPI docs: http://{addr}/api/docs", app.describe());
    lectern::http::serve(listener, app.state.clone(), shutdown_signal()).await?;
    app.state.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}
