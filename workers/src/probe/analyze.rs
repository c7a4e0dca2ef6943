//! Describing an opened input: which streams to use, picture geometry, frame rate, duration.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::format::stream::Disposition;
use ffmpeg_next::media;

use super::limits::{check_coded_size, displayed_size, MAX_DURATION};
use super::open::open_input;
use super::{ProbeInfo, Probed};
use crate::ffutil::positive_rate;
use crate::MediaError;

fn codecpar(stream: &ffmpeg::format::stream::Stream) -> *const ffi::AVCodecParameters {
    unsafe { (*stream.as_ptr()).codecpar }
}

/// Inspect an opened input: pick the streams, validate, describe.
pub(crate) fn analyze(
    ictx: &ffmpeg::format::context::Input,
    path: &Path,
) -> Result<Probed, MediaError> {
    // Only allow-listed demuxers get this far (see `open_input`).
    let container = ictx.format().name().to_owned();

    // The video stream: not cover art (attached pictures), prefer "default", then the largest.
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
        let area = unsafe { (*par).width.max(0) as u64 * (*par).height.max(0) as u64 };
        let key = (st.disposition().contains(Disposition::DEFAULT), area, st.index());
        if video.is_none_or(|(d, a, _)| (key.0, key.1) > (d, a)) {
            video = Some(key);
        }
    }
    let has_any_audio = ictx.streams().any(|s| s.parameters().medium() == media::Type::Audio);
    let Some((_, _, video_index)) = video else {
        return Err(MediaError::Invalid(if has_any_audio || saw_cover_art {
            "no video stream found (audio-only file)".into()
        } else {
            "no video stream found".into()
        }));
    };
    let vst = ictx.stream(video_index).expect("index from iteration");
    let vpar = vst.parameters();
    let video_codec = vpar.id().name().to_owned();
    if ffmpeg::decoder::find(vpar.id()).is_none() {
        return Err(MediaError::Invalid(format!(
            "the video codec ({video_codec}) is not supported"
        )));
    }
    let par = codecpar(&vst);
    let (width, height, field_order) = unsafe { ((*par).width, (*par).height, (*par).field_order) };
    if width <= 0 || height <= 0 {
        return Err(MediaError::Invalid(
            "the video stream has no picture size; the file is probably damaged".into(),
        ));
    }
    let (width, height) = (width as u32, height as u32);
    check_coded_size(width, height, None)?;
    let interlaced = matches!(
        field_order,
        ffi::AVFieldOrder::AV_FIELD_TT
            | ffi::AVFieldOrder::AV_FIELD_BB
            | ffi::AVFieldOrder::AV_FIELD_TB
            | ffi::AVFieldOrder::AV_FIELD_BT
    );

    // Sample aspect ratio, as FFmpeg would guess it (stream first, then codec).
    let sar = unsafe {
        ffi::av_guess_sample_aspect_ratio(
            ictx.as_ptr() as *mut _,
            vst.as_ptr() as *mut _,
            std::ptr::null_mut(),
        )
    };
    let sar = if sar.num > 0 && sar.den > 0 && (sar.num as f64 / sar.den as f64 - 1.0).abs() > 1e-3
    {
        ffmpeg::Rational::new(sar.num, sar.den)
    } else {
        ffmpeg::Rational::new(1, 1)
    };

    // Rotation, as fftools computes it.
    let rotation_exact = rotation_of(&vst);
    let rotation_degrees = rotation_exact.round() as i32 % 360;
    // Rotation swaps the sides but changes neither, so one check covers both orientations.
    let (mut dw, mut dh) = displayed_size(width, height, sar, None)?;
    if (rotation_exact - 90.0).abs() < 1.0 || (rotation_exact - 270.0).abs() < 1.0 {
        std::mem::swap(&mut dw, &mut dh);
    }

    // Frame rate and VFR.
    let avg = positive_rate(vst.avg_frame_rate()).filter(|r| *r < 1000.0);
    let base = positive_rate(vst.rate()).filter(|r| *r < 1000.0);
    let frame_rate = avg.or(base).unwrap_or(0.0);
    let variable_frame_rate = match (avg, base) {
        (Some(a), Some(b)) => (a - b).abs() / b > 0.01,
        _ => false,
    };

    // Duration: container first, then the video stream's own.
    let tb = vst.time_base();
    // Durations guessed from the bitrate (MPEG-TS/PS without usable timestamps) are not facts.
    let guessed = unsafe {
        (*ictx.as_ptr()).duration_estimation_method
            == ffi::AVDurationEstimationMethod::AVFMT_DURATION_FROM_BITRATE
    };
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
    if duration_seconds > MAX_DURATION {
        return Err(MediaError::Invalid(if scanned {
            format!(
                "the video is too long: its timestamps span {:.1} hours (the limit is 12 hours); the file may be damaged",
                duration_seconds / 3600.0
            )
        } else {
            format!(
                "the video is too long ({:.1} hours; the limit is 12 hours)",
                duration_seconds / 3600.0
            )
        }));
    }
    let video_start = if vst.start_time() != ffi::AV_NOPTS_VALUE {
        vst.start_time()
    } else {
        let start = unsafe { (*ictx.as_ptr()).start_time };
        if start != ffi::AV_NOPTS_VALUE && tb.denominator() > 0 {
            unsafe {
                ffi::av_rescale_q(
                    start,
                    ffi::AVRational { num: 1, den: ffi::AV_TIME_BASE },
                    tb.into(),
                )
            }
        } else {
            0
        }
    };

    // Audio: the best decodable audio stream, if any. Undecodable audio is dropped, not fatal.
    let mut audio_index = None;
    let mut audio_codec = None;
    let best_audio = unsafe {
        ffi::av_find_best_stream(
            ictx.as_ptr() as *mut _,
            ffi::AVMediaType::AVMEDIA_TYPE_AUDIO,
            -1,
            video_index as i32,
            std::ptr::null_mut(),
            0,
        )
    };
    if best_audio >= 0 {
        let ast = ictx.stream(best_audio as usize).expect("valid index");
        let apar = codecpar(&ast);
        let (rate, channels) = unsafe { ((*apar).sample_rate, (*apar).ch_layout.nb_channels) };
        let id = ast.parameters().id();
        if ffmpeg::decoder::find(id).is_some() && rate > 0 && channels > 0 {
            audio_index = Some(best_audio as usize);
            audio_codec = Some(id.name().to_owned());
        } else {
            tracing::warn!(codec = id.name(), "ignoring an audio stream that cannot be decoded");
        }
    }

    Ok(Probed {
        info: ProbeInfo {
            duration_seconds,
            width,
            height,
            display_width: dw,
            display_height: dh,
            rotation_degrees,
            frame_rate,
            variable_frame_rate,
            has_audio: audio_index.is_some(),
            video_codec,
            audio_codec,
            container,
        },
        video_index,
        audio_index,
        interlaced,
        rotation_exact,
        sar,
        video_start,
        video_duration,
    })
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

/// Clockwise display rotation in degrees, normalised to `[0, 360)`, like fftools' `get_rotation`.
fn rotation_of(st: &ffmpeg::format::stream::Stream) -> f64 {
    let mut theta = None;
    for sd in st.side_data() {
        if sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix {
            let data = sd.data();
            if data.len() >= 36 {
                let mut m = [0i32; 9];
                for (i, v) in m.iter_mut().enumerate() {
                    *v = i32::from_ne_bytes(data[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
                }
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
    let mut theta = theta.unwrap_or(0.0);
    theta -= 360.0 * (theta / 360.0 + 0.9 / 360.0).floor();
    theta
}
