//! One rendition's output: its x264 encoder and its HLS muxer.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::ptr;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::stream::Stream;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::{codec, color, ffi, Packet, Rational};

use crate::audio::AudioChain;
use crate::ffutil::{codecpar, ff_err, set_thread_count};
use crate::graph::is_again;
use crate::hls::{self, Segment};
use crate::watermark::segment_name;
use crate::{HlsEncryption, MediaError, Rendition, TranscodeOptions};

/// x264's constant rate factor: the quality every rendition aims at (capped by its maxrate).
const X264_CRF: &str = "21";

/// What every rendition's x264 encoder and HLS muxer share.
pub(super) struct EncoderSetup<'a> {
    /// libx264 (see [`find_x264`]).
    pub x264: ffmpeg::Codec,
    /// The constant output frame rate; the encoders' time base is its inverse.
    pub fps: Rational,
    /// x264's keyframe interval: frames per segment, where the pipeline forces keyframes at
    /// segment starts; or, when the top rung is the copied source, more than the source's
    /// longest keyframe distance, since the keyframes are forced at the source's.
    pub gop: u32,
    /// Whether keyframes come only where the pipeline forces them at the source's (see
    /// `passthrough`), rather than every `gop` frames.
    pub source_keyframes: bool,
    /// Thread-count hint for each encoder (0: x264 decides).
    pub threads: i32,
    pub opts: &'a TranscodeOptions,
    /// The HLS muxer wants codec headers out of band (extradata), not in the stream.
    pub global_header: bool,
    pub colors: SourceColors,
}

/// The libx264 encoder, which FFmpeg may have been built without.
pub(super) fn find_x264() -> Result<ffmpeg::Codec, MediaError> {
    ffmpeg::encoder::find_by_name("libx264")
        .ok_or_else(|| MediaError::Ffmpeg("FFmpeg was built without libx264".into()))
}

/// The source's colour description. Pixels keep the source's colour matrix, primaries and
/// transfer (only the range is normalised to limited), so the encoders say so in the VUI
/// instead of leaving players to guess.
#[derive(Clone, Copy)]
pub(super) struct SourceColors {
    primaries: color::Primaries,
    transfer: color::TransferCharacteristic,
    space: color::Space,
}

impl SourceColors {
    pub fn of(stream: &Stream) -> Self {
        let par = codecpar(stream);
        SourceColors {
            primaries: par.color_primaries.into(),
            transfer: par.color_trc.into(),
            space: par.color_space.into(),
        }
    }
}

/// Whether FFmpeg's hls muxer wants global headers (so the encoders must put SPS/PPS and the
/// AAC config in their extradata).
pub(super) fn hls_wants_global_header() -> Result<bool, MediaError> {
    let name = CString::new("hls").expect("no NUL");
    // SAFETY: `name` is a NUL-terminated string that outlives the call; NULL file name and MIME
    // type are allowed. The result is NULL or one of libavformat's static muxer descriptions,
    // valid for the life of the process.
    unsafe {
        let f = ffi::av_guess_format(name.as_ptr(), ptr::null(), ptr::null());
        if f.is_null() {
            return Err(MediaError::Ffmpeg("FFmpeg was built without the hls muxer".into()));
        }
        Ok(((*f).flags as u32 & ffi::AVFMT_GLOBALHEADER as u32) != 0)
    }
}

/// One rendition's encoder and muxer.
pub(super) struct Output {
    pub rendition: Rendition,
    pub dir: PathBuf,
    /// The rendition's x264 encoder; `None` when the rendition is the source's own video,
    /// copied packet by packet (see `passthrough`).
    pub encoder: Option<ffmpeg::encoder::Video>,
    pub enc_tb: Rational,
    pub mux: ffmpeg::format::context::Output,
    pub video_tb: Rational,
    pub audio_tb: Option<Rational>,
    pub frames: u64,
    pub last_pts: Option<i64>,
    pub avc1: String,
    /// The playlist FFmpeg's muxer keeps (`muxer.m3u8`): it lists each segment it finished.
    muxer_playlist: PathBuf,
    /// Size and modification time of `muxer_playlist` when it was last read.
    muxer_seen: Option<(u64, Option<std::time::SystemTime>)>,
    /// The finished segments, in order, sealed (encrypted when asked).
    pub segments: Vec<Segment>,
    /// The marked twin of another rendition (see `watermark`): its frames get the mark, and
    /// it is neither reported segment by segment nor listed in the master playlist.
    pub marked: bool,
    /// A watermarked video's naming secret: finished segments are renamed after it
    /// ([`crate::watermark::segment_name`]) before anyone sees them.
    pub names: Option<[u8; 16]>,
}

impl Output {
    /// Open rendition `r`'s x264 encoder and an HLS muxer writing into `out_dir/<name>/`
    /// (emptied first), carrying `audio`'s stream too when there is audio.
    pub fn open(
        r: &Rendition,
        setup: &EncoderSetup,
        out_dir: &Path,
        audio: Option<&AudioChain>,
    ) -> Result<Self, MediaError> {
        let enc_tb = setup.fps.invert();
        let encoder = open_x264(r, setup, enc_tb)?;
        let avc1 = hls::avc1_codecs(extradata(&encoder)).unwrap_or_else(|| {
            tracing::warn!(rendition = %r.name, "no SPS in x264's extradata; assuming High@4.0");
            "avc1.640028".to_owned()
        });
        Self::with_muxer(r, setup, out_dir, audio, Ok(encoder), avc1, enc_tb)
    }

    /// Open rendition `r` as a copy of the source's video stream `source` (no encoder), with
    /// its HLS muxer as in [`Output::open`].
    pub fn open_copy(
        r: &Rendition,
        setup: &EncoderSetup,
        out_dir: &Path,
        audio: Option<&AudioChain>,
        source: &Stream,
    ) -> Result<Self, MediaError> {
        let par = codecpar(source);
        let avc1 = hls::avc1_codecs(extradata_of(par)).unwrap_or_else(|| {
            tracing::warn!(rendition = %r.name, "no SPS in the source's extradata; assuming High@4.0");
            "avc1.640028".to_owned()
        });
        let tb = source.time_base();
        Self::with_muxer(r, setup, out_dir, audio, Err(source), avc1, tb)
    }

    /// The output around its video: an opened encoder (`Ok`) or the source stream copied.
    fn with_muxer(
        r: &Rendition,
        setup: &EncoderSetup,
        out_dir: &Path,
        audio: Option<&AudioChain>,
        video: Result<ffmpeg::encoder::Video, &Stream>,
        avc1: String,
        enc_tb: Rational,
    ) -> Result<Self, MediaError> {
        let dir = out_dir.join(&r.name);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        let stream = match &video {
            Ok(encoder) => VideoStream::Encoded(encoder, enc_tb),
            Err(source) => VideoStream::Copied(source),
        };
        let (mux, video_tb, audio_tb) =
            open_muxer(&dir, setup.opts.segment_seconds, stream, audio)?;
        let encoder = video.ok();
        Ok(Output {
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
            muxer_playlist: out_dir.join(&r.name).join(MUXER_PLAYLIST),
            muxer_seen: None,
            segments: Vec::new(),
            marked: false,
            names: None,
        })
    }

    /// Take on the segments the muxer finished since the last call: encrypt them when asked
    /// and record them. Returns how many are new (the last ones of [`Output::segments`]).
    ///
    /// Cheap when nothing changed (one `stat`), so it can run after every packet.
    pub fn collect_segments(
        &mut self,
        encryption: Option<&HlsEncryption>,
    ) -> Result<usize, MediaError> {
        let meta = match fs::metadata(&self.muxer_playlist) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let seen = Some((meta.len(), meta.modified().ok()));
        if seen == self.muxer_seen {
            return Ok(0);
        }
        self.muxer_seen = seen;
        let before = self.segments.len();
        for (file_name, duration) in
            hls::muxer_segments(&self.muxer_playlist)?.into_iter().skip(before)
        {
            let bytes = hls::seal_segment(&self.dir.join(&file_name), encryption)?;
            let file_name = match &self.names {
                Some(secret) => {
                    let named = segment_name(secret, &self.rendition.name, self.segments.len());
                    fs::rename(self.dir.join(&file_name), self.dir.join(&named))?;
                    named
                }
                None => file_name,
            };
            self.segments.push(Segment { file_name, duration, bytes });
        }
        Ok(self.segments.len() - before)
    }

    /// Remove the muxer's own playlist, once the clean one is written.
    pub fn remove_muxer_playlist(dir: &Path) -> std::io::Result<()> {
        match fs::remove_file(dir.join(MUXER_PLAYLIST)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The playlist file FFmpeg's hls muxer writes; Lectern's own `index.m3u8` replaces it.
const MUXER_PLAYLIST: &str = "muxer.m3u8";

/// An x264 encoder for `r`: constant quality capped by the rendition's maxrate, keyframes only
/// where the pipeline forces them (every segment start).
fn open_x264(
    r: &Rendition,
    setup: &EncoderSetup,
    enc_tb: Rational,
) -> Result<ffmpeg::encoder::Video, MediaError> {
    let mut enc = codec::Context::new_with_codec(setup.x264)
        .encoder()
        .video()
        .map_err(|e| ff_err("creating an x264 encoder", e))?;
    enc.set_width(r.width);
    enc.set_height(r.height);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(enc_tb);
    enc.set_frame_rate(Some(setup.fps));
    enc.set_aspect_ratio(Rational::new(1, 1));
    enc.set_gop(setup.gop);
    enc.set_max_bit_rate(r.max_bitrate as usize);
    // SAFETY: `enc` owns a valid, not yet opened codec context; `rc_buffer_size` is a plain
    // field that avcodec_open2 reads (ffmpeg-next has no setter for it).
    unsafe {
        (*enc.as_mut_ptr()).rc_buffer_size = (2 * r.max_bitrate).min(i32::MAX as u64) as i32;
    }
    set_thread_count(&mut enc, setup.threads);
    if setup.global_header {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    enc.set_color_primaries(setup.colors.primaries);
    enc.set_color_transfer_characteristic(setup.colors.transfer);
    enc.set_colorspace(setup.colors.space);
    enc.set_color_range(color::Range::MPEG);
    let gop = setup.gop;
    let min_keyint = if setup.source_keyframes { 1 } else { gop };
    let mut dict = ffmpeg::Dictionary::new();
    dict.set("preset", &setup.opts.x264_preset);
    dict.set("crf", X264_CRF);
    dict.set("profile", "high");
    dict.set("forced-idr", "1");
    dict.set("x264-params", &format!("keyint={gop}:min-keyint={min_keyint}:scenecut=0"));
    enc.open_with(dict).map_err(|e| ff_err(&format!("opening x264 for {}", r.name), e))
}

/// The extradata of an opened encoder.
fn extradata(encoder: &ffmpeg::encoder::Video) -> &[u8] {
    // SAFETY: `encoder` is an opened codec context, borrowed for as long as the slice lives;
    // it owns its extradata and leaves it alone while opened.
    unsafe {
        let c = encoder.as_ptr();
        bytes_or_empty((*c).extradata, (*c).extradata_size)
    }
}

/// The extradata of a stream's codec parameters.
fn extradata_of(par: &ffi::AVCodecParameters) -> &[u8] {
    // SAFETY: `par` belongs to a stream the caller borrows, and owns its extradata.
    unsafe { bytes_or_empty(par.extradata, par.extradata_size) }
}

/// The `len` bytes at `data`, or none when it is NULL or `len` is not positive.
///
/// # Safety
/// A non-NULL `data` must point at `len` readable bytes that live, unchanged, for `'a`.
unsafe fn bytes_or_empty<'a>(data: *const u8, len: std::ffi::c_int) -> &'a [u8] {
    if data.is_null() || len <= 0 {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts(data, len as usize) }
    }
}

pub(super) fn drain_video_encoder(out: &mut Output) -> Result<(), MediaError> {
    let Some(encoder) = out.encoder.as_mut() else { return Ok(()) };
    let mut pkt = Packet::empty();
    loop {
        match encoder.receive_packet(&mut pkt) {
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

/// Write a packet of the source's video stream (in its time base `tb`, already moved onto the
/// output timeline) into a copied rendition's muxer.
pub(super) fn write_copied(out: &mut Output, pkt: &Packet, tb: Rational) -> Result<(), MediaError> {
    let mut copy = pkt.clone();
    copy.set_stream(0);
    copy.set_position(-1);
    copy.rescale_ts(tb, out.video_tb);
    copy.write_interleaved(&mut out.mux)
        .map_err(|e| ff_err(&format!("writing {} segments", out.rendition.name), e))?;
    out.frames += 1;
    Ok(())
}

/// Where a muxer's video stream comes from.
enum VideoStream<'a> {
    /// An opened encoder, and its time base.
    Encoded(&'a ffmpeg::encoder::Video, Rational),
    /// The source's own stream, copied.
    Copied(&'a Stream<'a>),
}

/// Encode once, mux everywhere: the same AAC packet goes into every rendition's muxer.
pub(super) fn write_audio(
    outputs: &mut [Output],
    pkt: &Packet,
    pkt_tb: Rational,
) -> Result<(), MediaError> {
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

/// An "hls" muxer writing `dir/seg_%05d.ts` and its own playlist `dir/muxer.m3u8`, an `EVENT`
/// playlist rewritten (atomically: `temp_file`) each time a segment is finished, which is how
/// [`Output::collect_segments`] learns of them while the transcode runs.
fn open_muxer(
    dir: &Path,
    segment_seconds: f64,
    video: VideoStream,
    audio: Option<&AudioChain>,
) -> Result<(ffmpeg::format::context::Output, Rational, Option<Rational>), MediaError> {
    let playlist = dir.join(MUXER_PLAYLIST);
    let c_playlist = CString::new(playlist.to_string_lossy().as_bytes())
        .map_err(|_| MediaError::Io(std::io::Error::other("output path contains a NUL byte")))?;
    let hls = CString::new("hls").expect("no NUL");
    // SAFETY: both strings are NUL-terminated and outlive the call, `ps` is a valid
    // out-pointer, and a NULL output format is allowed (the name picks it). The new context is
    // only wrapped when the call succeeded, and `Output` then owns it (freeing it on drop).
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
    match video {
        VideoStream::Encoded(encoder, tb) => {
            let mut st =
                octx.add_stream_with(encoder).map_err(|e| ff_err("adding the video stream", e))?;
            st.set_time_base(tb);
        }
        VideoStream::Copied(source) => {
            let mut st = octx
                .add_stream(ffmpeg::encoder::find(codec::Id::None))
                .map_err(|e| ff_err("adding the video stream", e))?;
            st.set_parameters(source.parameters());
            st.set_time_base(source.time_base());
            // SAFETY: the new stream's codecpar is allocated and owned by it; a copied stream
            // must not carry the source container's codec tag (MP4's `avc1`) into MPEG-TS.
            unsafe { (*(*st.as_mut_ptr()).codecpar).codec_tag = 0 };
        }
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
    opts.set("hls_playlist_type", "event");
    opts.set("hls_list_size", "0");
    opts.set("hls_flags", "independent_segments+temp_file");
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
