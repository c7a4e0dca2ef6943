//! Lectern's transcoding engine. Pure media work: no database, no HTTP.

/// Initialise FFmpeg's libraries once per process and report their version.
pub fn ffmpeg_version() -> Result<String, ffmpeg_next::Error> {
    ffmpeg_next::init()?;
    let v = ffmpeg_next::util::version();
    Ok(format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff))
}
