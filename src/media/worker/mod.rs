//! One transcoding worker: claim a job, fetch the source to scratch space, run the engine — in
//! a process of its own for each step, see [`super::engine`] — while a heartbeat keeps the
//! lease, upload the outputs under a prefix of their own, and publish them atomically, or
//! record the failure.
//!
//! Every job runs within budgets: wall-clock time (a base plus so much per second of video,
//! written to the queue as the attempt's deadline, past which no heartbeat extends the lease),
//! scratch space (the source copy and the outputs), and the engine processes' limits (address
//! space, file size, CPU time). A job over budget is stopped, fails at once with a readable
//! reason, and its scratch is removed.
//!
//! What a video's owner reads as its `error` is written for them: the engine's reasons for
//! refusing a file, or fixed sentences. Internal detail (paths, endpoints, storage and database
//! errors) goes to the log and to the job's `last_error` only.
//!
//! A worker that loses its lease (it stalled past the lease and another worker took the job
//! over) finishes nothing: its outputs are deleted instead of published. On shutdown it waits a
//! grace period for the job in hand, then gives the job back to the queue.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use lectern_workers::{HlsEncryption, ProbeInfo, TranscodeSummary};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::child::Limits;
use super::db as media_db;
use super::engine::{Engine, EngineEvent, EngineRequest, FailureKind};
use super::queue::{self, FailureReason, Job, VideoSecret};
use crate::config::{Config, LogFormat, Secret, StorageKind};
use crate::db::{now, Db};
use crate::storage::{keys, ObjectKey, Storage};

mod outputs;
use outputs::{dir_size, publish_outputs};
mod lease;
use lease::Lease;
mod progressive;
use progressive::{Progressive, PublishError, Publisher, Step};

/// The settings a worker process gets from its supervisor — its database, its storage and how
/// to transcode — and nothing else: no token, playback or payment keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub data_dir: PathBuf,
    pub database_url: Secret,
    pub storage: StorageKind,
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_bucket: Option<String>,
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Secret,
    pub s3_path_style: bool,
    pub x264_preset: String,
    pub segment_seconds: f64,
    pub low_rung_first: crate::config::LowRungFirst,
    pub hls_encryption: bool,
    pub job_lease_secs: u64,
    pub worker_poll_ms: u64,
    pub worker_grace_secs: u64,
    pub job_budget_base_secs: u64,
    pub job_budget_per_video_second: f64,
    pub job_scratch_budget_bytes: u64,
    pub engine_memory_limit_bytes: u64,
    pub log_format: LogFormat,
    pub log_filter: String,
}

impl From<&Config> for WorkerSettings {
    fn from(c: &Config) -> Self {
        WorkerSettings {
            data_dir: c.data_dir.clone(),
            database_url: c.effective_database_url(),
            storage: c.storage,
            s3_endpoint: c.s3_endpoint.clone(),
            s3_region: c.s3_region.clone(),
            s3_bucket: c.s3_bucket.clone(),
            s3_access_key: c.s3_access_key.clone(),
            s3_secret_key: c.s3_secret_key.clone(),
            s3_path_style: c.s3_path_style,
            x264_preset: c.x264_preset.clone(),
            segment_seconds: c.segment_seconds,
            low_rung_first: c.low_rung_first,
            hls_encryption: c.hls_encryption,
            job_lease_secs: c.job_lease_secs,
            worker_poll_ms: c.worker_poll_ms,
            worker_grace_secs: c.worker_grace_secs,
            job_budget_base_secs: c.job_budget_base_secs,
            job_budget_per_video_second: c.job_budget_per_video_second,
            job_scratch_budget_bytes: c.job_scratch_budget_bytes,
            engine_memory_limit_bytes: c.engine_memory_limit_bytes,
            log_format: c.log_format,
            log_filter: c.log_filter.clone(),
        }
    }
}

impl WorkerSettings {
    /// A configuration holding these settings and defaults for everything else (secrets
    /// included: empty), for the database and storage openers.
    pub fn to_config(&self) -> Config {
        Config {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            storage: self.storage,
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            s3_bucket: self.s3_bucket.clone(),
            s3_access_key: self.s3_access_key.clone(),
            s3_secret_key: self.s3_secret_key.clone(),
            s3_path_style: self.s3_path_style,
            x264_preset: self.x264_preset.clone(),
            segment_seconds: self.segment_seconds,
            low_rung_first: self.low_rung_first,
            hls_encryption: self.hls_encryption,
            job_lease_secs: self.job_lease_secs,
            worker_poll_ms: self.worker_poll_ms,
            worker_grace_secs: self.worker_grace_secs,
            job_budget_base_secs: self.job_budget_base_secs,
            job_budget_per_video_second: self.job_budget_per_video_second,
            job_scratch_budget_bytes: self.job_scratch_budget_bytes,
            engine_memory_limit_bytes: self.engine_memory_limit_bytes,
            log_format: self.log_format,
            log_filter: self.log_filter.clone(),
            ..Config::default()
        }
    }
}

/// What a worker needs: its settings, database, storage, and the executable whose `engine`
/// subcommand runs the engine steps.
#[derive(Clone)]
pub struct WorkerCtx {
    pub settings: Arc<WorkerSettings>,
    pub db: Db,
    pub storage: Storage,
    pub exe: PathBuf,
}

impl WorkerCtx {
    /// A context whose engine steps run this very executable.
    pub fn new(settings: WorkerSettings, db: Db, storage: Storage) -> anyhow::Result<WorkerCtx> {
        let exe =
            std::env::current_exe().context("finding our own executable (it runs the engine)")?;
        Ok(WorkerCtx { settings: Arc::new(settings), db, storage, exe })
    }
}

/// Run jobs until `shutdown` turns true.
pub async fn run(ctx: WorkerCtx, worker_id: String, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(worker = %worker_id, "transcoding worker started");
    let s = &ctx.settings;
    let poll = Duration::from_millis(s.worker_poll_ms.max(50));
    while !*shutdown.borrow() {
        match queue::claim(
            &ctx.db,
            &worker_id,
            s.job_lease_secs as i64,
            s.job_budget_base_secs as i64,
        )
        .await
        {
            Ok(Some(job)) => process(&ctx, &worker_id, job, &mut shutdown).await,
            Ok(None) => {
                let _ = tokio::time::timeout(poll, shutdown.changed()).await;
            }
            Err(e) => {
                tracing::warn!(worker = %worker_id, error = %e, "claiming a job failed; retrying");
                let _ = tokio::time::timeout(poll * 5, shutdown.changed()).await;
            }
        }
    }
    tracing::info!(worker = %worker_id, "transcoding worker stopped");
}

/// Why an attempt failed, told twice: for the video's owner and for operators.
struct Failed {
    /// Readable, and free of paths, endpoints and credentials.
    public: String,
    /// Everything known, for the log and the job's `last_error`.
    internal: String,
    permanent: bool,
    reason: FailureReason,
}

impl Failed {
    /// An internal error: retried; its detail is never shown to the video's owner.
    fn internal(job: &Job, e: anyhow::Error) -> Failed {
        Failed {
            public: format!(
                "processing failed because of an internal error; the operators can find it in the server log as job {}",
                job.id
            ),
            internal: format!("{e:#}"),
            permanent: false,
            reason: FailureReason::Internal,
        }
    }

    /// A job over one of its budgets: permanent, since it would be again.
    fn over_budget(public: String, reason: FailureReason) -> Failed {
        Failed { internal: public.clone(), public, permanent: true, reason }
    }
}

/// How a job ended.
enum Outcome {
    /// Transcoded and published.
    Done(TranscodeSummary),
    Failed(Failed),
    LeaseLost,
    ShutDown,
}

/// One attempt at a job, and the budgets it runs within.
struct Attempt<'a> {
    ctx: &'a WorkerCtx,
    worker: &'a str,
    job: &'a Job,
    scratch: PathBuf,
    started: Instant,
    /// Seconds of video, once probed; the time budget grows with it.
    video_seconds: Option<f64>,
    lease: Lease,
    /// Whether this attempt's output is what the video shows (progressive publish): then a
    /// failure or a lost lease leaves it up, for a later attempt to take over.
    visible: Arc<AtomicBool>,
    /// Encode the forensic watermark's marked variants too (the course asks for it), segment
    /// names derived from this secret.
    watermark: Option<[u8; 16]>,
}

impl Attempt<'_> {
    fn allowed(&self) -> Duration {
        let s = &self.ctx.settings;
        let per_video = s.job_budget_per_video_second * self.video_seconds.unwrap_or(0.0);
        Duration::from_secs(s.job_budget_base_secs)
            + Duration::from_secs_f64(per_video.clamp(0.0, 1e9))
    }

    fn deadline(&self) -> Instant {
        self.started + self.allowed()
    }

    fn over_time(&self) -> Failed {
        let allowed = self.allowed().as_secs();
        let allowed = if allowed < 120 {
            format!("{allowed} seconds")
        } else {
            format!("{} minutes", allowed / 60)
        };
        Failed::over_budget(match self.video_seconds {
            Some(secs) => format!(
                "processing took longer than the {allowed} allowed for {secs:.1} s of video and was stopped; \
                 the file may be damaged"
            ),
            None => format!("processing took longer than the {allowed} allowed and was stopped"),
        }, FailureReason::OverTime)
    }

    fn over_scratch(&self) -> Failed {
        let mib = self.ctx.settings.job_scratch_budget_bytes as f64 / (1024.0 * 1024.0);
        Failed::over_budget(format!(
            "processing needed more than the {mib:.0} MiB of working space allowed for one video and was stopped"
        ), FailureReason::OverScratch)
    }

    /// Run `step` until it is done, the job's deadline passes, or the lease is lost.
    async fn within<T>(
        &mut self,
        step: impl Future<Output = Result<T, Outcome>>,
    ) -> Result<T, Outcome> {
        let deadline = tokio::time::Instant::from_std(self.deadline());
        let over_time = self.over_time();
        tokio::select! {
            r = step => r,
            _ = tokio::time::sleep_until(deadline) => Err(Outcome::Failed(over_time)),
            _ = self.lease.lost() => Err(Outcome::LeaseLost),
        }
    }

    /// Limits of an engine process started now: memory and file size from the settings, CPU
    /// time what is left of the time budget on every core.
    fn engine_limits(&self) -> Limits {
        let s = &self.ctx.settings;
        let left = self.deadline().saturating_duration_since(Instant::now()).as_secs() + 1;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        Limits {
            address_space: Some(s.engine_memory_limit_bytes),
            file_size: Some(s.job_scratch_budget_bytes),
            cpu_secs: Some(left.saturating_mul(cores).saturating_add(5)),
        }
    }

    fn request(
        &self,
        out_dir: Option<PathBuf>,
        encryption: Option<(String, String, String)>,
    ) -> EngineRequest {
        let s = &self.ctx.settings;
        EngineRequest {
            input: self.scratch.join("source"),
            out_dir,
            x264_preset: s.x264_preset.clone(),
            segment_seconds: s.segment_seconds,
            low_rung_first: s.low_rung_first.as_option(),
            watermark: self.watermark.map(hex::encode),
            encryption,
            log_format: s.log_format,
            log_filter: s.log_filter.clone(),
        }
    }
}

async fn process(ctx: &WorkerCtx, worker: &str, job: Job, shutdown: &mut watch::Receiver<bool>) {
    tracing::info!(
        worker,
        job = %job.id,
        video = %job.video_id,
        attempt = job.attempts,
        "transcode started"
    );
    let scratch =
        ctx.settings.data_dir.join("scratch").join(format!("job-{}-{}", job.id, job.attempts));
    let prefix = keys::hls_output(job.video_id, job.id, job.attempts);
    let mut attempt = Attempt {
        ctx,
        worker,
        job: &job,
        scratch: scratch.clone(),
        started: Instant::now(),
        video_seconds: None,
        lease: Lease::keep(ctx, job.id, worker),
        visible: Arc::new(AtomicBool::new(false)),
        watermark: None,
    };
    let outcome = match run_attempt(&mut attempt, &prefix, shutdown).await {
        Ok(o) | Err(o) => o,
    };
    let elapsed = attempt.started.elapsed().as_secs_f64();
    let visible = attempt.visible.load(Ordering::SeqCst);
    drop(attempt);
    // What an attempt that did not finish leaves behind: nothing, unless its output is what
    // the video shows — a retry or the worker that took over replaces that once it caught up.
    let discard = || async {
        if !visible {
            let _ = ctx.storage.delete_prefix(&prefix).await;
        }
    };
    // Before the outcome is recorded: whoever sees a job finished (or failed) finds its
    // scratch space gone, never about to go.
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    match outcome {
        Outcome::Done(summary) => {
            tracing::info!(
                worker,
                job = %job.id,
                video = %job.video_id,
                duration = summary.duration_seconds,
                secs = elapsed,
                "transcode published"
            );
        }
        Outcome::Failed(failed) => {
            discard().await;
            let record = queue::Failure {
                public: &failed.public,
                internal: &failed.internal,
                permanent: failed.permanent,
                reason: failed.reason,
            };
            let reason = &failed.internal;
            match queue::fail(&ctx.db, &job, worker, &record).await {
                Ok(recorded) if recorded.final_failure => {
                    crate::media::remove_outputs(&ctx.storage, recorded.withdrawn).await;
                    tracing::warn!(worker, job = %job.id, video = %job.video_id, %reason, "transcode failed for good")
                }
                Ok(_) => {
                    tracing::warn!(worker, job = %job.id, video = %job.video_id, %reason, "transcode failed; will retry")
                }
                Err(e) => {
                    tracing::error!(worker, job = %job.id, error = %e, "recording a failure failed")
                }
            }
        }
        Outcome::LeaseLost => {
            discard().await;
            tracing::warn!(
                worker,
                job = %job.id,
                "lease lost to another worker, or past its deadline; outputs discarded"
            );
        }
        Outcome::ShutDown => {
            discard().await;
            if let Err(e) = queue::release(&ctx.db, &job, worker).await {
                tracing::warn!(worker, job = %job.id, error = %e, "releasing a job failed; its lease will expire");
            }
            tracing::info!(worker, job = %job.id, "job released at shutdown");
        }
    }
}

/// Scale engine progress into the video's progress: fetching 0–5 %, transcoding (and storing
/// segments as they come) 5–90 %, storing the rest 90–100 %.
fn overall(stage_start: f64, stage_span: f64, p: f64) -> f64 {
    stage_start + stage_span * p.clamp(0.0, 1.0)
}

/// Fetch, probe, transcode, publish; any `Err` is how the attempt ended early.
async fn run_attempt(
    a: &mut Attempt<'_>,
    prefix: &ObjectKey,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Outcome, Outcome> {
    let (ctx, job) = (a.ctx, a.job);
    let internal = |e: anyhow::Error| Outcome::Failed(Failed::internal(job, e));
    let _ = tokio::fs::remove_dir_all(&a.scratch).await;
    tokio::fs::create_dir_all(&a.scratch)
        .await
        .context("making scratch space")
        .map_err(internal)?;
    let source = a.scratch.join("source");
    let scratch_budget = ctx.settings.job_scratch_budget_bytes;
    let over_scratch = a.over_scratch();
    a.within(fetch_source(ctx, job, &source, scratch_budget, over_scratch)).await?;
    media_db::advance_progress(&ctx.db, job.video_id, 0.05, now())
        .await
        .map_err(|e| internal(e.into()))?;

    let info = probe(a).await?;
    a.video_seconds = Some(info.duration_seconds);
    let deadline = now() + a.deadline().saturating_duration_since(Instant::now()).as_secs() as i64;
    if !queue::set_deadline(&ctx.db, job.id, a.worker, deadline)
        .await
        .map_err(|e| internal(e.into()))?
    {
        return Err(Outcome::LeaseLost);
    }

    // A random key per video, the same for every attempt (a viewer of an earlier attempt's
    // output keeps the key it holds); the playlists point players at `/hls/{video}/key`.
    let encryption = match ctx.settings.hls_encryption {
        true => {
            let key = video_secret(ctx, job, VideoSecret::SegmentKey).await?;
            Some(HlsEncryption { key, iv: segment_iv(&key), key_uri: "../key".to_owned() })
        }
        false => None,
    };
    if media_db::wants_watermark(&ctx.db, job.video_id).await.map_err(|e| internal(e.into()))? {
        a.watermark = Some(video_secret(ctx, job, VideoSecret::WatermarkNames).await?);
    }
    let done = transcode(a, prefix, encryption, info.duration_seconds, shutdown).await?;
    let (worker, scratch) = (a.worker, a.scratch.clone());
    let key_hex = done.encryption.as_ref().map(|e| hex::encode(e.key));
    a.within(publish_outputs(ctx, worker, job, &scratch, prefix, &done, key_hex.as_deref())).await
}

/// The video's 16-byte `secret`: the one an earlier attempt chose, or a new random one.
async fn video_secret(
    ctx: &WorkerCtx,
    job: &Job,
    secret: VideoSecret,
) -> Result<[u8; 16], Outcome> {
    use rand::RngCore;
    let internal = |e: anyhow::Error| Outcome::Failed(Failed::internal(job, e));
    let mut fresh = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut fresh);
    let stored = queue::video_secret(&ctx.db, job.video_id, secret, &hex::encode(fresh))
        .await
        .map_err(|e| internal(e.into()))?;
    crate::media::hex16(&stored)
        .with_context(|| format!("the video's stored {secret:?} is not 16 bytes of hex"))
        .map_err(internal)
}

/// The IV of a video's segments, derived from its key, so that every attempt's playlists say
/// the same.
fn segment_iv(key: &[u8; 16]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("lectern hls iv {}", hex::encode(key)));
    digest[..16].try_into().expect("a SHA-256 digest has 32 bytes")
}

/// Copy the stored source into scratch space, refusing to hold more than the scratch budget.
async fn fetch_source(
    ctx: &WorkerCtx,
    job: &Job,
    dest: &Path,
    budget: u64,
    over: Failed,
) -> Result<(), Outcome> {
    let internal = |e: anyhow::Error| Outcome::Failed(Failed::internal(job, e));
    let got = ctx
        .storage
        .get(&keys::source(job.video_id), None)
        .await
        .context("reading the uploaded source")
        .map_err(internal)?;
    if got.meta.size > budget {
        return Err(Outcome::Failed(over));
    }
    let mut file = tokio::fs::File::create(dest)
        .await
        .context("creating the source copy")
        .map_err(internal)?;
    let mut body = got.body;
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("reading the uploaded source").map_err(internal)?;
        written += chunk.len() as u64;
        if written > budget {
            return Err(Outcome::Failed(over));
        }
        file.write_all(&chunk)
            .await
            .context("copying the source to scratch space")
            .map_err(internal)?;
    }
    file.flush().await.context("copying the source to scratch space").map_err(internal)?;
    Ok(())
}

/// What a failed engine step means for the job.
fn engine_failure(job: &Job, kind: FailureKind, message: String) -> Outcome {
    Outcome::Failed(if kind.is_public() {
        let reason = if kind == FailureKind::Invalid {
            FailureReason::InvalidMedia
        } else {
            FailureReason::Unprocessable
        };
        Failed { internal: message.clone(), public: message, permanent: true, reason }
    } else if kind == FailureKind::InvalidOptions {
        Failed {
            public: "the transcoder is misconfigured; the operators have been told".into(),
            internal: message,
            permanent: true,
            reason: FailureReason::Misconfigured,
        }
    } else {
        Failed::internal(job, anyhow::anyhow!(message))
    })
}

/// An engine process that ended without a final event: killed by one of its limits, or crashed.
fn engine_ended(a: &Attempt<'_>, status: std::io::Result<std::process::ExitStatus>) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    match status.as_ref().ok().and_then(|s| s.signal()) {
        Some(libc::SIGXCPU) => Outcome::Failed(Failed::over_budget(
            "processing used more CPU time than allowed for this video and was stopped; the file may be damaged".into(),
            FailureReason::OverTime,
        )),
        Some(libc::SIGXFSZ) => Outcome::Failed(a.over_scratch()),
        _ => Outcome::Failed(Failed {
            public: "the transcoder crashed on this file".into(),
            internal: format!("the engine process ended without a result ({status:?})"),
            permanent: false,
            reason: FailureReason::Crashed,
        }),
    }
}

/// Probe the source in an engine process of its own.
async fn probe(a: &mut Attempt<'_>) -> Result<ProbeInfo, Outcome> {
    let job = a.job;
    let mut engine = Engine::start(&a.ctx.exe, &a.request(None, None), a.engine_limits())
        .await
        .context("starting an engine process")
        .map_err(|e| Outcome::Failed(Failed::internal(job, e)))?;
    let result = a
        .within(async {
            match engine.next().await {
                Some(EngineEvent::Probed { info }) => Ok(Ok(info)),
                Some(EngineEvent::Failed { kind, message }) => {
                    Err(engine_failure(job, kind, message))
                }
                _ => Ok(Err(engine.wait().await)),
            }
        })
        .await;
    engine.kill().await;
    match result? {
        Ok(info) => Ok(info),
        Err(status) => Err(engine_ended(a, status)),
    }
}

/// Transcode in an engine process of its own, storing its segments as they come
/// ([`progressive`]), reporting progress, watching the budgets, and finishing (or giving
/// back) the job in hand at shutdown. Returns the summary and the output files stored.
async fn transcode(
    a: &mut Attempt<'_>,
    prefix: &ObjectKey,
    encryption: Option<HlsEncryption>,
    duration_estimate: f64,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Transcoded, Outcome> {
    let (ctx, job) = (a.ctx, a.job);
    let out_dir = a.scratch.join("out");
    let (publisher, mut running) = Publisher::start(
        ctx,
        progressive::Setup {
            job: job.clone(),
            worker: a.worker.to_owned(),
            prefix: prefix.clone(),
            out_dir: out_dir.clone(),
            encryption: encryption.clone(),
            duration_estimate,
            visible: a.visible.clone(),
        },
    );
    let engine_key =
        encryption.as_ref().map(|e| (hex::encode(e.key), hex::encode(e.iv), e.key_uri.clone()));
    let mut engine =
        Engine::start(&ctx.exe, &a.request(Some(out_dir), engine_key), a.engine_limits())
            .await
            .context("starting an engine process")
            .map_err(|e| Outcome::Failed(Failed::internal(job, e)))?;
    let deadline = tokio::time::Instant::from_std(a.deadline());
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut progress = 0.0;
    let mut shutdown_at: Option<Instant> = None;
    let grace = Duration::from_secs(ctx.settings.worker_grace_secs);
    let result = loop {
        tokio::select! {
            event = engine.next() => match event {
                Some(EngineEvent::Progress { value }) => progress = value,
                Some(EngineEvent::Started { variants, live, target_duration }) => {
                    publisher.send(Step::Started { variants, live, target_duration });
                }
                Some(EngineEvent::Segment { rendition, segment }) => {
                    publisher.send(Step::Segment { rendition, segment });
                }
                Some(EngineEvent::Done { summary }) => break Ok(summary),
                Some(EngineEvent::Failed { kind, message }) => break Err(engine_failure(job, kind, message)),
                Some(EngineEvent::Probed { .. }) => {}
                None => {
                    let status = engine.wait().await;
                    break Err(engine_ended(a, status));
                }
            },
            _ = ticker.tick() => {
                let _ = media_db::advance_progress(&ctx.db, job.video_id, overall(0.05, 0.85, progress), now()).await;
                let scratch = a.scratch.clone();
                let used = tokio::task::spawn_blocking(move || dir_size(&scratch)).await.ok().and_then(|r| r.ok());
                if used.is_some_and(|u| u > ctx.settings.job_scratch_budget_bytes) {
                    break Err(Outcome::Failed(a.over_scratch()));
                }
                if shutdown_at.is_some_and(|at| at.elapsed() >= grace) {
                    break Err(Outcome::ShutDown);
                }
            }
            _ = tokio::time::sleep_until(deadline) => break Err(Outcome::Failed(a.over_time())),
            _ = a.lease.lost() => break Err(Outcome::LeaseLost),
            e = running.stopped() => break Err(publish_failed(job, e)),
            _ = shutdown.changed(), if shutdown_at.is_none() => {
                if *shutdown.borrow() {
                    tracing::info!(job = %job.id, grace = ctx.settings.worker_grace_secs, "shutdown: finishing the job in hand");
                    shutdown_at = Some(Instant::now());
                }
            }
        }
    };
    engine.kill().await;
    let summary = match result {
        Ok(summary) => summary,
        Err(outcome) => {
            running.stop(publisher).await;
            return Err(outcome);
        }
    };
    let published: Progressive =
        running.finish(publisher).await.map_err(|e| publish_failed(job, e))?;
    Ok(Transcoded { summary, stored: published.stored, encryption, attempt_started: a.started })
}

/// A finished transcode: its summary, the output files already stored while it ran, and how
/// its segments are encrypted.
struct Transcoded {
    summary: TranscodeSummary,
    stored: std::collections::HashSet<String>,
    encryption: Option<HlsEncryption>,
    /// When the attempt began, for its speed.
    attempt_started: Instant,
}

fn publish_failed(job: &Job, e: PublishError) -> Outcome {
    match e {
        PublishError::LeaseLost => Outcome::LeaseLost,
        PublishError::Failed(e) => {
            Outcome::Failed(Failed::internal(job, e.context("storing finished segments")))
        }
    }
}
