//! Probing: what is in a file, and is it usable lecture video at all?

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;

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
    Ok(analyze(&ictx, input)?.info)
}

/// Demuxers an upload may be opened with: containers that carry one file's own media and never
/// read another file or URL. Anything else is refused before its demuxer runs — playlists (HLS)
/// and scripts (concat, ffmetadata) would make FFmpeg read whatever paths or URLs they name on
/// the worker's machine, image sequences read sibling files, and network and device formats
/// have no business in an upload. Names are libavformat's first demuxer names.
pub(crate) const ALLOWED_DEMUXERS: &[&str] = &[
    "mov",      // MP4, MOV, M4V, 3GP
    "matroska", // MKV, WebM
    "mpegts",   // MPEG-TS, broadcast and camcorder recordings (.ts, .mts, .m2ts)
    "mpeg",     // MPEG program streams (.mpg, .vob)
    "avi", "flv", "mxf", "asf", // WMV
    "ogg", // Theora
    "dv", "nut", "ivf", // VP8/VP9/AV1 in IVF
];

/// Audio-only containers: refused with the same reason as an audio track in a video container.
const AUDIO_ONLY_DEMUXERS: &[&str] = &[
    "mp3", "wav", "aac", "flac", "ac3", "eac3", "aiff", "w64", "amr", "ape", "wv", "dts", "truehd",
    "au", "caf",
];

/// Open a file for demuxing, mapping failures to readable errors.
///
/// The format is detected first and must be one of [`ALLOWED_DEMUXERS`]; the file is then opened
/// with that demuxer forced, the `file` protocol only, and an I/O hook that lets libavformat open
/// this one file and nothing else (so even an allowed demuxer cannot follow a reference out of
/// the upload).
pub(crate) fn open_input(path: &Path) -> Result<ffmpeg::format::context::Input, MediaError> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(MediaError::Io(std::io::Error::other(format!(
            "{} is a directory",
            path.display()
        ))));
    }
    if meta.len() == 0 {
        return Err(MediaError::Invalid("the file is empty".into()));
    }
    let url = input_url(path)?;
    ffutil::clear_last_error();
    let (format, score) = detect_format(&url)?;
    let name = unsafe { CStr::from_ptr((*format).name) }.to_string_lossy().into_owned();
    if !is_allowed(&name) {
        return Err(MediaError::Invalid(refusal(&name, score)));
    }
    open_guarded(&url, format, &ALLOWED_DEMUXERS.join(","))
}

/// `file:` + the path, so that no part of the path is ever read as another protocol's name.
fn input_url(path: &Path) -> Result<CString, MediaError> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = b"file:".to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    CString::new(bytes)
        .map_err(|_| MediaError::Io(std::io::Error::other("the input path contains a NUL byte")))
}

/// Whether a demuxer (by its comma-separated names) is on the allow-list.
pub(crate) fn is_allowed(names: &str) -> bool {
    names.split(',').any(|n| ALLOWED_DEMUXERS.contains(&n))
}

/// Why a file detected as `names` is not accepted, for the person who uploaded it.
fn refusal(names: &str, score: i32) -> String {
    let first = names.split(',').next().unwrap_or(names);
    // libavformat's AVPROBE_SCORE_RETRY (a macro the bindings do not carry).
    const SCORE_RETRY: i32 = ffi::AVPROBE_SCORE_MAX / 4;
    if score < SCORE_RETRY {
        // A weak guess: the file is most likely nothing at all.
        return "the file is not a video format we can read, or it is damaged".into();
    }
    match first {
        "hls" | "applehttp" => "this is an HLS playlist, not a video: it only lists other files. Upload the video file itself".into(),
        "concat" | "ffmetadata" => "this is an FFmpeg script, not a video. Upload the video file itself".into(),
        "image2" | "gif" | "webp" | "apng" => "this is a still image, not a video".into(),
        n if n.ends_with("_pipe") => "this is a still image, not a video".into(),
        "tty" | "bin" | "xbin" | "adf" | "idf" => "the file is not a video (it looks like text or other data)".into(),
        n if AUDIO_ONLY_DEMUXERS.contains(&n) => "no video stream found (audio-only file)".into(),
        n => format!(
            "files in the {n} format are not accepted; upload the video as MP4, MOV, MKV, WebM, AVI, MPEG-TS, FLV or MXF"
        ),
    }
}

/// Detect the container of `url` the way libavformat would, without running any demuxer.
fn detect_format(url: &CStr) -> Result<(*const ffi::AVInputFormat, i32), MediaError> {
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("protocol_whitelist", "file");
    unsafe {
        let mut raw = opts.disown();
        let mut pb: *mut ffi::AVIOContext = ptr::null_mut();
        let r = ffi::avio_open2(
            &mut pb,
            url.as_ptr(),
            ffi::AVIO_FLAG_READ as c_int,
            ptr::null(),
            &mut raw,
        );
        drop(ffmpeg::Dictionary::own(raw));
        if r < 0 {
            return Err(open_error(r));
        }
        let mut format: *const ffi::AVInputFormat = ptr::null();
        let score =
            ffi::av_probe_input_buffer2(pb, &mut format, url.as_ptr(), ptr::null_mut(), 0, 0);
        ffi::avio_closep(&mut pb);
        if score < 0 || format.is_null() {
            return Err(open_error(if score < 0 { score } else { ffi::AVERROR_INVALIDDATA }));
        }
        Ok((format, score))
    }
}

/// Open `url` with `format` forced (which must be on `formats`, a comma-separated list), the
/// `file` protocol only, and [`only_the_input`] as the I/O hook.
fn open_guarded(
    url: &CStr,
    format: *const ffi::AVInputFormat,
    formats: &str,
) -> Result<ffmpeg::format::context::Input, MediaError> {
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("protocol_whitelist", "file");
    opts.set("format_whitelist", formats);
    unsafe {
        let mut ctx = ffi::avformat_alloc_context();
        if ctx.is_null() {
            return Err(MediaError::Ffmpeg("out of memory opening the input".into()));
        }
        if let Some(default) = (*ctx).io_open {
            let _ = DEFAULT_IO_OPEN.set(default);
        }
        (*ctx).io_open = Some(only_the_input);
        let mut raw = opts.disown();
        // On failure this frees the context.
        let r = ffi::avformat_open_input(&mut ctx, url.as_ptr(), format, &mut raw);
        drop(ffmpeg::Dictionary::own(raw));
        if r < 0 {
            return Err(open_error(r));
        }
        let r = ffi::avformat_find_stream_info(ctx, ptr::null_mut());
        if r < 0 {
            ffi::avformat_close_input(&mut ctx);
            return Err(open_error(r));
        }
        Ok(ffmpeg::format::context::Input::wrap(ctx))
    }
}

type IoOpen = unsafe extern "C" fn(
    *mut ffi::AVFormatContext,
    *mut *mut ffi::AVIOContext,
    *const c_char,
    c_int,
    *mut *mut ffi::AVDictionary,
) -> c_int;

/// libavformat's own `io_open`, the same for every context.
static DEFAULT_IO_OPEN: OnceLock<IoOpen> = OnceLock::new();

/// The I/O hook of every opened upload: the context may open its own URL once — the main input,
/// before it has any — and nothing else. Whatever a demuxer would open besides (segments of a
/// playlist, files named by a script, external references) is refused.
unsafe extern "C" fn only_the_input(
    s: *mut ffi::AVFormatContext,
    pb: *mut *mut ffi::AVIOContext,
    url: *const c_char,
    flags: c_int,
    options: *mut *mut ffi::AVDictionary,
) -> c_int {
    let is_the_input = unsafe {
        !s.is_null()
            && (*s).pb.is_null()
            && !url.is_null()
            && !(*s).url.is_null()
            && CStr::from_ptr(url) == CStr::from_ptr((*s).url)
    };
    match DEFAULT_IO_OPEN.get() {
        Some(open) if is_the_input => unsafe { open(s, pb, url, flags, options) },
        _ => {
            tracing::warn!(target: "ffmpeg", "refused to open a file or URL named inside an upload");
            ffi::AVERROR(ffi::EPERM)
        }
    }
}

/// A failure to open or read the input's header, as a readable error.
fn open_error(code: c_int) -> MediaError {
    match ffmpeg::Error::from(code) {
        ffmpeg::Error::Other { errno } if is_io_errno(errno) => {
            MediaError::Io(std::io::Error::from_raw_os_error(errno))
        }
        e => MediaError::Invalid(open_failure_message(e, ffutil::take_last_error())),
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
        ffmpeg::Error::Eof => {
            format!("the file ends too early to be read; it looks truncated ({detail})")
        }
        _ => format!("the file could not be opened as media ({detail})"),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Even a demuxer that reads other files (forced here, and allowed for the test) cannot open
    /// anything but the one input through the guarded context.
    #[test]
    fn the_guarded_context_opens_nothing_but_its_input() {
        ffutil::init();
        let tmp = tempfile_dir();
        let segment = tmp.join("segment.ts");
        let made = std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=64x64:rate=10",
            ])
            .args(["-t", "1", "-c:v", "mpeg2video"])
            .arg(&segment)
            .status()
            .expect("ffmpeg CLI");
        assert!(made.success());
        let playlist = tmp.join("list.m3u8");
        std::fs::write(
            &playlist,
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile:{}\n#EXT-X-ENDLIST\n",
                segment.display()
            ),
        )
        .unwrap();
        let hls = CString::new("hls").unwrap();
        let format = unsafe { ffi::av_find_input_format(hls.as_ptr()) };
        assert!(!format.is_null());
        let url = input_url(&playlist).unwrap();
        // The nested demuxer is allowed too: only the I/O hook stands in the way.
        assert!(
            open_guarded(&url, format, "hls,mpegts").is_err(),
            "the playlist's segment was opened"
        );
        let _ = std::fs::remove_dir_all(&tmp);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lectern-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
