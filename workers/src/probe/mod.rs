//! Probing: what is in a file, and is it usable lecture video at all?

mod analyze;
mod limits;
mod open;

use std::path::Path;

use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

use crate::ffutil;
use crate::MediaError;

pub(crate) use analyze::analyze;
pub(crate) use limits::{check_coded_size, displayed_size, MAX_DURATION, MIN_SIDE};
pub(crate) use open::open_input;

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
    /// Clockwise rotation in degrees as read, before [`ProbeInfo::rotation_degrees`] rounds it:
    /// the graph undoes quarter turns losslessly and any other angle with `rotate`.
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
