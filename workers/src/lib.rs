//! Lectern's transcoding engine: pure media work — no database, no HTTP, no async.
//!
//! Everything here is blocking and CPU-bound; callers run it on a blocking thread
//! (`tokio::task::spawn_blocking`) or in a worker process. The entry points are:
//!
//! * [`probe`] — open a file with libavformat and describe it ([`ProbeInfo`]), rejecting
//!   anything that is not usable lecture video with [`MediaError::Invalid`] and a message
//!   meant for the instructor who uploaded it.
//! * [`plan_ladder`] — choose the renditions (1080p/720p/480p/360p by the *short* side, never
//!   upscaling) for a probed source.
//! * [`transcode`] — produce a complete HLS package in an output directory:
//!
//!   ```text
//!   out_dir/master.m3u8            variants, highest first
//!   out_dir/<name>/index.m3u8      one media playlist per rendition ("720p", …)
//!   out_dir/<name>/seg_00000.ts …  MPEG-TS segments (optionally AES-128 encrypted)
//!   out_dir/poster.jpg             a still at min(3 s, duration/3)
//!   out_dir/sprite.jpg             10-column grid of 160-px-wide thumbnails
//!   out_dir/thumbnails.vtt         WebVTT cues "sprite.jpg#xywh=…" for scrubbing previews
//!   ```
//!
//!   and reports where the picture changes at once (slides), as chapter starts
//!   ([`TranscodeSummary::chapters`]).
//!
//! # Design: decode once, fan out
//!
//! The source is demuxed and decoded exactly once. Decoded video goes through a single
//! libavfilter graph:
//!
//! ```text
//! buffer → [yadif] → [transpose/hflip,vflip for rotated phone video] → fps=<cfr> → split=N+1
//!            ├─ scale=W₁:H₁ → buffersink → libx264 → hls muxer (rendition 1)   ← poster frame
//!            ├─ …
//!            ├─ select(every k s) → scale=160:h → buffersink → sprite compositor
//!            └─ fps=4 → scale=64:36 → gray → buffersink → scene changes (chapters)
//! ```
//!
//! The `fps` filter turns variable-frame-rate sources (screen recorders, phones) into a constant
//! rate, so every rendition gets the *same* frames with the same timestamps. Keyframes are forced
//! at every segment boundary (computed from the frame's time) and x264's own keyframe placement is
//! pinned (`keyint`, `scenecut=0`), so segment `k` of every rendition starts at the same instant
//! and a player can switch renditions at any boundary. If the picture size or format changes
//! mid-stream (resized screen recordings, spliced files) the graph is flushed up to that point and
//! rebuilt, continuing the same timeline.
//!
//! Audio is decoded, resampled and encoded to AAC-LC **once**; the very same packets are written
//! into every rendition's muxer. Its filter chain has an input stage that is rebuilt whenever the
//! source's audio format changes and an output stage (`aresample=async=1:first_pts=0`, fixed
//! frame size) that keeps the encoder's input constant and in sync with the video timeline.
//!
//! Packaging uses libavformat's `hls` muxer (one per rendition) for segmenting. Its own playlist
//! (`muxer.m3u8`, an `EVENT` playlist it rewrites atomically whenever it finishes a segment) is
//! how the pipeline learns, while it runs, that a segment is done: that segment is encrypted
//! when asked (AES-128-CBC in-process with libavutil, so the key is never written to disk —
//! FFmpeg 5.1's `hls_enc_key`/`hls_enc_iv` are used as raw bytes of the string rather than
//! hex-decoded, and the muxer writes the key to a file named by `hls_enc_key_url`) and reported
//! ([`transcode_with`], [`TranscodeEvent::Segment`]), so a caller can publish the video while it
//! is still being transcoded, with growing playlists from [`media_playlist`] and a master from
//! [`master_playlist`] over the planned variants. At the end every rendition gets its clean
//! `VOD` playlist (m3u8-rs, relative URIs) and `master.m3u8` is written with measured bandwidths
//! and the `avc1` codec string read from the encoder's actual SPS.
//!
//! All the CPU work runs on the calling thread (plus the codecs' own worker threads), memory is
//! bounded by codec/filter look-ahead rather than by the file's length, and nothing ever holds the
//! whole input or all frames.
//!
//! # Why MPEG-TS segments
//!
//! HLS can carry either MPEG-TS or fragmented MP4 (CMAF) segments. Lectern uses MPEG-TS because:
//!
//! * **Reach.** TS is the one segment format every HLS client has played since HLS version 1:
//!   old iOS/Safari, smart TVs, set-top boxes and hls.js alike. fMP4 needs protocol version 7
//!   and has patchier support on older devices, which students do use.
//! * **Whole-segment AES-128 is simple and universal.** Each `.ts` file is self-contained
//!   (PAT/PMT, SPS/PPS and an IDR frame at its start), so encrypting the whole file with
//!   `METHOD=AES-128` works on every player, needs no initialization segment (`EXT-X-MAP`) and no
//!   CENC/SAMPLE-AES machinery, and each segment can be fetched, decrypted and decoded alone.
//! * **Robustness.** A TS segment is independently decodable, which keeps seeking, CDN caching
//!   and debugging (`ffmpeg -i seg_00003.ts`) trivial.
//!
//! The cost — a few percent of container overhead compared with fMP4 — is acceptable for
//! lecture content.
//!
//! # Layout
//!
//! * `probe/` — opening an upload safely (`open`: demuxer allow-list, `file:` only, an I/O hook
//!   that opens nothing but the input), describing it (`analyze`) and the size/duration
//!   `limits` every picture must meet.
//! * `ladder` — the rendition ladder, a pure function of the probed display size.
//! * `transcode/` — the entry point and packaging (`mod`), the decode-once `pipeline`, each
//!   rendition's x264 `encoder` and HLS muxer, and the `timeline` arithmetic (output frame rate,
//!   timeline cap, segment starts).
//! * `audio` — the single decode → normalise → AAC-LC chain shared by every rendition.
//! * `graph` — a thin libavfilter graph wrapper (one buffer source, N sinks).
//! * `hls` — playlists rewritten with m3u8-rs, AES-128 segment encryption, the master playlist.
//! * `thumbs` — the poster JPEG, the sprite sheet and its WebVTT index.
//! * `scenes` — chapter boundaries: where the picture changes at once (a new slide).
//! * `watermark` — the forensic mark of variant B renditions, and reading a copy against both.
//! * `sample` — synthetic lecture clips for demos and smoke tests.
//! * `ffutil` — FFmpeg initialisation, log routing into `tracing`, error mapping, small helpers.
//!
//! # Logging
//!
//! FFmpeg's own log output is routed into [`tracing`] (target `ffmpeg`) instead of stderr, and the
//! last error message FFmpeg logs on the calling thread is used to make error messages specific.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod audio;
mod ffutil;
mod graph;
mod hls;
mod ladder;
mod probe;
mod sample;
mod scenes;
mod thumbs;
mod transcode;
pub mod watermark;

use std::fmt;

pub use hls::{decrypt_prefix, master_playlist, media_playlist, target_duration, Segment, Variant};
pub use ladder::{plan_ladder, Rendition};
pub use probe::{probe, ProbeInfo};
pub use sample::write_sample_clip;
pub use scenes::MIN_CHAPTER_SECONDS;
pub use transcode::{
    transcode, transcode_with, RenditionSummary, TranscodeEvent, TranscodeSummary,
};

/// Options for [`transcode`].
#[derive(Clone, Debug, PartialEq)]
pub struct TranscodeOptions {
    /// x264 preset (`ultrafast` … `veryslow`); default `"veryfast"`.
    pub x264_preset: String,
    /// Target HLS segment length in seconds; default 4.0. Allowed range 1–30.
    pub segment_seconds: f64,
    /// Encrypt every segment with AES-128 (whole-segment, `METHOD=AES-128`); default off.
    pub encryption: Option<HlsEncryption>,
    /// Thread-count hint for the decoder and each encoder; 0 lets FFmpeg/x264 decide.
    pub threads: usize,
    /// Copy a source that already is what the top rung would be (H.264 of its size, frame
    /// rate and bitrate, keyframes at least every segment) into it instead of encoding it
    /// again; default on.
    pub copy_top_rung: bool,
    /// Make the lowest rung in a pass of its own first, publishable at several times real
    /// time, and the other rungs in a second pass: `Some(true)` always, `Some(false)` never,
    /// `None` (default) when the whole ladder runs slower than 1.2× real time over its first
    /// segment (so a viewer who started at once would catch up with it).
    pub low_rung_first: Option<bool>,
    /// Encode every rung twice, the second time with the forensic mark (variant B, in
    /// `<name>-b/`, see [`watermark`]), naming every segment of both variants after this
    /// secret ([`watermark::segment_name`]) so a viewer cannot guess the variant they were
    /// not given; the top rung is then never copied. Default `None`: no watermark.
    pub watermark: Option<[u8; 16]>,
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        TranscodeOptions {
            x264_preset: "veryfast".to_owned(),
            segment_seconds: 4.0,
            encryption: None,
            threads: 0,
            copy_top_rung: true,
            low_rung_first: None,
            watermark: None,
        }
    }
}

/// AES-128 whole-segment encryption settings (HLS `EXT-X-KEY:METHOD=AES-128`).
///
/// The key never touches the disk: segments are encrypted in-process (AES-128-CBC with PKCS#7
/// padding, exactly what HLS clients expect) and only `key_uri` and the IV appear in the
/// playlists. Serving the key at `key_uri` (to entitled viewers only) is the caller's job.
#[derive(Clone, PartialEq, Eq)]
pub struct HlsEncryption {
    /// The 16-byte content key.
    pub key: [u8; 16],
    /// The 16-byte initialization vector, used for every segment and written as `IV=0x…`.
    pub iv: [u8; 16],
    /// Where players fetch the key (absolute, or relative to the media playlist).
    pub key_uri: String,
}

impl fmt::Debug for HlsEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("HlsEncryption")
            .field("key", &"<redacted>")
            .field("iv", &hls::hex(&self.iv))
            .field("key_uri", &self.key_uri)
            .finish()
    }
}

/// Why probing or transcoding failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The input is not usable media (no video stream, undecodable, absurd size, audio-only,
    /// truncated, …). Permanent: retrying will not help. The message is meant to be shown to the
    /// person who uploaded the file.
    #[error("{0}")]
    Invalid(String),
    /// Reading the input or writing the outputs failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// FFmpeg refused the work for a reason that the same input and options meet again on
    /// every try: an invalid argument or invalid data, a missing codec or feature. Permanent.
    #[error("the video could not be processed: {0}")]
    Unprocessable(String),
    /// An unexpected failure inside FFmpeg (out of memory, a resource error), with context.
    /// Possibly transient.
    #[error("FFmpeg error: {0}")]
    Ffmpeg(String),
    /// The [`TranscodeOptions`] themselves are unusable (e.g. an unknown x264 preset). Retrying
    /// the same job with the same options will not help, but the media itself may be fine.
    #[error("invalid transcode options: {0}")]
    InvalidOptions(String),
}

impl MediaError {
    /// True for failures that retrying cannot fix ([`MediaError::Invalid`],
    /// [`MediaError::Unprocessable`], [`MediaError::InvalidOptions`]).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MediaError::Invalid(_) | MediaError::Unprocessable(_) | MediaError::InvalidOptions(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_of_the_input_or_options_are_permanent() {
        assert!(MediaError::Invalid("no video".into()).is_permanent());
        assert!(MediaError::Unprocessable("bad data".into()).is_permanent());
        assert!(MediaError::InvalidOptions("preset".into()).is_permanent());
        assert!(!MediaError::Ffmpeg("out of memory".into()).is_permanent());
        assert!(!MediaError::Io(std::io::Error::other("disk full")).is_permanent());
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let enc = HlsEncryption { key: [0xab; 16], iv: [0x01; 16], key_uri: "key.bin".into() };
        assert_eq!(
            format!("{enc:?}"),
            "HlsEncryption { key: \"<redacted>\", iv: \"01010101010101010101010101010101\", key_uri: \"key.bin\" }"
        );
    }
}
