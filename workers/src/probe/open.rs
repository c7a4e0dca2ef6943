//! Opening an upload safely: only allow-listed demuxers, the `file` protocol, and an I/O hook that
//! lets libavformat open the one input file and nothing else.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;

use crate::ffutil;
use crate::MediaError;

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
    // SAFETY: every demuxer description has a static, NUL-terminated `name`.
    let name = unsafe { CStr::from_ptr(format.name) }.to_string_lossy().into_owned();
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
fn detect_format(url: &CStr) -> Result<(&'static ffi::AVInputFormat, i32), MediaError> {
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("protocol_whitelist", "file");
    let mut pb: *mut ffi::AVIOContext = ptr::null_mut();
    // SAFETY: `url` is NUL-terminated and outlives the call, `pb` is a valid out-pointer, and
    // the options are handed over disowned and taken back (and freed) right after, with
    // whatever entries the call left unused.
    let r = unsafe {
        let mut raw = opts.disown();
        let r = ffi::avio_open2(
            &mut pb,
            url.as_ptr(),
            ffi::AVIO_FLAG_READ as c_int,
            ptr::null(),
            &mut raw,
        );
        drop(ffmpeg::Dictionary::own(raw));
        r
    };
    if r < 0 {
        return Err(open_error(r));
    }
    let mut format: *const ffi::AVInputFormat = ptr::null();
    // SAFETY: `pb` was just opened for reading and is closed (and set to NULL) right after;
    // `format` is a valid out-pointer; a NULL log context, offset 0 and maximum probe size 0
    // (the default) are allowed.
    let score = unsafe {
        let score =
            ffi::av_probe_input_buffer2(pb, &mut format, url.as_ptr(), ptr::null_mut(), 0, 0);
        ffi::avio_closep(&mut pb);
        score
    };
    if score < 0 || format.is_null() {
        return Err(open_error(if score < 0 { score } else { ffi::AVERROR_INVALIDDATA }));
    }
    // SAFETY: not NULL, and demuxer descriptions are static data of libavformat.
    Ok((unsafe { &*format }, score))
}

/// Open `url` with `format` forced (which must be on `formats`, a comma-separated list), the
/// `file` protocol only, and [`only_the_input`] as the I/O hook.
fn open_guarded(
    url: &CStr,
    format: &'static ffi::AVInputFormat,
    formats: &str,
) -> Result<ffmpeg::format::context::Input, MediaError> {
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("protocol_whitelist", "file");
    opts.set("format_whitelist", formats);
    // SAFETY: avformat_alloc_context has no preconditions; NULL means out of memory.
    let mut ctx = unsafe { ffi::avformat_alloc_context() };
    if ctx.is_null() {
        return Err(MediaError::Ffmpeg("out of memory opening the input".into()));
    }
    // SAFETY: `ctx` is a fresh, valid context nothing else knows of yet; setting `io_open`
    // before opening is how the API lets a caller hook the context's I/O (libavformat's
    // default is kept for the hook to call through to).
    unsafe {
        if let Some(default) = (*ctx).io_open {
            let _ = DEFAULT_IO_OPEN.set(default);
        }
        (*ctx).io_open = Some(only_the_input);
    }
    // SAFETY: `ctx` is that fresh context (on failure the call frees it and sets it to NULL),
    // `url` is NUL-terminated, `format` a static demuxer description, and the options are
    // handed over and taken back as in `detect_format`.
    let r = unsafe {
        let mut raw = opts.disown();
        let r = ffi::avformat_open_input(&mut ctx, url.as_ptr(), format, &mut raw);
        drop(ffmpeg::Dictionary::own(raw));
        r
    };
    if r < 0 {
        return Err(open_error(r));
    }
    // SAFETY: `ctx` is now an opened input context: on failure it is closed here and never
    // used again, on success it is handed to `Input`, which owns it and closes it on drop.
    unsafe {
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
///
/// # Safety
///
/// Only for libavformat to call, as a context's `io_open`: `s` is NULL or the live context,
/// `url` NULL or a NUL-terminated string, the other arguments as `io_open` documents them.
unsafe extern "C" fn only_the_input(
    s: *mut ffi::AVFormatContext,
    pb: *mut *mut ffi::AVIOContext,
    url: *const c_char,
    flags: c_int,
    options: *mut *mut ffi::AVDictionary,
) -> c_int {
    // SAFETY: by the contract above, `s` is NULL or a live context, whose `url` (set by
    // avformat_open_input before any I/O) is NULL or NUL-terminated like `url`; every pointer
    // is checked for NULL before it is read.
    let is_the_input = unsafe {
        !s.is_null()
            && (*s).pb.is_null()
            && !url.is_null()
            && !(*s).url.is_null()
            && CStr::from_ptr(url) == CStr::from_ptr((*s).url)
    };
    match DEFAULT_IO_OPEN.get() {
        // SAFETY: libavformat's own hook, called with the arguments libavformat gave us,
        // unchanged.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_containers_of_one_files_own_media_are_allowed() {
        for names in ["mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "mpegts", "avi", "ivf"] {
            assert!(is_allowed(names), "{names}");
        }
        for names in ["hls", "concat", "image2", "mp3", "lavfi", "http", "", "mp4"] {
            assert!(!is_allowed(names), "{names}");
        }
    }

    #[test]
    fn refusals_say_what_the_file_is() {
        let sure = ffi::AVPROBE_SCORE_MAX;
        assert!(refusal("hls,applehttp", sure).starts_with("this is an HLS playlist"));
        assert!(refusal("concat", sure).starts_with("this is an FFmpeg script"));
        assert_eq!(refusal("png_pipe", sure), "this is a still image, not a video");
        assert_eq!(refusal("gif", sure), "this is a still image, not a video");
        assert_eq!(
            refusal("tty", sure),
            "the file is not a video (it looks like text or other data)"
        );
        assert_eq!(refusal("wav", sure), "no video stream found (audio-only file)");
        assert!(refusal("rm", sure).starts_with("files in the rm format are not accepted"));
        // A weak guess says nothing about what the file is.
        assert_eq!(
            refusal("hls", ffi::AVPROBE_SCORE_MAX / 4 - 1),
            "the file is not a video format we can read, or it is damaged"
        );
    }

    #[test]
    fn open_failures_read_as_what_went_wrong() {
        let m =
            open_failure_message(ffmpeg::Error::InvalidData, Some("moov atom not found".into()));
        assert!(m.contains("MP4 'moov' atom) is missing"), "{m}");
        // Without FFmpeg's own last words, the error's description stands in.
        let m = open_failure_message(ffmpeg::Error::InvalidData, None);
        let expected = format!(
            "the file is not a video format we can read, or it is damaged ({})",
            ffmpeg::Error::InvalidData
        );
        assert_eq!(m, expected);
        let m = open_failure_message(ffmpeg::Error::Eof, Some("short read".into()));
        assert_eq!(m, "the file ends too early to be read; it looks truncated (short read)");
        let m = open_failure_message(ffmpeg::Error::Bug, Some("odd".into()));
        assert_eq!(m, "the file could not be opened as media (odd)");
    }

    #[test]
    fn only_machine_trouble_counts_as_io() {
        use ffmpeg::error::{EACCES, EINVAL, EIO, ENOENT, ENOMEM};
        for errno in [ENOENT, EACCES, ENOMEM, EIO] {
            assert!(is_io_errno(errno), "{errno}");
            assert!(matches!(open_error(-errno), MediaError::Io(_)), "{errno}");
        }
        assert!(!is_io_errno(EINVAL));
        assert!(matches!(open_error(ffi::AVERROR_INVALIDDATA), MediaError::Invalid(_)));
    }

    #[test]
    fn the_input_is_always_read_through_the_file_protocol() {
        let url = input_url(Path::new("/data/up/http:evil.mp4")).unwrap();
        assert_eq!(url.to_bytes(), b"file:/data/up/http:evil.mp4");
        assert!(input_url(Path::new("a\0b")).is_err());
    }

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
        // SAFETY: `hls` is NUL-terminated and outlives the call; the result is NULL or a static
        // demuxer description.
        let format = unsafe { ffi::av_find_input_format(hls.as_ptr()).as_ref() };
        let format = format.expect("the hls demuxer");
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
