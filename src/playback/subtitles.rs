//! Captions as an HLS subtitle rendition (RFC 8216 §4.3.4.1): the master playlist gains one
//! `EXT-X-MEDIA:TYPE=SUBTITLES` entry per language and every variant names the group; each
//! language has a media playlist whose WebVTT segments line up with the video's segments, each
//! with the `X-TIMESTAMP-MAP` that ties its cue times to the MPEG-TS clock of the video.
//!
//! Nothing is stored for them: the segments are cut from the lecture's cues on request, so
//! captions change without a transcode.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use m3u8_rs::Playlist;

use super::ReadyVideo;
use crate::media::captions::parse::{vtt_time, write_cue, Cue};
use crate::media::captions::StoredTrack;

/// How long a node reuses what it read of a video's captions (a change shows within it).
pub const TTL: Duration = Duration::from_secs(5);

/// A ready video's captions and the timing of its segments.
#[derive(Debug)]
pub struct CaptionSet {
    pub tracks: Vec<StoredTrack>,
    /// Segment durations (seconds) of the video's first rendition.
    pub segments: Vec<f64>,
    /// The MPEG-TS timestamp (90 kHz) of the video's first frame, for `X-TIMESTAMP-MAP`.
    pub mpegts: u64,
    pub looked_up: Instant,
}

impl CaptionSet {
    pub fn track(&self, lang: &str) -> Option<&StoredTrack> {
        self.tracks.iter().find(|t| t.track.lang == lang)
    }

    /// A validator for what is made of these captions: changes when any track does.
    pub fn version(&self) -> String {
        let mut v = String::new();
        for t in &self.tracks {
            let _ = write!(v, "{}:{}:{};", t.track.lang, t.updated_at, t.track.default);
        }
        v
    }

    /// When any of its tracks last changed (Unix seconds).
    pub fn last_modified(&self) -> i64 {
        self.tracks.iter().map(|t| t.updated_at).max().unwrap_or(0)
    }
}

fn quoted(s: &str) -> String {
    // Quoted-strings hold no `"`, CR or LF (RFC 8216 §4.2).
    s.chars().map(|c| if matches!(c, '"' | '\r' | '\n') { '\'' } else { c }).collect()
}

/// `master` (a viewer's copy) with the subtitle group: the `EXT-X-MEDIA` entries before the
/// first variant and `SUBTITLES="subs"` on every `EXT-X-STREAM-INF`.
pub fn master_with_subtitles(master: &str, set: &CaptionSet, token: &str) -> String {
    if set.tracks.is_empty() {
        return master.to_string();
    }
    let mut media = String::new();
    for t in &set.tracks {
        let yes = |b: bool| if b { "YES" } else { "NO" };
        let _ = writeln!(
            media,
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"{}\",LANGUAGE=\"{}\",DEFAULT={},AUTOSELECT=YES,FORCED=NO,URI=\"subs/{}/index.m3u8?token={token}\"",
            quoted(&t.track.label),
            t.track.lang,
            yes(t.track.default),
            t.track.lang,
        );
    }
    let mut out = String::with_capacity(master.len() + media.len() + 64);
    let mut placed = false;
    for line in master.lines() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            if !placed {
                out.push_str(&media);
                placed = true;
            }
            let _ = writeln!(out, "#EXT-X-STREAM-INF:{attrs},SUBTITLES=\"subs\"");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The media playlist of one language: a WebVTT segment per video segment.
pub fn subtitle_playlist(set: &CaptionSet, token: &str) -> String {
    let target = set.segments.iter().fold(1.0f64, |m, d| m.max(d.ceil()));
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    );
    for (i, d) in set.segments.iter().enumerate() {
        let _ = write!(out, "#EXTINF:{d:.3},\nseg_{i:05}.vtt?token={token}\n");
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// Segment `index`'s WebVTT: the cues that overlap its span, times as in the whole file.
pub fn subtitle_segment(set: &CaptionSet, cues: &[Cue], index: usize) -> Option<String> {
    set.segments.get(index)?;
    let start: f64 = set.segments[..index].iter().sum();
    let end = start + set.segments[index];
    let (start_ms, end_ms) = ((start * 1000.0).round() as u64, (end * 1000.0).round() as u64);
    let mut out =
        format!("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{},LOCAL:{}\n\n", set.mpegts, vtt_time(0));
    for cue in cues.iter().filter(|c| c.start_ms < end_ms && c.end_ms > start_ms) {
        write_cue(&mut out, cue);
    }
    Some(out)
}

/// The first presentation timestamp in an MPEG-TS segment's opening bytes: the smallest PTS
/// of the first PES packet of each audio or video stream.
pub fn first_pts(ts: &[u8]) -> Option<u64> {
    let mut seen: Vec<u16> = Vec::new();
    let mut best: Option<u64> = None;
    for pkt in ts.chunks_exact(188) {
        if pkt[0] != 0x47 {
            break;
        }
        let start = pkt[1] & 0x40 != 0;
        let pid = u16::from(pkt[1] & 0x1f) << 8 | u16::from(pkt[2]);
        let control = (pkt[3] >> 4) & 3;
        if !start || control & 1 == 0 || seen.contains(&pid) {
            continue;
        }
        let offset = if control & 2 != 0 { 5 + usize::from(pkt[4]) } else { 4 };
        let Some(pes) = pkt.get(offset..) else { continue };
        // A PES header with a PTS: start code, an audio (0xC0–0xDF) or video (0xE0–0xEF) id.
        if pes.len() < 14
            || pes[..3] != [0, 0, 1]
            || !(0xC0..=0xEF).contains(&pes[3])
            || pes[7] & 0x80 == 0
        {
            continue;
        }
        let b = &pes[9..14];
        let pts = (u64::from(b[0] >> 1) & 7) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1);
        seen.push(pid);
        best = Some(best.map_or(pts, |b: u64| b.min(pts)));
        if seen.len() == 2 {
            break;
        }
    }
    best
}

/// From a stored master playlist: the first variant's media playlist (relative URI).
pub fn first_variant(master: &[u8]) -> Option<String> {
    match m3u8_rs::parse_playlist_res(master).ok()? {
        Playlist::MasterPlaylist(m) => m.variants.first().map(|v| v.uri.clone()),
        Playlist::MediaPlaylist(_) => None,
    }
}

/// From a stored media playlist: segment durations, the first segment's URI and its IV.
pub fn segment_timing(media: &[u8]) -> Option<(Vec<f64>, String, Option<[u8; 16]>)> {
    let Playlist::MediaPlaylist(m) = m3u8_rs::parse_playlist_res(media).ok()? else { return None };
    let first = m.segments.first()?;
    let iv = first
        .key
        .as_ref()
        .and_then(|k| k.iv.as_deref())
        .and_then(|iv| hex::decode(iv.trim_start_matches("0x").trim_start_matches("0X")).ok())
        .and_then(|iv| <[u8; 16]>::try_from(iv).ok())
        // Without an IV the media sequence number is the IV (RFC 8216 §5.2).
        .or_else(|| {
            first.key.as_ref().map(|_| {
                let mut iv = [0u8; 16];
                iv[8..].copy_from_slice(&m.media_sequence.to_be_bytes());
                iv
            })
        });
    let durations = m.segments.iter().map(|s| f64::from(s.duration)).collect();
    Some((durations, first.uri.clone(), iv))
}

/// The timestamp map of `ready`'s first segment, decrypting its start when it is encrypted.
pub fn mpegts_of(ready: &ReadyVideo, first_segment: &[u8], iv: Option<[u8; 16]>) -> Option<u64> {
    const HEAD: usize = 64 * 1024;
    let mut head = first_segment[..first_segment.len().min(HEAD)].to_vec();
    if let (Some(key), Some(iv)) = (ready.key, iv) {
        lectern_workers::decrypt_prefix(&key, &iv, &mut head).ok()?;
    }
    first_pts(&head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::captions::CaptionTrack;

    fn set(tracks: &[(&str, bool)]) -> CaptionSet {
        CaptionSet {
            tracks: tracks
                .iter()
                .map(|(lang, default)| StoredTrack {
                    track: CaptionTrack {
                        lang: lang.to_string(),
                        label: format!("{lang} \"cc\""),
                        default: *default,
                    },
                    cues: Vec::new(),
                    updated_at: 1,
                })
                .collect(),
            segments: vec![4.0, 4.0, 2.5],
            mpegts: 126_000,
            looked_up: Instant::now(),
        }
    }

    #[test]
    fn the_master_names_the_group_on_every_variant() {
        let master = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8?token=T\n#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720\n720p/index.m3u8?token=T\n";
        let out = master_with_subtitles(master, &set(&[("en", false), ("ko", true)]), "T");
        let parsed = m3u8_rs::parse_master_playlist_res(out.as_bytes()).unwrap();
        assert_eq!(parsed.alternatives.len(), 2);
        assert!(parsed.variants.iter().all(|v| v.subtitles.as_deref() == Some("subs")));
        let ko = parsed.alternatives.iter().find(|a| a.language.as_deref() == Some("ko")).unwrap();
        assert!(ko.default && ko.autoselect);
        assert_eq!(ko.uri.as_deref(), Some("subs/ko/index.m3u8?token=T"));
        assert!(!out.contains("\"cc\""), "quotes in a label are replaced: {out}");
        assert_eq!(master_with_subtitles(master, &set(&[]), "T"), master);
    }

    #[test]
    fn segments_line_up_with_the_video() {
        let s = set(&[("ko", true)]);
        let playlist = subtitle_playlist(&s, "T");
        let parsed = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).unwrap();
        assert_eq!(parsed.segments.len(), 3);
        assert_eq!(parsed.segments[2].uri, "seg_00002.vtt?token=T");
        let cues = [
            Cue {
                id: None,
                start_ms: 1000,
                end_ms: 3000,
                settings: String::new(),
                text: "one".into(),
            },
            Cue {
                id: None,
                start_ms: 3500,
                end_ms: 4500,
                settings: String::new(),
                text: "two".into(),
            },
            Cue {
                id: None,
                start_ms: 9000,
                end_ms: 10_000,
                settings: String::new(),
                text: "three".into(),
            },
        ];
        let first = subtitle_segment(&s, &cues, 0).unwrap();
        assert!(
            first.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n"),
            "{first}"
        );
        assert!(first.contains("one") && first.contains("two") && !first.contains("three"));
        let second = subtitle_segment(&s, &cues, 1).unwrap();
        assert!(second.contains("00:00:03.500 --> 00:00:04.500\ntwo") && !second.contains("one"));
        assert!(subtitle_segment(&s, &cues, 2).unwrap().contains("three"));
        assert!(subtitle_segment(&s, &cues, 3).is_none());
    }

    #[test]
    fn the_first_pts_is_read_from_pes_headers() {
        // One video PES (PTS 133200) after one audio PES (PTS 126000), each in a TS packet.
        fn packet(pid: u16, stream_id: u8, pts: u64) -> Vec<u8> {
            let mut p = vec![0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10];
            p.extend_from_slice(&[0, 0, 1, stream_id, 0, 0, 0x80, 0x80, 5]);
            p.push(0x21 | ((pts >> 29) & 0x0e) as u8);
            p.push((pts >> 22) as u8);
            p.push(0x01 | ((pts >> 14) & 0xfe) as u8);
            p.push((pts >> 7) as u8);
            p.push(0x01 | ((pts << 1) & 0xfe) as u8);
            p.resize(188, 0xff);
            p
        }
        let mut ts = packet(0x101, 0xc0, 126_000);
        ts.extend(packet(0x100, 0xe0, 133_200));
        assert_eq!(first_pts(&ts), Some(126_000));
        assert_eq!(first_pts(&packet(0x100, 0xe0, (1 << 32) + 5)), Some((1 << 32) + 5));
        assert_eq!(first_pts(b"not a transport stream at all"), None);
    }
}
