//! Playlist rewriting (m3u8-rs): every child URI a player will fetch — media playlists,
//! alternative renditions, segments, init segments, keys — gets the token in its query, so
//! players that cannot send headers (native Safari, ffmpeg) work.
//!
//! Parsing and writing a playlist costs far more than copying it (a 675-segment playlist:
//! hundreds of microseconds against a few), and a stored playlist never changes, so it is
//! parsed once into a [`Template`]: its rewritten text cut where the token goes. Each viewer's
//! copy is then the pieces joined with their token.

use bytes::Bytes;
use m3u8_rs::Playlist;
use sha2::{Digest, Sha256};

/// Which child URIs get the token.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite<'a> {
    pub token: &'a str,
    /// Segments are publicly cacheable (encrypted), so their URIs stay token-free and a CDN
    /// caches one copy for everybody.
    pub public_segments: bool,
    /// Seconds of video after which the key line is repeated under a new URI (`part=N`), so
    /// players fetch the key again (0: never).
    pub key_refresh_secs: u64,
}

fn with_token(uri: &str, token: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}token={token}")
}

/// Rewrite a stored playlist for one viewer. `None` when `raw` is not a playlist.
pub fn rewrite(raw: &[u8], rw: Rewrite<'_>) -> Option<Vec<u8>> {
    let mut playlist = m3u8_rs::parse_playlist_res(raw).ok()?;
    match &mut playlist {
        Playlist::MasterPlaylist(master) => {
            for v in &mut master.variants {
                v.uri = with_token(&v.uri, rw.token);
            }
            for alt in &mut master.alternatives {
                if let Some(uri) = alt.uri.as_mut() {
                    *uri = with_token(uri, rw.token);
                }
            }
            for sk in &mut master.session_key {
                if let Some(uri) = sk.0.uri.as_mut() {
                    *uri = with_token(uri, rw.token);
                }
            }
        }
        Playlist::MediaPlaylist(media) => {
            let (mut current, mut since, mut part): (Option<m3u8_rs::Key>, f64, u32) =
                (None, 0.0, 0);
            for seg in &mut media.segments {
                if let Some(k) = seg.key.as_ref() {
                    current = Some(k.clone());
                    since = 0.0;
                } else if let Some(k) = current.as_ref().filter(|k| {
                    rw.key_refresh_secs > 0
                        && since >= rw.key_refresh_secs as f64
                        && k.method != m3u8_rs::KeyMethod::None
                }) {
                    part += 1;
                    let mut again = k.clone();
                    again.uri = again.uri.map(|u| {
                        let sep = if u.contains('?') { '&' } else { '?' };
                        format!("{u}{sep}part={part}")
                    });
                    seg.key = Some(again);
                    since = 0.0;
                }
                since += f64::from(seg.duration);
                if let Some(uri) = seg.key.as_mut().and_then(|k| k.uri.as_mut()) {
                    *uri = with_token(uri, rw.token);
                }
                if !rw.public_segments {
                    seg.uri = with_token(&seg.uri, rw.token);
                    if let Some(map) = seg.map.as_mut() {
                        map.uri = with_token(&map.uri, rw.token);
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 256);
    playlist.write_to(&mut out).ok()?;
    Some(out)
}

/// Stands in for the token while a template is made; a stored playlist never holds it.
const MARK: &str = "\u{1}token\u{1}";

/// A stored playlist rewritten once, cut at every place a viewer's token goes.
#[derive(Debug)]
pub struct Template {
    /// The rewritten text without the tokens; `cuts` are the offsets they go at.
    text: Bytes,
    cuts: Vec<usize>,
    /// Identifies the text and the cuts, for the validators of a viewer's copy.
    digest: [u8; 32],
}

impl Template {
    /// `raw` prepared for rewriting as `public_segments` says; `None` when it is not a
    /// playlist (or, impossibly for a stored one, holds the mark).
    pub fn new(raw: &[u8], public_segments: bool, key_refresh_secs: u64) -> Option<Template> {
        if raw.windows(MARK.len()).any(|w| w == MARK.as_bytes()) {
            return None;
        }
        let marked = rewrite(raw, Rewrite { token: MARK, public_segments, key_refresh_secs })?;
        let marked = String::from_utf8(marked).ok()?;
        let mut text = String::with_capacity(marked.len());
        let mut cuts = Vec::new();
        for (i, piece) in marked.split(MARK).enumerate() {
            if i > 0 {
                cuts.push(text.len());
            }
            text.push_str(piece);
        }
        let mut digest = Sha256::new();
        digest.update(&text);
        for cut in &cuts {
            digest.update(cut.to_le_bytes());
        }
        Some(Template { text: Bytes::from(text), cuts, digest: digest.finalize().into() })
    }

    /// The playlist for the holder of `token`: the template's pieces joined with it.
    pub fn render(&self, token: &str) -> Bytes {
        let mut out = Vec::with_capacity(self.text.len() + self.cuts.len() * token.len());
        let mut from = 0;
        for &cut in &self.cuts {
            out.extend_from_slice(&self.text[from..cut]);
            out.extend_from_slice(token.as_bytes());
            from = cut;
        }
        out.extend_from_slice(&self.text[from..]);
        Bytes::from(out)
    }

    /// A strong validator of [`Template::render`]`(token)`: it changes exactly when the bytes
    /// could (another template or another token), without hashing the whole copy.
    pub fn etag(&self, token: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.digest);
        h.update(token.as_bytes());
        hex::encode(&h.finalize()[..16])
    }

    /// Bytes held, for a cache's weigher.
    pub fn weight(&self) -> usize {
        self.text.len() + self.cuts.len() * std::mem::size_of::<usize>() + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_renders_what_a_rewrite_writes() {
        for raw in [MASTER, MEDIA] {
            for public_segments in [true, false] {
                let t = Template::new(raw.as_bytes(), public_segments, 0).unwrap();
                for token in ["T", "eyJhbGciOiJIUzI1NiJ9.eyJ2IjoxfQ.c2lnbmF0dXJl"] {
                    let direct = rewrite(
                        raw.as_bytes(),
                        Rewrite { token, public_segments, key_refresh_secs: 0 },
                    );
                    assert_eq!(t.render(token).as_ref(), direct.unwrap().as_slice());
                }
                assert_ne!(t.etag("a"), t.etag("b"));
            }
        }
        assert_ne!(
            Template::new(MEDIA.as_bytes(), true, 0).unwrap().etag("T"),
            Template::new(MEDIA.as_bytes(), false, 0).unwrap().etag("T")
        );
        assert!(Template::new(b"not a playlist", true, 0).is_none());
        let sneaky = format!("{MEDIA}#{MARK}\n");
        assert!(Template::new(sneaky.as_bytes(), true, 0).is_none());
    }

    const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8\n";
    const MEDIA: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n\
        #EXT-X-KEY:METHOD=AES-128,URI=\"../key\",IV=0x00000000000000000000000000000001\n#EXTINF:4.0,\nseg_00000.ts\n#EXTINF:2.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n";

    #[test]
    fn every_child_uri_carries_the_token() {
        let m = String::from_utf8(
            rewrite(
                MASTER.as_bytes(),
                Rewrite { token: "T", public_segments: true, key_refresh_secs: 0 },
            )
            .unwrap(),
        )
        .unwrap();
        assert!(m.contains("360p/index.m3u8?token=T"), "{m}");
        let private = String::from_utf8(
            rewrite(
                MEDIA.as_bytes(),
                Rewrite { token: "T", public_segments: false, key_refresh_secs: 0 },
            )
            .unwrap(),
        )
        .unwrap();
        assert!(
            private.contains("seg_00000.ts?token=T") && private.contains("seg_00001.ts?token=T"),
            "{private}"
        );
        assert!(private.contains("URI=\"../key?token=T\""), "{private}");
        assert!(private.contains("#EXT-X-ENDLIST"));
        let public = String::from_utf8(
            rewrite(
                MEDIA.as_bytes(),
                Rewrite { token: "T", public_segments: true, key_refresh_secs: 0 },
            )
            .unwrap(),
        )
        .unwrap();
        assert!(
            public.contains("\nseg_00000.ts\n") && public.contains("URI=\"../key?token=T\""),
            "{public}"
        );
        assert!(rewrite(
            b"not a playlist",
            Rewrite { token: "T", public_segments: true, key_refresh_secs: 0 }
        )
        .is_none());
    }

    #[test]
    fn the_key_line_is_repeated_under_a_new_uri() {
        let rw = Rewrite { token: "T", public_segments: true, key_refresh_secs: 4 };
        let out = String::from_utf8(rewrite(MEDIA.as_bytes(), rw).unwrap()).unwrap();
        let parsed = m3u8_rs::parse_media_playlist_res(out.as_bytes()).unwrap();
        let uris: Vec<_> =
            parsed.segments.iter().map(|s| s.key.as_ref().and_then(|k| k.uri.clone())).collect();
        assert_eq!(
            uris,
            [Some("../key?token=T".into()), Some("../key?part=1&token=T".into())],
            "{out}"
        );
        let iv = |i: usize| parsed.segments[i].key.as_ref().unwrap().iv.clone();
        assert_eq!(iv(0), iv(1), "the same key and IV, fetched again");
        let once = rewrite(MEDIA.as_bytes(), Rewrite { key_refresh_secs: 0, ..rw }).unwrap();
        assert_eq!(String::from_utf8(once).unwrap().matches("#EXT-X-KEY").count(), 1);
    }
}
