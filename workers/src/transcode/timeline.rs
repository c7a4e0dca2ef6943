//! Timeline arithmetic: output frame rate, where the timeline ends, where segments start.

use ffmpeg_next::Rational;

use crate::probe;

/// Where the output timeline ends, in seconds: the probed duration plus a little slack for
/// containers that round it (1 s, or 1 % of long files); [`probe::MAX_DURATION`] when the source
/// has no timestamps to measure at all. Nothing — no frame, no gap filled with copies or
/// silence — reaches past it.
pub(super) fn timeline_cap(duration_seconds: f64) -> f64 {
    if duration_seconds > 0.0 {
        duration_seconds + (duration_seconds * 0.01).max(1.0)
    } else {
        probe::MAX_DURATION
    }
}

/// Choose the constant output frame rate: the source's average, snapped to a standard rate when
/// close, otherwise rounded to an integer; rates above 60 are divided evenly (120 → 60, 100 → 50).
pub(super) fn output_frame_rate(source_fps: f64) -> Rational {
    let mut f = if source_fps.is_finite() && source_fps > 0.0 { source_fps } else { 30.0 };
    let mut k = 1.0;
    while f / k > 60.5 {
        k += 1.0;
    }
    f /= k;
    const STANDARD: [(i32, i32); 8] =
        [(24000, 1001), (24, 1), (25, 1), (30000, 1001), (30, 1), (50, 1), (60000, 1001), (60, 1)];
    for (n, d) in STANDARD {
        let s = n as f64 / d as f64;
        if (f - s).abs() / s < 0.0005 {
            return Rational::new(n, d);
        }
    }
    Rational::new((f.round() as i32).clamp(1, 60), 1)
}

/// Frames per segment at `fps`: x264's fixed keyframe interval (at least 1).
pub(super) fn gop_frames(fps: Rational, segment_seconds: f64) -> u32 {
    (f64::from(fps) * segment_seconds).round().max(1.0) as u32
}

/// The output frame the poster is taken from: the one at min(3 s, duration/3), or at 3 s when
/// the duration is unknown.
pub(super) fn poster_frame(duration_seconds: f64, fps: Rational) -> i64 {
    let poster_time = if duration_seconds > 0.0 { (duration_seconds / 3.0).min(3.0) } else { 3.0 };
    (poster_time * f64::from(fps)).floor() as i64
}

/// The video duration a file promised but did not deliver (`got` seconds were decoded), if it
/// fell short enough to call the file truncated; `None` when it is complete enough.
///
/// After read errors (`read_trouble`) the video stream's stated duration, else the container's,
/// is expected to within 2 % (at least 1 s). Without them only the stream's own stated duration
/// counts, with a wide margin (90 % less half a second): an index (e.g. an MP4 written
/// "faststart") may promise media that is not there.
pub(super) fn missing_video(
    got: f64,
    video_duration: Option<f64>,
    container_duration: f64,
    read_trouble: bool,
) -> Option<f64> {
    if read_trouble {
        let expected = video_duration.unwrap_or(container_duration);
        (expected > 0.0 && got < expected - (0.02 * expected).max(1.0)).then_some(expected)
    } else {
        video_duration.filter(|&expected| got < expected * 0.9 - 0.5)
    }
}

/// Which frames start a segment (and so must be IDR frames), from their time.
#[derive(Clone, Copy)]
pub(super) struct Keyframes {
    /// Seconds per output frame.
    pub frame_seconds: f64,
    pub segment_seconds: f64,
}

impl Keyframes {
    fn segment_of(&self, n: i64) -> i64 {
        (n as f64 * self.frame_seconds / self.segment_seconds + 1e-9).floor() as i64
    }
    /// Frame `n` (output frame number = pts in 1/fps) is the first frame of a segment.
    pub fn is_segment_start(&self, n: i64) -> bool {
        n <= 0 || self.segment_of(n) != self.segment_of(n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates() {
        assert_eq!(output_frame_rate(25.0), Rational::new(25, 1));
        assert_eq!(output_frame_rate(29.97), Rational::new(30000, 1001));
        assert_eq!(output_frame_rate(120.0), Rational::new(60, 1));
        assert_eq!(output_frame_rate(100.0), Rational::new(50, 1));
        assert_eq!(output_frame_rate(27.3), Rational::new(27, 1));
        assert_eq!(output_frame_rate(0.0), Rational::new(30, 1));
        assert_eq!(output_frame_rate(0.2), Rational::new(1, 1));
    }

    #[test]
    fn keyframes_follow_time() {
        let k = Keyframes { frame_seconds: 1.0 / 25.0, segment_seconds: 4.0 };
        let starts: Vec<i64> = (0..450).filter(|&n| k.is_segment_start(n)).collect();
        assert_eq!(starts, vec![0, 100, 200, 300, 400]);
        let k = Keyframes { frame_seconds: 1001.0 / 30000.0, segment_seconds: 4.0 };
        let starts: Vec<i64> = (0..500).filter(|&n| k.is_segment_start(n)).collect();
        assert_eq!(starts, vec![0, 120, 240, 360, 480]);
    }

    #[test]
    fn the_timeline_ends_a_little_after_the_probed_duration() {
        assert_eq!(timeline_cap(10.0), 11.0);
        assert_eq!(timeline_cap(50.0), 51.0);
        // Long files get 1 % slack.
        assert_eq!(timeline_cap(3600.0), 3636.0);
        // No duration at all: the longest accepted one.
        assert_eq!(timeline_cap(0.0), probe::MAX_DURATION);
        assert_eq!(timeline_cap(-1.0), probe::MAX_DURATION);
    }

    #[test]
    fn one_keyframe_interval_per_segment() {
        assert_eq!(gop_frames(Rational::new(25, 1), 4.0), 100);
        assert_eq!(gop_frames(Rational::new(30000, 1001), 4.0), 120);
        assert_eq!(gop_frames(Rational::new(24000, 1001), 6.0), 144);
        assert_eq!(gop_frames(Rational::new(1, 1), 1.0), 1);
        assert_eq!(gop_frames(Rational::new(1, 10), 1.0), 1);
    }

    #[test]
    fn poster_is_taken_at_3_seconds_or_a_third_of_short_videos() {
        let fps = Rational::new(25, 1);
        assert_eq!(poster_frame(600.0, fps), 75);
        assert_eq!(poster_frame(6.0, fps), 50);
        assert_eq!(poster_frame(1.5, fps), 12);
        assert_eq!(poster_frame(0.0, fps), 75);
    }

    #[test]
    fn truncation_needs_a_real_shortfall() {
        // Clean read: only the stream's own duration counts, with a wide margin.
        assert_eq!(missing_video(5.0, Some(60.0), 60.0, false), Some(60.0));
        assert_eq!(missing_video(54.0, Some(60.0), 60.0, false), None);
        assert_eq!(missing_video(53.0, Some(60.0), 60.0, false), Some(60.0));
        assert_eq!(missing_video(5.0, None, 60.0, false), None);
        // After read errors: to within 2 % (at least 1 s) of the stream's or container's duration.
        assert_eq!(missing_video(58.5, Some(60.0), 0.0, true), Some(60.0));
        assert_eq!(missing_video(59.2, Some(60.0), 0.0, true), None);
        assert_eq!(missing_video(3400.0, None, 3600.0, true), Some(3600.0));
        assert_eq!(missing_video(3550.0, None, 3600.0, true), None);
        assert_eq!(missing_video(0.0, None, 0.0, true), None);
    }
}
