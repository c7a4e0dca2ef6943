//! The audio chain: decode → normalise → AAC-LC, once for all renditions.
//!
//! Two filter stages keep the encoder's input constant even when the source's audio format
//! changes mid-stream (common in broadcast MPEG-TS and concatenated recordings), which a single
//! libavfilter `abuffer` rejects:
//!
//! ```text
//! front (rebuilt on every input format change):  abuffer → aresample → aformat=fltp:R:layout
//! back  (built once):                            abuffer → aresample=async=1:first_pts=0 → abuffersink(frame_size)
//! ```
//!
//! `first_pts=0` aligns audio with the video timeline (padding with silence when audio starts
//! late, trimming when it starts early) and `async=1` keeps it in sync across timestamp gaps.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::{codec, frame, Packet, Rational, Rescale};

use crate::ffutil::{codecpar, ff_err};
use crate::graph::{build_graph, is_again, Graph};
use crate::MediaError;

const AAC_STEREO_BITRATE: usize = 128_000;
const AAC_MONO_BITRATE: usize = 64_000;

/// Sample rate, format and channel layout of decoded frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Params {
    rate: u32,
    format: ffmpeg::format::Sample,
    layout_bits: u64,
    channels: u16,
}

impl Params {
    fn of(f: &frame::Audio) -> Self {
        Params {
            rate: f.rate(),
            format: f.format(),
            layout_bits: f.channel_layout().bits(),
            channels: f.channels(),
        }
    }
}

/// The AAC sample rate for a source at `source_rate` Hz: 44.1 kHz for the 44.1 kHz family
/// (11025, 22050, 88200, …), else 48 kHz.
fn output_rate(source_rate: i32) -> i32 {
    if source_rate > 0 && (44100 % source_rate == 0 || source_rate % 44100 == 0) {
        44100
    } else {
        48000
    }
}

/// The AAC channel layout (filter name and layout) and bitrate for a source with `channels`
/// channels: mono stays mono, everything else becomes stereo.
fn output_layout(channels: i32) -> (&'static str, ffmpeg::ChannelLayout, usize) {
    if channels == 1 {
        ("mono", ffmpeg::ChannelLayout::MONO, AAC_MONO_BITRATE)
    } else {
        ("stereo", ffmpeg::ChannelLayout::STEREO, AAC_STEREO_BITRATE)
    }
}

/// Decoder, two-stage filter chain and AAC encoder of the one audio stream carried over.
pub(crate) struct AudioChain {
    pub index: usize,
    decoder: ffmpeg::decoder::Audio,
    tb: Rational,
    /// Start of the timeline (the video's start), in `tb`.
    t0: i64,
    /// End of the latest decoded frame, relative, in `tb`.
    end: i64,
    /// End of the output timeline, relative, in `tb`: frames starting later are dropped, so
    /// `aresample=async` never fills a timestamp jump with silence past it.
    cap: i64,
    front: Option<(Graph, Params)>,
    back: Graph,
    /// End of the latest frame fed to `back`, in 1/rate.
    back_end: i64,
    pub encoder: ffmpeg::encoder::Audio,
    pub enc_tb: Rational,
    pub rate: i32,
    layout: &'static str,
    /// Samples handed to the encoder.
    pub samples: u64,
    pub decode_errors: u64,
}

impl AudioChain {
    /// Open the decoder for stream `index` and the AAC-LC encoder (48 kHz, or 44.1 kHz for
    /// 44.1 kHz-family sources; stereo, or mono for mono sources).
    pub fn open(
        ictx: &ffmpeg::format::context::Input,
        index: usize,
        timeline_start: i64,
        timeline_tb: Rational,
        cap_seconds: f64,
        global_header: bool,
    ) -> Result<Self, MediaError> {
        let ast = ictx.stream(index).expect("probed index");
        let tb = ast.time_base();
        let ctx = codec::Context::from_parameters(ast.parameters())
            .map_err(|e| ff_err("reading the audio stream", e))?;
        let mut decoder = ctx.decoder();
        decoder.set_packet_time_base(tb);
        let decoder = decoder.audio().map_err(|e| ff_err("opening the audio decoder", e))?;
        let par = codecpar(&ast);
        let rate = output_rate(par.sample_rate);
        let (layout, channel_layout, bitrate) =
            output_layout(par.ch_layout.nb_channels.max(par.channels));
        let aac = ffmpeg::encoder::find(codec::Id::AAC)
            .ok_or_else(|| MediaError::Ffmpeg("FFmpeg was built without the aac encoder".into()))?;
        let mut enc = codec::Context::new_with_codec(aac)
            .encoder()
            .audio()
            .map_err(|e| ff_err("creating the AAC encoder", e))?;
        enc.set_rate(rate);
        enc.set_channel_layout(channel_layout);
        enc.set_format(ffmpeg::format::Sample::F32(ffmpeg::format::sample::Type::Planar));
        enc.set_bit_rate(bitrate);
        enc.set_time_base(Rational::new(1, rate));
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let encoder = enc.open_as(aac).map_err(|e| ff_err("opening the AAC encoder", e))?;

        let back_args = format!(
            "time_base=1/{rate}:sample_rate={rate}:sample_fmt=fltp:channel_layout=0x{:x}",
            channel_layout.bits()
        );
        let mut back = build_graph(
            "abuffer",
            &back_args,
            "abuffersink",
            &["out".to_owned()],
            "[in]aresample=async=1:first_pts=0[out]",
        )?;
        let frame_size = encoder.frame_size();
        if frame_size > 0 {
            back.set_sink_frame_size(0, frame_size);
        }
        Ok(AudioChain {
            index,
            decoder,
            tb,
            t0: timeline_start.rescale(timeline_tb, tb),
            end: 0,
            cap: (cap_seconds / f64::from(tb)).ceil() as i64,
            front: None,
            back,
            back_end: 0,
            encoder,
            enc_tb: Rational::new(1, rate),
            rate,
            layout,
            samples: 0,
            decode_errors: 0,
        })
    }

    /// Decode one packet; encoded AAC packets go to `emit`.
    pub fn send_packet(
        &mut self,
        pkt: &Packet,
        emit: &mut dyn FnMut(&Packet) -> Result<(), MediaError>,
    ) -> Result<(), MediaError> {
        if self.decoder.send_packet(pkt).is_err() {
            self.decode_errors += 1;
        }
        self.drain_decoder(emit)
    }

    /// End of input: flush decoder, filters and encoder.
    pub fn finish(
        &mut self,
        emit: &mut dyn FnMut(&Packet) -> Result<(), MediaError>,
    ) -> Result<(), MediaError> {
        let _ = self.decoder.send_eof();
        self.drain_decoder(emit)?;
        self.close_front(self.end, emit)?;
        self.back.close(self.back_end)?;
        self.drain_back(emit)?;
        self.encoder.send_eof().map_err(|e| ff_err("flushing the AAC encoder", e))?;
        self.drain_encoder(emit)
    }

    fn drain_decoder(
        &mut self,
        emit: &mut dyn FnMut(&Packet) -> Result<(), MediaError>,
    ) -> Result<(), MediaError> {
        let mut f = frame::Audio::empty();
        loop {
            match self.decoder.receive_frame(&mut f) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) if is_again(&e) => return Ok(()),
                Err(_) => {
                    self.decode_errors += 1;
                    return Ok(());
                }
            }
            if f.samples() == 0 || f.rate() == 0 {
                continue;
            }
            let pts = match f.timestamp().or(f.pts()) {
                Some(ts) => ts - self.t0,
                None => self.end,
            };
            if pts >= self.cap {
                continue;
            }
            f.set_pts(Some(pts));
            let dur = (f.samples() as i64).rescale(Rational::new(1, f.rate() as i32), self.tb);
            self.end = self.end.max((pts + dur).min(self.cap));

            let params = Params::of(&f);
            if self.front.as_ref().is_some_and(|(_, p)| *p != params) {
                tracing::debug!(
                    ?params,
                    "audio format changed mid-stream; rebuilding the input stage"
                );
                self.close_front(pts, emit)?;
            }
            if self.front.is_none() {
                self.front = Some((self.front_graph(&f)?, params));
            }
            self.front.as_mut().expect("built").0.push(&mut f)?;
            self.pump_front(emit)?;
        }
    }

    fn front_graph(&self, f: &frame::Audio) -> Result<Graph, MediaError> {
        let bits = f.channel_layout().bits();
        let layout = if bits != 0 {
            format!("channel_layout=0x{bits:x}")
        } else {
            format!("channels={}", f.channels())
        };
        let args = format!(
            "time_base={}/{}:sample_rate={}:sample_fmt={}:{layout}",
            self.tb.numerator(),
            self.tb.denominator(),
            f.rate(),
            f.format().name()
        );
        let spec = format!(
            "[in]aresample,aformat=sample_fmts=fltp:sample_rates={}:channel_layouts={}[out]",
            self.rate, self.layout
        );
        build_graph("abuffer", &args, "abuffersink", &["out".to_owned()], &spec)
    }

    /// Flush and drop the input stage (at a format change or at the end).
    fn close_front(
        &mut self,
        pts: i64,
        emit: &mut dyn FnMut(&Packet) -> Result<(), MediaError>,
    ) -> Result<(), MediaError> {
        if let Some((g, _)) = self.front.as_mut() {
            g.close(pts)?;
            self.pump_front(emit)?;
            self.front = None;
        }
        Ok(())
    }

    /// Move everything the input stage has ready into the output stage.
    fn pump_front(
        &mut self,
        emit: &mut dyn FnMut(&Packet) -> Result<(), MediaError>,
    ) -> Result<(), MediaError> {
        let mut f = frame::Audio::empty();
        loop {
            let Some((front, _)) = self.front.as_mut() else { return Ok(()) };
            if !front.pull(0, &mut f)? {
                return Ok(());
            }
            let front_tb = front.sink_time_base(0);
            let back_tb = Rational::new(1, self.rate);
            if let Some(pts) = f.pts() {
                let pts = pts.rescale(front_tb, back_tb);
                f.set_pts(Some(pts));
                self.back_end = self.back_end.max(pts + f.samples() as i64);
            }
            self.back.push(&mut f)?;
            self.drain_back(emit)?;
        }
    }

    fn drain_back(
        &mut self,
        emit: &mut dyn FnMut(&Packet) -> Result<(), MediaError>,
    ) -> Result<(), MediaError> {
        let sink_tb = self.back.sink_time_base(0);
        let mut f = frame::Audio::empty();
        while self.back.pull(0, &mut f)? {
            if let Some(pts) = f.pts() {
                f.set_pts(Some(pts.rescale(sink_tb, self.enc_tb)));
            }
            self.samples += f.samples() as u64;
            self.encoder.send_frame(&f).map_err(|e| ff_err("encoding audio", e))?;
            self.drain_encoder(emit)?;
        }
        Ok(())
    }

    fn drain_encoder(
        &mut self,
        emit: &mut dyn FnMut(&Packet) -> Result<(), MediaError>,
    ) -> Result<(), MediaError> {
        let mut pkt = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut pkt) {
                Ok(()) => emit(&pkt)?,
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) if is_again(&e) => return Ok(()),
                Err(e) => return Err(ff_err("encoding audio", e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_44_1_khz_family_stays_at_44_1_khz() {
        for rate in [44100, 22050, 11025, 88200, 176400] {
            assert_eq!(output_rate(rate), 44100, "{rate}");
        }
        for rate in [48000, 32000, 96000, 8000, 16000, 0, -1] {
            assert_eq!(output_rate(rate), 48000, "{rate}");
        }
    }

    #[test]
    fn mono_stays_mono_and_the_rest_becomes_stereo() {
        let (name, layout, bitrate) = output_layout(1);
        assert_eq!((name, layout, bitrate), ("mono", ffmpeg::ChannelLayout::MONO, 64_000));
        for channels in [2, 6, 8, 0] {
            let (name, layout, bitrate) = output_layout(channels);
            assert_eq!((name, layout, bitrate), ("stereo", ffmpeg::ChannelLayout::STEREO, 128_000));
        }
    }
}
