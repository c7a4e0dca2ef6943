//! `lectern watermark identify`: name the playback session a captured copy of a watermarked
//! video came from.
//!
//! 1. The copy is decoded into small grey pictures (`lectern_workers::watermark`), and so are
//!    both variants of the rendition nearest its size, from the store (decrypted in memory).
//! 2. The copy is lined up with variant A (a copy may start anywhere in the video).
//! 3. Each segment the copy covers is read as A or B, or left out when the reading is unclear.
//! 4. Every session issued for the video is scored by how many read segments agree with its
//!    code ([`super::watermark::session_bit`]); the best one is a match when a session
//!    unrelated to the copy would score as well with probability below [`NEEDED_CONFIDENCE`]'s
//!    complement, counting every session issued and every offset tried (the confidence printed
//!    is `1 − N·K·p`). Steps 3 and 4 run at each of the best-aligned offsets, since repeating
//!    content (still slides) lines up almost as well at several.

use std::io::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use lectern_workers::watermark::{self as marks, SmallFrame, SmallVideo, MARKED_SUFFIX};
use m3u8_rs::Playlist;

use super::cache::read_whole;
use super::watermark::session_bit;
use crate::db::Db;
use crate::media::RenditionInfo;
use crate::storage::{ObjectKey, Storage};
use crate::types::{UserId, VideoId};

/// The confidence a match needs.
pub const NEEDED_CONFIDENCE: f64 = 0.999;
/// Standard errors a segment's reading must clear to count.
const SIGMAS: f64 = 3.0;
/// Mean grey-level difference above which the copy is not this video at all.
const NOT_THIS_VIDEO: f64 = 24.0;

/// What `identify` found.
#[derive(Debug)]
pub enum Verdict {
    Match { session: String, user: Option<UserId>, confidence: f64, evidence: Evidence },
    NoMatch { evidence: Evidence },
}

/// How the verdict was reached.
#[derive(Debug, Default)]
pub struct Evidence {
    /// Segments of the video the copy covers, and of those, how many read clearly.
    pub segments_covered: usize,
    pub segments_read: usize,
    /// Sessions issued for the video.
    pub sessions: usize,
    /// The best session's agreement with the read segments.
    pub agreeing: usize,
    /// Where the copy starts in the video, in seconds.
    pub offset_seconds: f64,
}

/// A segment's place in the video: its first frame and how many frames it has.
struct SegmentSpan {
    first: usize,
    frames: usize,
}

/// Read the copy at `file` against watermarked `video` and name its session.
pub async fn identify(
    db: &Db,
    storage: &Storage,
    video: VideoId,
    file: &Path,
) -> anyhow::Result<Verdict> {
    let row =
        crate::media::db::video(db, video).await?.ok_or_else(|| anyhow!("no video {video}"))?;
    if row.watermarked == 0 || row.status != crate::media::VideoStatus::Ready {
        bail!("video {video} is not a ready video with a forensic watermark");
    }
    let prefix = ObjectKey::new(row.output_prefix.context("the video has no output")?)?;
    let renditions: Vec<RenditionInfo> =
        serde_json::from_str(row.renditions.as_deref().unwrap_or("[]"))?;
    let key = row.hls_key.as_deref().and_then(crate::media::hex16);

    let path = file.to_path_buf();
    let copy = tokio::task::spawn_blocking(move || marks::small_frames(&path))
        .await?
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let rendition = nearest(&renditions, copy.height).context("the video has no renditions")?;

    let scratch = tempfile::tempdir()?;
    let (a, spans) = variant(storage, &prefix, &rendition.name, key, scratch.path()).await?;
    let b_name = format!("{}{MARKED_SUFFIX}", rendition.name);
    let (b, _) = variant(storage, &prefix, &b_name, key, scratch.path()).await?;

    let sessions: Vec<(String, Option<UserId>)> =
        sqlx::query_as("SELECT id, user_id FROM playback_sessions WHERE video_id = $1")
            .bind(video)
            .fetch_all(db.pool())
            .await?;
    Ok(tokio::task::spawn_blocking(move || verdict(&copy, &a, &b, &spans, &sessions)).await?)
}

/// The rendition whose height is nearest `height` (the higher of two as near).
fn nearest(renditions: &[RenditionInfo], height: u32) -> Option<&RenditionInfo> {
    renditions.iter().min_by_key(|r| (r.height.abs_diff(height), std::cmp::Reverse(r.height)))
}

/// One variant of a rendition: its segments fetched, decrypted, joined into one MPEG-TS file
/// in `scratch` and decoded small; with where each segment's frames are.
async fn variant(
    storage: &Storage,
    prefix: &ObjectKey,
    name: &str,
    key: Option<[u8; 16]>,
    scratch: &Path,
) -> anyhow::Result<(SmallVideo, Vec<SegmentSpan>)> {
    let dir = prefix.join(name)?;
    let raw = read(storage, &dir.join("index.m3u8")?).await?;
    let Ok(Playlist::MediaPlaylist(media)) = m3u8_rs::parse_playlist_res(&raw) else {
        bail!("{name}/index.m3u8 is not a media playlist");
    };
    let (_, _, iv) = super::subtitles::segment_timing(&raw).context("no segments")?;
    let joined = scratch.join(format!("{name}.ts"));
    let mut out = std::fs::File::create(&joined)?;
    let mut durations = Vec::with_capacity(media.segments.len());
    for seg in &media.segments {
        let mut bytes = read(storage, &dir.join(&seg.uri)?).await?;
        if let (Some(key), Some(iv)) = (key, iv) {
            lectern_workers::decrypt_prefix(&key, &iv, &mut bytes)?;
            // PKCS#7: the last byte says how many padding bytes end the segment.
            let pad = bytes.last().copied().unwrap_or(0) as usize;
            if (1..=16).contains(&pad) && pad <= bytes.len() {
                bytes.truncate(bytes.len() - pad);
            }
        }
        out.write_all(&bytes)?;
        durations.push(f64::from(seg.duration));
    }
    drop(out);
    let video = tokio::task::spawn_blocking(move || marks::small_frames(&joined)).await??;
    let spans = spans(&video.frames, &durations);
    Ok((video, spans))
}

/// Where each segment's frames are, by the segments' durations.
fn spans(frames: &[SmallFrame], durations: &[f64]) -> Vec<SegmentSpan> {
    let mut out = Vec::with_capacity(durations.len());
    let (mut start, mut i) = (0.0, 0);
    let half_frame = frames.get(1).map_or(0.0, |f| f.t / 2.0);
    for d in durations {
        let end = start + d;
        let first = i;
        while i < frames.len() && frames[i].t < end - half_frame {
            i += 1;
        }
        out.push(SegmentSpan { first, frames: i - first });
        start = end;
    }
    out
}

async fn read(storage: &Storage, key: &ObjectKey) -> anyhow::Result<Vec<u8>> {
    let got =
        read_whole(storage, key, u64::MAX).await.map_err(|e| anyhow!("reading {key}: {e:?}"))?;
    Ok(got.body.to_vec())
}

/// P(X ≥ m) for X ~ Binomial(n, ½).
fn binomial_tail(n: usize, m: usize) -> f64 {
    if m == 0 {
        return 1.0;
    }
    if m > n {
        return 0.0;
    }
    // ln C(n, j) built up term by term; summed from the largest term down for precision.
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_c = vec![0.0f64; n + 1];
    for j in 1..=n {
        ln_c[j] = ln_c[j - 1] + ((n - j + 1) as f64).ln() - (j as f64).ln();
    }
    (m..=n).map(|j| (ln_c[j] + ln_half_n).exp()).sum::<f64>().min(1.0)
}

/// Offsets of the copy tried: the best-aligned few (see [`marks::align`]).
const OFFSETS_TRIED: usize = 16;

/// Line the copy up, read its segments, score the sessions; at each of the best-aligned
/// offsets, keeping the one whose best session is least likely by chance (and counting every
/// offset tried in that chance).
fn verdict(
    copy: &SmallVideo,
    a: &SmallVideo,
    b: &SmallVideo,
    spans: &[SegmentSpan],
    sessions: &[(String, Option<UserId>)],
) -> Verdict {
    let codes: Vec<Vec<bool>> = sessions
        .iter()
        .map(|(sid, _)| (0..spans.len()).map(|k| session_bit(sid, k)).collect())
        .collect();
    let offsets = marks::align(&copy.frames, &a.frames, OFFSETS_TRIED);
    let tried = offsets.len().max(1) as f64;
    let mut best: Option<(f64, Evidence, usize)> = None;
    for (offset, difference) in offsets {
        if difference > NOT_THIS_VIDEO {
            continue;
        }
        let mut evidence = Evidence {
            sessions: sessions.len(),
            offset_seconds: a.frames[offset].t,
            ..Evidence::default()
        };
        let read = read_segments(copy, a, b, spans, offset, &mut evidence);
        let Some((agree, who)) = codes
            .iter()
            .enumerate()
            .map(|(s, code)| (read.iter().filter(|&&(k, v)| code[k] == v).count(), s))
            .max()
        else {
            continue;
        };
        evidence.agreeing = agree;
        let chance = binomial_tail(read.len(), agree) * sessions.len() as f64 * tried;
        tracing::debug!(offset, difference, read = read.len(), agree, chance, "offset tried");
        if best.as_ref().is_none_or(|(c, _, _)| chance < *c) {
            best = Some((chance, evidence, who));
        }
    }
    let Some((chance, evidence, who)) = best else {
        return Verdict::NoMatch {
            evidence: Evidence { sessions: sessions.len(), ..Evidence::default() },
        };
    };
    let confidence = (1.0 - chance).max(0.0);
    if confidence < NEEDED_CONFIDENCE {
        return Verdict::NoMatch { evidence };
    }
    let (sid, user) = &sessions[who];
    Verdict::Match { session: sid.clone(), user: *user, confidence, evidence }
}

/// The variant each segment the copy covers whole reads as, with the copy at `offset`; unclear
/// segments left out. The line between A and B is drawn where the copy's readings split
/// ([`marks::threshold`]), since a re-encode weakens the mark.
fn read_segments(
    copy: &SmallVideo,
    a: &SmallVideo,
    b: &SmallVideo,
    spans: &[SegmentSpan],
    offset: usize,
    evidence: &mut Evidence,
) -> Vec<(usize, bool)> {
    let mut readings = Vec::new();
    for (k, span) in spans.iter().enumerate() {
        let (from, to) = (span.first, span.first + span.frames);
        if span.frames < 2
            || from < offset
            || to > offset + copy.frames.len()
            || to > b.frames.len()
        {
            continue;
        }
        evidence.segments_covered += 1;
        let triples: Vec<_> =
            (from..to).map(|i| (&copy.frames[i - offset], &a.frames[i], &b.frames[i])).collect();
        if let Some(r) = marks::read(&triples) {
            readings.push((k, r));
        }
    }
    let shares: Vec<f64> = readings.iter().map(|(_, r)| r.b_share).collect();
    let Some((threshold, spread)) = marks::threshold(&shares) else { return Vec::new() };
    let read: Vec<(usize, bool)> = readings
        .iter()
        .filter_map(|(k, r)| r.variant(threshold, spread, SIGMAS).map(|v| (*k, v)))
        .collect();
    evidence.segments_read = read.len();
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tails() {
        assert_eq!(binomial_tail(10, 0), 1.0);
        assert!((binomial_tail(10, 10) - 1.0 / 1024.0).abs() < 1e-12);
        assert!((binomial_tail(2, 1) - 0.75).abs() < 1e-12);
        assert!((binomial_tail(45, 23) - 0.5).abs() < 0.07);
        assert!(binomial_tail(45, 45) < 3e-14);
        assert_eq!(binomial_tail(3, 4), 0.0);
    }

    #[test]
    fn the_nearest_rendition_by_height() {
        let r = |name: &str, height| RenditionInfo {
            name: name.into(),
            width: height * 16 / 9,
            height,
            bandwidth: 0,
        };
        let ladder = [r("720p", 720), r("480p", 480), r("360p", 360)];
        assert_eq!(nearest(&ladder, 480).unwrap().name, "480p");
        assert_eq!(nearest(&ladder, 420).unwrap().name, "480p");
        assert_eq!(nearest(&ladder, 1080).unwrap().name, "720p");
        assert_eq!(nearest(&ladder, 100).unwrap().name, "360p");
    }
}
