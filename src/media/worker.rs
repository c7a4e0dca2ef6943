//! One transcoding worker: claim a job, fetch the source to scratch space, run the engine on a
//! blocking thread while heartbeating the lease and reporting progress, upload the outputs
//! under a prefix of their own, and publish them atomically — or record the failure.
//!
//! A worker that loses its lease (it stalled past the lease and another worker took the job
//! over) finishes nothing: its outputs are deleted instead of published. On shutdown it waits a
//! grace period for the job in hand, then gives the job back to the queue.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lectern_workers::{HlsEncryption, MediaError, TranscodeOptions, TranscodeSummary};
use tokio::sync::watch;

use super::queue::{self, Job, PublishOutcome, Published};
use super::{db as media_db, RenditionInfo};
use crate::config::Config;
use crate::db::{now, Db};
use crate::storage::{content_type, keys, stream_from_reader, ObjectKey, Storage};

/// What a worker needs: configuration, database, storage.
#[derive(Clone)]
pub struct WorkerCtx {
    pub cfg: Arc<Config>,
    pub db: Db,
    pub storage: Storage,
}

/// Run jobs until `shutdown` turns true.
pub async fn run(ctx: WorkerCtx, worker_id: String, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(worker = %worker_id, "transcoding worker started");
    let poll = Duration::from_millis(ctx.cfg.worker_poll_ms.max(50));
    while !*shutdown.borrow() {
        match queue::claim(&ctx.db, &worker_id, ctx.cfg.job_lease_secs as i64).await {
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

/// How a job ended.
enum Outcome {
    /// Transcoded; the AES-128 key (hex) when the segments are encrypted.
    Done(TranscodeSummary, Option<String>),
    Failed { reason: String, permanent: bool },
    LeaseLost,
    ShutDown,
}

async fn process(ctx: &WorkerCtx, worker: &str, job: Job, shutdown: &mut watch::Receiver<bool>) {
    let started = Instant::now();
    tracing::info!(worker, job = job.id, video = job.video_id, attempt = job.attempts, "transcode started");
    let scratch = ctx.cfg.data_dir.join("scratch").join(format!("job-{}-{}", job.id, job.attempts));
    let prefix = keys::hls_output(job.video_id, job.id, job.attempts);
    let outcome = match transcode(ctx, worker, &job, &scratch, shutdown).await {
        Ok(o) => o,
        Err(e) => Outcome::Failed { reason: format!("{e:#}"), permanent: false },
    };
    let outcome = match outcome {
        Outcome::Done(summary, key) => match publish_outputs(ctx, worker, &job, &scratch, &prefix, &summary, key.as_deref()).await {
            Ok(o) => o,
            Err(e) => Outcome::Failed { reason: format!("storing the outputs: {e:#}"), permanent: false },
        },
        other => other,
    };
    match outcome {
        Outcome::Done(summary, _) => {
            let secs = started.elapsed().as_secs_f64();
            metrics::counter!("lectern_transcodes_total", "result" => "ready").increment(1);
            metrics::histogram!("lectern_transcode_speed_realtime").record(summary.duration_seconds / secs.max(0.001));
            tracing::info!(worker, job = job.id, video = job.video_id, duration = summary.duration_seconds, secs, "transcode published");
        }
        Outcome::Failed { reason, permanent } => {
            let _ = ctx.storage.delete_prefix(&prefix).await;
            match queue::fail(&ctx.db, &job, worker, &reason, permanent).await {
                Ok(true) => {
                    metrics::counter!("lectern_transcodes_total", "result" => "failed").increment(1);
                    tracing::warn!(worker, job = job.id, video = job.video_id, %reason, "transcode failed for good")
                }
                Ok(false) => tracing::warn!(worker, job = job.id, video = job.video_id, %reason, "transcode failed; will retry"),
                Err(e) => tracing::error!(worker, job = job.id, error = %e, "recording a failure failed"),
            }
        }
        Outcome::LeaseLost => {
            let _ = ctx.storage.delete_prefix(&prefix).await;
            tracing::warn!(worker, job = job.id, "lease lost to another worker; outputs discarded");
        }
        Outcome::ShutDown => {
            let _ = ctx.storage.delete_prefix(&prefix).await;
            if let Err(e) = queue::release(&ctx.db, &job, worker).await {
                tracing::warn!(worker, job = job.id, error = %e, "releasing a job failed; its lease will expire");
            }
            tracing::info!(worker, job = job.id, "job released at shutdown");
        }
    }
    let _ = tokio::fs::remove_dir_all(&scratch).await;
}

/// Scale engine progress into the video's progress: fetching 0–5 %, transcoding 5–90 %,
/// uploading 90–100 %.
fn overall(stage_start: f64, stage_span: f64, p: f64) -> f64 {
    stage_start + stage_span * p.clamp(0.0, 1.0)
}

async fn transcode(
    ctx: &WorkerCtx,
    worker: &str,
    job: &Job,
    scratch: &Path,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Outcome> {
    let _ = tokio::fs::remove_dir_all(scratch).await;
    tokio::fs::create_dir_all(scratch).await.context("making scratch space")?;
    let source = scratch.join("source");
    let out = scratch.join("out");
    fetch_source(ctx, job.video_id, &source).await?;
    media_db::advance_progress(&ctx.db, job.video_id, 0.05, now()).await?;

    let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
    // A fresh random key per video; the playlists point players at `/hls/{video}/key`.
    let encryption = ctx.cfg.hls_encryption.then(|| {
        use rand::RngCore;
        let (mut key, mut iv) = ([0u8; 16], [0u8; 16]);
        rand::thread_rng().fill_bytes(&mut key);
        rand::thread_rng().fill_bytes(&mut iv);
        HlsEncryption { key, iv, key_uri: "../key".into() }
    });
    let key_hex = encryption.as_ref().map(|e| hex::encode(e.key));
    let opts = TranscodeOptions {
        x264_preset: ctx.cfg.x264_preset.clone(),
        segment_seconds: ctx.cfg.segment_seconds,
        encryption,
        threads: 0,
    };
    let engine = {
        let (source, out, progress) = (source.clone(), out.clone(), progress.clone());
        tokio::task::spawn_blocking(move || {
            lectern_workers::transcode(&source, &out, &opts, &mut |p| progress.store(p.to_bits(), Ordering::Relaxed))
        })
    };
    tokio::pin!(engine);
    let beat = Duration::from_secs((ctx.cfg.job_lease_secs / 3).max(1));
    let mut ticker = tokio::time::interval(beat.min(Duration::from_secs(2)));
    let mut last_beat = Instant::now();
    let mut shutdown_at: Option<Instant> = None;
    loop {
        tokio::select! {
            res = &mut engine => {
                return Ok(match res {
                    Ok(Ok(summary)) => Outcome::Done(summary, key_hex),
                    Ok(Err(MediaError::Invalid(reason))) => Outcome::Failed { reason, permanent: true },
                    Ok(Err(e)) => Outcome::Failed { permanent: e.is_permanent(), reason: e.to_string() },
                    Err(join) => Outcome::Failed { reason: format!("the transcoder crashed: {join}"), permanent: false },
                });
            }
            _ = ticker.tick() => {
                let p = f64::from_bits(progress.load(Ordering::Relaxed));
                let _ = media_db::advance_progress(&ctx.db, job.video_id, overall(0.05, 0.85, p), now()).await;
                if last_beat.elapsed() >= beat {
                    last_beat = Instant::now();
                    match queue::heartbeat(&ctx.db, job.id, worker, ctx.cfg.job_lease_secs as i64).await {
                        Ok(true) => {}
                        Ok(false) => return Ok(Outcome::LeaseLost),
                        Err(e) => tracing::warn!(job = job.id, error = %e, "heartbeat failed"),
                    }
                }
                if let Some(at) = shutdown_at {
                    if at.elapsed() >= Duration::from_secs(ctx.cfg.worker_grace_secs) {
                        return Ok(Outcome::ShutDown);
                    }
                }
            }
            _ = shutdown.changed(), if shutdown_at.is_none() => {
                if *shutdown.borrow() {
                    tracing::info!(job = job.id, grace = ctx.cfg.worker_grace_secs, "shutdown: finishing the job in hand");
                    shutdown_at = Some(Instant::now());
                }
            }
        }
    }
}

async fn fetch_source(ctx: &WorkerCtx, video_id: i64, dest: &Path) -> anyhow::Result<()> {
    let got = ctx.storage.get(&keys::source(video_id), None).await.context("reading the uploaded source")?;
    let mut reader = tokio_util::io::StreamReader::new(got.body);
    let mut file = tokio::fs::File::create(dest).await?;
    tokio::io::copy(&mut reader, &mut file).await.context("copying the source to scratch space")?;
    Ok(())
}

/// Every file under `dir`, as paths relative to it.
fn walk(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path().strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

async fn publish_outputs(
    ctx: &WorkerCtx,
    worker: &str,
    job: &Job,
    scratch: &Path,
    prefix: &ObjectKey,
    summary: &TranscodeSummary,
    hls_key: Option<&str>,
) -> anyhow::Result<Outcome> {
    let out = scratch.join("out");
    let files = tokio::task::spawn_blocking({
        let out = out.clone();
        move || walk(&out)
    })
    .await??;
    let total = files.len().max(1) as f64;
    for (i, rel) in files.iter().enumerate() {
        let rel_str = rel.to_str().context("output file name is not UTF-8")?;
        let key = prefix.join(rel_str)?;
        let file = tokio::fs::File::open(out.join(rel)).await?;
        ctx.storage.put(&key, stream_from_reader(file), content_type(rel_str)).await?;
        media_db::advance_progress(&ctx.db, job.video_id, overall(0.9, 0.09, (i + 1) as f64 / total), now()).await?;
        if i % 20 == 19 && !queue::heartbeat(&ctx.db, job.id, worker, ctx.cfg.job_lease_secs as i64).await? {
            return Ok(Outcome::LeaseLost);
        }
    }
    let renditions: Vec<RenditionInfo> = summary
        .renditions
        .iter()
        .map(|r| RenditionInfo { name: r.name.clone(), width: r.width, height: r.height, bandwidth: r.bandwidth })
        .collect();
    let published = Published {
        output_prefix: prefix.as_str(),
        duration_seconds: summary.duration_seconds,
        renditions_json: &serde_json::to_string(&renditions)?,
        hls_key,
    };
    match queue::publish(&ctx.db, job, worker, &published).await? {
        PublishOutcome::LeaseLost => Ok(Outcome::LeaseLost),
        PublishOutcome::Published { replaced } => {
            // Leftovers of earlier attempts (a worker killed mid-upload) go now.
            for obj in ctx.storage.list(&keys::video(job.video_id)).await? {
                let k = obj.key.as_str();
                if k != keys::source(job.video_id).as_str() && !k.starts_with(&format!("{}/", prefix.as_str())) {
                    let _ = ctx.storage.delete(&obj.key).await;
                }
            }
            if let Some(old) = replaced {
                super::remove_videos(&ctx.db, &ctx.storage, &[old]).await;
            }
            Ok(Outcome::Done(summary.clone(), hls_key.map(str::to_string)))
        }
    }
}
