//! First-bytes sniffing of uploads: refuse (415) what is clearly not a media container —
//! images, documents, archives, executables, text — before storing gigabytes of it. Anything
//! else goes on to the transcoder, which has the last word (an unknown or broken file fails
//! its job with a readable reason).

/// How many leading bytes [`verdict`] wants to see (fewer is fine for short bodies).
pub const SNIFF_LEN: usize = 64;

/// `Err(what it looks like)` when `head` is clearly not audio or video.
pub fn verdict(head: &[u8]) -> Result<(), &'static str> {
    const NOT_MEDIA: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF87a", "a GIF image"),
        (b"GIF89a", "a GIF image"),
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
        (b"Rar!", "a RAR archive"),
        (b"\x7fELF", "an executable"),
        (b"MZ", "a Windows executable"),
        (b"BZh", "a bzip2 archive"),
        (b"\xd0\xcf\x11\xe0", "an Office document"),
        // Lists of other files, not media: the transcoder would never open them either.
        (b"#EXTM3U", "a playlist (it only names other files)"),
        (b"ffconcat version", "an FFmpeg script (it only names other files)"),
    ];
    for (magic, what) in NOT_MEDIA {
        if head.starts_with(magic) {
            return Err(what);
        }
    }
    if head.len() >= 4 && &head[..4] == b"RIFF" && head.len() >= 12 && &head[8..12] == b"WEBP" {
        return Err("a WebP image");
    }
    // Text (HTML, JSON, CSV, a script…): no media container starts with printable text only.
    // Leading UTF-8 BOM or whitespace counts as text too.
    let sample = &head[..head.len().min(SNIFF_LEN)];
    if sample.len() >= 16
        && sample
            .iter()
            .all(|&b| b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err("text");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::verdict;

    #[test]
    fn media_containers_pass_and_documents_do_not() {
        assert!(verdict(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41").is_ok());
        assert!(verdict(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01").is_ok());
        assert!(verdict(b"RIFF\x00\x00\x00\x00AVI LIST").is_ok());
        assert!(verdict(&[0x47, 0x40, 0x00, 0x10, 0x00]).is_ok());
        assert!(verdict(b"ID3\x04\x00\x00\x00\x00\x00\x00").is_ok());
        assert_eq!(verdict(b"\x89PNG\r\n\x1a\n\x00\x00"), Err("a PNG image"));
        assert_eq!(verdict(b"%PDF-1.7\n%\xe2\xe3"), Err("a PDF document"));
        assert_eq!(verdict(b"<!doctype html><html><head><title>x</title>"), Err("text"));
        assert_eq!(verdict(b"{\"this\": \"is json, not a video\"}"), Err("text"));
        assert_eq!(
            verdict(b"#EXTM3U\n#\x01\x02\n#EXT-X-TARGETDURATION:10\nfile:/etc/x.ts\n"),
            Err("a playlist (it only names other files)")
        );
        assert!(verdict(b"ffconcat version 1.0\nfile '/etc/x.ts'\n").is_err());
    }
}
