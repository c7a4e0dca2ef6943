//! The rendition ladder: which sizes and bitrates to produce for a source.

use serde::{Deserialize, Serialize};

use crate::probe::MIN_SIDE;
use crate::ProbeInfo;

/// One output variant of the HLS ladder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendition {
    /// Name by the short side, e.g. `"720p"` (also for portrait 720×1280). Used as the
    /// rendition's directory name.
    pub name: String,
    /// Output width in pixels (even).
    pub width: u32,
    /// Output height in pixels (even).
    pub height: u32,
    /// Peak bitrate cap for the video encoder (x264 `maxrate`), in bits per second.
    pub max_bitrate: u64,
}

/// Standard rungs: short side and video maxrate.
const RUNGS: [(u32, u64); 4] =
    [(1080, 5_000_000), (720, 2_800_000), (480, 1_400_000), (360, 800_000)];

/// Plan the ladder for a probed source, highest rendition first.
///
/// Rungs go by the display *short* side (1080/720/480/360, maxrate ≈ 5000k/2800k/1400k/800k) and
/// never exceed the source's short side; the long side keeps the display aspect ratio, and both
/// dimensions are even (4:2:0 chroma). A source whose short side is below 360 gets exactly one
/// rendition at its own display size, rounded down to even dimensions (e.g. 320×240 → "240p").
/// No side is ever under 16 px (probing refuses smaller pictures; this holds for any input).
pub fn plan_ladder(info: &ProbeInfo) -> Vec<Rendition> {
    let dw = info.display_width.max(MIN_SIDE);
    let dh = info.display_height.max(MIN_SIDE);
    let (short, long) = (dw.min(dh), dw.max(dh));
    let portrait = dh > dw;
    let mut out = Vec::new();
    for (rung, max_bitrate) in RUNGS {
        if rung > short {
            continue;
        }
        let long_side = round_even(rung as f64 * long as f64 / short as f64);
        let (width, height) = if portrait { (rung, long_side) } else { (long_side, rung) };
        out.push(Rendition { name: format!("{rung}p"), width, height, max_bitrate });
    }
    if out.is_empty() {
        let (width, height) = (floor_even(dw), floor_even(dh));
        let area = width as f64 * height as f64;
        // Scale the 360p budget by area, with a floor that keeps tiny sources watchable.
        let max_bitrate =
            ((800_000.0 * area / (640.0 * 360.0)).max(250_000.0) / 1000.0).round() as u64 * 1000;
        out.push(Rendition { name: format!("{}p", width.min(height)), width, height, max_bitrate });
    }
    out
}

/// Nearest even integer, at least [`MIN_SIDE`].
fn round_even(x: f64) -> u32 {
    (((x / 2.0).round() * 2.0) as u32).max(MIN_SIDE)
}

/// Largest even integer ≤ x, at least [`MIN_SIDE`].
fn floor_even(x: u32) -> u32 {
    (x & !1).max(MIN_SIDE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(w: u32, h: u32) -> ProbeInfo {
        ProbeInfo {
            duration_seconds: 10.0,
            width: w,
            height: h,
            display_width: w,
            display_height: h,
            rotation_degrees: 0,
            frame_rate: 25.0,
            variable_frame_rate: false,
            has_audio: true,
            video_codec: "h264".into(),
            audio_codec: Some("aac".into()),
            container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
        }
    }

    fn sizes(l: &[Rendition]) -> Vec<(String, u32, u32)> {
        l.iter().map(|r| (r.name.clone(), r.width, r.height)).collect()
    }

    #[test]
    fn full_hd() {
        let l = plan_ladder(&info(1920, 1080));
        assert_eq!(
            sizes(&l),
            vec![
                ("1080p".into(), 1920, 1080),
                ("720p".into(), 1280, 720),
                ("480p".into(), 854, 480),
                ("360p".into(), 640, 360)
            ]
        );
        assert_eq!(l[0].max_bitrate, 5_000_000);
        assert_eq!(l[3].max_bitrate, 800_000);
    }

    #[test]
    fn odd_size_is_not_upscaled() {
        let l = plan_ladder(&info(1281, 721));
        assert_eq!(
            sizes(&l),
            vec![("720p".into(), 1280, 720), ("480p".into(), 852, 480), ("360p".into(), 640, 360)]
        );
        let l = plan_ladder(&info(1280, 719));
        assert_eq!(l[0].name, "480p");
    }

    #[test]
    fn portrait_goes_by_short_side() {
        let l = plan_ladder(&info(720, 1280));
        assert_eq!(
            sizes(&l),
            vec![("720p".into(), 720, 1280), ("480p".into(), 480, 854), ("360p".into(), 360, 640)]
        );
    }

    #[test]
    fn tiny_source_gets_one_rendition() {
        let l = plan_ladder(&info(320, 240));
        assert_eq!(sizes(&l), vec![("240p".into(), 320, 240)]);
        let l = plan_ladder(&info(321, 181));
        assert_eq!(sizes(&l), vec![("180p".into(), 320, 180)]);
        assert!(l[0].max_bitrate >= 250_000);
    }

    #[test]
    fn no_rung_has_a_side_under_16_pixels() {
        for (w, h) in [(1, 360), (640, 1), (2, 2), (17, 4000), (4000, 17)] {
            for r in plan_ladder(&info(w, h)) {
                assert!(r.width >= 16 && r.height >= 16, "{w}×{h} gave {r:?}");
                assert!(r.width % 2 == 0 && r.height % 2 == 0, "{w}×{h} gave {r:?}");
            }
        }
    }

    #[test]
    fn big_source_caps_at_1080() {
        let l = plan_ladder(&info(3840, 2160));
        assert_eq!(l[0].name, "1080p");
        assert_eq!((l[0].width, l[0].height), (1920, 1080));
        assert_eq!(l.len(), 4);
    }
}
