//! The forensic watermark's delivery side: which variant (A or B) each playback session gets
//! for each segment.
//!
//! A watermarked video has every rendition twice (`<name>/` variant A, `<name>-b/` variant B
//! with the mark of `lectern_workers::watermark`). A session's *code* is one pseudo-random bit
//! per segment, drawn from its id: bit `k` set means segment `k` comes from variant B. The
//! media playlists served to a session point each segment at its variant; both variants' segments
//! are ordinary public objects, so a CDN caches them once for everybody, and only the playlists
//! (already private, per token) differ between viewers. Every segment's name carries a tag
//! derived from the video's secret and its variant (`lectern_workers::watermark::segment_name`),
//! so a viewer who sees one variant's name of a segment cannot guess the other's, and the
//! marked variant's own playlists are never served.
//!
//! The code is a random code decoded by nearest neighbour among the sessions actually issued:
//! any stretch of `n` segments read off a copy agrees with its own session's code (bar misread
//! segments) and with any other's only by chance, ~n/2 places. So no particular stretch is
//! needed, misreads are tolerated (the error correction), and the chance that a wrong session
//! scores as well is a binomial tail [`identify`](super::identify) states as its confidence.

use sha2::{Digest, Sha256};

use lectern_workers::watermark::segment_name;
pub use lectern_workers::watermark::MARKED_SUFFIX;

/// Whether session `sid` gets segment `segment` from variant B.
pub fn session_bit(sid: &str, segment: usize) -> bool {
    let mut h = Sha256::new();
    h.update(b"lectern-watermark\0");
    h.update(sid.as_bytes());
    h.update(b"\0");
    h.update((segment as u64).to_be_bytes());
    h.finalize()[0] & 1 == 1
}

/// `playlist`, a media playlist of `rendition` as served, with each segment of session `sid`
/// whose bit is set taken from the marked twin instead: `../<rendition>-b/<its name>` (names
/// from `names`, the video's secret), any query of the line kept.
pub fn choose_variants(playlist: &str, rendition: &str, sid: &str, names: &[u8; 16]) -> String {
    let twin = format!("{rendition}{MARKED_SUFFIX}");
    let mut out = String::with_capacity(playlist.len() + playlist.len() / 8);
    let mut segment = 0;
    for line in playlist.split_inclusive('\n') {
        let uri = line.trim_end();
        if uri.is_empty() || uri.starts_with('#') {
            out.push_str(line);
            continue;
        }
        if session_bit(sid, segment) {
            let query = uri.find('?').map_or("", |q| &uri[q..]);
            out.push_str(&format!("../{twin}/{}{query}", segment_name(names, &twin, segment)));
            out.push_str(&line[uri.len()..]);
        } else {
            out.push_str(line);
        }
        segment += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_fixed_per_session_and_differ_between_sessions() {
        let code = |sid: &str| (0..64).map(|k| session_bit(sid, k)).collect::<Vec<_>>();
        assert_eq!(code("s1"), code("s1"));
        let ones = code("s1").iter().filter(|&&b| b).count();
        assert!((16..=48).contains(&ones), "{ones} of 64");
        let same = code("s1").iter().zip(code("s2")).filter(|(a, b)| **a == *b).count();
        assert!((16..=48).contains(&same), "{same} of 64 alike");
    }

    #[test]
    fn segments_point_at_the_variant_of_their_bit() {
        let names = [7u8; 16];
        let a = |k| segment_name(&names, "720p", k);
        let playlist = format!(
            "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"../key?token=t\"\n\
             #EXTINF:4,\n{}\n#EXTINF:4,\n{}?token=t\n#EXTINF:2,\n{}\n#EXT-X-ENDLIST\n",
            a(0),
            a(1),
            a(2)
        );
        let served = choose_variants(&playlist, "720p", "abc", &names);
        let uris: Vec<&str> = served.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(uris.len(), 3);
        for (k, uri) in uris.iter().enumerate() {
            let query = if k == 1 { "?token=t" } else { "" };
            match session_bit("abc", k) {
                true => assert_eq!(
                    *uri,
                    format!("../720p-b/{}{query}", segment_name(&names, "720p-b", k))
                ),
                false => assert_eq!(*uri, format!("{}{query}", a(k))),
            }
        }
        assert_eq!(served.lines().filter(|l| l.starts_with('#')).count(), 6);
    }
}
