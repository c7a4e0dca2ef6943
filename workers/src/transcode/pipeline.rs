//! The decode-once pipeline: demux, decode, filter, fan out to the encoders.

use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::format::stream::Stream;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::{codec, frame, picture, Packet, Rational, Rescale};

use crate::audio::AudioChain;
use crate::ffutil::{self, ff_err, set_thread_count};
use crate::graph::{build_graph, is_again, Graph};
use crate::hls::{Segment, Variant};
use crate::probe::{self, Probed};
use crate::scenes::SceneChanges;
use crate::thumbs::SpriteSheet;
use crate::watermark::{self, MARKED_SUFFIX};
use crate::{HlsEncryption, MediaError, Rendition, TranscodeOptions};

use super::encoder::{
    drain_video_encoder, find_x264, hls_wants_global_header, write_audio, write_copied,
    EncoderSetup, Output, SourceColors,
};
use super::fanout::{buffer_args, FanOut};
use super::passthrough::Passthrough;
use super::timeline::{
    gop_frames, missing_video, output_frame_rate, poster_frame, timeline_cap, Keyframes,
};
use super::Progress;

/// What `Pipeline::finish` hands back for packaging.
pub(super) struct FinishedOutput {
    pub rendition: Rendition,
    pub dir: PathBuf,
    pub avc1: String,
    pub segments: Vec<Segment>,
    /// The source's video copied, not encoded.
    pub copied: bool,
    /// A marked twin (variant B) of another rendition.
    pub marked: bool,
}

impl Finished {
    /// The results of a pass over the same input that made the rungs after these.
    pub fn followed_by(mut self, lower: Finished) -> Finished {
        self.outputs.extend(lower.outputs);
        self.duration = self.duration.max(lower.duration);
        self.has_audio |= lower.has_audio;
        self
    }
}

/// The pipeline's results, once everything is encoded and muxed.
pub(super) struct Finished {
    pub outputs: Vec<FinishedOutput>,
    pub fps: Rational,
    pub duration: f64,
    pub has_audio: bool,
    pub poster: Option<frame::Video>,
    pub sprite: SpriteSheet,
    pub scenes: SceneChanges,
}

/// Size and pixel format of decoded pictures (a change needs a new filter graph).
type PictureKey = (u32, u32, Pixel);

/// The video stream's decoder and its place on the output timeline.
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

/// One decoder per stream, one filter graph, N x264 encoders and muxers, one AAC chain.
pub(super) struct Pipeline<'a> {
    probed: &'a Probed,
    fps: Rational,
    keyframes: Keyframes,
    video: VideoIn,
    audio: Option<AudioChain>,
    outputs: Vec<Output>,
    sprite: SpriteSheet,
    scenes: SceneChanges,
    poster_frame: i64,
    poster: Option<frame::Video>,
    read_errors: u64,
    truncated: bool,
    progress_duration: f64,
    encryption: Option<HlsEncryption>,
    /// Where the copied top rung's muxer will cut (see `passthrough`), as output frame
    /// numbers: the other rungs' keyframes go there.
    source_keys: std::collections::BTreeSet<i64>,
    /// How many cuts the copied rung's muxer will have made (see [`Pipeline::copy_packet`]).
    cuts: u32,
    /// The ladder index of this pipeline's first output (its rungs are reported under it).
    first_rendition: usize,
}

impl VideoIn {
    /// Open the decoder for the video stream `vst` (stream `index`), on a timeline starting at
    /// `t0` and ending `cap_seconds` later.
    fn open(
        vst: &Stream,
        index: usize,
        threads: i32,
        t0: i64,
        cap_seconds: f64,
    ) -> Result<Self, MediaError> {
        let tb = vst.time_base();
        let mut ctx = codec::Context::from_parameters(vst.parameters())
            .map_err(|e| ff_err("reading the video stream", e))?;
        set_thread_count(&mut ctx, threads);
        let mut decoder = ctx.decoder();
        decoder.set_packet_time_base(tb);
        let decoder = decoder.video().map_err(|e| match ffutil::take_last_error() {
            Some(d) => MediaError::Invalid(format!("the video stream cannot be decoded ({d})")),
            None => MediaError::Invalid(format!("the video stream cannot be decoded ({e})")),
        })?;
        Ok(VideoIn {
            index,
            decoder,
            tb,
            t0,
            end: 0,
            last_pts: None,
            frames: 0,
            decode_errors: 0,
            graph: None,
            cap: (cap_seconds / f64::from(tb)).ceil() as i64,
            dropped: 0,
        })
    }
}

impl<'a> Pipeline<'a> {
    /// Open everything the transcode needs: the decoders, the AAC encoder, and one x264
    /// encoder and HLS muxer per rung of `ladder` (in `out_dir/<name>/`).
    pub fn new(
        ictx: &ffmpeg::format::context::Input,
        probed: &'a Probed,
        ladder: &[Rendition],
        opts: &TranscodeOptions,
        out_dir: &Path,
        passthrough: Option<Passthrough>,
        first_rendition: usize,
    ) -> Result<Self, MediaError> {
        let info = &probed.info;
        let fps = output_frame_rate(info.frame_rate);
        let threads = opts.threads.min(64) as i32;
        let cap_seconds = timeline_cap(info.duration_seconds);

        let vst = ictx.stream(probed.video_index).expect("probed index");
        let video =
            VideoIn::open(&vst, probed.video_index, threads, probed.video_start, cap_seconds)?;
        let global_header = hls_wants_global_header()?;

        // Audio decoder + the single AAC encoder, on the video's timeline.
        let audio = match probed.audio_index {
            Some(index) => Some(AudioChain::open(
                ictx,
                index,
                probed.video_start,
                video.tb,
                cap_seconds,
                global_header,
            )?),
            None => None,
        };

        // One x264 encoder and one HLS muxer per rendition.
        let setup = EncoderSetup {
            colors: SourceColors::of(&vst),
            x264: find_x264()?,
            fps,
            gop: match passthrough {
                Some(p) => gop_frames(fps, p.longest_segment) + 1,
                None => gop_frames(fps, opts.segment_seconds),
            },
            source_keyframes: passthrough.is_some(),
            threads,
            opts,
            global_header,
        };
        let mut outputs = ladder
            .iter()
            .enumerate()
            .map(|(i, r)| match passthrough {
                Some(_) if i == 0 => Output::open_copy(r, &setup, out_dir, audio.as_ref(), &vst),
                _ => Output::open(r, &setup, out_dir, audio.as_ref()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(secret) = opts.watermark {
            // Every rung again, marked (variant B), after all the unmarked ones; every segment
            // of both named after the secret.
            for r in ladder {
                let marked = Rendition { name: format!("{}{MARKED_SUFFIX}", r.name), ..r.clone() };
                let mut twin = Output::open(&marked, &setup, out_dir, audio.as_ref())?;
                twin.marked = true;
                outputs.push(twin);
            }
            for out in &mut outputs {
                out.names = Some(secret);
            }
        }

        let known_duration = info.duration_seconds;
        Ok(Pipeline {
            probed,
            fps,
            keyframes: Keyframes {
                frame_seconds: 1.0 / f64::from(fps),
                segment_seconds: opts.segment_seconds,
            },
            video,
            audio,
            outputs,
            sprite: SpriteSheet::new(known_duration, info.display_width, info.display_height),
            scenes: SceneChanges::default(),
            poster_frame: poster_frame(known_duration, fps),
            poster: None,
            read_errors: 0,
            truncated: false,
            progress_duration: known_duration,
            encryption: opts.encryption.clone(),
            source_keys: Default::default(),
            cuts: 0,
            first_rendition,
        })
    }

    /// The master playlist's entries before anything is measured: each rung's cap (with some
    /// room for bursts within the VBV buffer and for the container) plus the audio.
    pub fn planned_variants(&self) -> Vec<Variant> {
        // SAFETY: an opened encoder's context; `bit_rate` is a plain field (no getter exists).
        let audio =
            self.audio.as_ref().map(|a| unsafe { (*a.encoder.as_ptr()).bit_rate }.max(0) as u64);
        self.outputs
            .iter()
            .filter(|o| !o.marked)
            .map(|o| {
                let r = &o.rendition;
                let estimate = r.max_bitrate * 11 / 10 + audio.unwrap_or(0) * 11 / 10;
                Variant {
                    uri: format!("{}/index.m3u8", r.name),
                    bandwidth: estimate,
                    average_bandwidth: estimate,
                    codecs: match audio {
                        Some(_) => format!("{},mp4a.40.2", o.avc1),
                        None => o.avc1.clone(),
                    },
                    width: r.width,
                    height: r.height,
                    frame_rate: f64::from(self.fps),
                }
            })
            .collect()
    }

    /// Whether the top rung is the source's video, copied (see `passthrough`).
    fn copied(&self) -> bool {
        self.outputs.first().is_some_and(|o| o.encoder.is_none())
    }

    /// Report the segments every muxer finished since the last call.
    fn collect_segments(&mut self, progress: &mut Progress) -> Result<(), MediaError> {
        for (i, out) in self.outputs.iter_mut().enumerate() {
            let new = out.collect_segments(self.encryption.as_ref())?;
            if out.marked {
                // Stored with the rest at the end: a playlist names variant B only once the
                // video is ready.
                continue;
            }
            for segment in &out.segments[out.segments.len() - new..] {
                progress.segment(self.first_rendition + i, segment);
            }
        }
        Ok(())
    }

    /// Demux everything, decoding and encoding as we go, then flush the whole chain.
    pub fn run(
        &mut self,
        ictx: &mut ffmpeg::format::context::Input,
        progress: &mut Progress,
    ) -> Result<(), MediaError> {
        self.run_until(ictx, progress, |_| false)?;
        self.flush()?;
        self.collect_segments(progress)
    }

    /// Demux, decode and encode until `enough` says so or the input ends; true at its end.
    pub fn run_until(
        &mut self,
        ictx: &mut ffmpeg::format::context::Input,
        progress: &mut Progress,
        enough: impl Fn(&Self) -> bool,
    ) -> Result<bool, MediaError> {
        while !enough(self) {
            match self.next_packet(ictx)? {
                Some(packet) => self.feed(&packet, progress)?,
                None => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Whether every rung has finished its first segment.
    pub fn every_output_has_a_segment(&self) -> bool {
        self.outputs.iter().all(|o| !o.segments.is_empty())
    }

    /// Seconds of video every rung has encoded.
    pub fn encoded_seconds(&self) -> f64 {
        let frames = self.outputs.iter().map(|o| o.frames).min().unwrap_or(0);
        frames as f64 / f64::from(self.fps)
    }

    /// The next packet, or `None` where reading ends: at the end of the input, or where it
    /// gave up early (damaged beyond resynchronising, or failing), which `check_truncation`
    /// judges once everything read is decoded.
    fn next_packet(
        &mut self,
        ictx: &mut ffmpeg::format::context::Input,
    ) -> Result<Option<Packet>, MediaError> {
        let mut consecutive_errors = 0u32;
        loop {
            let mut packet = Packet::empty();
            match packet.read(ictx) {
                Ok(()) => return Ok(Some(packet)),
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(e) if is_again(&e) && consecutive_errors < 1000 => consecutive_errors += 1,
                Err(ffmpeg::Error::InvalidData) => {
                    // A damaged packet; the demuxer can usually resynchronise.
                    self.read_errors += 1;
                    consecutive_errors += 1;
                    if consecutive_errors > 1000 {
                        self.truncated = true;
                        return Ok(None);
                    }
                }
                Err(ffmpeg::Error::Other { errno }) if errno != ffmpeg::error::EINVAL => {
                    return Err(MediaError::Io(std::io::Error::from_raw_os_error(errno)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the input stopped early");
                    self.read_errors += 1;
                    self.truncated = true;
                    return Ok(None);
                }
            }
        }
    }

    /// Decode one packet of the video or the audio stream (others are skipped) and pass on
    /// whatever that produces.
    fn feed(&mut self, packet: &Packet, progress: &mut Progress) -> Result<(), MediaError> {
        let index = packet.stream();
        if index == self.video.index {
            if self.copied() {
                self.copy_packet(packet)?;
            }
            if self.video.decoder.send_packet(packet).is_err() {
                self.video.decode_errors += 1;
            }
            self.drain_video_decoder()?;
            self.collect_segments(progress)?;
            if self.progress_duration > 0.0 {
                let t = self.video.end as f64 * f64::from(self.video.tb);
                progress.report(t / self.progress_duration);
            }
        } else if let Some(audio) = self.audio.as_mut().filter(|a| a.index == index) {
            let (outputs, tb) = (&mut self.outputs, audio.enc_tb);
            audio.send_packet(packet, &mut |p| write_audio(outputs, p, tb))?;
        }
        Ok(())
    }

    /// Put a packet of the source's video into the copied top rung, on the output timeline,
    /// and remember where its muxer will cut a segment: at the first keyframe at or past the
    /// next multiple of the segment length (the hls muxer's rule). The encoded rungs get their
    /// IDR frames exactly there, and nowhere else, so their muxers cut at the same instants.
    fn copy_packet(&mut self, packet: &Packet) -> Result<(), MediaError> {
        let v = &self.video;
        let Some(pts) = packet.pts().map(|p| p - v.t0) else { return Ok(()) };
        if pts < 0 || pts >= v.cap {
            return Ok(());
        }
        let t = pts as f64 * f64::from(v.tb);
        let next_cut = self.keyframes.segment_seconds * f64::from(self.cuts);
        if packet.is_key() && (self.cuts == 0 || t + 1e-6 >= next_cut) {
            self.source_keys.insert((t * f64::from(self.fps)).round() as i64);
            self.cuts += 1;
        }
        let mut moved = packet.clone();
        moved.set_pts(Some(pts));
        moved.set_dts(packet.dts().map(|d| d - v.t0));
        write_copied(&mut self.outputs[0], &moved, v.tb)
    }

    /// End of input: flush the decoder, then the graph, then the encoders, then the muxers.
    fn flush(&mut self) -> Result<(), MediaError> {
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
            if let Some(encoder) = out.encoder.as_mut() {
                encoder.send_eof().map_err(|e| ff_err("flushing x264", e))?;
                drain_video_encoder(out)?;
            }
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
        let short = missing_video(
            got,
            self.probed.video_duration,
            self.probed.info.duration_seconds,
            self.read_errors > 0 || self.truncated,
        );
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
        probe::displayed_size(f.width(), f.height(), self.frame_sar(f), at)?;

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
        let args = buffer_args(
            (f.width(), f.height()),
            ffi::AVPixelFormat::from(f.format()) as i32,
            self.video.tb,
            self.frame_sar(f),
        );
        let sizes: Vec<(u32, u32)> =
            self.outputs.iter().map(|o| (o.rendition.width, o.rendition.height)).collect();
        let fan_out = FanOut {
            interlaced: self.probed.interlaced,
            rotation: self.probed.rotation_exact,
            fps: self.fps,
            first: self.outputs.iter().all(|o| o.frames == 0),
            sizes: &sizes,
            thumbs_taken: self.sprite.len(),
            thumb_interval: self.sprite.interval,
            tile: (self.sprite.tile_w, self.sprite.tile_h),
        };
        build_graph("buffer", &args, "buffersink", &fan_out.sink_names(), &fan_out.spec())
    }

    /// The sample aspect ratio of a decoded picture: its own, else the stream's.
    fn frame_sar(&self, f: &frame::Video) -> Rational {
        let sar = f.aspect_ratio();
        if sar.numerator() > 0 && sar.denominator() > 0 {
            sar
        } else {
            self.probed.sar
        }
    }

    /// Pull everything the video graph has ready: encode renditions, collect thumbnails.
    fn drain_video_graph(&mut self) -> Result<(), MediaError> {
        let copied = self.copied();
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
                let key = match copied {
                    true => self.source_keys.contains(&n),
                    false => self.keyframes.is_segment_start(n),
                };
                f.set_kind(if key { picture::Type::I } else { picture::Type::None });
                if i == 0 && (self.poster.is_none() || n <= self.poster_frame) {
                    self.poster = Some(ffutil::frame_ref(&f)?);
                }
                let Some(encoder) = out.encoder.as_mut() else { continue };
                if out.marked {
                    ffutil::make_writable(&mut f)?;
                    watermark::apply(&mut f);
                }
                encoder.send_frame(&f).map_err(|e| ff_err("encoding video", e))?;
                out.frames += 1;
                drain_video_encoder(out)?;
            }
        }
        if copied {
            // Keyframes every encoded rung has passed are not needed any more.
            let passed = self
                .outputs
                .iter()
                .filter(|o| o.encoder.is_some())
                .filter_map(|o| o.last_pts)
                .min();
            if let Some(passed) = passed {
                self.source_keys = self.source_keys.split_off(&passed);
            }
        }
        let thumbs = self.outputs.len();
        while graph.pull(thumbs, &mut f)? {
            self.sprite.push(&f);
        }
        let scenes_tb = graph.sink_time_base(thumbs + 1);
        while graph.pull(thumbs + 1, &mut f)? {
            if let Some(pts) = f.pts() {
                self.scenes.push(pts as f64 * f64::from(scenes_tb), &f);
            }
        }
        Ok(())
    }

    /// The results, refusing a video of which no picture could be decoded.
    pub fn finish(self) -> Result<Finished, MediaError> {
        let fps = self.fps;
        // An encoded rung counts the frames of the output timeline (a copied one counts the
        // source's packets).
        let timeline = self.outputs.iter().find(|o| o.encoder.is_some()).or(self.outputs.first());
        let frames = timeline.map_or(0, |o| o.frames);
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
                .map(|o| FinishedOutput {
                    copied: o.encoder.is_none(),
                    marked: o.marked,
                    rendition: o.rendition,
                    dir: o.dir,
                    avc1: o.avc1,
                    segments: o.segments,
                })
                .collect(),
            fps,
            duration: video_seconds.max(audio_seconds),
            poster: self.poster,
            sprite: self.sprite,
            scenes: self.scenes,
        })
    }
}
