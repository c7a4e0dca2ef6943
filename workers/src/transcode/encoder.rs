//! One rendition's output: its x264 encoder and its HLS muxer.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::{Packet, Rational};

use crate::audio::AudioChain;
use crate::ffutil::ff_err;
use crate::graph::is_again;
use crate::{MediaError, Rendition};

pub(super) const X264_CRF: &str = "21";

/// One rendition's encoder and muxer.
pub(super) struct Output {
    pub rendition: Rendition,
    pub dir: PathBuf,
    pub encoder: ffmpeg::encoder::Video,
    pub enc_tb: Rational,
    pub mux: ffmpeg::format::context::Output,
    pub video_tb: Rational,
    pub audio_tb: Option<Rational>,
    pub frames: u64,
    pub last_pts: Option<i64>,
    pub avc1: String,
}

pub(super) fn drain_video_encoder(out: &mut Output) -> Result<(), MediaError> {
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

/// An "hls" muxer writing `dir/index.m3u8` and `dir/seg_%05d.ts`.
pub(super) fn open_muxer(
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
