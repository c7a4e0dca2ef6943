//! The limits an upload's pictures and duration must stay within.

use ffmpeg_next as ffmpeg;

use crate::MediaError;

/// Smallest accepted picture side, in pixels.
pub(crate) const MIN_SIDE: u32 = 16;
/// Largest accepted picture side, in pixels.
pub(crate) const MAX_SIDE: u32 = 8192;
/// Longest accepted duration, in seconds (12 h).
pub(crate) const MAX_DURATION: f64 = 12.0 * 3600.0;

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
