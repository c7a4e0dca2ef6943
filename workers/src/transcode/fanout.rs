//! The fan-out filter graph, described as text from plain facts:
//!
//! ```text
//! buffer → [yadif] → [rotation] → fps → split → (scale → sink) × N,
//!                                                (select → scale → sink)   thumbnails
//!                                                (fps → scale → grey → sink) scene changes
//! ```

use ffmpeg_next::Rational;

use crate::scenes::{SAMPLES_PER_SECOND, SAMPLE_H, SAMPLE_W};

/// The `buffer` source's arguments for pictures of `size` in pixel format `pix_fmt` (its
/// libavutil number), stamped in `tb`, with sample aspect ratio `sar`.
pub(super) fn buffer_args(size: (u32, u32), pix_fmt: i32, tb: Rational, sar: Rational) -> String {
    format!(
        "video_size={}x{}:pix_fmt={pix_fmt}:time_base={}/{}:pixel_aspect={}/{}",
        size.0,
        size.1,
        tb.numerator(),
        tb.denominator(),
        sar.numerator(),
        sar.denominator()
    )
}

/// What the fan-out graph is built from.
pub(super) struct FanOut<'a> {
    /// Deinterlace first.
    pub interlaced: bool,
    /// Clockwise rotation to undo, in degrees.
    pub rotation: f64,
    /// The constant output frame rate.
    pub fps: Rational,
    /// The first graph pins the timeline to start at 0; a graph rebuilt mid-stream continues it.
    pub first: bool,
    /// Each rendition's output size, in output order.
    pub sizes: &'a [(u32, u32)],
    /// Thumbnails already taken (by earlier graphs).
    pub thumbs_taken: usize,
    /// Seconds of output time between thumbnails.
    pub thumb_interval: f64,
    /// Thumbnail size.
    pub tile: (u32, u32),
}

impl FanOut<'_> {
    /// The graph between the source "in" and the sinks of [`FanOut::sink_names`].
    pub fn spec(&self) -> String {
        let mut chain: Vec<String> = Vec::new();
        if self.interlaced {
            chain.push("yadif=mode=send_frame:deint=interlaced".into());
        }
        chain.extend(rotation_filters(self.rotation));
        let start = if self.first { ":start_time=0" } else { "" };
        chain.push(format!("fps=fps={}/{}{start}", self.fps.numerator(), self.fps.denominator()));
        let n = self.sizes.len();
        let mut spec = format!("[in]{},split={}", chain.join(","), n + 2);
        for i in 0..=n + 1 {
            spec.push_str(&format!("[s{i}]"));
        }
        for (i, (w, h)) in self.sizes.iter().enumerate() {
            spec.push_str(&format!(
                ";[s{i}]scale={w}:{h}:flags=bicubic:out_range=tv,setsar=1,format=yuv420p[v{i}]"
            ));
        }
        // One thumbnail every `interval` seconds of output time (counting those already taken).
        spec.push_str(&format!(
            ";[s{n}]select='gte(t,(selected_n+{})*{:.6})',scale={}:{}:flags=bicubic:out_range=tv,setsar=1,format=yuv420p[thumbs]",
            self.thumbs_taken, self.thumb_interval, self.tile.0, self.tile.1
        ));
        // Small grey pictures a few times a second, for chapter boundaries (see `scenes`).
        spec.push_str(&format!(
            ";[s{}]fps=fps={SAMPLES_PER_SECOND},scale={SAMPLE_W}:{SAMPLE_H}:flags=area,format=gray[scenes]",
            n + 1
        ));
        spec
    }

    /// The sinks: one per rendition ("v0", "v1", …), then "thumbs" and "scenes".
    pub fn sink_names(&self) -> Vec<String> {
        let mut sinks: Vec<String> = (0..self.sizes.len()).map(|i| format!("v{i}")).collect();
        sinks.push("thumbs".into());
        sinks.push("scenes".into());
        sinks
    }
}

/// The filters that turn a picture rotated `theta` degrees clockwise upright: lossless
/// transposes and flips for quarter turns, `rotate` for any other angle, none for (nearly) none.
fn rotation_filters(theta: f64) -> Vec<String> {
    if (theta - 90.0).abs() < 1.0 {
        vec!["transpose=clock".into()]
    } else if (theta - 180.0).abs() < 1.0 {
        vec!["hflip".into(), "vflip".into()]
    } else if (theta - 270.0).abs() < 1.0 {
        vec!["transpose=cclock".into()]
    } else if theta.abs() > 1.0 && (theta - 360.0).abs() > 1.0 {
        vec![format!("rotate={theta:.3}*PI/180")]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fan_out(sizes: &[(u32, u32)]) -> FanOut<'_> {
        FanOut {
            interlaced: false,
            rotation: 0.0,
            fps: Rational::new(30000, 1001),
            first: true,
            sizes,
            thumbs_taken: 0,
            thumb_interval: 2.0,
            tile: (160, 90),
        }
    }

    #[test]
    fn one_branch_per_rendition_one_for_thumbnails_and_one_for_scenes() {
        let sizes = [(1280, 720), (640, 360)];
        let f = fan_out(&sizes);
        assert_eq!(
            f.spec(),
            "[in]fps=fps=30000/1001:start_time=0,split=4[s0][s1][s2][s3]\
             ;[s0]scale=1280:720:flags=bicubic:out_range=tv,setsar=1,format=yuv420p[v0]\
             ;[s1]scale=640:360:flags=bicubic:out_range=tv,setsar=1,format=yuv420p[v1]\
             ;[s2]select='gte(t,(selected_n+0)*2.000000)',scale=160:90:flags=bicubic:out_range=tv,setsar=1,format=yuv420p[thumbs]\
             ;[s3]fps=fps=4,scale=64:36:flags=area,format=gray[scenes]"
        );
        assert_eq!(f.sink_names(), vec!["v0", "v1", "thumbs", "scenes"]);
    }

    #[test]
    fn a_rebuilt_graph_continues_the_timeline_and_the_thumbnails() {
        let sizes = [(640, 360)];
        let f = FanOut { first: false, thumbs_taken: 7, thumb_interval: 2.5, ..fan_out(&sizes) };
        let spec = f.spec();
        assert!(spec.starts_with("[in]fps=fps=30000/1001,split=3[s0][s1][s2];"), "{spec}");
        assert!(spec.contains("select='gte(t,(selected_n+7)*2.500000)'"), "{spec}");
    }

    #[test]
    fn deinterlacing_and_rotation_come_before_the_frame_rate() {
        let sizes = [(360, 640)];
        let f = FanOut { interlaced: true, rotation: 90.0, ..fan_out(&sizes) };
        assert!(f.spec().starts_with(
            "[in]yadif=mode=send_frame:deint=interlaced,transpose=clock,fps=fps=30000/1001:start_time=0,split=3"
        ));
    }

    #[test]
    fn rotations_use_lossless_filters_for_quarter_turns() {
        assert_eq!(rotation_filters(0.0), Vec::<String>::new());
        assert_eq!(rotation_filters(0.6), Vec::<String>::new());
        assert_eq!(rotation_filters(359.5), Vec::<String>::new());
        assert_eq!(rotation_filters(-0.5), Vec::<String>::new());
        assert_eq!(rotation_filters(90.0), vec!["transpose=clock"]);
        assert_eq!(rotation_filters(180.4), vec!["hflip", "vflip"]);
        assert_eq!(rotation_filters(270.0), vec!["transpose=cclock"]);
        assert_eq!(rotation_filters(45.0), vec!["rotate=45.000*PI/180"]);
    }

    #[test]
    fn the_source_describes_the_decoded_pictures() {
        let args = buffer_args((720, 576), 0, Rational::new(1, 90000), Rational::new(16, 15));
        assert_eq!(args, "video_size=720x576:pix_fmt=0:time_base=1/90000:pixel_aspect=16/15");
    }
}
