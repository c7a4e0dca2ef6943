//! Packaging after muxing: each rendition's clean media playlist (and encryption), its summary,
//! and the master playlist over all of them.

use std::path::Path;

use ffmpeg_next::Rational;

use super::encoder::Output;
use super::pipeline::{Finished, FinishedOutput};
use super::RenditionSummary;
use crate::hls::{self, Packaged, Variant};
use crate::{MediaError, TranscodeOptions};

/// Write every rendition's final (`VOD`) media playlist in place of the muxer's, then
/// `master.m3u8` with the measured bandwidths. Returns the renditions' summaries, in the
/// pipeline's (highest-first) order.
pub(super) fn package(
    out_dir: &Path,
    done: &Finished,
    opts: &TranscodeOptions,
    segment_seconds: f64,
) -> Result<Vec<RenditionSummary>, MediaError> {
    let mut renditions = Vec::with_capacity(done.outputs.len());
    let mut packaged_all: Vec<Packaged> = Vec::new();
    for out in &done.outputs {
        let packaged = hls::write_vod_playlist(
            &out.dir,
            &out.segments,
            segment_seconds,
            opts.encryption.as_ref(),
        )?;
        Output::remove_muxer_playlist(&out.dir)?;
        if !out.marked {
            renditions.push(summarize(out, &packaged, done.has_audio, done.fps));
        }
        packaged_all.push(packaged);
    }
    // Marked twins (variant B) line up too: a playlist switches between them segment by segment.
    check_alignment(&done.outputs, &packaged_all);
    let variants: Vec<Variant> = renditions.iter().map(variant_of).collect();
    hls::write_master(out_dir, &variants)?;
    Ok(renditions)
}

/// What one packaged rendition amounts to.
fn summarize(
    out: &FinishedOutput,
    packaged: &Packaged,
    has_audio: bool,
    fps: Rational,
) -> RenditionSummary {
    let codecs = match has_audio {
        true => format!("{},mp4a.40.2", out.avc1),
        false => out.avc1.clone(),
    };
    RenditionSummary {
        name: out.rendition.name.clone(),
        width: out.rendition.width,
        height: out.rendition.height,
        bandwidth: packaged.peak_bandwidth(),
        average_bandwidth: packaged.average_bandwidth(),
        codecs,
        frame_rate: f64::from(fps),
        segments: packaged.segments.len(),
        bytes: packaged.total_bytes(),
        copied: out.copied,
    }
}

/// The master playlist's entry for a rendition.
fn variant_of(summary: &RenditionSummary) -> Variant {
    Variant {
        uri: format!("{}/index.m3u8", summary.name),
        bandwidth: summary.bandwidth,
        average_bandwidth: summary.average_bandwidth,
        codecs: summary.codecs.clone(),
        width: summary.width,
        height: summary.height,
        frame_rate: summary.frame_rate,
    }
}

/// Segments must line up across renditions; that is what the forced keyframes guarantee.
fn check_alignment(outputs: &[FinishedOutput], packaged: &[Packaged]) {
    let Some(first) = packaged.first() else { return };
    for (out, p) in outputs.iter().zip(packaged).skip(1) {
        if !aligned(p, first) {
            tracing::warn!(rendition = %out.rendition.name, "segments are not aligned with the top rendition");
        }
    }
}

/// Same number of segments, each as long as its counterpart (to 2 ms).
fn aligned(a: &Packaged, b: &Packaged) -> bool {
    a.segments.len() == b.segments.len()
        && a.segments.iter().zip(&b.segments).all(|(x, y)| (x.duration - y.duration).abs() < 0.002)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::hls::Segment;
    use crate::Rendition;

    fn packaged(segments: &[(f64, u64)]) -> Packaged {
        Packaged {
            segments: segments
                .iter()
                .enumerate()
                .map(|(i, &(duration, bytes))| Segment {
                    file_name: format!("seg_{i:05}.ts"),
                    duration,
                    bytes,
                })
                .collect(),
        }
    }

    fn output_720p() -> FinishedOutput {
        FinishedOutput {
            rendition: Rendition {
                name: "720p".into(),
                width: 1280,
                height: 720,
                max_bitrate: 2_800_000,
            },
            dir: PathBuf::from("/tmp/out/720p"),
            avc1: "avc1.64001f".into(),
            segments: Vec::new(),
            copied: false,
            marked: false,
        }
    }

    #[test]
    fn a_summary_carries_the_measured_bitrates_and_codecs() {
        // 4 s at 1 MB, 4 s at 2 MB, 2 s at 0.5 MB: peak 4 Mbit/s, 7 MB over 10 s on average.
        let p = packaged(&[(4.0, 1_000_000), (4.0, 2_000_000), (2.0, 500_000)]);
        let s = summarize(&output_720p(), &p, true, Rational::new(30000, 1001));
        assert_eq!(s.name, "720p");
        assert_eq!((s.width, s.height), (1280, 720));
        assert_eq!(s.bandwidth, 4_000_000);
        assert_eq!(s.average_bandwidth, 2_800_000);
        assert_eq!(s.codecs, "avc1.64001f,mp4a.40.2");
        assert!((s.frame_rate - 29.97003).abs() < 1e-5);
        assert_eq!((s.segments, s.bytes), (3, 3_500_000));
        // Without audio the codecs name the video only.
        assert_eq!(
            summarize(&output_720p(), &p, false, Rational::new(25, 1)).codecs,
            "avc1.64001f"
        );
    }

    #[test]
    fn the_variant_points_at_the_rendition_playlist() {
        let p = packaged(&[(4.0, 1_000_000)]);
        let s = summarize(&output_720p(), &p, true, Rational::new(25, 1));
        let v = variant_of(&s);
        assert_eq!(v.uri, "720p/index.m3u8");
        assert_eq!((v.bandwidth, v.average_bandwidth), (2_000_000, 2_000_000));
        assert_eq!(v.codecs, "avc1.64001f,mp4a.40.2");
        assert_eq!((v.width, v.height, v.frame_rate), (1280, 720, 25.0));
    }

    #[test]
    fn alignment_means_the_same_segment_boundaries() {
        let top = packaged(&[(4.0, 10), (4.0, 10), (1.5, 10)]);
        assert!(aligned(&packaged(&[(4.0, 5), (4.001, 5), (1.5, 5)]), &top));
        assert!(!aligned(&packaged(&[(4.0, 5), (4.0, 5)]), &top));
        assert!(!aligned(&packaged(&[(4.0, 5), (3.9, 5), (1.6, 5)]), &top));
    }
}
