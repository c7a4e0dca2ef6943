//! Decode once, fan out: one decoder, one filter graph, N x264 encoders, one AAC encoder, N HLS
//! muxers — all driven from the calling thread.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::Instant;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::{codec, frame, picture, Packet, Rational, Rescale};
use serde::{Deserialize, Serialize};

use crate::audio::AudioChain;
use crate::ffutil::{self, ff_err};
use crate::graph::{build_graph, is_again, Graph};
use crate::hls::{self, Packaged, Variant};
use crate::probe::{self, Probed};
use crate::thumbs::{self, SpriteSheet};
use crate::{plan_ladder, MediaError, ProbeInfo, Rendition, TranscodeOptions};

/// What was produced for one rendition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenditionSummary {
    /// Rendition (and directory) name, e.g. `"720p"`.
    pub name: String,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Peak segment bitrate in bits/s (the master playlist's `BANDWIDTH`).
    pub bandwidth: u64,
    /// Whole-rendition average bitrate in bits/s (`AVERAGE-BANDWIDTH`).
    pub average_bandwidth: u64,
    /// RFC 6381 codecs string, e.g. `"avc1.64001f,mp4a.40.2"`.
    pub codecs: String,
    /// Constant output frame rate.
    pub frame_rate: f64,
    /// Number of segments.
    pub segments: usize,
    /// Total bytes of the rendition's segments (as stored, i.e. encrypted when encryption is on).
    pub bytes: u64,
}

/// The result of a successful [`transcode`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscodeSummary {
    /// Exact duration of the output: max(video frames / fps, audio samples / sample rate).
    pub duration_seconds: f64,
    /// The renditions, highest first (same order as in `master.m3u8`).
    pub renditions: Vec<RenditionSummary>,
    /// What the source looked like.
    pub source: ProbeInfo,
    /// Wall-clock time the transcode took, in seconds.
    pub elapsed_seconds: f64,
    /// Total size of everything written into the output directory.
    pub output_bytes: u64,
}

const X264_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];
const X264_CRF: &str = "21";

/// Transcode `input` into a complete HLS package in `out_dir` (created if missing).
///
/// Writes `master.m3u8`, `<rendition>/index.m3u8` + `<rendition>/seg_NNNNN.ts` for every rung of
/// [`plan_ladder`], `poster.jpg`, `sprite.jpg` and `thumbnails.vtt`. The source is decoded once;
/// every rendition is encoded from the same constant-frame-rate frames with keyframes forced at
/// every segment boundary, so segments align across renditions. Audio is encoded once to AAC-LC
/// and shared by all renditions.
///
/// `progress` receives non-decreasing values in `0..=1` (decoded position / duration), ending
/// with exactly `1.0` on success. Everything runs on the calling thread (plus codec threads):
/// call it from a blocking context. On error, `out_dir` may hold partial output.
pub fn transcode(
    input: &Path,
    out_dir: &Path,
    opts: &TranscodeOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<TranscodeSummary, MediaError> {
    ffutil::init();
    let started = Instant::now();
    check_options(opts)?;
    let mut progress = Progress { f: progress, last: -1.0 };
    progress.report(0.0);

    let mut ictx = probe::open_input(input)?;
    let probed = probe::analyze(&ictx, input)?;
    let ladder = plan_ladder(&probed.info);
    fs::create_dir_all(out_dir)?;

    let mut pipeline = Pipeline::new(&ictx, &probed, &ladder, opts, out_dir)?;
    pipeline.run(&mut ictx, &mut progress)?;
    let done = pipeline.finish()?;

    // Packaging: clean media playlists (+ encryption), then the master playlist.
    let mut renditions = Vec::with_capacity(done.outputs.len());
    let mut variants = Vec::with_capacity(done.outputs.len());
    let mut packaged_all: Vec<Packaged> = Vec::new();
    for out in &done.outputs {
        let packaged = hls::package_rendition(&out.dir, opts.encryption.as_ref())?;
        let codecs = match done.has_audio {
            true => format!("{},mp4a.40.2", out.avc1),
            false => out.avc1.clone(),
        };
        let summary = RenditionSummary {
            name: out.rendition.name.clone(),
            width: out.rendition.width,
            height: out.rendition.height,
            bandwidth: packaged.peak_bandwidth(),
            average_bandwidth: packaged.average_bandwidth(),
            codecs: codecs.clone(),
            frame_rate: f64::from(done.fps),
            segments: packaged.segments.len(),
            bytes: packaged.total_bytes(),
        };
        variants.push(Variant {
            uri: format!("{}/index.m3u8", out.rendition.name),
            bandwidth: summary.bandwidth,
            average_bandwidth: summary.average_bandwidth,
            codecs,
            width: summary.width,
            height: summary.height,
            frame_rate: summary.frame_rate,
        });
        renditions.push(summary);
        packaged_all.push(packaged);
    }
    check_alignment(&done.outputs, &packaged_all);
    hls::write_master(out_dir, &variants)?;

    // Thumbnails.
    let poster = done
        .poster
        .ok_or_else(|| MediaError::Ffmpeg("no frame was available for the poster".into()))?;
    thumbs::write_jpeg(&poster, &out_dir.join("poster.jpg"))?;
    done.sprite.write(out_dir, done.duration)?;

    let output_bytes = dir_size(out_dir)?;
    progress.finish();
    Ok(TranscodeSummary {
        duration_seconds: done.duration,
        renditions,
        source: probed.info,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        output_bytes,
    })
}

fn check_options(opts: &TranscodeOptions) -> Result<(), MediaError> {
    if !X264_PRESETS.contains(&opts.x264_preset.as_str()) {
        return Err(MediaError::InvalidOptions(format!(
            "unknown x264 preset {:?} (expected one of {})",
            opts.x264_preset,
            X264_PRESETS.join(", ")
        )));
    }
    if !(opts.segment_seconds.is_finite() && (1.0..=30.0).contains(&opts.segment_seconds)) {
        return Err(MediaError::InvalidOptions(format!(
            "segment_seconds must be between 1 and 30, not {}",
            opts.segment_seconds
        )));
    }
    if let Some(enc) = &opts.encryption {
        if enc.key_uri.is_empty() || enc.key_uri.chars().any(|c| c == '"' || c.is_control()) {
            return Err(MediaError::InvalidOptions(
                "the key URI must be non-empty and free of quotes and control characters".into(),
            ));
        }
    }
    Ok(())
}

/// Segments must line up across renditions; that is what the forced keyframes guarantee.
fn check_alignment(outputs: &[FinishedOutput], packaged: &[Packaged]) {
    let Some(first) = packaged.first() else { return };
    for (out, p) in outputs.iter().zip(packaged).skip(1) {
        let same = p.segments.len() == first.segments.len()
            && p.segments
                .iter()
                .zip(&first.segments)
                .all(|(a, b)| (a.duration - b.duration).abs() < 0.002);
        if !same {
            tracing::warn!(rendition = %out.rendition.name, "segments are not aligned with the top rendition");
        }
    }
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            total += dir_size(&entry.path())?;
        } else if ft.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Forwards monotonic progress, throttled to 0.5 % steps.
struct Progress<'a> {
    f: &'a mut dyn FnMut(f64),
    last: f64,
}

impl Progress<'_> {
    fn report(&mut self, p: f64) {
        if !p.is_finite() {
            return;
        }
        let p = p.clamp(0.0, 0.99);
        if p >= self.last + 0.005 || (self.last < 0.0 && p >= 0.0) {
            self.last = p;
            (self.f)(p);
        }
    }

    fn finish(&mut self) {
        self.last = 1.0;
        (self.f)(1.0);
    }
}

/// Where the output timeline ends, in seconds: the probed duration plus a little slack for
/// containers that round it (1 s, or 1 % of long files); [`probe::MAX_DURATION`] when the source
/// has no timestamps to measure at all. Nothing — no frame, no gap filled with copies or
/// silence — reaches past it.
pub(crate) fn timeline_cap(duration_seconds: f64) -> f64 {
    if duration_seconds > 0.0 {
        duration_seconds + (duration_seconds * 0.01).max(1.0)
    } else {
        probe::MAX_DURATION
    }
}

/// Choose the constant output frame rate: the source's average, snapped to a standard rate when
/// close, otherwise rounded to an integer; rates above 60 are divided evenly (120 → 60, 100 → 50).
pub(crate) fn output_frame_rate(source_fps: f64) -> Rational {
    let mut f = if source_fps.is_finite() && source_fps > 0.0 { source_fps } else { 30.0 };
    let mut k = 1.0;
    while f / k > 60.5 {
        k += 1.0;
    }
    f /= k;
    const STANDARD: [(i32, i32); 8] =
        [(24000, 1001), (24, 1), (25, 1), (30000, 1001), (30, 1), (50, 1), (60000, 1001), (60, 1)];
    for (n, d) in STANDARD {
        let s = n as f64 / d as f64;
        if (f - s).abs() / s < 0.0005 {
            return Rational::new(n, d);
        }
    }
    Rational::new((f.round() as i32).clamp(1, 60), 1)
}

/// Which frames start a segment (and so must be IDR frames), from their time.
#[derive(Clone, Copy)]
struct Keyframes {
    /// Seconds per output frame.
    frame_seconds: f64,
    segment_seconds: f64,
}

impl Keyframes {
    fn segment_of(&self, n: i64) -> i64 {
        (n as f64 * self.frame_seconds / self.segment_seconds + 1e-9).floor() as i64
    }
    /// Frame `n` (output frame number = pts in 1/fps) is the first frame of a segment.
    fn is_segment_start(&self, n: i64) -> bool {
        n <= 0 || self.segment_of(n) != self.segment_of(n - 1)
    }
}

/// One rendition's encoder and muxer.
struct Output {
    rendition: Rendition,
    dir: PathBuf,
    encoder: ffmpeg::encoder::Video,
    enc_tb: Rational,
    mux: ffmpeg::format::context::Output,
    video_tb: Rational,
    audio_tb: Option<Rational>,
    frames: u64,
    last_pts: Option<i64>,
    avc1: String,
}

/// What `Pipeline::finish` hands back for packaging.
struct FinishedOutput {
    rendition: Rendition,
    dir: PathBuf,
    avc1: String,
}

struct Finished {
    outputs: Vec<FinishedOutput>,
    fps: Rational,
    duration: f64,
    has_audio: bool,
    poster: Option<frame::Video>,
    sprite: SpriteSheet,
}

/// Size and pixel format of decoded pictures (a change needs a new filter graph).
type PictureKey = (u32, u32, Pixel);

struct VideoIn {
    index: usize,
    decoder: ffmpeg::decoder::Video,
    tb: Rational,
    /// Start of the timeline, in `tb` (the video stream's start time).
    t0: i64,
    /// End (pts + duration) of the latest frame fed to the graph, relative, in `tb`.
    end: i64,
    last_pts: Option<i64>,
    frames: u64,
    decode_errors: u64,
    graph: Option<(Graph, PictureKey)>,
    /// End of the output timeline, relative, in `tb` (see [`timeline_cap`]).
    cap: i64,
    /// Frames stamped past `cap`, dropped.
    dropped: u64,
}

struct Pipeline<'a> {
    probed: &'a Probed,
    fps: Rational,
    keyframes: Keyframes,
    video: VideoIn,
    audio: Option<AudioChain>,
    outputs: Vec<Output>,
    sprite: SpriteSheet,
    poster_frame: i64,
    poster: Option<frame::Video>,
    read_errors: u64,
    truncated: bool,
    progress_duration: f64,
}

impl<'a> Pipeline<'a> {
    fn new(
        ictx: &ffmpeg::format::context::Input,
        probed: &'a Probed,
        ladder: &[Rendition],
        opts: &TranscodeOptions,
        out_dir: &Path,
    ) -> Result<Self, MediaError> {
        let info = &probed.info;
        let fps = output_frame_rate(info.frame_rate);
        let fps_f = f64::from(fps);
        let gop = (fps_f * opts.segment_seconds).round().max(1.0) as u32;
        let threads = opts.threads.min(64) as i32;

        // Video decoder.
        let vst = ictx.stream(probed.video_index).expect("probed index");
        let vtb = vst.time_base();
        let mut ctx = codec::Context::from_parameters(vst.parameters())
            .map_err(|e| ff_err("reading the video stream", e))?;
        unsafe {
            (*ctx.as_mut_ptr()).thread_count = threads;
            (*ctx.as_mut_ptr()).pkt_timebase = vtb.into();
        }
        let decoder = ctx.decoder().video().map_err(|e| match ffutil::take_last_error() {
            Some(d) => MediaError::Invalid(format!("the video stream cannot be decoded ({d})")),
            None => MediaError::Invalid(format!("the video stream cannot be decoded ({e})")),
        })?;

        let global_header = unsafe {
            let name = CString::new("hls").expect("no NUL");
            let f = ffi::av_guess_format(name.as_ptr(), ptr::null(), ptr::null());
            if f.is_null() {
                return Err(MediaError::Ffmpeg("FFmpeg was built without the hls muxer".into()));
            }
            ((*f).flags as u32 & ffi::AVFMT_GLOBALHEADER as u32) != 0
        };

        let cap_seconds = timeline_cap(info.duration_seconds);

        // Audio decoder + the single AAC encoder, on the video's timeline.
        let audio = match probed.audio_index {
            Some(index) => Some(AudioChain::open(
                ictx,
                index,
                probed.video_start,
                vtb,
                cap_seconds,
                global_header,
            )?),
            None => None,
        };

        let colors = unsafe {
            let par = (*vst.as_ptr()).codecpar;
            ((*par).color_primaries, (*par).color_trc, (*par).color_space)
        };

        // One x264 encoder and one HLS muxer per rendition.
        let x264 = ffmpeg::encoder::find_by_name("libx264")
            .ok_or_else(|| MediaError::Ffmpeg("FFmpeg was built without libx264".into()))?;
        let mut outputs = Vec::with_capacity(ladder.len());
        for r in ladder {
            let mut enc = codec::Context::new_with_codec(x264)
                .encoder()
                .video()
                .map_err(|e| ff_err("creating an x264 encoder", e))?;
            let enc_tb = fps.invert();
            enc.set_width(r.width);
            enc.set_height(r.height);
            enc.set_format(Pixel::YUV420P);
            enc.set_time_base(enc_tb);
            enc.set_frame_rate(Some(fps));
            enc.set_aspect_ratio(Rational::new(1, 1));
            enc.set_gop(gop);
            enc.set_max_bit_rate(r.max_bitrate as usize);
            unsafe {
                (*enc.as_mut_ptr()).rc_buffer_size =
                    (2 * r.max_bitrate).min(i32::MAX as u64) as i32;
                (*enc.as_mut_ptr()).thread_count = threads;
            }
            if global_header {
                enc.set_flags(codec::Flags::GLOBAL_HEADER);
            }
            // Pixels keep the source's colour matrix/primaries/transfer (only the range is
            // normalised to limited), so say so in the VUI instead of leaving players to guess.
            unsafe {
                let c = enc.as_mut_ptr();
                (*c).color_primaries = colors.0;
                (*c).color_trc = colors.1;
                (*c).colorspace = colors.2;
                (*c).color_range = ffi::AVColorRange::AVCOL_RANGE_MPEG;
            }
            let mut dict = ffmpeg::Dictionary::new();
            dict.set("preset", &opts.x264_preset);
            dict.set("crf", X264_CRF);
            dict.set("profile", "high");
            dict.set("forced-idr", "1");
            dict.set("x264-params", &format!("keyint={gop}:min-keyint={gop}:scenecut=0"));
            let encoder = enc
                .open_with(dict)
                .map_err(|e| ff_err(&format!("opening x264 for {}", r.name), e))?;
            let extradata = unsafe {
                let c = encoder.as_ptr();
                if (*c).extradata.is_null() || (*c).extradata_size <= 0 {
                    &[][..]
                } else {
                    std::slice::from_raw_parts((*c).extradata, (*c).extradata_size as usize)
                }
            };
            let avc1 = hls::avc1_codecs(extradata).unwrap_or_else(|| {
                tracing::warn!(rendition = %r.name, "no SPS in x264's extradata; assuming High@4.0");
                "avc1.640028".to_owned()
            });

            let dir = out_dir.join(&r.name);
            if dir.exists() {
                fs::remove_dir_all(&dir)?;
            }
            fs::create_dir_all(&dir)?;
            let (mux, video_tb, audio_tb) =
                open_muxer(&dir, opts.segment_seconds, &encoder, enc_tb, audio.as_ref())?;
            outputs.push(Output {
                rendition: r.clone(),
                dir,
                encoder,
                enc_tb,
                mux,
                video_tb,
                audio_tb,
                frames: 0,
                last_pts: None,
                avc1,
            });
        }

        let known_duration = info.duration_seconds;
        let sprite = SpriteSheet::new(known_duration, info.display_width, info.display_height);
        let poster_time = if known_duration > 0.0 { (known_duration / 3.0).min(3.0) } else { 3.0 };
        Ok(Pipeline {
            probed,
            fps,
            keyframes: Keyframes {
                frame_seconds: 1.0 / fps_f,
                segment_seconds: opts.segment_seconds,
            },
            video: VideoIn {
                index: probed.video_index,
                decoder,
                tb: vtb,
                t0: probed.video_start,
                end: 0,
                last_pts: None,
                frames: 0,
                decode_errors: 0,
                graph: None,
                cap: (cap_seconds / f64::from(vtb)).ceil() as i64,
                dropped: 0,
            },
            audio,
            outputs,
            sprite,
            poster_frame: (poster_time * fps_f).floor() as i64,
            poster: None,
            read_errors: 0,
            truncated: false,
            progress_duration: known_duration,
        })
    }

    /// Demux everything, decoding and encoding as we go, then flush the whole chain.
    fn run(
        &mut self,
        ictx: &mut ffmpeg::format::context::Input,
        progress: &mut Progress,
    ) -> Result<(), MediaError> {
        let mut consecutive_errors = 0u32;
        loop {
            let mut packet = Packet::empty();
            match packet.read(ictx) {
                Ok(()) => consecutive_errors = 0,
                Err(ffmpeg::Error::Eof) => break,
                Err(e) if is_again(&e) && consecutive_errors < 1000 => {
                    consecutive_errors += 1;
                    continue;
                }
                Err(ffmpeg::Error::InvalidData) => {
                    // A damaged packet; the demuxer can usually resynchronise.
                    self.read_errors += 1;
                    consecutive_errors += 1;
                    if consecutive_errors > 1000 {
                        self.truncated = true;
                        break;
                    }
                    continue;
                }
                Err(ffmpeg::Error::Other { errno }) if errno != ffmpeg::error::EINVAL => {
                    return Err(MediaError::Io(std::io::Error::from_raw_os_error(errno)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the input stopped early");
                    self.read_errors += 1;
                    self.truncated = true;
                    break;
                }
            }
            let index = packet.stream();
            if index == self.video.index {
                if self.video.decoder.send_packet(&packet).is_err() {
                    self.video.decode_errors += 1;
                }
                self.drain_video_decoder()?;
                if self.progress_duration > 0.0 {
                    let t = self.video.end as f64 * f64::from(self.video.tb);
                    progress.report(t / self.progress_duration);
                }
            } else if let Some(audio) = self.audio.as_mut().filter(|a| a.index == index) {
                let (outputs, tb) = (&mut self.outputs, audio.enc_tb);
                audio.send_packet(&packet, &mut |p| write_audio(outputs, p, tb))?;
            }
        }

        // End of input: flush the decoder, then the graph, then the encoders.
        let _ = self.video.decoder.send_eof();
        self.drain_video_decoder()?;
        if self.video.graph.is_none() {
            return Err(MediaError::Invalid(match ffutil::take_last_error() {
                Some(d) => format!("no picture in the video stream could be decoded ({d})"),
                None => "no picture in the video stream could be decoded".into(),
            }));
        }
        self.check_truncation()?;
        self.close_video_graph(self.video.end)?;
        for out in &mut self.outputs {
            out.encoder.send_eof().map_err(|e| ff_err("flushing x264", e))?;
            drain_video_encoder(out)?;
        }
        if let Some(audio) = self.audio.as_mut() {
            let (outputs, tb) = (&mut self.outputs, audio.enc_tb);
            audio.finish(&mut |p| write_audio(outputs, p, tb))?;
        }
        for out in &mut self.outputs {
            out.mux.write_trailer().map_err(|e| {
                ff_err(&format!("finishing the {} segments", out.rendition.name), e)
            })?;
        }
        Ok(())
    }

    /// A file that stops well short of its stated duration is truncated: either reading failed
    /// on the way, or the index (e.g. an MP4 written "faststart") promises media that is not there.
    fn check_truncation(&self) -> Result<(), MediaError> {
        let got = self.video.end as f64 * f64::from(self.video.tb);
        let short = if self.read_errors > 0 || self.truncated {
            let expected = self.probed.video_duration.unwrap_or(self.probed.info.duration_seconds);
            (expected > 0.0 && got < expected - (0.02 * expected).max(1.0)).then_some(expected)
        } else {
            self.probed.video_duration.filter(|&expected| got < expected * 0.9 - 0.5)
        };
        match short {
            Some(expected) => Err(MediaError::Invalid(format!(
                "the file is incomplete or damaged: only {got:.1} s of its {expected:.1} s of video could be read \
                 (the upload may have been cut off)"
            ))),
            None => Ok(()),
        }
    }

    fn drain_video_decoder(&mut self) -> Result<(), MediaError> {
        let mut decoded = frame::Video::empty();
        loop {
            match self.video.decoder.receive_frame(&mut decoded) {
                Ok(()) => self.video_frame(&mut decoded)?,
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) if is_again(&e) => return Ok(()),
                Err(_) => {
                    self.video.decode_errors += 1;
                    return Ok(());
                }
            }
        }
    }

    fn video_frame(&mut self, f: &mut frame::Video) -> Result<(), MediaError> {
        if f.width() == 0 || f.height() == 0 {
            return Ok(());
        }
        let frame_ticks =
            (1.0 / f64::from(self.fps) / f64::from(self.video.tb)).round().max(1.0) as i64;
        let v = &mut self.video;
        let pts = match f.timestamp().or(f.pts()) {
            Some(ts) => ts - v.t0,
            None => v.end,
        };
        if pts >= v.cap {
            // Past the probed duration (a timestamp jump): the fps filter would fill the gap up
            // to it with copies of the last picture, without end.
            v.dropped += 1;
            return Ok(());
        }
        let mut duration = f.packet().duration;
        if duration <= 0 {
            duration = match v.last_pts {
                Some(last) if pts > last => pts - last,
                _ => frame_ticks,
            };
        }
        v.last_pts = Some(pts);
        // A frame may not stretch the timeline past the cap either (a hostile packet duration).
        v.end = v.end.max((pts + duration).min(v.cap));
        v.frames += 1;
        f.set_pts(Some(pts));

        // Every picture, not just the stream's declared size, must be a size we accept: both
        // as coded and as shown (after its sample aspect ratio).
        let at = Some(pts.max(0) as f64 * f64::from(v.tb));
        probe::check_coded_size(f.width(), f.height(), at)?;
        let sar = f.aspect_ratio();
        let sar = if sar.numerator() > 0 && sar.denominator() > 0 { sar } else { self.probed.sar };
        probe::displayed_size(f.width(), f.height(), sar, at)?;

        // Pictures changing size/format mid-stream (resized screen recordings, spliced files):
        // finish the current graph up to this frame and start a fresh one.
        let key: PictureKey = (f.width(), f.height(), f.format());
        if self.video.graph.as_ref().is_some_and(|(_, k)| *k != key) {
            tracing::debug!(?key, "picture format changed mid-stream; rebuilding the filter graph");
            self.close_video_graph(pts)?;
        }
        if self.video.graph.is_none() {
            let graph = self.video_graph(f)?;
            self.video.graph = Some((graph, key));
        }
        self.video.graph.as_mut().expect("built").0.push(f)?;
        self.drain_video_graph()
    }

    /// Flush the video graph up to `pts` (input time base) and drop it.
    fn close_video_graph(&mut self, pts: i64) -> Result<(), MediaError> {
        if let Some((g, _)) = self.video.graph.as_mut() {
            g.close(pts)?;
            self.drain_video_graph()?;
            self.video.graph = None;
        }
        Ok(())
    }

    /// buffer → [yadif] → [rotation] → fps → split → (scale → sink) × N, (select → scale → sink).
    fn video_graph(&self, f: &frame::Video) -> Result<Graph, MediaError> {
        let sar = f.aspect_ratio();
        let sar = if sar.numerator() > 0 && sar.denominator() > 0 { sar } else { self.probed.sar };
        let args = format!(
            "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
            f.width(),
            f.height(),
            ffi::AVPixelFormat::from(f.format()) as i32,
            self.video.tb.numerator(),
            self.video.tb.denominator(),
            sar.numerator(),
            sar.denominator()
        );
        let mut chain: Vec<String> = Vec::new();
        if self.probed.interlaced {
            chain.push("yadif=mode=send_frame:deint=interlaced".into());
        }
        let theta = self.probed.rotation_exact;
        if (theta - 90.0).abs() < 1.0 {
            chain.push("transpose=clock".into());
        } else if (theta - 180.0).abs() < 1.0 {
            chain.push("hflip".into());
            chain.push("vflip".into());
        } else if (theta - 270.0).abs() < 1.0 {
            chain.push("transpose=cclock".into());
        } else if theta.abs() > 1.0 && (theta - 360.0).abs() > 1.0 {
            chain.push(format!("rotate={theta:.3}*PI/180"));
        }
        // The first graph pins the timeline to start at 0; a graph rebuilt mid-stream continues it.
        let first = self.outputs.iter().all(|o| o.frames == 0);
        let start = if first { ":start_time=0" } else { "" };
        chain.push(format!("fps=fps={}/{}{start}", self.fps.numerator(), self.fps.denominator()));
        let n = self.outputs.len();
        let mut spec = format!("[in]{},split={}", chain.join(","), n + 1);
        for i in 0..=n {
            spec.push_str(&format!("[s{i}]"));
        }
        for (i, out) in self.outputs.iter().enumerate() {
            spec.push_str(&format!(
                ";[s{i}]scale={}:{}:flags=bicubic:out_range=tv,setsar=1,format=yuv420p[v{i}]",
                out.rendition.width, out.rendition.height
            ));
        }
        // One thumbnail every `interval` seconds of output time (counting those already taken).
        spec.push_str(&format!(
            ";[s{n}]select='gte(t,(selected_n+{})*{:.6})',scale={}:{}:flags=bicubic:out_range=tv,setsar=1,format=yuv420p[thumbs]",
            self.sprite.len(),
            self.sprite.interval,
            self.sprite.tile_w,
            self.sprite.tile_h
        ));
        let mut sinks: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
        sinks.push("thumbs".into());
        build_graph("buffer", &args, "buffersink", &sinks, &spec)
    }

    /// Pull everything the video graph has ready: encode renditions, collect thumbnails.
    fn drain_video_graph(&mut self) -> Result<(), MediaError> {
        let Some((graph, _)) = self.video.graph.as_mut() else { return Ok(()) };
        let mut f = frame::Video::empty();
        for (i, out) in self.outputs.iter_mut().enumerate() {
            let sink_tb = graph.sink_time_base(i);
            while graph.pull(i, &mut f)? {
                let mut n = f.pts().unwrap_or(out.last_pts.map_or(0, |p| p + 1));
                if sink_tb != out.enc_tb {
                    n = n.rescale(sink_tb, out.enc_tb);
                }
                if out.last_pts.is_some_and(|last| n <= last) {
                    // Overlap where a rebuilt graph took over; x264 needs increasing timestamps.
                    continue;
                }
                out.last_pts = Some(n);
                f.set_pts(Some(n));
                f.set_kind(if self.keyframes.is_segment_start(n) {
                    picture::Type::I
                } else {
                    picture::Type::None
                });
                if i == 0 && (self.poster.is_none() || n <= self.poster_frame) {
                    self.poster = Some(ffutil::frame_ref(&f)?);
                }
                out.encoder.send_frame(&f).map_err(|e| ff_err("encoding video", e))?;
                out.frames += 1;
                drain_video_encoder(out)?;
            }
        }
        let thumbs = self.outputs.len();
        while graph.pull(thumbs, &mut f)? {
            self.sprite.push(&f);
        }
        Ok(())
    }

    fn finish(self) -> Result<Finished, MediaError> {
        let fps = self.fps;
        let frames = self.outputs.first().map_or(0, |o| o.frames);
        let video_seconds = frames as f64 / f64::from(fps);
        let audio_seconds = self.audio.as_ref().map_or(0.0, |a| a.samples as f64 / a.rate as f64);
        if frames == 0 {
            return Err(MediaError::Invalid(
                "no picture in the video stream could be decoded".into(),
            ));
        }
        if self.video.decode_errors > 0 {
            tracing::warn!(
                errors = self.video.decode_errors,
                "some video packets could not be decoded"
            );
        }
        if self.video.dropped > 0 {
            tracing::warn!(
                frames = self.video.dropped,
                "dropped video frames stamped past the probed duration"
            );
        }
        if let Some(a) = self.audio.as_ref().filter(|a| a.decode_errors > 0) {
            tracing::warn!(errors = a.decode_errors, "some audio packets could not be decoded");
        }
        Ok(Finished {
            has_audio: self.audio.as_ref().is_some_and(|a| a.samples > 0),
            outputs: self
                .outputs
                .into_iter()
                .map(|o| FinishedOutput { rendition: o.rendition, dir: o.dir, avc1: o.avc1 })
                .collect(),
            fps,
            duration: video_seconds.max(audio_seconds),
            poster: self.poster,
            sprite: self.sprite,
        })
    }
}

fn drain_video_encoder(out: &mut Output) -> Result<(), MediaError> {
    let mut pkt = Packet::empty();
    loop {
        match out.encoder.receive_packet(&mut pkt) {
            Ok(()) => {
                pkt.set_stream(0);
                if pkt.duration() <= 0 {
                    pkt.set_duration(1);
                }
                pkt.rescale_ts(out.enc_tb, out.video_tb);
                pkt.write_interleaved(&mut out.mux)
                    .map_err(|e| ff_err(&format!("writing {} segments", out.rendition.name), e))?;
            }
            Err(ffmpeg::Error::Eof) => return Ok(()),
            Err(e) if is_again(&e) => return Ok(()),
            Err(e) => return Err(ff_err("encoding video", e)),
        }
    }
}

/// Encode once, mux everywhere: the same AAC packet goes into every rendition's muxer.
fn write_audio(outputs: &mut [Output], pkt: &Packet, pkt_tb: Rational) -> Result<(), MediaError> {
    for out in outputs.iter_mut() {
        let Some(audio_tb) = out.audio_tb else { continue };
        let mut copy = pkt.clone();
        copy.set_stream(1);
        copy.rescale_ts(pkt_tb, audio_tb);
        copy.write_interleaved(&mut out.mux)
            .map_err(|e| ff_err(&format!("writing {} segments", out.rendition.name), e))?;
    }
    Ok(())
}

/// An "hls" muxer writing `dir/index.m3u8` and `dir/seg_%05d.ts`.
fn open_muxer(
    dir: &Path,
    segment_seconds: f64,
    video: &ffmpeg::encoder::Video,
    video_enc_tb: Rational,
    audio: Option<&AudioChain>,
) -> Result<(ffmpeg::format::context::Output, Rational, Option<Rational>), MediaError> {
    let playlist = dir.join("index.m3u8");
    let c_playlist = CString::new(playlist.to_string_lossy().as_bytes())
        .map_err(|_| MediaError::Io(std::io::Error::other("output path contains a NUL byte")))?;
    let hls = CString::new("hls").expect("no NUL");
    let mut octx = unsafe {
        let mut ps = ptr::null_mut();
        let r = ffi::avformat_alloc_output_context2(
            &mut ps,
            ptr::null_mut(),
            hls.as_ptr(),
            c_playlist.as_ptr(),
        );
        if r < 0 || ps.is_null() {
            return Err(ff_err("creating the HLS muxer", ffmpeg::Error::from(r)));
        }
        // The hls muxer does its own I/O (AVFMT_NOFILE): `pb` stays NULL.
        ffmpeg::format::context::Output::wrap(ps)
    };
    {
        let mut st =
            octx.add_stream_with(video).map_err(|e| ff_err("adding the video stream", e))?;
        st.set_time_base(video_enc_tb);
    }
    if let Some(a) = audio {
        let mut st =
            octx.add_stream_with(&a.encoder).map_err(|e| ff_err("adding the audio stream", e))?;
        st.set_time_base(a.enc_tb);
    }
    // hlsenc expands the segment pattern with av_get_frame_filename: escape '%' in the path.
    let pattern = format!("{}/seg_%05d.ts", dir.to_string_lossy().replace('%', "%%"));
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("hls_time", &format!("{segment_seconds}"));
    opts.set("hls_playlist_type", "vod");
    opts.set("hls_list_size", "0");
    opts.set("hls_flags", "independent_segments");
    opts.set("hls_segment_type", "mpegts");
    opts.set("hls_segment_filename", &pattern);
    opts.set("start_number", "0");
    let unused: Vec<(String, String)> = octx
        .write_header_with(opts)
        .map_err(|e| ff_err("starting the HLS muxer", e))?
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (k, v) in unused {
        tracing::warn!(option = %k, value = %v, "the HLS muxer ignored an option");
    }
    let video_tb = octx.stream(0).expect("added").time_base();
    let audio_tb = audio.map(|_| octx.stream(1).expect("added").time_base());
    Ok((octx, video_tb, audio_tb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates() {
        assert_eq!(output_frame_rate(25.0), Rational::new(25, 1));
        assert_eq!(output_frame_rate(29.97), Rational::new(30000, 1001));
        assert_eq!(output_frame_rate(120.0), Rational::new(60, 1));
        assert_eq!(output_frame_rate(100.0), Rational::new(50, 1));
        assert_eq!(output_frame_rate(27.3), Rational::new(27, 1));
        assert_eq!(output_frame_rate(0.0), Rational::new(30, 1));
        assert_eq!(output_frame_rate(0.2), Rational::new(1, 1));
    }

    #[test]
    fn keyframes_follow_time() {
        let k = Keyframes { frame_seconds: 1.0 / 25.0, segment_seconds: 4.0 };
        let starts: Vec<i64> = (0..450).filter(|&n| k.is_segment_start(n)).collect();
        assert_eq!(starts, vec![0, 100, 200, 300, 400]);
        let k = Keyframes { frame_seconds: 1001.0 / 30000.0, segment_seconds: 4.0 };
        let starts: Vec<i64> = (0..500).filter(|&n| k.is_segment_start(n)).collect();
        assert_eq!(starts, vec![0, 120, 240, 360, 480]);
    }
}
