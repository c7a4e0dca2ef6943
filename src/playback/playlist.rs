//! Per-request playlist rewriting (m3u8-rs): every child URI a player will fetch — media
//! playlists, alternative renditions, segments, init segments, keys — gets the token in its
//! query, so players that cannot send headers (native Safari, ffmpeg) work.

use m3u8_rs::Playlist;

/// Which child URIs get the token.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite<'a> {
    pub token: &'a str,
    /// Segments are publicly cacheable (encrypted), so their URIs stay token-free and a CDN
    /// caches one copy for everybody.
    pub public_segments: bool,
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
            for seg in &mut media.segments {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8\n";
    const MEDIA: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n\
        #EXT-X-KEY:METHOD=AES-128,URI=\"../key\",IV=0x00000000000000000000000000000001\n#EXTINF:4.0,\nseg_00000.ts\n#EXTINF:2.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n";

    #[test]
    fn every_child_uri_carries_the_token() {
        let m = String::from_utf8(
            rewrite(MASTER.as_bytes(), Rewrite { token: "T", public_segments: true }).unwrap(),
        )
        .unwrap();
        assert!(m.contains("360p/index.m3u8?token=T"), "{m}");
        let private = String::from_utf8(
            rewrite(MEDIA.as_bytes(), Rewrite { token: "T", public_segments: false }).unwrap(),
        )
        .unwrap();
        assert!(
            private.contains("seg_00000.ts?token=T") && private.contains("seg_00001.ts?token=T"),
            "{private}"
        );
        assert!(private.contains("URI=\"../key?token=T\""), "{private}");
        assert!(private.contains("#EXT-X-ENDLIST"));
        let public = String::from_utf8(
            rewrite(MEDIA.as_bytes(), Rewrite { token: "T", public_segments: true }).unwrap(),
        )
        .unwrap();
        assert!(
            public.contains("\nseg_00000.ts\n") && public.contains("URI=\"../key?token=T\""),
            "{public}"
        );
        assert!(rewrite(b"not a playlist", Rewrite { token: "T", public_segments: true }).is_none());
    }
}
