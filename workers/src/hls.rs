//! HLS packaging after muxing: rewrite media playlists, encrypt segments, write the master.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use ffmpeg_next::ffi;
use m3u8_rs::{
    Key, KeyMethod, MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment, Resolution,
    Start, VariantStream,
};

use serde::{Deserialize, Serialize};

use crate::{HlsEncryption, MediaError};

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One finished segment of a rendition: closed, encrypted when asked, never written again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// File name beside the rendition's playlist, e.g. `seg_00003.ts`.
    pub file_name: String,
    /// Its `EXTINF` duration in seconds.
    pub duration: f64,
    /// Its size as stored.
    pub bytes: u64,
}

/// Per-rendition facts the playlists are built from.
#[derive(Clone, Debug)]
pub(crate) struct Packaged {
    pub segments: Vec<Segment>,
}

impl Packaged {
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }
    pub fn total_duration(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).sum()
    }
    /// Peak segment bitrate (bits/s).
    pub fn peak_bandwidth(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.duration > 0.0)
            .map(|s| (s.bytes as f64 * 8.0 / s.duration).ceil() as u64)
            .max()
            .unwrap_or(0)
    }
    /// Average bitrate over the whole rendition (bits/s).
    pub fn average_bandwidth(&self) -> u64 {
        let d = self.total_duration();
        if d > 0.0 {
            (self.total_bytes() as f64 * 8.0 / d).ceil() as u64
        } else {
            0
        }
    }
}

fn invalid_playlist(path: &Path, why: impl std::fmt::Display) -> MediaError {
    MediaError::Ffmpeg(format!(
        "the HLS muxer wrote an unusable playlist {}: {why}",
        path.display()
    ))
}

/// The segments FFmpeg's hls muxer lists in its playlist at `muxer_playlist` (finished ones
/// only: it lists a segment once it has closed it), as file names and durations.
pub(crate) fn muxer_segments(muxer_playlist: &Path) -> Result<Vec<(String, f64)>, MediaError> {
    let raw = fs::read(muxer_playlist)?;
    let parsed =
        m3u8_rs::parse_media_playlist_res(&raw).map_err(|e| invalid_playlist(muxer_playlist, e))?;
    parsed
        .segments
        .iter()
        .map(|seg| {
            let name = segment_file_name(&seg.uri)
                .ok_or_else(|| invalid_playlist(muxer_playlist, "a segment without a URI"))?;
            Ok((name.to_owned(), seg.duration as f64))
        })
        .collect()
}

/// Encrypt a finished segment in place when asked; its size as stored.
pub(crate) fn seal_segment(
    path: &Path,
    encryption: Option<&HlsEncryption>,
) -> Result<u64, MediaError> {
    if let Some(enc) = encryption {
        encrypt_file_in_place(path, &enc.key, &enc.iv)?;
    }
    Ok(fs::metadata(path)?.len())
}

/// A rendition's media playlist over `segments`, which start at media sequence 0.
///
/// While the transcode runs (`ended` false) it is an `EVENT` playlist without `EXT-X-ENDLIST`:
/// players poll it and play from the start (`EXT-X-START:TIME-OFFSET=0`), and each version only
/// appends to the one before. Once `ended`, it is the `VOD` playlist with `EXT-X-ENDLIST`.
/// `target_duration` must be the same in every version (see [`target_duration`]). With
/// `encryption`, the first segment carries the `EXT-X-KEY` (URI and IV, never the key).
pub fn media_playlist(
    segments: &[Segment],
    target_duration: u64,
    encryption: Option<&HlsEncryption>,
    ended: bool,
) -> Vec<u8> {
    let key = encryption.map(|enc| Key {
        method: KeyMethod::AES128,
        uri: Some(enc.key_uri.clone()),
        iv: Some(format!("0x{}", hex(&enc.iv))),
        keyformat: None,
        keyformatversions: None,
    });
    let playlist = MediaPlaylist {
        version: Some(3),
        target_duration,
        media_sequence: 0,
        segments: segments
            .iter()
            .enumerate()
            .map(|(i, s)| MediaSegment {
                uri: s.file_name.clone(),
                duration: s.duration as f32,
                key: if i == 0 { key.clone() } else { None },
                ..MediaSegment::default()
            })
            .collect(),
        end_list: ended,
        playlist_type: Some(if ended { MediaPlaylistType::Vod } else { MediaPlaylistType::Event }),
        independent_segments: true,
        start: Some(Start {
            time_offset: 0.0,
            precise: None,
            other_attributes: Default::default(),
        }),
        ..MediaPlaylist::default()
    };
    let mut out = Vec::new();
    playlist.write_to(&mut out).expect("writing to memory");
    out
}

/// Write the final `VOD` playlist of a rendition's `segments` to `dir/index.m3u8`.
pub(crate) fn write_vod_playlist(
    dir: &Path,
    segments: &[Segment],
    segment_seconds: f64,
    encryption: Option<&HlsEncryption>,
) -> Result<Packaged, MediaError> {
    let path = dir.join("index.m3u8");
    if segments.is_empty() {
        return Err(invalid_playlist(&path, "no segments"));
    }
    let target = target_duration(segment_seconds, segments);
    write_atomically(&path, &media_playlist(segments, target, encryption, true))?;
    Ok(Packaged { segments: segments.to_vec() })
}

/// The file name a segment URI of FFmpeg's playlist names (the segments sit beside it).
fn segment_file_name(uri: &str) -> Option<&str> {
    uri.rsplit(['/', '\\']).next().filter(|n| !n.is_empty())
}

/// `EXT-X-TARGETDURATION`: the segment length asked for, or the longest segment if one is
/// longer, rounded up to whole seconds (at least 1), ignoring float noise in the muxer's
/// six-decimal EXTINF values. A growing playlist states it before any segment exists (it may
/// not change), so the asked-for length alone decides it there.
pub fn target_duration(segment_seconds: f64, segments: &[Segment]) -> u64 {
    let max = segments.iter().map(|s| s.duration).fold(segment_seconds, f64::max);
    ((max - 1e-3).ceil() as u64).max(1)
}

/// A variant of the master playlist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// The media playlist, relative to the master (`720p/index.m3u8`).
    pub uri: String,
    /// Peak bits per second: measured once the rendition is done, its cap before.
    pub bandwidth: u64,
    /// Average bits per second (the same estimate before it is measured).
    pub average_bandwidth: u64,
    /// RFC 6381 codecs, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frame rate.
    pub frame_rate: f64,
}

/// Write `out_dir/master.m3u8` (variants in the given order).
pub(crate) fn write_master(out_dir: &Path, variants: &[Variant]) -> Result<(), MediaError> {
    write_atomically(&out_dir.join("master.m3u8"), &master_playlist(variants))
}

/// The master playlist over `variants`, in their order.
pub fn master_playlist(variants: &[Variant]) -> Vec<u8> {
    let master = MasterPlaylist {
        version: Some(3),
        independent_segments: true,
        variants: variants
            .iter()
            .map(|v| VariantStream {
                uri: v.uri.clone(),
                bandwidth: v.bandwidth,
                average_bandwidth: Some(v.average_bandwidth),
                codecs: Some(v.codecs.clone()),
                resolution: Some(Resolution { width: v.width as u64, height: v.height as u64 }),
                // HLS wants FRAME-RATE rounded to three decimals.
                frame_rate: Some((v.frame_rate * 1000.0).round() / 1000.0),
                ..VariantStream::default()
            })
            .collect(),
        ..MasterPlaylist::default()
    };
    let mut out = Vec::new();
    master.write_to(&mut out).expect("writing to memory");
    out
}

/// Write `data` to `path` via a temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> Result<(), MediaError> {
    let tmp = tmp_path(path);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The RFC 6381 `avc1.PPCCLL` string from H.264 extradata (Annex B or avcC).
pub(crate) fn avc1_codecs(extradata: &[u8]) -> Option<String> {
    // avcC: version 1, then profile, constraints, level.
    if extradata.len() >= 4 && extradata[0] == 1 {
        return Some(format!("avc1.{:02x}{:02x}{:02x}", extradata[1], extradata[2], extradata[3]));
    }
    // Annex B: find the SPS NAL unit (type 7).
    let mut i = 0;
    while i + 3 < extradata.len() {
        let start = if extradata[i..].starts_with(&[0, 0, 1]) {
            Some(i + 3)
        } else if extradata[i..].starts_with(&[0, 0, 0, 1]) {
            Some(i + 4)
        } else {
            None
        };
        if let Some(s) = start {
            if s < extradata.len() && extradata[s] & 0x1f == 7 {
                // Strip emulation-prevention bytes from the few bytes we need.
                let mut rbsp = Vec::with_capacity(3);
                let mut zeros = 0;
                for &b in &extradata[s + 1..] {
                    if zeros >= 2 && b == 3 {
                        zeros = 0;
                        continue;
                    }
                    zeros = if b == 0 { zeros + 1 } else { 0 };
                    rbsp.push(b);
                    if rbsp.len() == 3 {
                        return Some(format!("avc1.{:02x}{:02x}{:02x}", rbsp[0], rbsp[1], rbsp[2]));
                    }
                }
                return None;
            }
            i = s;
        } else {
            i += 1;
        }
    }
    None
}

/// Decrypt the start of an AES-128-CBC encrypted segment in place: `data` is its first whole
/// 16-byte blocks (padding, at the very end, is not removed). Readers of a segment's first
/// packets (the subtitle timestamp map) need no more than that.
pub fn decrypt_prefix(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) -> Result<(), MediaError> {
    let whole = data.len() / 16 * 16;
    let mut aes = Aes::keyed(key, true)?;
    let mut chain = *iv;
    aes.crypt_cbc(&mut data[..whole], &mut chain, true);
    Ok(())
}

/// libavutil's AES context, keyed for encryption or decryption; freed on drop.
struct Aes(NonNull<ffi::AVAES>);

impl Aes {
    fn encrypting(key: &[u8; 16]) -> Result<Self, MediaError> {
        Self::keyed(key, false)
    }

    fn keyed(key: &[u8; 16], decrypt: bool) -> Result<Self, MediaError> {
        // SAFETY: av_aes_alloc has no preconditions; it returns NULL or a new context.
        let ctx = NonNull::new(unsafe { ffi::av_aes_alloc() })
            .ok_or_else(|| MediaError::Ffmpeg("allocating an AES context failed".into()))?;
        let aes = Aes(ctx);
        // SAFETY: `aes.0` is a live context from av_aes_alloc, and `key` holds exactly the 128
        // bits the call is told to read.
        if unsafe { ffi::av_aes_init(aes.0.as_ptr(), key.as_ptr(), 128, i32::from(decrypt)) } < 0 {
            return Err(MediaError::Ffmpeg("initialising AES-128 failed".into()));
        }
        Ok(aes)
    }

    /// Encrypt `data`, a whole number of 16-byte blocks, in place in CBC mode; `chain` is the
    /// IV going in and the last ciphertext block coming out.
    fn encrypt_cbc(&mut self, data: &mut [u8], chain: &mut [u8; 16]) {
        self.crypt_cbc(data, chain, false)
    }

    /// Encrypt or decrypt (as the context was keyed) `data`, whole 16-byte blocks, in place.
    fn crypt_cbc(&mut self, data: &mut [u8], chain: &mut [u8; 16], decrypt: bool) {
        assert!(data.len() % 16 == 0, "AES works on whole 16-byte blocks");
        let blocks = (data.len() / 16) as i32;
        let p = data.as_mut_ptr();
        // SAFETY: the context was keyed for this direction in `keyed`; `p` is valid for
        // `blocks` whole blocks, and the same buffer as source and destination is fine (each
        // block is read before it is written); `chain` is the 16-byte IV, updated in place.
        unsafe {
            ffi::av_aes_crypt(self.0.as_ptr(), p, p, blocks, chain.as_mut_ptr(), i32::from(decrypt))
        };
    }
}

impl Drop for Aes {
    fn drop(&mut self) {
        // SAFETY: the context came from av_aes_alloc (av_malloc) and is freed only here, once.
        unsafe { ffi::av_free(self.0.as_ptr().cast()) };
    }
}

/// AES-128-CBC with PKCS#7 padding, as HLS `METHOD=AES-128` expects; libavutil's AES, streamed.
fn encrypt_file_in_place(path: &Path, key: &[u8; 16], iv: &[u8; 16]) -> Result<(), MediaError> {
    let mut aes = Aes::encrypting(key)?;
    let mut chain = *iv;
    let tmp = tmp_path(path);
    let mut input = File::open(path)?;
    let mut output = File::create(&tmp)?;
    const CHUNK: usize = 64 * 1024; // a multiple of the 16-byte block
    let mut buf = vec![0u8; CHUNK + 16];
    let mut filled = 0usize;
    loop {
        let n = input.read(&mut buf[filled..CHUNK])?;
        filled += n;
        if n > 0 && filled < CHUNK {
            continue;
        }
        let eof = n == 0;
        let whole = if eof {
            // Final block(s): PKCS#7 — always pad, 1..=16 bytes.
            let pad = 16 - filled % 16;
            buf[filled..filled + pad].fill(pad as u8);
            filled + pad
        } else {
            filled
        };
        aes.encrypt_cbc(&mut buf[..whole], &mut chain);
        output.write_all(&buf[..whole])?;
        filled = 0;
        if eof {
            break;
        }
    }
    output.sync_all()?;
    drop(output);
    fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_from_annexb_sps() {
        let ed = [0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac, 0, 0, 0, 1, 0x68, 0xeb];
        assert_eq!(avc1_codecs(&ed).as_deref(), Some("avc1.64001f"));
        let ed = [0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xac];
        assert_eq!(avc1_codecs(&ed).as_deref(), Some("avc1.42c01e"));
        assert_eq!(avc1_codecs(&[0, 0, 1, 0x68, 1, 2, 3]), None);
    }

    fn segments(durations_and_bytes: &[(f64, u64)]) -> Packaged {
        Packaged {
            segments: durations_and_bytes
                .iter()
                .map(|&(duration, bytes)| Segment { file_name: "s.ts".into(), duration, bytes })
                .collect(),
        }
    }

    #[test]
    fn bandwidths_are_bits_per_second_rounded_up() {
        let p = segments(&[(4.0, 1_000_000), (4.0, 1_500_001), (1.0, 100_000)]);
        assert_eq!(p.total_bytes(), 2_600_001);
        assert_eq!(p.total_duration(), 9.0);
        // 1 500 001 bytes in 4 s: 3 000 002 bit/s.
        assert_eq!(p.peak_bandwidth(), 3_000_002);
        // 20 800 008 bits over 9 s, rounded up.
        assert_eq!(p.average_bandwidth(), 2_311_112);
        // Zero-length segments do not make an infinite peak; nothing at all is 0.
        assert_eq!(segments(&[(0.0, 5000), (2.0, 1000)]).peak_bandwidth(), 4000);
        assert_eq!(segments(&[]).peak_bandwidth(), 0);
        assert_eq!(segments(&[]).average_bandwidth(), 0);
    }

    #[test]
    fn target_duration_rounds_up_but_not_float_noise() {
        let durations = |ds: &[f64]| {
            ds.iter()
                .map(|&duration| Segment { file_name: "s.ts".into(), duration, bytes: 0 })
                .collect::<Vec<_>>()
        };
        assert_eq!(target_duration(4.0, &durations(&[4.0, 4.0, 1.2])), 4);
        assert_eq!(target_duration(4.0, &durations(&[4.0005, 3.9])), 4);
        assert_eq!(target_duration(4.0, &durations(&[4.2, 3.9])), 5);
        assert_eq!(target_duration(1.0, &durations(&[0.4])), 1);
        assert_eq!(target_duration(0.5, &[]), 1);
        // Before any segment exists the asked-for length decides alone.
        assert_eq!(target_duration(6.0, &[]), 6);
        assert_eq!(target_duration(2.5, &durations(&[1.0])), 3);
    }

    #[test]
    fn segment_uris_come_down_to_their_file_names() {
        assert_eq!(segment_file_name("seg_00001.ts"), Some("seg_00001.ts"));
        assert_eq!(segment_file_name("/tmp/job/720p/seg_00001.ts"), Some("seg_00001.ts"));
        assert_eq!(segment_file_name("C:\\out\\seg_00002.ts"), Some("seg_00002.ts"));
        assert_eq!(segment_file_name("dir/"), None);
        assert_eq!(segment_file_name(""), None);
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn codecs_from_avcc_and_escaped_sps() {
        // avcC: version 1, profile High (0x64), constraints 0, level 4.0 (0x28).
        assert_eq!(avc1_codecs(&[1, 0x64, 0x00, 0x28, 0xff]).as_deref(), Some("avc1.640028"));
        // An emulation-prevention byte (the 03 of 00 00 03) inside the SPS is skipped.
        let ed = [0, 0, 1, 0x67, 0x00, 0x00, 0x03, 0x01];
        assert_eq!(avc1_codecs(&ed).as_deref(), Some("avc1.000001"));
        // Too short to hold profile, constraints and level.
        assert_eq!(avc1_codecs(&[0, 0, 1, 0x67, 0x64]), None);
        assert_eq!(avc1_codecs(&[]), None);
    }

    #[test]
    fn aes_matches_known_vector() {
        // NIST SP 800-38A F.2.1 (CBC-AES128), first block, then one block of PKCS#7 padding.
        let key: [u8; 16] = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        let plain: [u8; 16] = [
            0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93,
            0x17, 0x2a,
        ];
        let dir = std::env::temp_dir().join(format!("lectern-aes-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.ts");
        fs::write(&p, plain).unwrap();
        encrypt_file_in_place(&p, &key, &iv).unwrap();
        let out = fs::read(&p).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(out.len(), 32);
        assert_eq!(
            &out[..16],
            &[
                0x76, 0x49, 0xab, 0xac, 0x81, 0x19, 0xb2, 0x46, 0xce, 0xe9, 0x8e, 0x9b, 0x12, 0xe9,
                0x19, 0x7d
            ]
        );
        let mut back = out.clone();
        decrypt_prefix(&key, &iv, &mut back[..20]).unwrap();
        assert_eq!(&back[..16], &plain, "the first block decrypts; a partial block is left");
        assert_eq!(&back[16..], &out[16..]);
    }
}
