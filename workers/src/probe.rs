//! Probing: what is in a file, and is it usable lecture video at all?

use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::format::stream::Disposition;
use ffmpeg_next::media;
use serde::{Deserialize, Serialize};

use crate::ffutil::{self, positive_rate};
use crate::MediaError;

/// Smallest accepted picture side, in pixels.
pub(crate) const MIN_SIDE: u32 = 16;
/// Largest accepted picture side, in pixels.
pub(crate) const MAX_SIDE: u32 = 8192;
/// Longest accepted duration, in seconds (12 h).
pub(crate) const MAX_DURATION: f64 = 12.0 * 3600.0;

/// What [`probe`] found in a media file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeInfo {
    /// The container's duration in seconds (0 when unknown). Only an estimate; the transcode
    /// summary carries the exact duration of what was produced.
    pub duration_seconds: f64,
    /// Coded picture width of the video stream.
    pub width: u32,
    /// Coded picture height of the video stream.
    pub height: u32,
    /// Width as displayed: after the sample aspect ratio is applied (square pixels) and after
    /// rotation.
    pub display_width: u32,
    /// Height as displayed (see [`ProbeInfo::display_width`]).
    pub display_height: u32,
    /// Clockwise rotation a player must apply, from the display matrix, in `[0, 360)`
    /// (fftools convention: `-av_display_rotation_get(matrix)`, normalised).
    pub rotation_degrees: i32,
    /// Average frame rate (falling back to the "real base" rate); 0 when unknown.
    pub frame_rate: f64,
    /// Best-effort variable-frame-rate detection (average and base rates disagree).
    pub variable_frame_rate: bool,
    /// Whether there is a decodable audio stream that will be carried over.
    pub has_audio: bool,
    /// Video codec name as FFmpeg knows it ("h264", "hevc", …).
    pub video_codec: String,
    /// Audio codec name, when there is usable audio.
    pub audio_codec: Option<String>,
    /// Container (demuxer) name as FFmpeg knows it ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", …).
    pub container: String,
}

/// Everything the transcoder needs beyond [`ProbeInfo`].
pub(crate) struct Probed {
    pub info: ProbeInfo,
    pub video_index: usize,
    pub audio_index: Option<usize>,
    /// Whether the stream declares interlaced content (then the graph deinterlaces).
    pub interlaced: bool,
    /// Exact rotation angle in degrees for angles that are not a multiple of 90.
    pub rotation_exact: f64,
    /// Sample aspect ratio (1/1 when unknown).
    pub sar: ffmpeg::Rational,
    /// Start time of the video stream in its own time base (0 when unknown).
    pub video_start: i64,
    /// The video stream's own duration in seconds, when the container states it (not guessed
    /// from the bitrate).
    pub video_duration: Option<f64>,
}

/// Open `input` with libavformat and describe it.
///
/// Fails with [`MediaError::Invalid`] (readable message) when the file is not usable lecture
/// video: unreadable/garbage/truncated container, no video stream (e.g. an audio-only file), a
/// still image, unsupported codec, picture sides outside 16–8192 px, or longer than 12 hours.
/// Missing/unreadable files give [`MediaError::Io`].
pub fn probe(input: &Path) -> Result<ProbeInfo, MediaError> {
    ffutil::init();
    let ictx = open_input(input)?;
    Ok(analyze(&ictx)?.info)
}

/// Open a file for demuxing, mapping failures to readable errors.
pub(crate) fn open_input(path: &Path) -> Result<ffmpeg::format::context::Input, MediaError> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(MediaError::Io(std::io::Error::other(format!("{} is a directory", path.display()))));
    }
    if meta.len() == 0 {
        return Err(MediaError::Invalid("the file is empty".into()));
    }
    ffutil::clear_last_error();
    match ffmpeg::format::input(path) {
        Ok(ictx) => Ok(ictx),
        Err(ffmpeg::Error::Other { errno }) if is_io_errno(errno) => {
            Err(MediaError::Io(std::io::Error::from_raw_os_error(errno)))
        }
        Err(e) => {
            let detail = ffutil::take_last_error();
            Err(MediaError::Invalid(open_failure_message(e, detail)))
        }
    }
}

fn is_io_errno(errno: i32) -> bool {
    use ffmpeg::error::*;
    [ENOENT, EACCES, EPERM, EISDIR, EMFILE, ENFILE, ENOMEM, EIO].contains(&errno)
}

fn open_failure_message(e: ffmpeg::Error, detail: Option<String>) -> String {
    let detail = detail.unwrap_or_else(|| e.to_string());
    if detail.contains("moov atom not found") {
        return "the file is incomplete or damaged: its index (MP4 'moov' atom) is missing, which \
                usually means the upload or recording was cut off"
            .to_owned();
    }
    match e {
        ffmpeg::Error::InvalidData | ffmpeg::Error::DemuxerNotFound => {
            format!("the file is not a video format we can read, or it is damaged ({detail})")
        }
        ffmpeg::Error::Eof => format!("the file ends too early to be read; it looks truncated ({detail})"),
        _ => format!("the file could not be opened as media ({detail})"),
    }
}

fn codecpar(stream: &ffmpeg::format::stream::Stream) -> *const ffi::AVCodecParameters {
    unsafe { (*stream.as_ptr()).codecpar }
}

/// Inspect an opened input: pick the streams, validate, describe.
pub(crate) fn analyze(ictx: &ffmpeg::format::context::Input) -> Result<Probed, MediaError> {
    let container = ictx.format().name().to_owned();
    if container == "image2" || container.ends_with("_pipe") {
        return Err(MediaError::Invalid("this is a still image, not a video".into()));
    }
    // Demuxers that "play" arbitrary text/binary data as pictures (ANSI art and friends).
    if ["tty", "bin", "xbin", "adf", "idf"].contains(&container.as_str()) {
        return Err(MediaError::Invalid("the file is not a video (it looks like text or other data)".into()));
    }

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
        return Err(MediaError::Invalid(format!("the video codec ({video_codec}) is not supported")));
    }
    let par = codecpar(&vst);
    let (width, height, field_order) = unsafe { ((*par).width, (*par).height, (*par).field_order) };
    if width <= 0 || height <= 0 {
        return Err(MediaError::Invalid(
            "the video stream has no picture size; the file is probably damaged".into(),
        ));
    }
    let (width, height) = (width as u32, height as u32);
    if width < MIN_SIDE || height < MIN_SIDE || width > MAX_SIDE || height > MAX_SIDE {
        return Err(MediaError::Invalid(format!(
            "the picture size {width}×{height} is not supported (each side must be {MIN_SIDE}–{MAX_SIDE} pixels)"
        )));
    }
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
    let sar = if sar.num > 0 && sar.den > 0 && (sar.num as f64 / sar.den as f64 - 1.0).abs() > 1e-3 {
        ffmpeg::Rational::new(sar.num, sar.den)
    } else {
        ffmpeg::Rational::new(1, 1)
    };

    // Rotation, as fftools computes it.
    let rotation_exact = rotation_of(&vst);
    let rotation_degrees = rotation_exact.round() as i32 % 360;
    let mut dw = (width as f64 * sar.numerator() as f64 / sar.denominator() as f64).round().max(1.0) as u32;
    let mut dh = height;
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
    let mut duration_seconds = if ictx.duration() > 0 {
        ictx.duration() as f64 / f64::from(ffi::AV_TIME_BASE)
    } else {
        video_duration.unwrap_or(0.0)
    };
    if !duration_seconds.is_finite() || duration_seconds < 0.0 {
        duration_seconds = 0.0;
    }
    if duration_seconds > MAX_DURATION {
        return Err(MediaError::Invalid(format!(
            "the video is too long ({:.1} hours; the limit is 12 hours)",
            duration_seconds / 3600.0
        )));
    }
    let video_start = if vst.start_time() != ffi::AV_NOPTS_VALUE {
        vst.start_time()
    } else {
        let start = unsafe { (*ictx.as_ptr()).start_time };
        if start != ffi::AV_NOPTS_VALUE && tb.denominator() > 0 {
            unsafe { ffi::av_rescale_q(start, ffi::AVRational { num: 1, den: ffi::AV_TIME_BASE }, tb.into()) }
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
