//! Chapter boundaries: where a lecture's picture changes at once (a new slide, a cut to
//! another camera), measured on pictures the fan-out graph already decodes.
//!
//! The graph hands this module [`SAMPLES_PER_SECOND`] tiny grey pictures ([`SAMPLE_W`] ×
//! [`SAMPLE_H`], area-averaged, so sensor noise and compression artefacts average out). The
//! change between two consecutive samples is the share of their pixels that differ by more than
//! [`PIXEL_STEP`] grey levels. A slide change is a *peak* of that measure: a large share at one
//! sample, little at the samples before and after (the picture was still, jumped, and is still
//! again). Continuous motion — a talking head, a moving pointer, a pan — changes every sample
//! alike and makes no peak. Changes closer together than [`MIN_CHAPTER_SECONDS`] (slide
//! builds, flicker) are merged into the first; a change that would leave a last chapter shorter
//! than that is dropped.

use ffmpeg_next::frame;

/// Pictures measured per second of video.
pub(crate) const SAMPLES_PER_SECOND: u32 = 4;
/// Width of a measured picture.
pub(crate) const SAMPLE_W: u32 = 64;
/// Height of a measured picture.
pub(crate) const SAMPLE_H: u32 = 36;
/// Grey levels a pixel must move by to count as changed.
const PIXEL_STEP: u8 = 20;
/// Share of changed pixels below which two samples show the same picture.
const MIN_CHANGE: f64 = 0.04;
/// How many times the change at a peak exceeds the change at the samples beside it.
const PEAK_RATIO: f64 = 2.5;
/// Shortest chapter: changes closer together are one chapter.
pub const MIN_CHAPTER_SECONDS: f64 = 10.0;
/// Most chapters one video gets.
const MAX_CHAPTERS: usize = 500;

/// Collects the change between consecutive samples as the graph produces them.
#[derive(Default)]
pub(crate) struct SceneChanges {
    last: Option<Vec<u8>>,
    /// (time of the sample, share of its pixels changed since the sample before).
    changes: Vec<(f64, f64)>,
}

impl SceneChanges {
    /// Take a `SAMPLE_W`×`SAMPLE_H` grey picture shown at `t` seconds.
    pub fn push(&mut self, t: f64, f: &frame::Video) {
        let (w, h) = (SAMPLE_W as usize, SAMPLE_H as usize);
        if f.width() as usize != w || f.height() as usize != h || f.planes() == 0 {
            return;
        }
        let (stride, data) = (f.stride(0), f.data(0));
        let mut pixels = Vec::with_capacity(w * h);
        for row in 0..h {
            pixels.extend_from_slice(&data[row * stride..row * stride + w]);
        }
        self.push_pixels(t, pixels);
    }

    fn push_pixels(&mut self, t: f64, pixels: Vec<u8>) {
        if let Some(last) = &self.last {
            if self.changes.last().is_some_and(|&(prev, _)| t <= prev) {
                // A rebuilt graph repeating a moment already measured.
                self.last = Some(pixels);
                return;
            }
            let changed = last.iter().zip(&pixels).filter(|(a, b)| a.abs_diff(**b) > PIXEL_STEP);
            self.changes.push((t, changed.count() as f64 / pixels.len().max(1) as f64));
        }
        self.last = Some(pixels);
    }

    /// Chapter starts in seconds for a video of `duration`: 0, then every kept change.
    pub fn chapters(&self, duration: f64) -> Vec<f64> {
        let peaks = self.changes.iter().enumerate().filter_map(|(i, &(t, d))| {
            let before = if i > 0 { self.changes[i - 1].1 } else { 0.0 };
            let after = self.changes.get(i + 1).map_or(0.0, |c| c.1);
            let beside = before.max(after).max(MIN_CHANGE / PEAK_RATIO);
            (d >= MIN_CHANGE && d >= PEAK_RATIO * beside).then_some(t)
        });
        let mut starts = vec![0.0];
        for t in peaks {
            if starts.len() >= MAX_CHAPTERS {
                break;
            }
            let last = *starts.last().expect("starts at 0");
            if t - last >= MIN_CHAPTER_SECONDS && duration - t >= MIN_CHAPTER_SECONDS {
                starts.push((t * 1000.0).round() / 1000.0);
            }
        }
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = (SAMPLE_W * SAMPLE_H) as usize;

    /// Samples at `SAMPLES_PER_SECOND` for `seconds`, each from `picture(t)`.
    fn measure(seconds: f64, picture: impl Fn(f64) -> Vec<u8>) -> SceneChanges {
        let mut s = SceneChanges::default();
        let n = (seconds * f64::from(SAMPLES_PER_SECOND)) as usize;
        for i in 0..n {
            let t = i as f64 / f64::from(SAMPLES_PER_SECOND);
            s.push_pixels(t, picture(t));
        }
        s
    }

    /// A still "slide" of grey level `v` with a band of text-like pixels unique to `v`.
    fn slide(v: u8) -> Vec<u8> {
        (0..N).map(|i| if (i / 64) % 6 == 0 && (i + v as usize) % 3 == 0 { 0 } else { v }).collect()
    }

    #[test]
    fn slide_changes_make_chapters_and_quick_ones_merge() {
        // Slides at 0, 12, 15 (3 s, merged into the one before), 30 and 44 (too near the end).
        let s = measure(50.0, |t| {
            slide(match t {
                t if t < 12.0 => 200,
                t if t < 15.0 => 120,
                t if t < 30.0 => 240,
                t if t < 44.0 => 60,
                _ => 160,
            })
        });
        assert_eq!(s.chapters(50.0), vec![0.0, 12.0, 30.0]);
    }

    #[test]
    fn continuous_motion_is_not_a_change() {
        // Every sample differs from the one before as much as a slide change would.
        let s = measure(60.0, |t| {
            let shift = (t * 4.0) as usize;
            (0..N).map(|i| if (i + shift * 7) % 5 == 0 { 255 } else { 0 }).collect()
        });
        assert_eq!(s.chapters(60.0), vec![0.0]);
        // A still picture has nothing to cut either.
        assert_eq!(measure(60.0, |_| slide(90)).chapters(60.0), vec![0.0]);
        // Nor does an empty measure.
        assert_eq!(SceneChanges::default().chapters(0.0), vec![0.0]);
    }

    #[test]
    fn noise_below_the_pixel_step_is_not_a_change() {
        let s = measure(40.0, |t| {
            let jitter = ((t * 4.0) as usize % 2 * 15) as u8;
            (0..N).map(|i| 100 + if i % 2 == 0 { jitter } else { 0 }).collect()
        });
        assert_eq!(s.chapters(40.0), vec![0.0]);
    }
}
