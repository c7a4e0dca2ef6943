//! The `lectern` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use lectern::accounts::Role;
use lectern::config::Config;
use lectern::media::supervisor::{supervise, CHILD_CONFIG_ENV};
use lectern::media::worker::WorkerSettings;
use lectern::App;
use serde::Serialize;
use tokio::sync::watch;

// Every request allocates a little (headers, bodies' frames, futures): mimalloc's thread-local
// free lists cost a fraction of glibc malloc's under load (measured in benches/segment_server.py).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run transcoding workers against the configured database and storage (for machines
    /// other than the API's). Supervises one child process per worker.
    Worker(WorkerArgs),
    /// Transcode a file to an HLS ladder in a directory, offline, with the same engine the
    /// workers use; prints a summary (renditions, sizes, speed).
    Transcode {
        /// The source video.
        input: PathBuf,
        /// Where to write master.m3u8, the renditions and the thumbnails.
        out: PathBuf,
        /// libx264 preset [default: the configured one, veryfast].
        #[arg(long)]
        preset: Option<String>,
        /// Segment length in seconds [default: the configured one, 4].
        #[arg(long)]
        segment_seconds: Option<f64>,
        /// Encode every rung, even where the source could be copied as the top one.
        #[arg(long)]
        encode_all: bool,
        /// Also encode every rung's forensic-watermark twin (variant B, `<name>-b/`).
        #[arg(long)]
        watermark: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Fill an empty instance with demo accounts and courses with real (generated, transcoded)
    /// videos, and print how to log in and play one.
    Demo,
    /// Enroll a user in a course without an order (comps, support, tests).
    Enroll {
        /// The user's email.
        #[arg(long)]
        user: String,
        /// The course id.
        #[arg(long)]
        course: lectern::types::CourseId,
    },
    /// The per-viewer forensic watermark.
    #[command(subcommand)]
    Watermark(WatermarkCommand),
    /// Internal: run one step of the transcoding engine for a worker (request on stdin).
    #[command(hide = true)]
    Engine,
}

#[derive(Subcommand)]
enum WatermarkCommand {
    /// Name the playback session (and so the user) a captured copy of a watermarked video
    /// came from: prints `MATCH session=… user=… confidence=…` (exit 0) or `NO MATCH` (exit 1);
    /// exit 2 when the file is not video or the video has no watermark.
    Identify {
        /// The video's id (`video_id` of the lecture).
        #[arg(long)]
        video: lectern::types::VideoId,
        /// The captured copy (any container and codec FFmpeg reads).
        file: PathBuf,
    },
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

#[derive(Args)]
struct WorkerArgs {
    /// Worker processes to run [default: LECTERN_WORKERS, or one per CPU].
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Internal: be one worker (started by a supervising `serve` or `worker`).
    #[arg(long, hide = true)]
    child: bool,
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
    // An engine process is told everything on its standard input and reads no configuration.
    if let Command::Engine = cli.command {
        return tokio::task::spawn_blocking(lectern::media::engine::child_main).await?;
    }
    // A worker child takes the settings its supervisor hands it, and only those.
    if let Command::Worker(WorkerArgs { child: true, .. }) = cli.command {
        let json = std::env::var(CHILD_CONFIG_ENV)
            .with_context(|| format!("{CHILD_CONFIG_ENV} is not set"))?;
        let settings: WorkerSettings =
            serde_json::from_str(&json).context("reading the supervisor's settings")?;
        lectern::telemetry::init(settings.log_format, &settings.log_filter);
        return worker_child(settings).await;
    }
    let mut overrides =
        Overrides { data_dir: cli.data_dir, database_url: cli.database_url, ..Default::default() };
    if let Command::Serve(args) = &cli.command {
        overrides.listen = args.listen;
        overrides.workers = args.workers;
    }
    let cfg = Config::load(cli.config.as_deref(), std::env::vars(), overrides)?;
    lectern::telemetry::init(cfg.log_format, &cfg.log_filter);
    tracing::debug!(config = ?cfg, "configuration");

    match cli.command {
        Command::Serve(_) => serve(cfg).await,
        Command::Engine => unreachable!("handled before the configuration is loaded"),
        Command::Worker(args) => worker_pool(cfg, args.concurrency).await,
        Command::Transcode { input, out, preset, segment_seconds, encode_all, watermark } => {
            let opts = lectern_workers::TranscodeOptions {
                x264_preset: preset.unwrap_or(cfg.x264_preset),
                segment_seconds: segment_seconds.unwrap_or(cfg.segment_seconds),
                encryption: None,
                threads: 0,
                copy_top_rung: !encode_all,
                low_rung_first: None,
                watermark: watermark.then(rand::random::<[u8; 16]>),
            };
            let summary =
                tokio::task::spawn_blocking(move || offline_transcode(&input, &out, &opts))
                    .await??;
            print!("{summary}");
            Ok(())
        }
        Command::Migrate => {
            let app = App::start(cfg).await?;
            println!("database is up to date\n{}", app.describe());
            Ok(())
        }
        Command::Demo => demo(cfg).await,
        Command::Enroll { user, course } => enroll(cfg, &user, course).await,
        Command::Watermark(WatermarkCommand::Identify { video, file }) => {
            std::process::exit(identify(cfg, video, &file).await)
        }
        Command::User(UserCommand::Create { email, password, role, name }) => {
            create_user(cfg, &email, password, role, name).await
        }
    }
}

/// `lectern worker`: a pool of `n` worker processes until a shutdown signal.
async fn worker_pool(cfg: Config, concurrency: Option<usize>) -> anyhow::Result<()> {
    let n = concurrency.unwrap_or_else(|| cfg.effective_workers()).max(1);
    App::start(cfg.clone()).await?; // make sure the schema is there
    let (tx, rx) = watch::channel(false);
    let shutdown = shutdown_signal();
    println!("Lectern worker pool: {n} worker process(es)");
    let pool = tokio::spawn(async move { supervise(&cfg, n, rx).await });
    shutdown.await;
    let _ = tx.send(true);
    pool.await?;
    Ok(())
}

/// `lectern demo`: fill the instance and say how to use it.
async fn demo(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.listen;
    let app = App::start(cfg).await?;
    let summary = lectern::demo::fill(&app.state, &mut |line| eprintln!("demo: {line}")).await?;
    let base = format!("http://{listen}");
    println!(
        "Demo ready: {} courses, {} transcoded videos.\n",
        summary.courses.len(),
        summary.videos
    );
    for (id, title) in &summary.courses {
        println!("  course {id}: {title}");
    }
    println!(
        "\n  instructor: {} / {pw}\n  student:    {} / {pw}  (enrolled in the first course)\n",
        lectern::demo::DEMO_INSTRUCTOR,
        lectern::demo::DEMO_STUDENT,
        pw = lectern::demo::DEMO_PASSWORD
    );
    println!("Start the server:  lectern serve   (same --data-dir / configuration)");
    println!("Watch the free preview, no sign-in needed:");
    println!("  curl -s -X POST {base}/api/v1/lectures/{}/playback", summary.preview_lecture);
    println!("  then open the \"url\" it returns in Safari, or: ffplay \"<url>\"");
    println!("Sign in as the student and play any lecture of the first course:");
    println!("  curl -s {base}/api/v1/auth/login -H 'content-type: application/json' \\");
    println!(
        "       -d '{{\"email\":\"{}\",\"password\":\"{}\"}}'",
        lectern::demo::DEMO_STUDENT,
        lectern::demo::DEMO_PASSWORD
    );
    println!("API docs: {base}/api/docs");
    Ok(())
}

/// `lectern enroll`: enroll a user (by email) in a course, as an admin would.
async fn enroll(cfg: Config, user: &str, course: lectern::types::CourseId) -> anyhow::Result<()> {
    let app = App::start(cfg).await?;
    let db = &app.state.db;
    let email = lectern::accounts::normalize_email(user)?;
    let user = lectern::accounts::db::user_by_email(db, &email)
        .await?
        .context("no user with that email")?;
    lectern::catalog::db::course(db, course).await?.context("no such course")?;
    lectern::learning::enroll(db.pool(), user.id, course, "admin").await?;
    println!("enrolled {} in course {course}", user.email);
    Ok(())
}

/// `lectern watermark identify`: its exit code (0 a match, 1 none, 2 an error).
async fn identify(cfg: Config, video: lectern::types::VideoId, file: &std::path::Path) -> i32 {
    use lectern::playback::identify::{identify, Evidence, Verdict};
    let run = async {
        let app = App::start(cfg).await?;
        identify(&app.state.db, &app.state.storage, video, file).await
    };
    let explain = |e: &Evidence| {
        eprintln!(
            "copy starts at {:.1} s; {} of {} segments covered read clearly; best session agrees on {}; {} sessions issued",
            e.offset_seconds, e.segments_read, e.segments_covered, e.agreeing, e.sessions
        )
    };
    match run.await {
        Ok(Verdict::Match { session, user, confidence, evidence }) => {
            let user = user.map_or_else(|| "anonymous".to_string(), |u| u.to_string());
            println!("MATCH session={session} user={user} confidence={confidence:.6}");
            explain(&evidence);
            0
        }
        Ok(Verdict::NoMatch { evidence }) => {
            println!("NO MATCH");
            explain(&evidence);
            1
        }
        Err(e) => {
            eprintln!("lectern: {e:#}");
            2
        }
    }
}

/// `lectern user create`; a password of `-` is read from standard input.
async fn create_user(
    cfg: Config,
    email: &str,
    password: String,
    role: lectern::accounts::Role,
    name: Option<String>,
) -> anyhow::Result<()> {
    let password = if password == "-" {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        password
    };
    let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or("user").to_string());
    let app = App::start(cfg).await?;
    let user = app.state.accounts.create_user(email, &password, &name, role).await?;
    println!("created {} {} (id {})", user.role, user.email, user.id);
    Ok(())
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.listen;
    let workers = cfg.effective_workers();
    let app = App::start(cfg.clone()).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = watch::channel(false);
    let background = lectern::spawn_background(&app.state, rx.clone());
    if let Some(warning) = app.payment_warning() {
        eprintln!("WARNING: {warning}");
    }
    let pool = tokio::spawn(async move { supervise(&cfg, workers, rx).await });
    let shutdown = shutdown_signal();
    println!(
        "Lectern listening on http://{addr}\n{}\ntranscoding workers: {workers}\nAPI docs: http://{addr}/api/docs",
        app.describe()
    );
    lectern::http::serve(listener, app.state.clone(), shutdown).await?;
    let _ = tx.send(true);
    // Payment work whose client went away still finishes (or is left to the reconciler).
    let payments = &app.state.payments.tasks;
    payments.close();
    if tokio::time::timeout(app.state.payments.lock_lease, payments.wait()).await.is_err() {
        tracing::warn!("payment calls still running at shutdown; the reconciler settles them on the next start");
    }
    let _ = pool.await;
    for task in background {
        let _ = task.await;
    }
    app.state.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// One worker in this process, until SIGTERM.
async fn worker_child(settings: WorkerSettings) -> anyhow::Result<()> {
    let ctx = App::worker_context(settings).await?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let id = format!("{}-{}", host.trim(), std::process::id());
    let (tx, rx) = watch::channel(false);
    let shutdown = shutdown_signal();
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    lectern::media::worker::run(ctx.clone(), id, rx).await;
    ctx.db.close().await;
    Ok(())
}

/// Run the engine with a progress bar; returns the summary to print.
fn offline_transcode(
    input: &std::path::Path,
    out: &std::path::Path,
    opts: &lectern_workers::TranscodeOptions,
) -> anyhow::Result<String> {
    use std::fmt::Write;
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% eta {eta}",
        )
        .expect("valid template"),
    );
    let s = lectern_workers::transcode(input, out, opts, &mut |p| {
        bar.set_position((p * 1000.0) as u64)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    let mut text = String::new();
    let speed = s.duration_seconds / s.elapsed_seconds.max(1e-6);
    writeln!(text, "{} → {}", input.display(), out.join("master.m3u8").display())?;
    writeln!(
        text,
        "duration {:.3} s, transcoded in {:.1} s ({speed:.2}× realtime), {} bytes written",
        s.duration_seconds, s.elapsed_seconds, s.output_bytes
    )?;
    for r in &s.renditions {
        writeln!(
            text,
            "  {:>6}  {:>4}×{:<4}  {:>6.0} kb/s peak  {:>6.0} kb/s avg  {:>4} segments  {:>10} bytes{}",
            r.name, r.width, r.height, r.bandwidth as f64 / 1000.0, r.average_bandwidth as f64 / 1000.0, r.segments, r.bytes,
            if r.copied { "  (the source's own video, copied)" } else { "" }
        )?;
    }
    Ok(text)
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called (not when
/// first polled), so a signal that arrives right after start-up is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}
