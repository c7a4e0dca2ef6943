//! Progressive publish: the engine reports each segment as soon as it is finished, and the
//! worker stores it right away, so a video is playable seconds after its transcode starts.
//!
//! Under the attempt's prefix the store holds, while the job runs: every finished segment; per
//! rendition an `EVENT` media playlist listing exactly the segments already stored (it is
//! written after them, so a player never sees a segment it cannot fetch); and, once every
//! rendition it lists has its first segment, the master playlist with the ladder's estimated
//! bandwidths — every rendition, or the lowest alone when the engine makes it first because
//! the whole ladder would fall behind a viewer. Each time every rendition has grown, the video's `ready_seconds` moves forward
//! ([`queue::show_progress`]); the first time, the video turns playable. At the end the
//! engine's `VOD` playlists and measured master replace these ([`super::outputs`]).
//!
//! The publisher runs as a task of its own fed by a channel, so a slow store never holds up
//! the engine's events, the heartbeat or the budgets; and it stores one thing at a time, in
//! order, which is what keeps every playlist behind its segments.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use lectern_workers::{HlsEncryption, Segment, Variant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::super::queue::{self, Job, Shown};
use super::WorkerCtx;
use crate::storage::{content_type, stream_from_bytes, stream_from_reader, ObjectKey};

/// What the engine reported, for the publisher.
pub(super) enum Step {
    Started { variants: Vec<Variant>, live: Vec<usize>, target_duration: u64 },
    Segment { rendition: usize, segment: Segment },
}

/// Why the publisher stopped early.
#[derive(Debug, thiserror::Error)]
pub(super) enum PublishError {
    /// Another worker holds the job now.
    #[error("the lease was lost")]
    LeaseLost,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// The publisher of one attempt: what it has stored so far.
pub(super) struct Progressive {
    ctx: WorkerCtx,
    job: Job,
    worker: String,
    prefix: ObjectKey,
    out_dir: PathBuf,
    /// The segments' key: the playlists name its URI and IV (the key itself stays out of
    /// them), the database keeps it for the key endpoint.
    encryption: Option<HlsEncryption>,
    duration_estimate: f64,
    plan: Option<(Vec<Variant>, u64)>,
    /// The renditions the master lists while the transcode runs (all, or the lowest alone
    /// when it is made first, see [`lectern_workers::TranscodeOptions::low_rung_first`]).
    live: Vec<usize>,
    /// Per rendition, the segments stored, in order.
    segments: Vec<Vec<Segment>>,
    master_stored: bool,
    shown_seconds: f64,
    /// Whether this attempt's output is the video's visible one; shared with the attempt,
    /// which must not delete a visible output when it fails.
    visible: Arc<AtomicBool>,
    /// Output files already stored, relative to the output directory.
    pub stored: HashSet<String>,
}

/// The settings of an attempt's publisher.
pub(super) struct Setup {
    pub job: Job,
    pub worker: String,
    pub prefix: ObjectKey,
    pub out_dir: PathBuf,
    pub encryption: Option<HlsEncryption>,
    pub duration_estimate: f64,
    pub visible: Arc<AtomicBool>,
}

/// Where the engine's steps go to a running publisher; dropping it tells it to finish.
pub(super) struct Publisher {
    tx: mpsc::UnboundedSender<Step>,
}

/// The running publisher itself: [`Running::stopped`] while the engine runs, then
/// [`Running::finish`].
pub(super) struct Running {
    task: JoinHandle<Result<Progressive, PublishError>>,
    /// Set to make the publisher take no further step (see [`Running::stop`]).
    stop: Arc<AtomicBool>,
}

impl Publisher {
    pub fn start(ctx: &WorkerCtx, setup: Setup) -> (Publisher, Running) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut p = Progressive {
            ctx: ctx.clone(),
            job: setup.job,
            worker: setup.worker,
            prefix: setup.prefix,
            out_dir: setup.out_dir,
            encryption: setup.encryption,
            duration_estimate: setup.duration_estimate,
            plan: None,
            live: Vec::new(),
            segments: Vec::new(),
            master_stored: false,
            shown_seconds: 0.0,
            visible: setup.visible,
            stored: HashSet::new(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            while let Some(step) = rx.recv().await {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                p.apply(step).await?;
            }
            Ok(p)
        });
        (Publisher { tx }, Running { task, stop })
    }

    /// Hand over a step. One the publisher can no longer take is dropped: it stopped, which
    /// [`Running::stopped`] reports.
    pub fn send(&self, step: Step) {
        let _ = self.tx.send(step);
    }
}

impl Running {
    /// Resolves when the publisher stopped before being told to finish: it failed.
    pub async fn stopped(&mut self) -> PublishError {
        match (&mut self.task).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => PublishError::Failed(anyhow::anyhow!("the publisher stopped early")),
            Err(e) => PublishError::Failed(anyhow::anyhow!("the publisher panicked: {e}")),
        }
    }

    /// The attempt ended early: let the step in hand finish, take no further one, and return
    /// once the publisher has stopped, so nothing is stored after this (an aborted task could
    /// still finish a store after the attempt's output was deleted).
    pub async fn stop(self, publisher: Publisher) {
        self.stop.store(true, Ordering::SeqCst);
        drop(publisher);
        // A publisher that already stopped was awaited by [`Running::stopped`].
        if !self.task.is_finished() {
            let _ = self.task.await;
        }
    }

    /// Store whatever is still queued and hand back what was stored.
    pub async fn finish(self, publisher: Publisher) -> Result<Progressive, PublishError> {
        drop(publisher);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(PublishError::Failed(anyhow::anyhow!("the publisher panicked: {e}"))),
        }
    }
}

impl Progressive {
    async fn apply(&mut self, step: Step) -> Result<(), PublishError> {
        match step {
            Step::Started { variants, live, target_duration } => {
                self.segments = vec![Vec::new(); variants.len()];
                self.live = live.into_iter().filter(|&r| r < variants.len()).collect();
                if self.live.is_empty() {
                    self.live = (0..variants.len()).collect();
                }
                self.plan = Some((variants, target_duration));
            }
            Step::Segment { rendition, segment } => {
                let name = self.rendition_name(rendition)?;
                let rel = format!("{name}/{}", segment.file_name);
                self.store_file(&rel).await?;
                self.segments[rendition].push(segment);
                if self.master_stored {
                    self.store_playlist(rendition).await?;
                } else if self.live.iter().all(|&r| !self.segments[r].is_empty()) {
                    for r in 0..self.segments.len() {
                        self.store_playlist(r).await?;
                    }
                    self.store_master().await?;
                } else {
                    self.store_playlist(rendition).await?;
                }
                self.show().await?;
            }
        }
        Ok(())
    }

    fn rendition_name(&self, rendition: usize) -> anyhow::Result<String> {
        let (variants, _) = self.plan.as_ref().context("a segment came before the ladder")?;
        let v = variants.get(rendition).context("a segment of an unknown rendition")?;
        Ok(v.uri.split('/').next().unwrap_or_default().to_owned())
    }

    /// Store the output file `rel` as the engine wrote it.
    async fn store_file(&mut self, rel: &str) -> anyhow::Result<()> {
        let key = self.prefix.join(rel)?;
        let file = tokio::fs::File::open(self.out_dir.join(rel))
            .await
            .with_context(|| format!("opening the finished segment {rel}"))?;
        self.ctx
            .storage
            .put(&key, stream_from_reader(file), content_type(rel))
            .await
            .with_context(|| format!("storing {rel}"))?;
        self.stored.insert(rel.to_owned());
        Ok(())
    }

    async fn store_bytes(&self, rel: &str, body: Vec<u8>) -> anyhow::Result<()> {
        let key = self.prefix.join(rel)?;
        self.ctx
            .storage
            .put(&key, stream_from_bytes(body), content_type(rel))
            .await
            .with_context(|| format!("storing {rel}"))?;
        Ok(())
    }

    /// The growing (`EVENT`) playlist of `rendition`, over the segments stored.
    async fn store_playlist(&self, rendition: usize) -> anyhow::Result<()> {
        let (_, target) = self.plan.as_ref().context("no ladder")?;
        let body = lectern_workers::media_playlist(
            &self.segments[rendition],
            *target,
            self.encryption.as_ref(),
            false,
        );
        let name = self.rendition_name(rendition)?;
        self.store_bytes(&format!("{name}/index.m3u8"), body).await
    }

    async fn store_master(&mut self) -> anyhow::Result<()> {
        let (variants, _) = self.plan.as_ref().context("no ladder")?;
        let live: Vec<Variant> = self.live.iter().map(|&r| variants[r].clone()).collect();
        self.store_bytes("master.m3u8", lectern_workers::master_playlist(&live)).await?;
        self.master_stored = true;
        Ok(())
    }

    /// Seconds every rendition the master lists has stored.
    fn ready_seconds(&self) -> f64 {
        self.live
            .iter()
            .map(|&r| self.segments[r].iter().map(|seg| seg.duration).sum::<f64>())
            .fold(f64::INFINITY, f64::min)
    }

    /// Tell the database how far the stored output goes, once every rendition has grown.
    async fn show(&mut self) -> Result<(), PublishError> {
        if !self.master_stored {
            return Ok(());
        }
        let ready = self.ready_seconds();
        if ready <= self.shown_seconds {
            return Ok(());
        }
        let hls_key = self.encryption.as_ref().map(|e| hex::encode(e.key));
        let shown = queue::show_progress(
            &self.ctx.db,
            &self.job,
            &self.worker,
            self.prefix.as_str(),
            ready,
            self.duration_estimate,
            hls_key.as_deref(),
        )
        .await
        .context("recording the published progress")?;
        match shown {
            Shown::LeaseLost => return Err(PublishError::LeaseLost),
            Shown::Hidden => {}
            Shown::Visible { replaced } => {
                self.shown_seconds = ready;
                if !self.visible.swap(true, Ordering::SeqCst) {
                    tracing::info!(job = %self.job.id, video = %self.job.video_id, ready, "video playable");
                }
                crate::media::remove_outputs(&self.ctx.storage, replaced).await;
            }
        }
        Ok(())
    }
}
