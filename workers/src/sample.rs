//! Synthetic lecture clips for demos and smoke tests, made in-process:
//!
//! ```text
//! testsrc2 → trim → format=yuv420p → buffersink  → libx264 (ultrafast) ─┐
//! sine     → atrim → aformat=fltp:48k:stereo → abuffersink → AAC-LC ───┴→ mp4 muxer
//! ```
//!
//! The filter graph has only source filters as inputs (no buffersrc, no libavdevice). Frames are
//! pulled from whichever track is behind, so the muxer interleaves as it goes and memory stays
//! bounded by codec look-ahead, whatever the clip's length.

use std::ops::DerefMut;
use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::{codec, filter, frame, picture, Packet, Rational, Rescale};

use crate::ffutil::{self, ff_err};
use crate::MediaError;

const FPS: i32 = 30;
const SAMPLE_RATE: i32 = 48_000;

/// Write a short synthetic lecture clip to `out` (MP4: H.264 + AAC), for demos and smoke tests:
/// libavfilter's moving `testsrc2` pattern (deterministic content) and a sine tone of `tone_hz`
/// (stereo, 48 kHz); `width`×`height` at 30 fps, `seconds` long (rounded to whole frames).
///
/// The container is MP4 whatever `out`'s extension; an existing file is overwritten. Blocking and
/// CPU-bound. Unusable arguments (odd or out-of-range sides, non-positive or over-12-hour
/// durations, tones outside 1–20 000 Hz) give [`MediaError::InvalidOptions`]; an unwritable `out`
/// gives [`MediaError::Io`]. On failure after `out` was created, it is removed.
pub fn write_sample_clip(
    out: &Path,
    width: u32,
    height: u32,
    seconds: f64,
    tone_hz: u32,
) -> Result<(), MediaError> {
    ffutil::init();
    check_clip_args(width, height, seconds, tone_hz)?;
    let Some(path) = out.to_str() else {
        return Err(MediaError::InvalidOptions("the output path must be valid UTF-8".into()));
    };
    ffutil::clear_last_error();
    let octx = ffmpeg::format::output_as(path, "mp4").map_err(|e| match e {
        ffmpeg::Error::Other { errno } => MediaError::Io(std::io::Error::from_raw_os_error(errno)),
        e => ff_err("creating the MP4 file", e),
    })?;
    let (frames, samples) = clip_length(seconds);
    let result = write(octx, width, height, frames, samples, tone_hz);
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

/// Refuse arguments [`write_sample_clip`] cannot honour: odd or out-of-range sides, durations
/// not in (0 s, 12 h], tones outside 1–20 000 Hz.
fn check_clip_args(width: u32, height: u32, seconds: f64, tone_hz: u32) -> Result<(), MediaError> {
    let bad = |m: &str| Err(MediaError::InvalidOptions(m.to_owned()));
    if !(16..=8192).contains(&width)
        || !(16..=8192).contains(&height)
        || width % 2 != 0
        || height % 2 != 0
    {
        return bad("the width and height must be even numbers between 16 and 8192");
    }
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 12.0 * 3600.0) {
        return bad("the duration must be more than 0 seconds and at most 12 hours");
    }
    if !(1..=20_000).contains(&tone_hz) {
        return bad("the tone must be between 1 and 20000 Hz");
    }
    Ok(())
}

/// A clip of `seconds` in whole video frames (at least one) and audio samples.
fn clip_length(seconds: f64) -> (u64, u64) {
    let frames = ((seconds * f64::from(FPS)).round() as u64).max(1);
    let samples = (seconds * f64::from(SAMPLE_RATE)).round() as u64;
    (frames, samples)
}

/// One output track: a buffersink, its encoder and its MP4 stream.
struct Track {
    sink: &'static str,
    encoder: ffmpeg::encoder::Encoder,
    enc_tb: Rational,
    stream: usize,
    /// Duration (in `enc_tb`) for packets the encoder leaves without one (x264 does, in 5.1).
    packet_duration: i64,
    /// Start time (seconds) of the frame pulled last; `None` once the track is finished.
    time: Option<f64>,
}

/// Encode the clip into `octx` (an MP4 muxer not yet started) and finish the file.
fn write(
    mut octx: ffmpeg::format::context::Output,
    width: u32,
    height: u32,
    frames: u64,
    samples: u64,
    tone_hz: u32,
) -> Result<(), MediaError> {
    let global_header = octx.format().flags().contains(ffmpeg::format::Flags::GLOBAL_HEADER);
    let (venc, aenc) = open_encoders(width, height, global_header)?;
    let frame_size = aenc.frame_size();

    octx.add_stream_with(&venc)
        .map_err(|e| ff_err("adding the video stream", e))?
        .set_time_base(venc.time_base());
    octx.add_stream_with(&aenc)
        .map_err(|e| ff_err("adding the audio stream", e))?
        .set_time_base(aenc.time_base());
    let mut mux_opts = ffmpeg::Dictionary::new();
    mux_opts.set("movflags", "+faststart");
    octx.write_header_with(mux_opts).map_err(|e| ff_err("starting the MP4 muxer", e))?;

    let spec = format!(
        "testsrc2=size={width}x{height}:rate={FPS},trim=end_frame={frames},format=yuv420p,setsar=1[vout];\
         sine=frequency={tone_hz}:sample_rate={SAMPLE_RATE},atrim=end_sample={samples},\
         aformat=sample_fmts=fltp:sample_rates={SAMPLE_RATE}:channel_layouts=stereo[aout]"
    );
    let mut graph = source_graph(&spec, frame_size)?;
    let video = Track {
        sink: "vout",
        enc_tb: venc.time_base(),
        encoder: venc.0 .0,
        stream: 0,
        packet_duration: 1,
        time: Some(0.0),
    };
    let audio = Track {
        sink: "aout",
        enc_tb: aenc.time_base(),
        encoder: aenc.0 .0,
        stream: 1,
        packet_duration: frame_size.into(),
        time: Some(0.0),
    };
    interleave(video, audio, &mut graph, &mut octx)?;
    octx.write_trailer().map_err(|e| ff_err("finishing the MP4 file", e))
}

/// The two encoders, opened: H.264 (ultrafast, 2-second GOP) and AAC-LC.
fn open_encoders(
    width: u32,
    height: u32,
    global_header: bool,
) -> Result<(ffmpeg::encoder::Video, ffmpeg::encoder::Audio), MediaError> {
    let x264 = ffmpeg::encoder::find_by_name("libx264")
        .ok_or_else(|| MediaError::Ffmpeg("FFmpeg was built without libx264".into()))?;
    let mut v = codec::Context::new_with_codec(x264)
        .encoder()
        .video()
        .map_err(|e| ff_err("creating x264", e))?;
    v.set_width(width);
    v.set_height(height);
    v.set_format(Pixel::YUV420P);
    v.set_time_base(Rational::new(1, FPS));
    v.set_frame_rate(Some(Rational::new(FPS, 1)));
    v.set_aspect_ratio(Rational::new(1, 1));
    v.set_gop(2 * FPS as u32);
    let aac = ffmpeg::encoder::find(codec::Id::AAC)
        .ok_or_else(|| MediaError::Ffmpeg("FFmpeg was built without the aac encoder".into()))?;
    let mut a = codec::Context::new_with_codec(aac)
        .encoder()
        .audio()
        .map_err(|e| ff_err("creating AAC", e))?;
    a.set_rate(SAMPLE_RATE);
    a.set_channel_layout(ffmpeg::ChannelLayout::STEREO);
    a.set_format(ffmpeg::format::Sample::F32(ffmpeg::format::sample::Type::Planar));
    a.set_bit_rate(128_000);
    a.set_time_base(Rational::new(1, SAMPLE_RATE));
    if global_header {
        v.set_flags(codec::Flags::GLOBAL_HEADER);
        a.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut x264_opts = ffmpeg::Dictionary::new();
    x264_opts.set("preset", "ultrafast");
    let venc = v.open_with(x264_opts).map_err(|e| ff_err("opening x264", e))?;
    let aenc = a.open_as(aac).map_err(|e| ff_err("opening the AAC encoder", e))?;
    Ok((venc, aenc))
}

/// The sources: a filter graph (`spec`) whose only open ends are the sinks "vout" and "aout",
/// the audio sink handing out frames of the encoder's `frame_size` (when it has one).
fn source_graph(spec: &str, frame_size: u32) -> Result<filter::Graph, MediaError> {
    let mut graph = filter::Graph::new();
    for (kind, name) in [("buffersink", "vout"), ("abuffersink", "aout")] {
        let f = filter::find(kind)
            .ok_or_else(|| MediaError::Ffmpeg(format!("the {kind} filter is not available")))?;
        graph.add(&f, name, "").map_err(|e| ff_err("creating a buffer sink", e))?;
    }
    let wire = |g: &mut filter::Graph| g.input("vout", 0)?.input("aout", 0)?.parse(spec);
    wire(&mut graph).map_err(|e| ff_err(&format!("parsing the filter graph {spec:?}"), e))?;
    graph.validate().map_err(|e| ff_err("configuring the filter graph", e))?;
    if frame_size > 0 {
        // Needs the configured link: only after `validate`.
        graph.get("aout").expect("added").sink().set_frame_size(frame_size);
    }
    Ok(graph)
}

/// Pull from whichever track is behind, so packets reach the muxer roughly in time order,
/// until both are finished.
fn interleave(
    mut video: Track,
    mut audio: Track,
    graph: &mut filter::Graph,
    octx: &mut ffmpeg::format::context::Output,
) -> Result<(), MediaError> {
    let (mut vf, mut af) = (frame::Video::empty(), frame::Audio::empty());
    loop {
        match (video.time, audio.time) {
            (None, None) => return Ok(()),
            (Some(tv), Some(ta)) if tv <= ta => video.step(graph, &mut vf, octx)?,
            (Some(_), None) => video.step(graph, &mut vf, octx)?,
            _ => audio.step(graph, &mut af, octx)?,
        }
    }
}

/// What a frame pulled from a sink needs before it is encoded.
trait BeforeEncoding: DerefMut<Target = ffmpeg::Frame> {
    fn prepare(&mut self) {}
}

impl BeforeEncoding for frame::Video {
    /// testsrc2 marks every picture as an I frame; let x264 place keyframes itself.
    fn prepare(&mut self) {
        self.set_kind(picture::Type::None);
    }
}

impl BeforeEncoding for frame::Audio {}

impl Track {
    /// Pull one frame from the sink and encode it, or flush the encoder at the end of the stream.
    fn step<F: BeforeEncoding>(
        &mut self,
        graph: &mut filter::Graph,
        f: &mut F,
        octx: &mut ffmpeg::format::context::Output,
    ) -> Result<(), MediaError> {
        let mut ctx = graph.get(self.sink).expect("added");
        let mut sink = ctx.sink();
        match sink.frame(f) {
            Ok(()) => {
                let pts = f.pts().unwrap_or(0).rescale(sink.time_base(), self.enc_tb);
                self.time = Some(pts as f64 * f64::from(self.enc_tb));
                f.set_pts(Some(pts));
                f.prepare();
                self.encoder.send_frame(f).map_err(|e| ff_err("encoding the sample clip", e))?;
            }
            Err(ffmpeg::Error::Eof) => {
                self.time = None;
                self.encoder.send_eof().map_err(|e| ff_err("flushing an encoder", e))?;
            }
            Err(e) => return Err(ff_err("running the test-pattern filter graph", e)),
        }
        let mut pkt = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut pkt) {
                Ok(()) => {
                    pkt.set_stream(self.stream);
                    if pkt.duration() <= 0 {
                        pkt.set_duration(self.packet_duration);
                    }
                    pkt.rescale_ts(
                        self.enc_tb,
                        octx.stream(self.stream).expect("added").time_base(),
                    );
                    pkt.write_interleaved(octx).map_err(|e| ff_err("writing the MP4 file", e))?;
                }
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) if crate::graph::is_again(&e) => return Ok(()),
                Err(e) => return Err(ff_err("encoding the sample clip", e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_arguments_are_checked_before_anything_is_written() {
        assert!(check_clip_args(640, 360, 10.0, 440).is_ok());
        assert!(check_clip_args(16, 8192, 12.0 * 3600.0, 20_000).is_ok());
        for (w, h, secs, tone) in [
            (641, 360, 10.0, 440),
            (640, 14, 10.0, 440),
            (8194, 360, 10.0, 440),
            (640, 360, 0.0, 440),
            (640, 360, -1.0, 440),
            (640, 360, f64::NAN, 440),
            (640, 360, 12.0 * 3600.0 + 1.0, 440),
            (640, 360, 10.0, 0),
            (640, 360, 10.0, 20_001),
        ] {
            let r = check_clip_args(w, h, secs, tone);
            assert!(matches!(r, Err(MediaError::InvalidOptions(_))), "{w}×{h} {secs} s {tone} Hz");
        }
    }

    #[test]
    fn clip_length_is_whole_frames_and_samples() {
        assert_eq!(clip_length(2.0), (60, 96_000));
        // Rounded to the nearest frame and sample, never below one frame.
        assert_eq!(clip_length(1.0 / 90.0), (1, 533));
        assert_eq!(clip_length(1.02), (31, 48_960));
    }
}
