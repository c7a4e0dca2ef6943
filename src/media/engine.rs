//! The transcoding engine in a process of its own for each step of a job (`lectern engine`,
//! hidden): probing the upload, then transcoding it. An uploaded file is only ever opened
//! there, so its limits (address space, file size, CPU time) are that job's, a decoder stuck
//! inside FFmpeg can be stopped by killing the process, and a crash takes nothing else down.
//!
//! The protocol is JSON: one [`EngineRequest`] on the child's standard input (so the content
//! key never shows in its arguments or environment), one [`EngineEvent`] per line on its
//! standard output, ending with `done` or `failed`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use lectern_workers::{
    HlsEncryption, MediaError, ProbeInfo, Segment, TranscodeEvent, TranscodeOptions,
    TranscodeSummary, Variant,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::child::{self, Limits};
use crate::config::LogFormat;

/// The hidden subcommand that runs one engine step.
pub const ENGINE_SUBCOMMAND: &str = "engine";

/// What an engine process is asked to do.
#[derive(Clone, Serialize, Deserialize)]
pub struct EngineRequest {
    /// The uploaded file, in the job's scratch space.
    pub input: PathBuf,
    /// Where to write the HLS package; `None` to probe only.
    pub out_dir: Option<PathBuf>,
    pub x264_preset: String,
    pub segment_seconds: f64,
    /// `Some(true)`: make the lowest rung first; `Some(false)`: never; `None`: when the whole
    /// ladder is slower than real time.
    #[serde(default)]
    pub low_rung_first: Option<bool>,
    /// Encode every rung's forensic-watermark twin too, segment names derived from this
    /// secret (hex).
    #[serde(default)]
    pub watermark: Option<String>,
    /// AES-128 key and IV (hex) and key URI, when segments are encrypted.
    pub encryption: Option<(String, String, String)>,
    pub log_format: LogFormat,
    pub log_filter: String,
}

/// One line of an engine process's output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    Probed {
        info: ProbeInfo,
    },
    /// The encoders are open: the ladder's variants (bandwidths estimated), those a master
    /// published while transcoding lists (`live`), and the target duration every media
    /// playlist states.
    Started {
        variants: Vec<Variant>,
        #[serde(default)]
        live: Vec<usize>,
        target_duration: u64,
    },
    Progress {
        value: f64,
    },
    /// A finished segment of rendition `rendition` (an index into the variants), in
    /// `out_dir/<name>/`.
    Segment {
        rendition: usize,
        segment: Segment,
    },
    Done {
        summary: TranscodeSummary,
    },
    Failed {
        kind: FailureKind,
        message: String,
    },
}

/// Which [`MediaError`] an engine failed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Not usable media; the message is for the uploader.
    Invalid,
    /// FFmpeg refuses this work every time; the message is path-free.
    Unprocessable,
    /// The configured transcode options are unusable.
    InvalidOptions,
    /// Reading or writing files failed.
    Io,
    /// Something unexpected inside FFmpeg.
    Ffmpeg,
}

impl FailureKind {
    /// Retrying the same input with the same options cannot help.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            FailureKind::Invalid | FailureKind::Unprocessable | FailureKind::InvalidOptions
        )
    }

    /// Whether the message may be shown to the video's owner as it is.
    pub fn is_public(self) -> bool {
        matches!(self, FailureKind::Invalid | FailureKind::Unprocessable)
    }
}

fn failed(e: MediaError) -> EngineEvent {
    let kind = match &e {
        MediaError::Invalid(_) => FailureKind::Invalid,
        MediaError::Unprocessable(_) => FailureKind::Unprocessable,
        MediaError::InvalidOptions(_) => FailureKind::InvalidOptions,
        MediaError::Io(_) => FailureKind::Io,
        MediaError::Ffmpeg(_) => FailureKind::Ffmpeg,
    };
    let message = match e {
        MediaError::Invalid(m) => m,
        other => other.to_string(),
    };
    EngineEvent::Failed { kind, message }
}

/// The engine process itself: read the request from standard input, work, report on standard
/// output. Blocking; the exit code is 0 whenever a final event was written.
pub fn child_main() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let req: EngineRequest = serde_json::from_str(&line)?;
    crate::telemetry::init(req.log_format, &req.log_filter);
    let stdout = std::io::stdout();
    let emit = |event: &EngineEvent| {
        let mut out = stdout.lock();
        // A parent that stopped reading has killed us or is about to; nothing to do about it.
        let _ = serde_json::to_writer(&mut out, event);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    };
    let info = match lectern_workers::probe(&req.input) {
        Ok(info) => info,
        Err(e) => {
            emit(&failed(e));
            return Ok(());
        }
    };
    emit(&EngineEvent::Probed { info });
    let Some(out_dir) = &req.out_dir else { return Ok(()) };
    let encryption = match &req.encryption {
        Some((key, iv, key_uri)) => {
            Some(HlsEncryption { key: hex16(key)?, iv: hex16(iv)?, key_uri: key_uri.clone() })
        }
        None => None,
    };
    let opts = TranscodeOptions {
        x264_preset: req.x264_preset.clone(),
        segment_seconds: req.segment_seconds,
        encryption,
        threads: 0,
        copy_top_rung: true,
        low_rung_first: req.low_rung_first,
        watermark: req.watermark.as_deref().map(hex16).transpose()?,
    };
    let result = lectern_workers::transcode_with(&req.input, out_dir, &opts, &mut |event| {
        emit(&match event {
            TranscodeEvent::Progress(value) => EngineEvent::Progress { value },
            TranscodeEvent::Started { variants, live, target_duration } => EngineEvent::Started {
                variants: variants.to_vec(),
                live: live.to_vec(),
                target_duration,
            },
            TranscodeEvent::Segment { rendition, segment } => {
                EngineEvent::Segment { rendition, segment: segment.clone() }
            }
        });
    });
    emit(&match result {
        Ok(summary) => EngineEvent::Done { summary },
        Err(e) => failed(e),
    });
    Ok(())
}

fn hex16(s: &str) -> anyhow::Result<[u8; 16]> {
    crate::media::hex16(s).ok_or_else(|| anyhow::anyhow!("a key or IV must be 32 hex digits"))
}

/// A running engine process.
pub struct Engine {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Engine {
    /// Start `exe engine` with `limits` and send it `req`.
    pub async fn start(exe: &Path, req: &EngineRequest, limits: Limits) -> std::io::Result<Engine> {
        let mut cmd = Command::new(exe);
        cmd.arg(ENGINE_SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        child::configure(&mut cmd, limits, false);
        let mut child = cmd.spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut json = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        json.push(b'\n');
        stdin.write_all(&json).await?;
        drop(stdin);
        let stdout = child.stdout.take().expect("piped");
        Ok(Engine { child, lines: BufReader::new(stdout).lines() })
    }

    /// The next event; `None` once the process closed its output (it ended).
    pub async fn next(&mut self) -> Option<EngineEvent> {
        loop {
            match self.lines.next_line().await {
                Ok(Some(line)) => match serde_json::from_str(&line) {
                    Ok(event) => return Some(event),
                    Err(e) => {
                        tracing::warn!(error = %e, "an engine process wrote a line that is not an event")
                    }
                },
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Wait for the process to end.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Stop the process now (SIGKILL) and reap it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}
