//! The limits an upload's pictures and duration must stay within.

use ffmpeg_next as ffmpeg;

use crate::MediaError;

/// Smallest accepted picture side, in pixels.
pub(crate) const MIN_SIDE: u32 = 16;
/// Largest accepted picture side, in pixels.
pub(crate) const MAX_SIDE: u32 = 8192;
/// Longest accepted duration, in seconds (12 h).
pub(crate) const MAX_DURATION: f64 = 12.0 * 3600.0;

/// Refuse a duration over [`MAX_DURATION`]. `scanned` says it was measured from the packets'
/// timestamps (the file stated none), when a huge span more likely means damaged timestamps.
pub(crate) fn check_duration(seconds: f64, scanned: bool) -> Result<(), MediaError> {
    let hours = seconds / 3600.0;
    if seconds > MAX_DURATION && scanned {
        Err(MediaError::Invalid(format!(
            "the video is too long: its timestamps span {hours:.1} hours (the limit is 12 hours); the file may be damaged"
        )))
    } else if seconds > MAX_DURATION {
        Err(MediaError::Invalid(format!(
            "the video is too long ({hours:.1} hours; the limit is 12 hours)"
        )))
    } else {
        Ok(())
    }
}

/// `at` in a message: where in the video a picture is ("" for the stream as a whole).
fn position(at: Option<f64>) -> String {
    at.map(|t| format!(" at {t:.1} s")).unwrap_or_default()
}

/// Refuse a coded picture size outside 16–8192 px per side. `at` is the picture's time when it
/// is a decoded frame (sizes may change mid-stream), `None` for the stream's declared size.
pub(crate) fn check_coded_size(width: u32, height: u32, at: Option<f64>) -> Result<(), MediaError> {
    if width < MIN_SIDE || height < MIN_SIDE || width > MAX_SIDE || height > MAX_SIDE {
        return Err(MediaError::Invalid(format!(
            "the picture size {width}×{height}{} is not supported (each side must be {MIN_SIDE}–{MAX_SIDE} pixels)",
            position(at)
        )));
    }
    Ok(())
}

/// The size a `width`×`height` picture with sample aspect ratio `sar` is shown at (square
/// pixels), refused under the same limits as the coded size: a sample aspect ratio of 1:1000
/// would otherwise turn 640×360 into a 1×360 picture (and 1000:1 into a 640000-pixel-wide one).
pub(crate) fn displayed_size(
    width: u32,
    height: u32,
    sar: ffmpeg::Rational,
    at: Option<f64>,
) -> Result<(u32, u32), MediaError> {
    let ratio = if sar.numerator() > 0 && sar.denominator() > 0 {
        sar.numerator() as f64 / sar.denominator() as f64
    } else {
        1.0
    };
    let dw = (width as f64 * ratio).round();
    if !(dw >= MIN_SIDE as f64 && dw <= MAX_SIDE as f64) {
        let shown = if dw.is_finite() && dw < 1e9 {
            format!("{}", dw.max(0.0) as u64)
        } else {
            "an absurd width".into()
        };
        return Err(MediaError::Invalid(format!(
            "the picture{} is shown {shown}×{height} pixels after its pixel aspect ratio {}:{}, which is not supported \
             (each side must be {MIN_SIDE}–{MAX_SIDE} pixels)",
            position(at),
            sar.numerator(),
            sar.denominator()
        )));
    }
    Ok((dw as u32, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<impl std::fmt::Debug, MediaError>) -> String {
        match r {
            Err(MediaError::Invalid(m)) => m,
            other => panic!("expected MediaError::Invalid, got {other:?}"),
        }
    }

    #[test]
    fn coded_sizes_must_be_16_to_8192_pixels_a_side() {
        for (w, h) in [(16, 16), (8192, 8192), (1920, 1080), (16, 8192)] {
            assert!(check_coded_size(w, h, None).is_ok(), "{w}×{h}");
        }
        for (w, h) in [(15, 100), (100, 15), (8193, 100), (100, 8193), (0, 0)] {
            assert!(check_coded_size(w, h, None).is_err(), "{w}×{h}");
        }
        assert_eq!(
            message(check_coded_size(15, 100, None)),
            "the picture size 15×100 is not supported (each side must be 16–8192 pixels)"
        );
        // A decoded frame's size is reported with its time.
        assert!(message(check_coded_size(9000, 100, Some(12.34))).contains("9000×100 at 12.3 s"));
    }

    #[test]
    fn displayed_size_applies_the_sample_aspect_ratio() {
        let size = |w, h, n, d| displayed_size(w, h, ffmpeg::Rational::new(n, d), None).unwrap();
        assert_eq!(size(1920, 1080, 1, 1), (1920, 1080));
        // Anamorphic NTSC DVD: 720×480 at 32:27 is shown 853×480.
        assert_eq!(size(720, 480, 32, 27), (853, 480));
        // An unknown ratio counts as square.
        assert_eq!(size(640, 360, 0, 1), (640, 360));
        assert_eq!(size(640, 360, 1, 0), (640, 360));
    }

    #[test]
    fn absurd_sample_aspect_ratios_are_refused() {
        let sar = ffmpeg::Rational::new;
        let m = message(displayed_size(640, 360, sar(1, 1000), None));
        assert!(m.contains("shown 1×360 pixels after its pixel aspect ratio 1:1000"), "{m}");
        let m = message(displayed_size(640, 360, sar(1000, 1), Some(2.0)));
        assert!(m.contains("picture at 2.0 s is shown 640000×360"), "{m}");
        let m = message(displayed_size(8192, 360, sar(i32::MAX, 1), None));
        assert!(m.contains("shown an absurd width×360"), "{m}");
    }

    #[test]
    fn durations_over_12_hours_are_refused() {
        assert!(check_duration(0.0, true).is_ok());
        assert!(check_duration(MAX_DURATION, false).is_ok());
        assert_eq!(
            message(check_duration(12.5 * 3600.0, false)),
            "the video is too long (12.5 hours; the limit is 12 hours)"
        );
        // Measured from timestamps, a huge span more likely means damage.
        let m = message(check_duration(100.0 * 3600.0, true));
        assert!(m.contains("timestamps span 100.0 hours") && m.contains("may be damaged"), "{m}");
    }
}
