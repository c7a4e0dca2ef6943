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
}
