//! The worker pool: transcoding workers run as child processes (`lectern worker --child`), so a
//! decoder crash kills one child, never the API. Each child that exits is started again after a
//! backoff; on shutdown children get SIGTERM (they finish or release their job) and, past the
//! grace period, SIGKILL.
//!
//! A child gets only [`WorkerSettings`] (as JSON in [`CHILD_CONFIG_ENV`]) and a clean
//! environment — never the JWT secret, playback keys or payment keys — and dies with the pool
//! (see [`super::child`]): a pool killed outright leaves no orphan heartbeating its job.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::child::{self, Limits};
use super::worker::WorkerSettings;
use crate::config::Config;

/// Environment variable through which a child receives its [`WorkerSettings`] (JSON).
pub const CHILD_CONFIG_ENV: &str = "LECTERN_CHILD_CONFIG";

/// Run `n` worker children until `shutdown` turns true, restarting any that exit.
pub async fn supervise(cfg: &Config, n: usize, shutdown: watch::Receiver<bool>) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot find our own executable; no transcoding workers");
            return;
        }
    };
    let settings = WorkerSettings::from(cfg);
    let config_json = serde_json::to_string(&settings).expect("settings serialize");
    let limits = Limits {
        address_space: Some(cfg.engine_memory_limit_bytes),
        file_size: None,
        cpu_secs: None,
    };
    let grace = Duration::from_secs(cfg.worker_grace_secs + 5);
    let mut set = JoinSet::new();
    for slot in 0..n {
        let (exe, json, mut shutdown) = (exe.clone(), config_json.clone(), shutdown.clone());
        set.spawn(async move {
            let mut backoff = Duration::from_millis(500);
            while !*shutdown.borrow() {
                let started = Instant::now();
                let mut child = match spawn(&exe, &json, slot, limits) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(slot, error = %e, "starting a worker process failed");
                        let _ = tokio::time::timeout(backoff, shutdown.changed()).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                };
                tokio::select! {
                    status = child.wait() => {
                        if *shutdown.borrow() { break; }
                        tracing::warn!(slot, ?status, "worker process exited; restarting it");
                        metrics::counter!("lectern_worker_restarts_total").increment(1);
                        if started.elapsed() > Duration::from_secs(60) {
                            backoff = Duration::from_millis(500);
                        }
                        let _ = tokio::time::timeout(backoff, shutdown.changed()).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                    _ = shutdown.changed() => {
                        stop(&mut child, grace).await;
                        break;
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

fn spawn(
    exe: &std::path::Path,
    settings_json: &str,
    slot: usize,
    limits: Limits,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.args(["worker", "--child"]);
    // Storage may use the AWS SDK's own credential chain, which reads AWS_* variables.
    child::configure(&mut cmd, limits, true);
    let child = cmd
        .env(CHILD_CONFIG_ENV, settings_json)
        .env("LECTERN_WORKER_SLOT", slot.to_string())
        .stdin(Stdio::null())
        .spawn()?;
    tracing::info!(slot, pid = child.id(), "worker process started");
    Ok(child)
}

/// SIGTERM, then SIGKILL after `grace`.
async fn stop(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        // SAFETY: sending a signal to a child we started; no memory is touched.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}
