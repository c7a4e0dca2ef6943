//! The lease heartbeat of the job in hand.

use std::time::Duration;

use tokio::sync::watch;

use super::super::queue::{self};
use super::*;

/// The heartbeat of the job in hand: extends the lease every third of it, in the background,
/// until dropped. The queue never extends it past the attempt's deadline.
pub(super) struct Lease {
    lost: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Lease {
    pub(super) fn keep(ctx: &WorkerCtx, job: crate::types::JobId, worker: &str) -> Lease {
        let (tx, lost) = watch::channel(false);
        let (db, worker, lease_secs) =
            (ctx.db.clone(), worker.to_string(), ctx.settings.job_lease_secs as i64);
        let task = tokio::spawn(async move {
            let beat = Duration::from_secs((lease_secs as u64 / 3).max(1));
            loop {
                tokio::time::sleep(beat).await;
                match queue::heartbeat(&db, job, &worker, lease_secs).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = tx.send(true);
                        return;
                    }
                    Err(e) => tracing::warn!(%job, error = %e, "heartbeat failed"),
                }
            }
        });
        Lease { lost, task }
    }

    /// Resolves once another worker holds the job (never, while this one does).
    pub(super) async fn lost(&mut self) {
        if self.lost.wait_for(|lost| *lost).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}
