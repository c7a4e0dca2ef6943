//! Publishing a finished attempt's outputs: from its scratch dir to the object store.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::super::queue::{self, Job, PublishOutcome, Published};
use super::super::{db as media_db, RenditionInfo};
use super::*;
use crate::db::now;
use crate::storage::{content_type, keys, stream_from_reader, ObjectKey};

/// Bytes of all files under `dir`.
pub(super) fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for rel in walk(dir)? {
        total += std::fs::symlink_metadata(dir.join(rel)).map_or(0, |m| m.len());
    }
    Ok(total)
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

pub(super) async fn publish_outputs(
    ctx: &WorkerCtx,
    worker: &str,
    job: &Job,
    scratch: &Path,
    prefix: &ObjectKey,
    done: &Transcoded,
    hls_key: Option<&str>,
) -> Result<Outcome, Outcome> {
    let (summary, stored) = (&done.summary, &done.stored);
    let internal =
        |e: anyhow::Error| Outcome::Failed(Failed::internal(job, e.context("storing the outputs")));
    let out = scratch.join("out");
    let files = tokio::task::spawn_blocking({
        let out = out.clone();
        move || walk(&out)
    })
    .await
    .map_err(|e| internal(e.into()))?
    .map_err(|e| internal(e.into()))?;
    // Segments stored while the transcode ran are not stored again.
    let files: Vec<PathBuf> =
        files.into_iter().filter(|f| f.to_str().is_none_or(|s| !stored.contains(s))).collect();
    let total = files.len().max(1) as f64;
    for (i, rel) in files.iter().enumerate() {
        let rel_str = rel.to_str().context("output file name is not UTF-8").map_err(internal)?;
        let key = prefix.join(rel_str).map_err(|e| internal(e.into()))?;
        let file = tokio::fs::File::open(out.join(rel)).await.map_err(|e| internal(e.into()))?;
        ctx.storage
            .put(&key, stream_from_reader(file), content_type(rel_str))
            .await
            .map_err(|e| internal(e.into()))?;
        media_db::advance_progress(
            &ctx.db,
            job.video_id,
            overall(0.9, 0.09, (i + 1) as f64 / total),
            now(),
        )
        .await
        .map_err(|e| internal(e.into()))?;
    }
    let renditions: Vec<RenditionInfo> = summary
        .renditions
        .iter()
        .map(|r| RenditionInfo {
            name: r.name.clone(),
            width: r.width,
            height: r.height,
            bandwidth: r.bandwidth,
        })
        .collect();
    let renditions_json = serde_json::to_string(&renditions).map_err(|e| internal(e.into()))?;
    let published = Published {
        output_prefix: prefix.as_str(),
        duration_seconds: summary.duration_seconds,
        renditions_json: &renditions_json,
        hls_key,
        attempt_seconds: done.attempt_started.elapsed().as_secs_f64(),
        chapters: &summary.chapters,
        watermarked: summary.watermarked,
    };
    match queue::publish(&ctx.db, job, worker, &published).await.map_err(|e| internal(e.into()))? {
        PublishOutcome::LeaseLost => Err(Outcome::LeaseLost),
        PublishOutcome::Published { replaced } => {
            // Leftovers of earlier attempts (a worker killed mid-upload) go now.
            if let Ok(objects) = ctx.storage.list(&keys::video(job.video_id)).await {
                for obj in objects {
                    let k = obj.key.as_str();
                    if k != keys::source(job.video_id).as_str()
                        && !k.starts_with(&format!("{}/", prefix.as_str()))
                    {
                        let _ = ctx.storage.delete(&obj.key).await;
                    }
                }
            }
            crate::media::remove_videos(&ctx.db, &ctx.storage, &replaced).await;
            Ok(Outcome::Done(summary.clone()))
        }
    }
}
