//! Small FFmpeg helpers: one-time initialisation, log routing, error mapping.

use std::cell::RefCell;
use std::sync::Once;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;

use crate::MediaError;

static INIT: Once = Once::new();

/// Initialise FFmpeg once per process and route its log output into `tracing`.
pub(crate) fn init() {
    INIT.call_once(|| {
        // In FFmpeg ≥ 4 this only registers devices; it cannot meaningfully fail.
        let _ = ffmpeg::init();
        // Messages above WARNING (x264's statistics, muxer chatter…) are not even formatted.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Warning);
        install_log_callback();
    });
}

thread_local! {
    /// The last ERROR-level message FFmpeg logged on this thread (without the "[ctx @ 0x…]" prefix).
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Forget any FFmpeg error message captured on this thread.
pub(crate) fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|l| l.borrow_mut().take());
}

/// The last FFmpeg error message logged on this thread, if any (consumed).
pub(crate) fn take_last_error() -> Option<String> {
    LAST_ERROR.try_with(|l| l.borrow_mut().take()).ok().flatten()
}

// The va_list ABI differs between targets; the bindgen type used here is the x86-64 one. On
// other targets FFmpeg's default logger is kept (quiet apart from warnings and errors).
#[cfg(target_arch = "x86_64")]
fn install_log_callback() {
    // SAFETY: `log_callback` has the exact signature libavutil calls its log callback with on
    // this target; it may be called from any thread at any time, and only touches thread-local
    // state and `tracing` (both thread-safe), so installing it process-wide is sound.
    unsafe { ffi::av_log_set_callback(Some(log_callback)) };
}

#[cfg(not(target_arch = "x86_64"))]
fn install_log_callback() {}

/// FFmpeg's log callback: ERROR and worse are remembered per thread (see [`take_last_error`])
/// and logged at `debug`, WARNING at `trace`, anything chattier is dropped.
///
/// # Safety
///
/// Only for libavutil to call, with `av_log`'s arguments: `avcl` NULL or a pointer to a struct
/// whose first member is an `AVClass` pointer, `fmt` a printf format for the arguments in `vl`.
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn log_callback(
    avcl: *mut std::ffi::c_void,
    level: std::ffi::c_int,
    fmt: *const std::ffi::c_char,
    vl: *mut ffi::__va_list_tag,
) {
    use std::ffi::{c_char, c_int, CStr};
    if level > ffi::AV_LOG_WARNING || fmt.is_null() {
        return;
    }
    let mut buf = [0 as c_char; 1024];
    // Format without the "[name @ 0x…]" prefix: that part is for humans reading stderr, and the
    // bare message is what ends up (readably) in error messages.
    let mut prefix: c_int = 0;
    // SAFETY: `avcl`, `fmt` and `vl` are av_log's own arguments, passed on unchanged and used
    // once (see the function's contract); `buf` is writable for the length passed, and
    // `prefix` is a live int.
    unsafe {
        ffi::av_log_format_line2(
            avcl,
            level,
            fmt,
            vl,
            buf.as_mut_ptr(),
            buf.len() as c_int,
            &mut prefix,
        );
    }
    // SAFETY: av_log_format_line2 leaves a NUL-terminated string of at most `buf.len()` bytes
    // (NUL included) in `buf`, which outlives `msg`'s use below.
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
    let msg = msg.trim();
    if msg.is_empty() {
        return;
    }
    // SAFETY: `avcl` is av_log's context argument (see the function's contract).
    let component = unsafe { class_name(avcl) };
    if level <= ffi::AV_LOG_ERROR {
        tracing::debug!(target: "ffmpeg", component, "{msg}");
        let owned = redact(msg);
        let _ = LAST_ERROR.try_with(|l| *l.borrow_mut() = Some(owned));
    } else {
        tracing::trace!(target: "ffmpeg", component, "{msg}");
    }
}

/// The `item_name` of the AVClass-carrying struct `avcl` points at ("mov,mp4,…", "libx264", …).
///
/// # Safety
///
/// `avcl` is NULL or points at a live struct whose first member is a (possibly NULL)
/// `const AVClass *`, as every context passed to `av_log` does.
#[cfg(target_arch = "x86_64")]
unsafe fn class_name(avcl: *mut std::ffi::c_void) -> &'static str {
    if avcl.is_null() {
        return "";
    }
    // SAFETY: by the contract above, a non-NULL `avcl` starts with an `AVClass` pointer, which
    // is NULL or points at one of FFmpeg's static class descriptions; `item_name` takes the
    // context itself.
    let name = unsafe {
        let class = *(avcl as *const *const ffi::AVClass);
        if class.is_null() {
            return "";
        }
        match (*class).item_name {
            Some(item_name) => item_name(avcl),
            None => return "",
        }
    };
    if name.is_null() {
        return "";
    }
    // SAFETY: item names are static NUL-terminated strings in FFmpeg (codec, format and filter
    // names), so the `'static` borrow holds.
    unsafe { std::ffi::CStr::from_ptr(name) }.to_str().unwrap_or("")
}

/// A library failure, with context and FFmpeg's own last words: [`MediaError::Unprocessable`]
/// when the error is one the same work meets on every try, [`MediaError::Ffmpeg`] otherwise.
pub(crate) fn ff_err(context: &str, e: ffmpeg::Error) -> MediaError {
    let message = match take_last_error() {
        Some(detail) => format!("{context}: {e} ({detail})"),
        None => format!("{context}: {e}"),
    };
    if is_deterministic(&e) {
        MediaError::Unprocessable(message)
    } else {
        MediaError::Ffmpeg(message)
    }
}

/// Errors that depend only on the input and the work asked for, not on the machine's state:
/// retrying cannot help. Memory, I/O and "try again" errors are not among them.
fn is_deterministic(e: &ffmpeg::Error) -> bool {
    use ffmpeg::Error::*;
    match e {
        InvalidData | PatchWelcome | Bug | Bug2 | Experimental | DecoderNotFound
        | EncoderNotFound | DemuxerNotFound | MuxerNotFound | FilterNotFound | OptionNotFound
        | StreamNotFound | BsfNotFound | ProtocolNotFound => true,
        Other { errno } => {
            use ffmpeg::error::{EDOM, EINVAL, ENOSYS, ENOTSUP, ERANGE};
            [EINVAL, ERANGE, EDOM, ENOSYS, ENOTSUP].contains(errno)
        }
        _ => false,
    }
}

/// `msg` without paths or URLs: FFmpeg names files in its messages ("Opening '/data/…'"), and
/// these messages end up in errors shown to uploaders.
pub(crate) fn redact(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        let looks_like_location = token.starts_with('/')
            || token.contains("://")
            || token.starts_with("file:")
            || token.starts_with("~/")
            || (token.contains('/') && token.contains('.'));
        out.push_str(if looks_like_location { "…" } else { token });
        token.clear();
    };
    for c in msg.chars() {
        if c.is_whitespace()
            || matches!(c, '\'' | '"' | '`' | '(' | ')' | '[' | ']' | '<' | '>' | ',' | ';')
        {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// A new reference to `src`'s data (no pixel copy).
pub(crate) fn frame_ref(src: &ffmpeg::frame::Video) -> Result<ffmpeg::frame::Video, MediaError> {
    let mut dst = ffmpeg::frame::Video::empty();
    // SAFETY: `dst` is a freshly allocated, empty frame and `src` a valid one we borrow; on
    // success `dst` shares `src`'s buffers (reference-counted), on failure it stays empty.
    let r = unsafe { ffi::av_frame_ref(dst.as_mut_ptr(), src.as_ptr()) };
    if r < 0 {
        return Err(ff_err("referencing a frame", ffmpeg::Error::from(r)));
    }
    Ok(dst)
}

/// Make `f`'s pixels its own (copying them if another reference shares them), so they can be
/// changed in place.
pub(crate) fn make_writable(f: &mut ffmpeg::frame::Video) -> Result<(), MediaError> {
    // SAFETY: `f` is a valid frame we hold mutably; av_frame_make_writable only replaces its
    // buffers with unshared copies (or leaves them) and reports failure by its return value.
    let r = unsafe { ffi::av_frame_make_writable(f.as_mut_ptr()) };
    if r < 0 {
        return Err(ff_err("copying a frame", ffmpeg::Error::from(r)));
    }
    Ok(())
}

/// The codec parameters of `stream`, for the fields ffmpeg-next has no accessor for.
pub(crate) fn codecpar<'a>(
    stream: &'a ffmpeg::format::stream::Stream,
) -> &'a ffi::AVCodecParameters {
    // SAFETY: every stream of an opened format context has its `codecpar` allocated (by
    // `avformat_new_stream`), owned by the stream and freed only with the context, which
    // `stream` borrows. libavformat changes it only while reading packets, which needs the
    // context mutably, and that borrow rules out for as long as the reference lives.
    unsafe { &*(*stream.as_ptr()).codecpar }
}

/// The demuxer context behind `ictx`, for the fields ffmpeg-next has no accessor for.
pub(crate) fn format_context(ictx: &ffmpeg::format::context::Input) -> &ffi::AVFormatContext {
    // SAFETY: an `Input` always wraps a context opened by `avformat_open_input` (non-null),
    // freed only when the `Input` is dropped; the shared borrow of `ictx` rules out reading
    // packets (which changes the context) for as long as the reference lives.
    unsafe { &*ictx.as_ptr() }
}

/// Set the thread-count hint of a codec context that is not open yet (0: the codec decides),
/// keeping its default threading types (ffmpeg-next's `set_threading` would replace them).
pub(crate) fn set_thread_count(ctx: &mut ffmpeg::codec::Context, threads: i32) {
    // SAFETY: `ctx` owns a valid codec context; `thread_count` is a plain field that
    // avcodec_open2 reads, and the exclusive borrow rules out any other access meanwhile.
    unsafe { (*ctx.as_mut_ptr()).thread_count = threads };
}

/// `r` as f64, or None when it is not a usable positive rate.
pub(crate) fn positive_rate(r: ffmpeg::Rational) -> Option<f64> {
    if r.numerator() > 0 && r.denominator() > 0 {
        Some(r.numerator() as f64 / r.denominator() as f64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_the_same_work_meets_again_are_permanent() {
        for e in [
            ffmpeg::Error::from(-ffmpeg::error::EINVAL),
            ffmpeg::Error::InvalidData,
            ffmpeg::Error::EncoderNotFound,
        ] {
            assert!(ff_err("opening the JPEG encoder", e).is_permanent(), "{e:?}");
        }
        for e in
            [ffmpeg::Error::from(-ffmpeg::error::ENOMEM), ffmpeg::Error::from(-ffmpeg::error::EIO)]
        {
            assert!(!ff_err("encoding video", e).is_permanent(), "{e:?}");
        }
    }

    #[test]
    fn paths_and_urls_are_taken_out_of_messages() {
        assert_eq!(
            redact("Opening 'file:/data/scratch/job-1-1/source' for reading"),
            "Opening '…' for reading"
        );
        assert_eq!(
            redact("Failed to open http://10.0.0.5:9000/bucket/x.ts: denied"),
            "Failed to open … denied"
        );
        assert_eq!(redact("/tmp/x/seg_00001.ts: No space left"), "… No space left");
        assert_eq!(
            redact("Invalid data found when processing input"),
            "Invalid data found when processing input"
        );
        assert_eq!(redact("width 16/9 is odd"), "width 16/9 is odd");
    }

    #[test]
    fn only_positive_ratios_are_rates() {
        assert_eq!(positive_rate(ffmpeg::Rational::new(30000, 1001)), Some(30000.0 / 1001.0));
        assert_eq!(positive_rate(ffmpeg::Rational::new(25, 1)), Some(25.0));
        for (n, d) in [(0, 1), (25, 0), (0, 0), (-25, 1), (25, -1)] {
            assert_eq!(positive_rate(ffmpeg::Rational::new(n, d)), None, "{n}/{d}");
        }
    }
}
