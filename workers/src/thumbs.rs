//! Thumbnails: the poster still, the scrubbing sprite sheet and its WebVTT index.

use std::fmt::Write as _;
use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame;
use ffmpeg_next::software::scaling;

use crate::ffutil::ff_err;
use crate::hls::write_atomically;
use crate::MediaError;

/// Width of one sprite thumbnail.
const TILE_WIDTH: u32 = 160;
/// Tallest sprite thumbnail: even a full sheet (`MAX_TILES / COLUMNS` rows) stays far below
/// JPEG's 65500-pixel limit.
const MAX_TILE_HEIGHT: u32 = 640;
/// Thumbnails per sprite row.
const COLUMNS: usize = 10;
/// Hard cap on thumbnails, should a container understate its duration badly.
const MAX_TILES: usize = 400;
/// JPEG quantiser (FFmpeg `-q:v` scale, 2 = best … 31 = worst).
const JPEG_QUALITY: i32 = 3;

/// One thumbnail, planes stored tightly (yuv420p).
struct Tile {
    planes: [Vec<u8>; 3],
}

/// Collects the sprite's thumbnails as the fan-out graph produces them.
pub(crate) struct SpriteSheet {
    /// Seconds between thumbnails.
    pub interval: f64,
    pub tile_w: u32,
    pub tile_h: u32,
    tiles: Vec<Tile>,
}

impl SpriteSheet {
    /// One thumbnail every max(2 s, duration/100); tiles 160 px wide, height by display aspect
    /// up to [`MAX_TILE_HEIGHT`] (a 16×4096 strip would otherwise make a sprite taller than JPEG
    /// allows).
    pub fn new(duration: f64, display_w: u32, display_h: u32) -> Self {
        let interval = (duration / 100.0).max(2.0);
        let h = TILE_WIDTH as f64 * display_h.max(1) as f64 / display_w.max(1) as f64;
        let tile_h = (((h / 2.0).round() * 2.0) as u32).clamp(2, MAX_TILE_HEIGHT);
        SpriteSheet { interval, tile_w: TILE_WIDTH, tile_h, tiles: Vec::new() }
    }

    /// Thumbnails collected so far.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    /// Take a `tile_w`×`tile_h` yuv420p thumbnail.
    pub fn push(&mut self, f: &frame::Video) {
        if self.tiles.len() >= MAX_TILES
            || f.format() != Pixel::YUV420P
            || f.width() != self.tile_w
            || f.height() != self.tile_h
        {
            return;
        }
        let planes = std::array::from_fn(|i| {
            let (w, h) = if i == 0 {
                (self.tile_w as usize, self.tile_h as usize)
            } else {
                (self.tile_w as usize / 2, self.tile_h as usize / 2)
            };
            let stride = f.stride(i);
            let data = f.data(i);
            let mut out = Vec::with_capacity(w * h);
            for row in 0..h {
                out.extend_from_slice(&data[row * stride..row * stride + w]);
            }
            out
        });
        self.tiles.push(Tile { planes });
    }

    /// Write `sprite.jpg` and `thumbnails.vtt` into `out_dir`, cues covering `[0, duration]`.
    pub fn write(&self, out_dir: &Path, duration: f64) -> Result<(), MediaError> {
        if self.tiles.is_empty() {
            return Err(MediaError::Ffmpeg("no thumbnails were produced for the sprite".into()));
        }
        let n = self.tiles.len();
        let cols = n.min(COLUMNS);
        let rows = n.div_ceil(COLUMNS);
        let (tw, th) = (self.tile_w as usize, self.tile_h as usize);
        let mut sheet = frame::Video::new(Pixel::YUV420P, (cols * tw) as u32, (rows * th) as u32);
        // Black background for the unused cells of the last row.
        for (plane, value) in [(0usize, 16u8), (1, 128), (2, 128)] {
            sheet.data_mut(plane).fill(value);
        }
        for (i, tile) in self.tiles.iter().enumerate() {
            let (cx, cy) = (i % COLUMNS, i / COLUMNS);
            for (p, src) in tile.planes.iter().enumerate() {
                let sub = if p == 0 { 1 } else { 2 };
                let (w, h) = (tw / sub, th / sub);
                let (x0, y0) = (cx * w, cy * h);
                let stride = sheet.stride(p);
                let dst = sheet.data_mut(p);
                for row in 0..h {
                    let d = (y0 + row) * stride + x0;
                    dst[d..d + w].copy_from_slice(&src[row * w..row * w + w]);
                }
            }
        }
        write_jpeg(&sheet, &out_dir.join("sprite.jpg"))?;

        let vtt = vtt_index(n, self.interval, (tw, th), duration);
        write_atomically(&out_dir.join("thumbnails.vtt"), vtt.as_bytes())
    }
}

/// The WebVTT index of a sprite of `tiles` thumbnails of `tile` size taken every `interval`
/// seconds: one cue per thumbnail, covering `[0, duration]` (the last cue runs to the end;
/// thumbnails past the end get none).
fn vtt_index(tiles: usize, interval: f64, tile: (usize, usize), duration: f64) -> String {
    let (tw, th) = tile;
    let mut vtt = String::from("WEBVTT\n\n");
    for i in 0..tiles {
        let start = i as f64 * interval;
        if i > 0 && start >= duration {
            break;
        }
        let end = if i + 1 == tiles { duration } else { ((i + 1) as f64 * interval).min(duration) };
        let end = end.max(start + 0.001);
        let (x, y) = ((i % COLUMNS) * tw, (i / COLUMNS) * th);
        let _ = writeln!(
            vtt,
            "{} --> {}\nsprite.jpg#xywh={x},{y},{tw},{th}\n",
            vtt_time(start),
            vtt_time(end)
        );
    }
    vtt
}

/// `HH:MM:SS.mmm`.
fn vtt_time(t: f64) -> String {
    let ms = (t.max(0.0) * 1000.0).round() as u64;
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// Encode one yuv420p (limited range) picture as a full-range JPEG with the mjpeg encoder.
pub(crate) fn write_jpeg(src: &frame::Video, path: &Path) -> Result<(), MediaError> {
    let (w, h) = (src.width(), src.height());
    let mut sws =
        scaling::Context::get(src.format(), w, h, Pixel::YUVJ420P, w, h, scaling::Flags::BICUBIC)
            .map_err(|e| ff_err("preparing the JPEG colour conversion", e))?;
    let mut full = frame::Video::empty();
    sws.run(src, &mut full).map_err(|e| ff_err("converting a picture for JPEG", e))?;
    full.set_pts(Some(0));
    full.set_color_range(ffmpeg::color::Range::JPEG);
    // SAFETY: `full` is a valid frame we own; `quality` is a plain field the mjpeg encoder reads
    // as the frame's quantiser (ffmpeg-next has a getter for it but no setter).
    unsafe { (*full.as_mut_ptr()).quality = JPEG_QUALITY * ffi::FF_QP2LAMBDA };

    let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG)
        .ok_or_else(|| MediaError::Ffmpeg("the mjpeg encoder is not available".into()))?;
    let mut enc = ffmpeg::codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| ff_err("creating the JPEG encoder", e))?;
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base(ffmpeg::Rational::new(1, 25));
    enc.set_color_range(ffmpeg::color::Range::JPEG);
    enc.set_flags(ffmpeg::codec::Flags::QSCALE);
    enc.set_global_quality(JPEG_QUALITY * ffi::FF_QP2LAMBDA);
    let mut enc = enc.open_as(codec).map_err(|e| ff_err("opening the JPEG encoder", e))?;
    enc.send_frame(&full).map_err(|e| ff_err("encoding a JPEG", e))?;
    enc.send_eof().map_err(|e| ff_err("encoding a JPEG", e))?;
    let mut data = Vec::new();
    let mut pkt = ffmpeg::Packet::empty();
    loop {
        match enc.receive_packet(&mut pkt) {
            Ok(()) => data.extend_from_slice(pkt.data().unwrap_or_default()),
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => return Err(ff_err("encoding a JPEG", e)),
        }
    }
    if data.is_empty() {
        return Err(MediaError::Ffmpeg("the JPEG encoder produced nothing".into()));
    }
    write_atomically(path, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtt_times() {
        assert_eq!(vtt_time(0.0), "00:00:00.000");
        assert_eq!(vtt_time(3723.5), "01:02:03.500");
    }

    #[test]
    fn thumbnails_every_2_seconds_or_a_hundredth_of_the_video() {
        let s = SpriteSheet::new(60.0, 1920, 1080);
        assert_eq!((s.interval, s.tile_w, s.tile_h), (2.0, 160, 90));
        assert_eq!(SpriteSheet::new(3600.0, 1920, 1080).interval, 36.0);
        // Unknown duration: every 2 s.
        assert_eq!(SpriteSheet::new(0.0, 1920, 1080).interval, 2.0);
    }

    #[test]
    fn tiles_keep_the_aspect_within_bounds() {
        assert_eq!(SpriteSheet::new(10.0, 640, 480).tile_h, 120);
        assert_eq!(SpriteSheet::new(10.0, 1080, 1920).tile_h, 284);
        // Heights are even, at least 2 and at most MAX_TILE_HEIGHT.
        assert_eq!(SpriteSheet::new(10.0, 854, 480).tile_h, 90);
        assert_eq!(SpriteSheet::new(10.0, 8192, 16).tile_h, 2);
        assert_eq!(SpriteSheet::new(10.0, 16, 4096).tile_h, MAX_TILE_HEIGHT);
        assert_eq!(SpriteSheet::new(10.0, 0, 0).tile_h, 160);
    }

    #[test]
    fn cues_cover_the_video_and_point_into_the_grid() {
        let vtt = vtt_index(3, 2.0, (160, 90), 5.0);
        assert_eq!(
            vtt,
            "WEBVTT\n\n\
             00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90\n\n\
             00:00:02.000 --> 00:00:04.000\nsprite.jpg#xywh=160,0,160,90\n\n\
             00:00:04.000 --> 00:00:05.000\nsprite.jpg#xywh=320,0,160,90\n\n"
        );
        // The 11th thumbnail starts the second row; thumbnails past the end get no cue.
        let vtt = vtt_index(12, 2.0, (160, 90), 21.0);
        assert!(vtt.contains("00:00:20.000 --> 00:00:21.000\nsprite.jpg#xywh=0,90,160,90\n"));
        assert!(!vtt.contains("xywh=160,90"), "{vtt}");
        // A single thumbnail of a video shorter than a millisecond still gets a real cue.
        assert!(vtt_index(1, 2.0, (160, 90), 0.0).contains("00:00:00.000 --> 00:00:00.001"));
    }
}
