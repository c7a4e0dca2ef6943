//! The forensic watermark's picture side: the mark every "B" variant carries, and reading a
//! captured copy back against the two variants.
//!
//! # The mark
//!
//! A watermarked video has every rendition twice: variant A (`<name>/`, exactly what an
//! unmarked transcode makes) and variant B (`<name>-b/`, the same frames with the mark added
//! before encoding). The mark is a fixed pattern of [`GRID_W`] × [`GRID_H`] blocks over the
//! picture, each block's luma raised or lowered by [`MARK_LEVEL`] grey level (the sign per block
//! from a fixed pseudo-random table). One grey level over the whole picture is a PSNR of 48 dB
//! against variant A before encoding; so low and so coarse, it is invisible, and being of the
//! lowest spatial frequencies it is what compression and scaling keep best.
//!
//! # Reading a copy
//!
//! [`Reader`] works on tiny grey pictures ([`ANALYSIS_W`] × [`ANALYSIS_H`], area-averaged, so
//! each mark block is a few pixels and a re-encode's noise averages out), made the same way
//! from the copy and from both variants' segments ([`small_frames`]). For the frames of one
//! segment it projects the copy's difference from variant A onto the mark as variant B actually
//! carries it (B − A after encoding): about 0 for a copy of A, about 1 for a copy of B, with a
//! spread measured over the segment's frames. The caller turns those readings into the bits of
//! a session's code.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::{frame, media};

use crate::ffutil::{self, ff_err};
use crate::MediaError;

/// Mark blocks across the picture.
pub const GRID_W: usize = 16;
/// Mark blocks down the picture.
pub const GRID_H: usize = 9;
/// Grey levels a mark block moves luma by.
pub const MARK_LEVEL: u8 = 1;
/// Width of the pictures a copy is read at (4 pixels per mark block).
pub const ANALYSIS_W: usize = GRID_W * 4;
/// Height of the pictures a copy is read at.
pub const ANALYSIS_H: usize = GRID_H * 4;
/// Folder-name suffix of a rendition's marked variant ("720p" → "720p-b").
pub const MARKED_SUFFIX: &str = "-b";

/// The file name of segment `index` of `rendition` (a folder name: "720p", "720p-b") in a
/// watermarked video whose segment names derive from `secret`: `seg_00004-<16 hex>.ts`.
/// Knowing one variant's name of a segment tells nothing about the other's.
pub fn segment_name(secret: &[u8; 16], rendition: &str, index: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(secret);
    h.update(rendition.as_bytes());
    h.update(b"\0");
    h.update((index as u64).to_be_bytes());
    let tag: String = h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("seg_{index:05}-{tag}.ts")
}

/// The sign of mark block (`bx`, `by`): a fixed pseudo-random ±1 (splitmix64 of the index).
pub fn block_sign(bx: usize, by: usize) -> i32 {
    let mut z = ((by * GRID_W + bx) as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    if (z ^ (z >> 31)) & 1 == 1 {
        1
    } else {
        -1
    }
}

/// Add the mark to a yuv420p (or any planar, 8-bit luma first) picture, in place.
pub(crate) fn apply(f: &mut frame::Video) {
    let (w, h) = (f.width() as usize, f.height() as usize);
    if w == 0 || h == 0 {
        return;
    }
    let stride = f.stride(0);
    let data = f.data_mut(0);
    let mut raised = vec![false; w];
    let mut signs_of = usize::MAX;
    for y in 0..h {
        let by = y * GRID_H / h;
        if by != signs_of {
            for (x, r) in raised.iter_mut().enumerate() {
                *r = block_sign(x * GRID_W / w, by) > 0;
            }
            signs_of = by;
        }
        let row = &mut data[y * stride..y * stride + w];
        for (px, &up) in row.iter_mut().zip(&raised) {
            *px = if up { px.saturating_add(MARK_LEVEL) } else { px.saturating_sub(MARK_LEVEL) };
        }
    }
}

/// The mark's sign at each pixel of an analysis picture.
fn analysis_signs() -> &'static [f64] {
    static SIGNS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    SIGNS.get_or_init(|| {
        (0..ANALYSIS_H)
            .flat_map(|y| (0..ANALYSIS_W).map(move |x| (x, y)))
            .map(|(x, y)| f64::from(block_sign(x * GRID_W / ANALYSIS_W, y * GRID_H / ANALYSIS_H)))
            .collect()
    })
}

/// A decoded picture reduced to `ANALYSIS_W` × `ANALYSIS_H` grey, and when it is shown.
#[derive(Clone, Debug)]
pub struct SmallFrame {
    /// Seconds from the stream's start (its first frame at 0).
    pub t: f64,
    /// `ANALYSIS_W` × `ANALYSIS_H` grey levels, row by row.
    pub luma: Vec<u8>,
}

/// What [`small_frames`] read from a file.
#[derive(Debug)]
pub struct SmallVideo {
    /// The decoded pictures' size.
    pub width: u32,
    /// The decoded pictures' height.
    pub height: u32,
    /// The video stream's average frame rate.
    pub fps: f64,
    /// Every decoded picture, in display order.
    pub frames: Vec<SmallFrame>,
}

/// Decode the video stream of `path` into small grey pictures. A file that is not in one of
/// the containers uploads may be in, or has no decodable video stream, is
/// [`MediaError::Invalid`].
pub fn small_frames(path: &Path) -> Result<SmallVideo, MediaError> {
    ffutil::init();
    // Opened as uploads are: allow-listed containers only, nothing but this one file.
    let mut ictx = crate::probe::open_input(path)?;
    let stream = ictx
        .streams()
        .best(media::Type::Video)
        .ok_or_else(|| MediaError::Invalid(format!("{} has no video stream", path.display())))?;
    let index = stream.index();
    let tb = stream.time_base();
    let rate = stream.avg_frame_rate();
    let mut decoder = ffmpeg::codec::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(|_| {
            MediaError::Invalid(format!("{}: its video cannot be decoded", path.display()))
        })?;
    let (width, height) = (decoder.width(), decoder.height());
    let mut scaler: Option<(scaling::Context, (u32, u32, Pixel))> = None;
    let mut out = Vec::new();
    let mut first: Option<i64> = None;
    let mut decoded = frame::Video::empty();
    let mut small = frame::Video::empty();
    let mut take = |decoded: &frame::Video, out: &mut Vec<SmallFrame>| -> Result<(), MediaError> {
        let key = (decoded.width(), decoded.height(), decoded.format());
        if scaler.as_ref().is_none_or(|(_, k)| *k != key) {
            let ctx = scaling::Context::get(
                key.2,
                key.0,
                key.1,
                Pixel::GRAY8,
                ANALYSIS_W as u32,
                ANALYSIS_H as u32,
                scaling::Flags::AREA,
            )
            .map_err(|e| ff_err("preparing to read the copy", e))?;
            scaler = Some((ctx, key));
        }
        let (ctx, _) = scaler.as_mut().expect("set above");
        ctx.run(decoded, &mut small).map_err(|e| ff_err("scaling a picture", e))?;
        let pts = decoded.timestamp().or(decoded.pts()).unwrap_or(0);
        let t0 = *first.get_or_insert(pts);
        let (stride, data) = (small.stride(0), small.data(0));
        let mut luma = Vec::with_capacity(ANALYSIS_W * ANALYSIS_H);
        for row in 0..ANALYSIS_H {
            luma.extend_from_slice(&data[row * stride..row * stride + ANALYSIS_W]);
        }
        out.push(SmallFrame { t: (pts - t0) as f64 * f64::from(tb), luma });
        Ok(())
    };
    for (s, packet) in ictx.packets() {
        if s.index() != index {
            continue;
        }
        if decoder.send_packet(&packet).is_err() {
            continue;
        }
        while decoder.receive_frame(&mut decoded).is_ok() {
            take(&decoded, &mut out)?;
        }
    }
    let _ = decoder.send_eof();
    while decoder.receive_frame(&mut decoded).is_ok() {
        take(&decoded, &mut out)?;
    }
    if out.is_empty() {
        return Err(MediaError::Invalid(format!(
            "no picture of {} could be decoded",
            path.display()
        )));
    }
    out.sort_by(|a, b| a.t.total_cmp(&b.t));
    let fps = if rate.numerator() > 0 && rate.denominator() > 0 { f64::from(rate) } else { 30.0 };
    Ok(SmallVideo { width, height, fps, frames: out })
}

/// How a stretch of a copy reads against the two variants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// The copy's share of variant B's mark: about 0 for A, 1 for B.
    pub b_share: f64,
    /// Its standard error, from the spread over the frames.
    pub error: f64,
    /// Frames compared.
    pub frames: usize,
}

impl Reading {
    /// The variant it reads as (true: B) against `threshold` (the share halfway between the
    /// copy's A and B readings: 0.5 for a faithful copy, less where a re-encode weakened the
    /// mark), if clearly on one side: by `sigmas` standard errors and by a tenth of `spread`
    /// (the distance between the A and B readings).
    pub fn variant(&self, threshold: f64, spread: f64, sigmas: f64) -> Option<bool> {
        let margin = (self.b_share - threshold).abs();
        let clear = margin >= sigmas * self.error && margin >= 0.1 * spread;
        clear.then_some(self.b_share > threshold)
    }
}

/// Read `copy` against variants `a` and `b` of the same frames (each triple one instant):
/// per frame, the projection of copy − A onto B − A through the mark's block signs, each block
/// weighted by how much variant A moves there. Where the picture stands still, a re-encode
/// keeps what it coded first (a ±1 change is below what it codes again) and the mark there
/// lags behind the segment; moving parts show the segment's own variant.
pub fn read(frames: &[(&SmallFrame, &SmallFrame, &SmallFrame)]) -> Option<Reading> {
    if frames.len() < 2 {
        return None;
    }
    // Motion per mark block, in grey levels per pixel and frame, plus a floor so that a still
    // picture weighs all blocks alike.
    let mut motion = vec![0.0f64; GRID_W * GRID_H];
    for pair in frames.windows(2) {
        let (prev, cur) = (&pair[0].1.luma, &pair[1].1.luma);
        for (i, (p, c)) in prev.iter().zip(cur).enumerate() {
            motion[block_of(i)] += f64::from(p.abs_diff(*c));
        }
    }
    let per_block = ((ANALYSIS_W / GRID_W) * (ANALYSIS_H / GRID_H)) as f64;
    let scale = per_block * (frames.len() - 1) as f64;
    let weights: Vec<f64> = analysis_signs()
        .iter()
        .enumerate()
        .map(|(i, s)| s * (motion[block_of(i)] / scale + 0.25))
        .collect();
    let mut num = Vec::with_capacity(frames.len());
    let mut den = Vec::with_capacity(frames.len());
    for (c, a, b) in frames {
        let (mut n, mut d) = (0.0, 0.0);
        for (i, w) in weights.iter().enumerate() {
            n += w * (f64::from(c.luma[i]) - f64::from(a.luma[i]));
            d += w * (f64::from(b.luma[i]) - f64::from(a.luma[i]));
        }
        num.push(n);
        den.push(d);
    }
    let total: f64 = den.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let share = num.iter().sum::<f64>() / total;
    // Spread of the per-frame residuals around the fitted share (a ratio estimator's error).
    let n = frames.len() as f64;
    let mean_d = total / n;
    let var = num.iter().zip(&den).map(|(x, d)| (x - share * d).powi(2)).sum::<f64>() / (n - 1.0);
    let error = (var / n).sqrt() / mean_d;
    Some(Reading { b_share: share, error, frames: frames.len() })
}

/// The mark block of pixel `i` of an analysis picture.
fn block_of(i: usize) -> usize {
    let (x, y) = (i % ANALYSIS_W, i / ANALYSIS_W);
    (y * GRID_H / ANALYSIS_H) * GRID_W + x * GRID_W / ANALYSIS_W
}

/// The share halfway between a copy's A and B readings, and the distance between them: the
/// two means of `shares` split in two (one-dimensional k-means). `None` when they do not split
/// (every reading alike: a copy of one variant throughout, or of neither).
pub fn threshold(shares: &[f64]) -> Option<(f64, f64)> {
    let (mut lo, mut hi) =
        shares.iter().fold((f64::MAX, f64::MIN), |(l, h), &s| (l.min(s), h.max(s)));
    if shares.len() < 2 || hi - lo < 0.2 {
        return None;
    }
    for _ in 0..32 {
        let mid = (lo + hi) / 2.0;
        let (low, high): (Vec<f64>, Vec<f64>) = shares.iter().partition(|&&s| s <= mid);
        if low.is_empty() || high.is_empty() {
            return None;
        }
        lo = low.iter().sum::<f64>() / low.len() as f64;
        hi = high.iter().sum::<f64>() / high.len() as f64;
    }
    (hi - lo >= 0.2).then_some(((lo + hi) / 2.0, hi - lo))
}

/// The `k` frame offsets that line `copy` up with `reference` best (`copy[i]` shows what
/// `reference[i + offset]` does), best first, each with the mean absolute difference per pixel
/// there.
///
/// Judged over the whole copy, not its first seconds, so a copy that opens on a still slide is
/// placed by wherever it changes: coarsely, on block means of a few hundred of its frames at
/// every offset, then exactly, on whole small pictures, for the best. Content that repeats (a
/// slide shown twice, a looping animation) lines up almost as well at several offsets, which is
/// why there are `k`: the reader keeps the one at which the mark reads as a session's code.
pub fn align(copy: &[SmallFrame], reference: &[SmallFrame], k: usize) -> Vec<(usize, f64)> {
    if copy.is_empty() || reference.len() < copy.len() {
        return Vec::new();
    }
    let signature = |f: &SmallFrame| -> Vec<u16> {
        let mut s = vec![0u16; GRID_W * GRID_H];
        for (i, &v) in f.luma.iter().enumerate() {
            s[block_of(i)] += u16::from(v);
        }
        s
    };
    let step = (copy.len() / 300).max(1);
    let copy_sig: Vec<(usize, Vec<u16>)> =
        (0..copy.len()).step_by(step).map(|i| (i, signature(&copy[i]))).collect();
    let ref_sig: Vec<Vec<u16>> = reference.iter().map(signature).collect();
    let mut coarse: Vec<(usize, u64)> = (0..=reference.len() - copy.len())
        .map(|o| {
            let d = copy_sig.iter().map(|(i, c)| {
                c.iter().zip(&ref_sig[o + i]).map(|(a, b)| u64::from(a.abs_diff(*b))).sum::<u64>()
            });
            (o, d.sum())
        })
        .collect();
    coarse.sort_by_key(|c| c.1);
    coarse.truncate(k);
    let exact = |offset: usize| -> f64 {
        let (mut total, mut n) = (0u64, 0u64);
        for i in (0..copy.len()).step_by((step / 4).max(1)) {
            let (c, r) = (&copy[i].luma, &reference[i + offset].luma);
            total += c.iter().zip(r).map(|(x, y)| u64::from(x.abs_diff(*y))).sum::<u64>();
            n += c.len() as u64;
        }
        total as f64 / n.max(1) as f64
    };
    let mut out: Vec<(usize, f64)> = coarse.into_iter().map(|(o, _)| (o, exact(o))).collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_differ_by_variant_and_secret() {
        let (s1, s2) = ([1u8; 16], [2u8; 16]);
        let a = segment_name(&s1, "720p", 4);
        assert!(a.starts_with("seg_00004-") && a.ends_with(".ts") && a.len() == 29, "{a}");
        assert_eq!(a, segment_name(&s1, "720p", 4));
        assert_ne!(a, segment_name(&s1, "720p-b", 4));
        assert_ne!(a, segment_name(&s2, "720p", 4));
        assert_ne!(a, segment_name(&s1, "720p", 5));
    }

    #[test]
    fn the_mark_is_balanced_and_fixed() {
        let signs: Vec<i32> =
            (0..GRID_H).flat_map(|y| (0..GRID_W).map(move |x| block_sign(x, y))).collect();
        let plus = signs.iter().filter(|&&s| s > 0).count();
        assert!((50..=94).contains(&plus), "{plus} of 144 blocks raised");
        assert_eq!(block_sign(3, 4), block_sign(3, 4));
    }

    fn small(luma: impl Fn(usize, usize) -> f64, t: f64) -> SmallFrame {
        let luma = (0..ANALYSIS_H)
            .flat_map(|y| (0..ANALYSIS_W).map(move |x| (x, y)))
            .map(|(x, y)| luma(x, y).round().clamp(0.0, 255.0) as u8)
            .collect();
        SmallFrame { t, luma }
    }

    fn mark(x: usize, y: usize) -> f64 {
        f64::from(block_sign(x * GRID_W / ANALYSIS_W, y * GRID_H / ANALYSIS_H))
    }

    #[test]
    fn a_copy_reads_as_the_variant_it_came_from() {
        // Content that moves, the B variant marked by 2 levels, copies with noise of ±3.
        let content = |x: usize, y: usize, k: usize| 100.0 + ((x * 7 + y * 3 + k * 5) % 40) as f64;
        let noise = |x: usize, y: usize, k: usize| ((x * 31 + y * 17 + k * 13) % 7) as f64 - 3.0;
        let frames: Vec<[SmallFrame; 4]> = (0..60)
            .map(|k| {
                let t = k as f64 / 30.0;
                [
                    small(|x, y| content(x, y, k), t),
                    small(|x, y| content(x, y, k) + 2.0 * mark(x, y), t),
                    small(|x, y| content(x, y, k) + noise(x, y, k), t),
                    small(|x, y| content(x, y, k) + 2.0 * mark(x, y) + noise(x, y, k), t),
                ]
            })
            .collect();
        let of = |copy: usize| -> Reading {
            let triples: Vec<_> = frames.iter().map(|f| (&f[copy], &f[0], &f[1])).collect();
            read(&triples).unwrap()
        };
        let (from_a, from_b) = (of(2), of(3));
        assert_eq!(from_a.variant(0.5, 1.0, 4.0), Some(false), "{from_a:?}");
        assert_eq!(from_b.variant(0.5, 1.0, 4.0), Some(true), "{from_b:?}");
        assert!(from_a.b_share.abs() < 0.2 && (from_b.b_share - 1.0).abs() < 0.2);
    }

    #[test]
    fn the_threshold_sits_between_the_two_readings() {
        // A re-encode that kept 60 % of the mark: B segments read about 0.6.
        let shares = [0.02, 0.61, -0.03, 0.58, 0.64, 0.01, 0.05, 0.57];
        let (t, spread) = threshold(&shares).unwrap();
        assert!((t - 0.3).abs() < 0.03 && (spread - 0.58).abs() < 0.05, "{t} {spread}");
        // One variant throughout: nothing to split.
        assert_eq!(threshold(&[0.01, 0.03, -0.02, 0.0]), None);
        assert_eq!(threshold(&[0.5]), None);
    }

    #[test]
    fn a_copy_lines_up_with_where_it_was_taken() {
        let reference: Vec<SmallFrame> = (0..400)
            .map(|k| {
                let shade = (k as u64).wrapping_mul(2_654_435_761) >> 7;
                small(|x, y| ((x as u64 * 3 + y as u64 * 5 + shade) % 200) as f64, k as f64 / 30.0)
            })
            .collect();
        let copy: Vec<SmallFrame> = reference[123..323].to_vec();
        assert_eq!(align(&copy, &reference, 4).first().map(|(o, _)| *o), Some(123));
        // A copy that opens on a still picture is placed by where it changes.
        let still = small(|x, y| ((x + y) % 50) as f64, 0.0);
        let mut slides = vec![still.clone(); 300];
        slides.extend(reference[..100].iter().cloned());
        slides.extend(vec![still; 100]);
        let copy: Vec<SmallFrame> = slides[150..360].to_vec();
        assert_eq!(align(&copy, &slides, 4).first().map(|(o, _)| *o), Some(150));
    }
}
