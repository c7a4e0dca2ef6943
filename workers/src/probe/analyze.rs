//! Describing an opened input: which streams to use, picture geometry, frame rate, duration.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::format::context::Input;
use ffmpeg_next::format::stream::{Disposition, Stream};
use ffmpeg_next::{media, Rational, Rescale};

use super::limits::{check_coded_size, check_duration, displayed_size, MAX_DURATION};
use super::open::open_input;
use super::{ProbeInfo, Probed};
use crate::ffutil::{codecpar, format_context, positive_rate};
use crate::MediaError;

/// Inspect an opened input: pick the streams, validate, describe.
pub(crate) fn analyze(ictx: &Input, path: &Path) -> Result<Probed, MediaError> {
    // Only allow-listed demuxers get this far (see `open_input`).
    let container = ictx.format().name().to_owned();
    let video_index = pick_video_stream(ictx)?;
    let vst = ictx.stream(video_index).expect("index from iteration");
    let video_codec = video_codec(&vst)?;
    let picture = Picture::of(ictx, &vst)?;
    let (frame_rate, variable_frame_rate) = frame_rate_of(vst.avg_frame_rate(), vst.rate());
    let timing = Timing::of(ictx, &vst, path)?;
    let audio = best_audio(ictx, video_index);

    Ok(Probed {
        info: ProbeInfo {
            duration_seconds: timing.duration_seconds,
            width: picture.width,
            height: picture.height,
            display_width: picture.display_width,
            display_height: picture.display_height,
            rotation_degrees: picture.rotation_degrees,
            frame_rate,
            variable_frame_rate,
            has_audio: audio.is_some(),
            video_codec,
            audio_codec: audio.as_ref().map(|(_, codec)| codec.clone()),
            container,
        },
        video_index,
        audio_index: audio.map(|(index, _)| index),
        interlaced: picture.interlaced,
        rotation_exact: picture.rotation_exact,
        sar: picture.sar,
        video_start: timing.video_start,
        video_duration: timing.video_duration,
    })
}

/// The video stream: not cover art (attached pictures), prefer "default", then the largest.
fn pick_video_stream(ictx: &Input) -> Result<usize, MediaError> {
    let mut video: Option<(bool, u64, usize)> = None;
    let mut saw_cover_art = false;
    for st in ictx.streams() {
        if st.parameters().medium() != media::Type::Video {
            continue;
        }
        if st.disposition().contains(Disposition::ATTACHED_PIC) {
            saw_cover_art = true;
            continue;
        }
        let par = codecpar(&st);
        let area = par.width.max(0) as u64 * par.height.max(0) as u64;
        let key = (st.disposition().contains(Disposition::DEFAULT), area, st.index());
        if video.is_none_or(|(d, a, _)| (key.0, key.1) > (d, a)) {
            video = Some(key);
        }
    }
    let has_any_audio = ictx.streams().any(|s| s.parameters().medium() == media::Type::Audio);
    match video {
        Some((_, _, index)) => Ok(index),
        None => Err(MediaError::Invalid(if has_any_audio || saw_cover_art {
            "no video stream found (audio-only file)".into()
        } else {
            "no video stream found".into()
        })),
    }
}

/// The video codec's name, refused when FFmpeg has no decoder for it.
fn video_codec(vst: &Stream) -> Result<String, MediaError> {
    let id = vst.parameters().id();
    let name = id.name().to_owned();
    if ffmpeg::decoder::find(id).is_none() {
        return Err(MediaError::Invalid(format!("the video codec ({name}) is not supported")));
    }
    Ok(name)
}

/// The video stream's picture geometry, validated against the size limits.
struct Picture {
    width: u32,
    height: u32,
    display_width: u32,
    display_height: u32,
    interlaced: bool,
    sar: Rational,
    rotation_exact: f64,
    rotation_degrees: i32,
}

impl Picture {
    fn of(ictx: &Input, vst: &Stream) -> Result<Self, MediaError> {
        let par = codecpar(vst);
        if par.width <= 0 || par.height <= 0 {
            return Err(MediaError::Invalid(
                "the video stream has no picture size; the file is probably damaged".into(),
            ));
        }
        let (width, height) = (par.width as u32, par.height as u32);
        check_coded_size(width, height, None)?;
        let interlaced = matches!(
            par.field_order,
            ffi::AVFieldOrder::AV_FIELD_TT
                | ffi::AVFieldOrder::AV_FIELD_BB
                | ffi::AVFieldOrder::AV_FIELD_TB
                | ffi::AVFieldOrder::AV_FIELD_BT
        );
        let sar = sample_aspect_ratio(ictx, vst);

        // Rotation, as fftools computes it.
        let rotation_exact = rotation_of(vst);
        let rotation_degrees = rotation_exact.round() as i32 % 360;
        // Rotation swaps the sides but changes neither, so one check covers both orientations.
        let (mut dw, mut dh) = displayed_size(width, height, sar, None)?;
        if is_quarter_turn(rotation_exact) {
            std::mem::swap(&mut dw, &mut dh);
        }
        Ok(Picture {
            width,
            height,
            display_width: dw,
            display_height: dh,
            interlaced,
            sar,
            rotation_exact,
            rotation_degrees,
        })
    }
}

/// Sample aspect ratio, as FFmpeg would guess it (stream first, then codec).
fn sample_aspect_ratio(ictx: &Input, vst: &Stream) -> Rational {
    // SAFETY: both pointers come from live borrows (`vst` is a stream of `ictx`); the function
    // only reads them (it is declared with non-const pointers but writes nothing), and a NULL
    // frame is allowed ("the frame is not used").
    let sar = unsafe {
        ffi::av_guess_sample_aspect_ratio(
            ictx.as_ptr() as *mut _,
            vst.as_ptr() as *mut _,
            std::ptr::null_mut(),
        )
    };
    square_unless_distinct(Rational::from(sar))
}

/// `sar` when it is a usable ratio noticeably different from 1:1, else exactly 1:1.
fn square_unless_distinct(sar: Rational) -> Rational {
    let (num, den) = (sar.numerator(), sar.denominator());
    if num > 0 && den > 0 && (num as f64 / den as f64 - 1.0).abs() > 1e-3 {
        Rational::new(num, den)
    } else {
        Rational::new(1, 1)
    }
}

/// The frame rate to report (average, falling back to the "real base" rate; 0 when neither is
/// usable) and whether the two disagree by more than 1 % (best-effort VFR detection).
fn frame_rate_of(avg: Rational, base: Rational) -> (f64, bool) {
    let avg = positive_rate(avg).filter(|r| *r < 1000.0);
    let base = positive_rate(base).filter(|r| *r < 1000.0);
    let frame_rate = avg.or(base).unwrap_or(0.0);
    let variable = match (avg, base) {
        (Some(a), Some(b)) => (a - b).abs() / b > 0.01,
        _ => false,
    };
    (frame_rate, variable)
}

/// Where the video timeline starts and how long the file is.
struct Timing {
    duration_seconds: f64,
    video_duration: Option<f64>,
    video_start: i64,
}

impl Timing {
    /// Duration: container first, then the video stream's own, else measured by
    /// [`scan_duration`]; refused past [`MAX_DURATION`].
    fn of(ictx: &Input, vst: &Stream, path: &Path) -> Result<Self, MediaError> {
        let tb = vst.time_base();
        // Durations guessed from the bitrate (MPEG-TS/PS without usable timestamps) are not facts.
        let guessed = format_context(ictx).duration_estimation_method
            == ffi::AVDurationEstimationMethod::AVFMT_DURATION_FROM_BITRATE;
        let video_duration = (vst.duration() > 0 && tb.denominator() > 0 && !guessed)
            .then(|| vst.duration() as f64 * f64::from(tb));
        let mut duration_seconds = if ictx.duration() > 0 && !guessed {
            ictx.duration() as f64 / f64::from(ffi::AV_TIME_BASE)
        } else {
            video_duration.unwrap_or(0.0)
        };
        if !duration_seconds.is_finite() || duration_seconds < 0.0 {
            duration_seconds = 0.0;
        }
        // The duration caps the output timeline, so it must be a fact: a file that does not state
        // one (live-written MKV/WebM, as browsers record them) is measured from its timestamps.
        let scanned = duration_seconds == 0.0;
        if scanned {
            duration_seconds = scan_duration(path)?;
        }
        check_duration(duration_seconds, scanned)?;
        Ok(Timing { duration_seconds, video_duration, video_start: video_start(ictx, vst) })
    }
}

/// Start time of the video stream in its own time base: its own start, else the container's
/// (rescaled), else 0.
fn video_start(ictx: &Input, vst: &Stream) -> i64 {
    if vst.start_time() != ffi::AV_NOPTS_VALUE {
        return vst.start_time();
    }
    let tb = vst.time_base();
    let start = format_context(ictx).start_time;
    if start != ffi::AV_NOPTS_VALUE && tb.denominator() > 0 {
        start.rescale(Rational::new(1, ffi::AV_TIME_BASE), tb)
    } else {
        0
    }
}

/// The best decodable audio stream, if any, with its codec name. Undecodable audio is dropped,
/// not fatal.
fn best_audio(ictx: &Input, video_index: usize) -> Option<(usize, String)> {
    // SAFETY: the context pointer comes from a live borrow of an opened input; with a NULL
    // `decoder_ret` the function only reads the streams (the pointer is non-const in its
    // signature only).
    let best = unsafe {
        ffi::av_find_best_stream(
            ictx.as_ptr() as *mut _,
            ffi::AVMediaType::AVMEDIA_TYPE_AUDIO,
            -1,
            video_index as i32,
            std::ptr::null_mut(),
            0,
        )
    };
    if best < 0 {
        return None;
    }
    let ast = ictx.stream(best as usize).expect("valid index");
    let apar = codecpar(&ast);
    let id = ast.parameters().id();
    if ffmpeg::decoder::find(id).is_some() && apar.sample_rate > 0 && apar.ch_layout.nb_channels > 0
    {
        Some((best as usize, id.name().to_owned()))
    } else {
        tracing::warn!(codec = id.name(), "ignoring an audio stream that cannot be decoded");
        None
    }
}

/// The span of the audio and video packets' timestamps in `path`, in seconds (0 when there are
/// none), read without decoding. Stops as soon as the span passes [`MAX_DURATION`].
fn scan_duration(path: &Path) -> Result<f64, MediaError> {
    let mut ictx = open_input(path)?;
    let streams: Vec<Option<f64>> = ictx
        .streams()
        .map(|st| {
            let kind = st.parameters().medium();
            let usable = (kind == media::Type::Video
                && !st.disposition().contains(Disposition::ATTACHED_PIC))
                || kind == media::Type::Audio;
            (usable && st.time_base().denominator() > 0).then(|| f64::from(st.time_base()))
        })
        .collect();
    let (mut start, mut end) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut errors = 0u32;
    loop {
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut ictx) {
            Ok(()) => errors = 0,
            Err(ffmpeg::Error::Eof) => break,
            Err(_) if errors < 1000 => {
                errors += 1;
                continue;
            }
            Err(_) => break,
        }
        let Some(Some(tb)) = streams.get(packet.stream()) else { continue };
        let Some(ts) = packet.pts().or(packet.dts()) else { continue };
        let t = ts as f64 * tb;
        start = start.min(t);
        end = end.max(t + packet.duration().max(0) as f64 * tb);
        if end - start > MAX_DURATION {
            break;
        }
    }
    Ok(if end > start { end - start } else { 0.0 })
}

/// Clockwise display rotation in degrees, like fftools' `get_rotation`: from the display matrix,
/// else the old "rotate" tag, normalised by [`normalise_degrees`].
fn rotation_of(st: &Stream) -> f64 {
    let mut theta = None;
    for sd in st.side_data() {
        if sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix {
            let data = sd.data();
            if data.len() >= 36 {
                let mut m = [0i32; 9];
                for (i, v) in m.iter_mut().enumerate() {
                    *v = i32::from_ne_bytes(data[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
                }
                // SAFETY: `m` is the 3×3 matrix of nine `int32_t` the function reads, and
                // outlives the call.
                let r = unsafe { ffi::av_display_rotation_get(m.as_ptr()) };
                if r.is_finite() {
                    theta = Some(-r.round());
                }
            }
        }
    }
    // Older muxers only left a "rotate" tag (degrees clockwise).
    if theta.is_none() {
        theta = st.metadata().get("rotate").and_then(|v| v.trim().parse::<f64>().ok());
    }
    normalise_degrees(theta.unwrap_or(0.0))
}

/// `theta` brought into `[0, 360)` the way fftools does it: angles within 0.9° short of a full
/// turn come out as small negative angles (nearly no rotation), not as nearly 360.
fn normalise_degrees(theta: f64) -> f64 {
    theta - 360.0 * (theta / 360.0 + 0.9 / 360.0).floor()
}

/// A rotation of 90° or 270° (within a degree), which swaps the displayed sides.
fn is_quarter_turn(theta: f64) -> bool {
    (theta - 90.0).abs() < 1.0 || (theta - 270.0).abs() < 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_normalised_like_fftools() {
        assert_eq!(normalise_degrees(0.0), 0.0);
        assert_eq!(normalise_degrees(-90.0), 270.0);
        assert_eq!(normalise_degrees(450.0), 90.0);
        assert_eq!(normalise_degrees(720.0), 0.0);
        assert_eq!(normalise_degrees(-180.0), 180.0);
        // Just short of a full turn is "no rotation", not 359.5°.
        assert_eq!(normalise_degrees(359.5), -0.5);
        assert_eq!(normalise_degrees(359.0), 359.0);
    }

    #[test]
    fn only_quarter_turns_swap_the_sides() {
        for theta in [90.0, 89.5, 270.0, 270.9] {
            assert!(is_quarter_turn(theta), "{theta}");
        }
        for theta in [0.0, 45.0, 88.9, 180.0, 271.0, 359.0] {
            assert!(!is_quarter_turn(theta), "{theta}");
        }
    }

    #[test]
    fn nearly_square_pixels_count_as_square() {
        let sar = |n, d| {
            let r = square_unless_distinct(Rational::new(n, d));
            (r.numerator(), r.denominator())
        };
        assert_eq!(sar(4, 3), (4, 3));
        assert_eq!(sar(1000, 1001), (1, 1));
        assert_eq!(sar(2, 2), (1, 1));
        // Unknown (0/1, 0/0) or nonsense (negative) ratios are square.
        assert_eq!(sar(0, 1), (1, 1));
        assert_eq!(sar(0, 0), (1, 1));
        assert_eq!(sar(-4, 3), (1, 1));
    }

    #[test]
    fn frame_rate_prefers_the_average_and_flags_disagreement() {
        // Constant rate: both agree.
        assert_eq!(frame_rate_of(Rational::new(25, 1), Rational::new(25, 1)), (25.0, false));
        // A phone's VFR clip: average well below the base rate.
        let (rate, vfr) = frame_rate_of(Rational::new(2997, 100), Rational::new(60, 1));
        assert!((rate - 29.97).abs() < 1e-9 && vfr);
        // Within 1 % is not VFR.
        assert!(!frame_rate_of(Rational::new(2995, 100), Rational::new(30, 1)).1);
        // No usable average: the base rate, and no VFR verdict.
        assert_eq!(frame_rate_of(Rational::new(0, 0), Rational::new(30, 1)), (30.0, false));
        // Absurd rates (≥ 1000 fps, timestamps in ms mistaken for frames) are not rates.
        assert_eq!(frame_rate_of(Rational::new(1000, 1), Rational::new(24, 1)), (24.0, false));
        assert_eq!(frame_rate_of(Rational::new(0, 1), Rational::new(90000, 1)), (0.0, false));
    }
}
