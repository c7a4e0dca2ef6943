//! Decode once, fan out: one decoder, one filter graph, N x264 encoders, one AAC encoder, N HLS
//! muxers — all driven from the calling thread.

mod encoder;
mod fanout;
mod package;
mod passthrough;
mod pipeline;
mod timeline;

use std::fs;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::ffutil;
use crate::hls::{self, Segment, Variant};
use crate::probe;
use crate::thumbs;
use crate::{plan_ladder, MediaError, ProbeInfo, TranscodeOptions};

use pipeline::Pipeline;

/// What was produced for one rendition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenditionSummary {
    /// Rendition (and directory) name, e.g. `"720p"`.
    pub name: String,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Peak segment bitrate in bits/s (the master playlist's `BANDWIDTH`).
    pub bandwidth: u64,
    /// Whole-rendition average bitrate in bits/s (`AVERAGE-BANDWIDTH`).
    pub average_bandwidth: u64,
    /// RFC 6381 codecs string, e.g. `"avc1.64001f,mp4a.40.2"`.
    pub codecs: String,
    /// Constant output frame rate.
    pub frame_rate: f64,
    /// Number of segments.
    pub segments: usize,
    /// Total bytes of the rendition's segments (as stored, i.e. encrypted when encryption is on).
    pub bytes: u64,
    /// The source's own video, copied instead of encoded (the top-rung shortcut).
    #[serde(default)]
    pub copied: bool,
}

/// The result of a successful [`transcode`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscodeSummary {
    /// Exact duration of the output: max(video frames / fps, audio samples / sample rate).
    pub duration_seconds: f64,
    /// The renditions, highest first (same order as in `master.m3u8`).
    pub renditions: Vec<RenditionSummary>,
    /// What the source looked like.
    pub source: ProbeInfo,
    /// Wall-clock time the transcode took, in seconds.
    pub elapsed_seconds: f64,
    /// Total size of everything written into the output directory.
    pub output_bytes: u64,
    /// Where chapters start, in seconds: 0, then every place the picture changes at once (a new
    /// slide) at least [`MIN_CHAPTER_SECONDS`](crate::MIN_CHAPTER_SECONDS) after the one before
    /// and before the end.
    #[serde(default)]
    pub chapters: Vec<f64>,
    /// Every rendition has a marked twin (variant B) in `<name>-b/`.
    #[serde(default)]
    pub watermarked: bool,
}

/// Below this speed (× real time) over its first segment, the whole ladder would fall behind
/// a viewer who starts watching as soon as it is playable: the lowest rung is made first.
const LOW_RUNG_FIRST_BELOW: f64 = 1.2;

/// The share of the progress the lowest rung's pass stands for, in low-rung-first mode.
const LOW_RUNG_SHARE: f64 = 0.2;

/// x264's presets, fastest first.
const X264_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// Transcode `input` into a complete HLS package in `out_dir` (created if missing).
///
/// Writes `master.m3u8`, `<rendition>/index.m3u8` + `<rendition>/seg_NNNNN.ts` for every rung of
/// [`plan_ladder`], `poster.jpg`, `sprite.jpg` and `thumbnails.vtt`. The source is decoded once;
/// every rendition is encoded from the same constant-frame-rate frames with keyframes forced at
/// every segment boundary, so segments align across renditions. Audio is encoded once to AAC-LC
/// and shared by all renditions.
///
/// `progress` receives non-decreasing values in `0..=1` (decoded position / duration), ending
/// with exactly `1.0` on success. Everything runs on the calling thread (plus codec threads):
/// call it from a blocking context. On error, `out_dir` may hold partial output.
pub fn transcode(
    input: &Path,
    out_dir: &Path,
    opts: &TranscodeOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<TranscodeSummary, MediaError> {
    transcode_with(input, out_dir, opts, &mut |event| {
        if let TranscodeEvent::Progress(p) = event {
            progress(p)
        }
    })
}

/// What [`transcode_with`] reports while it works, in this order: `Started` once, then
/// `Progress` and `Segment` interleaved.
#[derive(Debug)]
pub enum TranscodeEvent<'a> {
    /// Non-decreasing progress in `0..=1`, ending with exactly `1.0` on success.
    Progress(f64),
    /// The encoders are open.
    Started {
        /// The master playlist's entries, highest first, with bandwidths estimated from each
        /// rung's cap until the end measures them.
        variants: &'a [Variant],
        /// The variants to list in a master playlist published while the transcode runs: all
        /// of them, or — when the ladder is slower than real time and the lowest rung is made
        /// first so that a viewer never catches up — that one alone.
        live: &'a [usize],
        /// What every version of every media playlist states as `EXT-X-TARGETDURATION`.
        target_duration: u64,
    },
    /// A segment is finished: it sits in `out_dir/<name>/`, encrypted when asked, and will
    /// not change again.
    Segment {
        /// Which rendition: an index into `variants`.
        rendition: usize,
        /// The segment.
        segment: &'a Segment,
    },
}

/// [`transcode`], reporting each segment as soon as it is finished, for publishing a video
/// while it is still being transcoded (see [`crate::media_playlist`]).
pub fn transcode_with(
    input: &Path,
    out_dir: &Path,
    opts: &TranscodeOptions,
    events: &mut dyn FnMut(TranscodeEvent<'_>),
) -> Result<TranscodeSummary, MediaError> {
    ffutil::init();
    let started = Instant::now();
    check_options(opts)?;
    let mut progress = Progress { f: events, last: -1.0, held: None, part: (0.0, 1.0) };
    progress.report(0.0);

    let mut ictx = probe::open_input(input)?;
    let probed = probe::analyze(&ictx, input)?;
    let ladder = plan_ladder(&probed.info);
    fs::create_dir_all(out_dir)?;

    let fps = timeline::output_frame_rate(probed.info.frame_rate);
    let copy = match opts.copy_top_rung && opts.watermark.is_none() {
        true => passthrough::plan(&ictx, &probed, &ladder, fps, opts.segment_seconds),
        false => None,
    };
    // The segment length every playlist states as its target: the one asked for, or, where the
    // source's keyframes decide the cuts, the longest segment they make.
    let longest =
        copy.map_or(opts.segment_seconds, |c| c.longest_segment.max(opts.segment_seconds));
    let target_duration = hls::target_duration(longest, &[]);
    let lowest = ladder.len().saturating_sub(1);
    let low_first = copy.is_none() && lowest > 0 && opts.low_rung_first == Some(true);
    let mut done = None;
    if !low_first {
        let mut pipeline = Pipeline::new(&ictx, &probed, &ladder, opts, out_dir, copy, 0)?;
        let variants = pipeline.planned_variants();
        // Auto: encode the first segment of every rung, holding it back, and see whether the
        // whole ladder keeps ahead of a viewer who starts now.
        let measure = copy.is_none() && lowest > 0 && opts.low_rung_first.is_none();
        let mut slow = false;
        if measure {
            progress.held = Some(Vec::new());
            let clock = Instant::now();
            let ended = pipeline.run_until(
                &mut ictx,
                &mut progress,
                Pipeline::every_output_has_a_segment,
            )?;
            let speed = pipeline.encoded_seconds() / clock.elapsed().as_secs_f64().max(1e-3);
            slow = !ended && speed < LOW_RUNG_FIRST_BELOW;
            tracing::info!(
                speed,
                slow,
                "the whole ladder's speed over its first segment (x real time)"
            );
        }
        if slow {
            progress.held = None;
        } else {
            let live: Vec<usize> = (0..variants.len()).collect();
            (progress.f)(TranscodeEvent::Started {
                variants: &variants,
                live: &live,
                target_duration,
            });
            progress.release();
            pipeline.run(&mut ictx, &mut progress)?;
            done = Some(pipeline.finish()?);
        }
    }
    let done = match done {
        Some(done) => done,
        None => {
            // Low rung first: the lowest rung alone (several times real time), published and
            // played while the rest follow in a second pass over the input.
            let mut ictx = probe::open_input(input)?;
            let mut rest_ictx = probe::open_input(input)?;
            let rest_probed = probe::analyze(&rest_ictx, input)?;
            let (rest, low) = ladder.split_at(lowest);
            let mut first = Pipeline::new(&ictx, &probed, low, opts, out_dir, None, lowest)?;
            let mut second = Pipeline::new(&rest_ictx, &rest_probed, rest, opts, out_dir, None, 0)?;
            let mut variants = second.planned_variants();
            variants.extend(first.planned_variants());
            (progress.f)(TranscodeEvent::Started {
                variants: &variants,
                live: &[lowest],
                target_duration,
            });
            progress.part = (0.0, LOW_RUNG_SHARE);
            first.run(&mut ictx, &mut progress)?;
            progress.part = (LOW_RUNG_SHARE, 1.0 - LOW_RUNG_SHARE);
            second.run(&mut rest_ictx, &mut progress)?;
            second.finish()?.followed_by(first.finish()?)
        }
    };
    let renditions = package::package(out_dir, &done, opts, longest)?;

    // Thumbnails.
    let poster = done
        .poster
        .ok_or_else(|| MediaError::Ffmpeg("no frame was available for the poster".into()))?;
    thumbs::write_jpeg(&poster, &out_dir.join("poster.jpg"))?;
    done.sprite.write(out_dir, done.duration)?;

    let output_bytes = dir_size(out_dir)?;
    progress.finish();
    Ok(TranscodeSummary {
        duration_seconds: done.duration,
        renditions,
        source: probed.info,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        output_bytes,
        chapters: done.scenes.chapters(done.duration),
        watermarked: opts.watermark.is_some(),
    })
}

/// Refuse options no transcode can honour, before any work starts.
fn check_options(opts: &TranscodeOptions) -> Result<(), MediaError> {
    if !X264_PRESETS.contains(&opts.x264_preset.as_str()) {
        return Err(MediaError::InvalidOptions(format!(
            "unknown x264 preset {:?} (expected one of {})",
            opts.x264_preset,
            X264_PRESETS.join(", ")
        )));
    }
    if !(opts.segment_seconds.is_finite() && (1.0..=30.0).contains(&opts.segment_seconds)) {
        return Err(MediaError::InvalidOptions(format!(
            "segment_seconds must be between 1 and 30, not {}",
            opts.segment_seconds
        )));
    }
    if let Some(enc) = &opts.encryption {
        if enc.key_uri.is_empty() || enc.key_uri.chars().any(|c| c == '"' || c.is_control()) {
            return Err(MediaError::InvalidOptions(
                "the key URI must be non-empty and free of quotes and control characters".into(),
            ));
        }
    }
    Ok(())
}

/// Total size of the files under `dir`, recursively.
fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            total += dir_size(&entry.path())?;
        } else if ft.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Forwards events: monotonic progress, throttled to 0.5 % steps, and finished segments —
/// or holds the segments back while [`transcode_with`] measures the ladder's speed.
struct Progress<'a> {
    f: &'a mut dyn FnMut(TranscodeEvent<'_>),
    last: f64,
    /// Segments held back (`Some`) until the ladder is known to stay ahead of a viewer.
    held: Option<Vec<(usize, Segment)>>,
    /// The share of the whole this part of the work covers: start and span.
    part: (f64, f64),
}

impl Progress<'_> {
    fn segment(&mut self, rendition: usize, segment: &Segment) {
        match &mut self.held {
            Some(held) => held.push((rendition, segment.clone())),
            None => (self.f)(TranscodeEvent::Segment { rendition, segment }),
        }
    }

    /// Pass on what was held back, and everything from now on.
    fn release(&mut self) {
        for (rendition, segment) in self.held.take().unwrap_or_default() {
            (self.f)(TranscodeEvent::Segment { rendition, segment: &segment });
        }
    }

    fn report(&mut self, p: f64) {
        if !p.is_finite() {
            return;
        }
        let p = (self.part.0 + self.part.1 * p).clamp(0.0, 0.99);
        if p >= self.last + 0.005 || (self.last < 0.0 && p >= 0.0) {
            self.last = p;
            (self.f)(TranscodeEvent::Progress(p));
        }
    }

    fn finish(&mut self) {
        self.last = 1.0;
        (self.f)(TranscodeEvent::Progress(1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HlsEncryption;

    fn invalid(opts: &TranscodeOptions) -> String {
        match check_options(opts) {
            Err(MediaError::InvalidOptions(m)) => m,
            other => panic!("expected InvalidOptions, got {other:?}"),
        }
    }

    #[test]
    fn options_are_checked_before_any_work() {
        assert!(check_options(&TranscodeOptions::default()).is_ok());
        for preset in X264_PRESETS {
            let opts = TranscodeOptions { x264_preset: preset.into(), ..Default::default() };
            assert!(check_options(&opts).is_ok(), "{preset}");
        }
        let m = invalid(&TranscodeOptions { x264_preset: "turbo".into(), ..Default::default() });
        assert!(m.starts_with("unknown x264 preset \"turbo\" (expected one of ultrafast,"), "{m}");
        for segment_seconds in [0.5, 30.5, f64::NAN, f64::INFINITY] {
            let m = invalid(&TranscodeOptions { segment_seconds, ..Default::default() });
            assert!(m.starts_with("segment_seconds must be between 1 and 30"), "{m}");
        }
        for ok in [1.0, 30.0, 6.0] {
            let opts = TranscodeOptions { segment_seconds: ok, ..Default::default() };
            assert!(check_options(&opts).is_ok(), "{ok}");
        }
    }

    #[test]
    fn the_key_uri_must_fit_in_a_playlist_attribute() {
        let with_uri = |key_uri: &str| TranscodeOptions {
            encryption: Some(HlsEncryption { key: [1; 16], iv: [2; 16], key_uri: key_uri.into() }),
            ..Default::default()
        };
        assert!(check_options(&with_uri("https://example.test/keys/7?t=abc")).is_ok());
        assert!(check_options(&with_uri("key.bin")).is_ok());
        for bad in ["", "a\"b", "line\nbreak", "tab\there"] {
            assert!(
                invalid(&with_uri(bad)).starts_with("the key URI must be non-empty"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn progress_is_monotonic_throttled_and_ends_at_one() {
        let mut seen = Vec::new();
        {
            let mut f = |e: TranscodeEvent<'_>| {
                if let TranscodeEvent::Progress(p) = e {
                    seen.push(p)
                }
            };
            let mut progress = Progress { f: &mut f, last: -1.0, held: None, part: (0.0, 1.0) };
            for p in [0.0, 0.001, 0.004, 0.006, 0.5, 0.3, 0.502, f64::NAN, 2.0, 3.0] {
                progress.report(p);
            }
            progress.finish();
        }
        // 0.001/0.004 are within 0.5 % of 0; 0.3 goes backwards; 0.502 is too close to 0.5;
        // NaN is ignored; 2.0 is held at 0.99 until the end, which alone reports 1.
        assert_eq!(seen, vec![0.0, 0.006, 0.5, 0.99, 1.0]);
    }
}
