//! The top-rung shortcut: a source that already is what the top rung would be is copied into it
//! instead of being encoded again.
//!
//! An H.264 source qualifies when it is exactly the top rung's picture (same coded size, square
//! pixels, not rotated or interlaced, 8-bit 4:2:0), at a constant frame rate equal to the output
//! rate, within the rung's bitrate cap but above the next rung's (so the ladder still rises), in
//! Baseline/Main/High profile, and when its index shows a keyframe at least every segment length
//! (so no segment gets much longer than asked). Its packets then go straight into the top
//! rung's muxer, and every other rung forces its IDR frames at exactly the source keyframes
//! where that muxer cuts (and only there), so the muxers cut every rendition at the same
//! instants and the ladder stays aligned. Anything else is encoded as before.
//!
//! The segment lengths then follow the source's keyframes: the hls muxer cuts at the first
//! keyframe at or past each multiple of the segment length. [`plan`] replays that rule over the
//! index, so the longest segment (the playlists' target duration) is known before the first
//! one is written.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::format::stream::Stream;
use ffmpeg_next::Rational;

use crate::ffutil::codecpar;
use crate::probe::Probed;
use crate::Rendition;

/// How a qualifying source's top rung is made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Passthrough {
    /// The longest segment the source's keyframes make, in seconds: x264's keyframe interval
    /// for the other rungs must exceed it, so that it never adds a keyframe of its own.
    pub longest_segment: f64,
}

/// Whether the source can be copied into `top`, and how its segments will fall.
pub(super) fn plan(
    ictx: &ffmpeg::format::context::Input,
    probed: &Probed,
    ladder: &[Rendition],
    fps: Rational,
    segment_seconds: f64,
) -> Option<Passthrough> {
    let vst = ictx.stream(probed.video_index)?;
    let top = ladder.first()?;
    if let Err(why) = qualifies(&vst, probed, ladder, fps) {
        tracing::debug!(why, "the top rung is encoded");
        return None;
    }
    let tb = f64::from(vst.time_base());
    let keys = keyframe_times(&vst, tb);
    let end = probed.info.duration_seconds;
    let Some(plan) = replay_cuts(&keys, segment_seconds, end) else {
        tracing::debug!("the top rung is encoded: the index shows too few keyframes");
        return None;
    };
    let longest_gap = keys.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    if longest_gap > segment_seconds + 1e-3 {
        tracing::debug!(longest_gap, "the top rung is encoded: keyframes too far apart");
        return None;
    }
    tracing::info!(rendition = %top.name, ?plan, "copying the source as the top rung");
    Some(plan)
}

fn qualifies(
    vst: &Stream,
    probed: &Probed,
    ladder: &[Rendition],
    fps: Rational,
) -> Result<(), &'static str> {
    let top = &ladder[0];
    let par = codecpar(vst);
    let info = &probed.info;
    if par.codec_id != ffi::AVCodecID::AV_CODEC_ID_H264 {
        return Err("not H.264");
    }
    if !matches!(par.profile, 66 | 578 | 77 | 100) {
        return Err("not Baseline, Main or High profile");
    }
    if par.format != ffi::AVPixelFormat::AV_PIX_FMT_YUV420P as i32 {
        return Err("not 8-bit 4:2:0");
    }
    if (par.width as u32, par.height as u32) != (top.width, top.height)
        || (info.display_width, info.display_height) != (top.width, top.height)
    {
        return Err("not the top rung's size");
    }
    if probed.interlaced || probed.rotation_exact != 0.0 {
        return Err("interlaced or rotated");
    }
    let (avg, real) = (vst.avg_frame_rate(), vst.rate());
    if info.variable_frame_rate || avg != fps || real != fps {
        return Err("not at the output's constant frame rate");
    }
    if par.bit_rate <= 0 || par.bit_rate as u64 > top.max_bitrate {
        return Err("bitrate unknown or above the rung's cap");
    }
    if ladder.get(1).is_some_and(|next| par.bit_rate as u64 <= next.max_bitrate) {
        // A rung below could get as many bits: the ladder would not go up in quality.
        return Err("bitrate not above the next rung's cap");
    }
    if vst.start_time() != probed.video_start {
        return Err("the video does not start the timeline");
    }
    Ok(())
}

/// Presentation times (seconds from the first) of the keyframes the demuxer's index lists.
fn keyframe_times(vst: &Stream, tb: f64) -> Vec<f64> {
    // SAFETY: `vst` is a stream of an open input context it borrows; its index entries are
    // owned by it and only read here, one at a time, while the borrow lasts.
    let st = unsafe { vst.as_ptr() } as *mut ffi::AVStream;
    // SAFETY: as above.
    let n = unsafe { ffi::avformat_index_get_entries_count(st) };
    let mut keys = Vec::new();
    for i in 0..n {
        // SAFETY: as above; `i` is within the count just read, so the entry is non-NULL.
        let e = unsafe { &*ffi::avformat_index_get_entry(st, i) };
        if e.flags() & ffi::AVINDEX_KEYFRAME != 0 {
            keys.push(e.timestamp as f64 * tb);
        }
    }
    if let Some(&first) = keys.first() {
        keys.iter_mut().for_each(|k| *k -= first);
    }
    keys
}

/// Replay the hls muxer's rule — cut at the first keyframe at or past the next multiple of the
/// segment length — over `keys` (seconds, the first at 0), the video ending at `end` seconds
/// (0 when unknown: then the last segment is taken to be as long as any can be). `None`
/// without a keyframe after the first.
fn replay_cuts(keys: &[f64], segment_seconds: f64, end: f64) -> Option<Passthrough> {
    if keys.len() < 2 {
        return None;
    }
    let (mut number, mut last_cut, mut longest, mut longest_gap) = (1.0, 0.0, 0.0f64, 0.0f64);
    for w in keys.windows(2) {
        longest_gap = longest_gap.max(w[1] - w[0]);
        let t = w[1];
        if t + 1e-6 >= segment_seconds * number {
            longest = longest.max(t - last_cut);
            last_cut = t;
            number += 1.0;
        }
    }
    let last = match end > last_cut {
        true => end - last_cut,
        false => segment_seconds + longest_gap,
    };
    Some(Passthrough { longest_segment: longest.max(last) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_follow_the_muxers_rule() {
        // Keyframes every 2 s, 4-second segments: every other keyframe cuts.
        let keys: Vec<f64> = (0..10).map(|i| i as f64 * 2.0).collect();
        let p = replay_cuts(&keys, 4.0, 20.0).unwrap();
        assert_eq!(p.longest_segment, 4.0);
        // Without the end known, the last segment may be a segment and a keyframe distance.
        assert_eq!(replay_cuts(&keys, 4.0, 0.0).unwrap().longest_segment, 6.0);
        // Keyframes every 3 s: cuts at 6, 9, 12 … so one segment is 6 s long.
        let keys: Vec<f64> = (0..10).map(|i| i as f64 * 3.0).collect();
        let p = replay_cuts(&keys, 4.0, 30.0).unwrap();
        assert_eq!(p.longest_segment, 6.0);
        // A lone keyframe tells nothing.
        assert_eq!(replay_cuts(&[0.0], 4.0, 10.0), None);
    }
}
