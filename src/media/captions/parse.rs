//! Caption files: WebVTT and SRT read into cues, checked, and written back as WebVTT.
//!
//! What a player would choke on is refused with the line it is on: a file that is neither
//! format, a timing line that does not parse, a cue that ends before it starts or starts
//! before the previous one, or (given the video's duration) one that starts past the end.

use std::fmt::Write as _;

/// The largest caption file accepted.
pub const MAX_BYTES: usize = 5 * 1024 * 1024;

/// How far past the video's measured end a cue may run (players and encoders round).
const END_SLACK_MS: u64 = 1_000;

/// One cue: from `start_ms` to `end_ms`, WebVTT cue settings, and its text (lines joined by
/// `\n`, never empty, never holding a blank line or `-->`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    pub id: Option<String>,
    pub start_ms: u64,
    pub end_ms: u64,
    pub settings: String,
    pub text: String,
}

/// Why a caption file was refused: `line` (1-based) where it went wrong, if one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptionError {
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for CaptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn at(line: usize, message: impl Into<String>) -> CaptionError {
    CaptionError { line: Some(line), message: message.into() }
}

/// The two formats accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    WebVtt,
    Srt,
}

/// Read a caption file (either format, told apart by its content) into its cues, checked
/// against `duration_ms` when the video's length is known.
pub fn parse(bytes: &[u8], duration_ms: Option<u64>) -> Result<(Format, Vec<Cue>), CaptionError> {
    if bytes.len() > MAX_BYTES {
        return Err(CaptionError {
            line: None,
            message: format!("a caption file may be at most {} MB", MAX_BYTES / (1024 * 1024)),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        at(line, "the file is not UTF-8 text")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let first = lines.first().copied().unwrap_or("");
    let (format, cues) =
        if first == "WEBVTT" || first.starts_with("WEBVTT ") || first.starts_with("WEBVTT\t") {
            (Format::WebVtt, parse_vtt(&lines)?)
        } else if looks_like_srt(&lines) {
            (Format::Srt, parse_srt(&lines)?)
        } else {
            return Err(at(1, "not a WebVTT file (it must start with `WEBVTT`) nor an SRT file"));
        };
    if cues.is_empty() {
        return Err(CaptionError { line: None, message: "the file holds no cues".into() });
    }
    if let Some(duration) = duration_ms {
        for (cue, line) in &cues {
            if cue.start_ms >= duration || cue.end_ms > duration + END_SLACK_MS {
                return Err(at(
                    *line,
                    format!(
                        "the cue runs to {}, past the end of the video ({})",
                        vtt_time(cue.end_ms),
                        vtt_time(duration)
                    ),
                ));
            }
        }
    }
    Ok((format, cues.into_iter().map(|(c, _)| c).collect()))
}

/// The first non-blank line is a cue number and the next a timing line with a comma.
fn looks_like_srt(lines: &[&str]) -> bool {
    let mut it = lines.iter().skip_while(|l| l.trim().is_empty());
    let (Some(n), Some(t)) = (it.next(), it.next()) else { return false };
    n.trim().parse::<u64>().is_ok() && t.contains("-->")
}

/// `[hh:]mm:ss.ttt` (WebVTT) or `hh:mm:ss,ttt` (SRT, `sep` = ','), in milliseconds.
fn timestamp(s: &str, sep: char) -> Option<u64> {
    let (clock, frac) = s.split_once(sep)?;
    if frac.len() != 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parts: Vec<&str> = clock.split(':').collect();
    let num = |p: &str, max: Option<u64>| -> Option<u64> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: u64 = p.parse().ok()?;
        max.map_or(Some(v), |m| (v <= m).then_some(v))
    };
    let (h, m, sec) = match parts.as_slice() {
        [h, m, s] if m.len() == 2 && s.len() == 2 => {
            (num(h, None)?, num(m, Some(59))?, num(s, Some(59))?)
        }
        [m, s] if sep == '.' && m.len() == 2 && s.len() == 2 => {
            (0, num(m, Some(59))?, num(s, Some(59))?)
        }
        _ => return None,
    };
    let ms: u64 = frac.parse().ok()?;
    Some(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// `start --> end[ settings]`.
fn timing(line: &str, sep: char) -> Option<(u64, u64, String)> {
    let (start, rest) = line.split_once("-->")?;
    let start = timestamp(start.trim(), sep)?;
    let rest = rest.trim_start();
    let (end, settings) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let end = timestamp(end, sep)?;
    Some((start, end, settings.trim().to_string()))
}

fn checked(cue: &Cue, line: usize, previous_start: Option<u64>) -> Result<(), CaptionError> {
    if cue.end_ms <= cue.start_ms {
        return Err(at(line, "the cue ends before it starts"));
    }
    if previous_start.is_some_and(|p| cue.start_ms < p) {
        return Err(at(line, "the cue starts before the previous cue: cues must be in order"));
    }
    Ok(())
}

/// The blocks of `lines` from `from` on: runs of non-blank lines, each with the index of its
/// first line.
fn blocks<'a>(lines: &'a [&'a str], from: usize) -> impl Iterator<Item = (usize, &'a [&'a str])> {
    let mut i = from;
    std::iter::from_fn(move || {
        while i < lines.len() && lines[i].trim().is_empty() {
            i += 1;
        }
        if i >= lines.len() {
            return None;
        }
        let start = i;
        while i < lines.len() && !lines[i].trim().is_empty() {
            i += 1;
        }
        Some((start, &lines[start..i]))
    })
}

/// WebVTT: the header block, then blocks separated by blank lines; NOTE, STYLE and REGION
/// blocks are skipped (they are kept out of the segmented tracks).
fn parse_vtt(lines: &[&str]) -> Result<Vec<(Cue, usize)>, CaptionError> {
    let mut cues: Vec<(Cue, usize)> = Vec::new();
    // The header runs to the first blank line.
    let header_end = lines.iter().position(|l| l.trim().is_empty()).unwrap_or(lines.len());
    for (block_start, block) in blocks(lines, header_end) {
        let head = block[0];
        if head == "NOTE" || head.starts_with("NOTE ") || head.starts_with("NOTE\t") {
            continue;
        }
        if (head == "STYLE" || head == "REGION") && cues.is_empty() {
            continue;
        }
        let (id, timing_at) =
            if head.contains("-->") { (None, 0) } else { (Some(head.to_string()), 1) };
        let line_no = block_start + timing_at + 1;
        let Some(timing_line) = block.get(timing_at) else {
            let why = if head.contains("->") {
                "the cue timing is not `00:00:01.000 --> 00:00:04.000`"
            } else {
                "a cue identifier without a timing line after it"
            };
            return Err(at(block_start + 1, why));
        };
        // A mistyped arrow makes the timing line look like a cue identifier: name that line.
        let bad = if timing_at == 1 && head.contains("->") { block_start + 1 } else { line_no };
        let (start_ms, end_ms, settings) = timing(timing_line, '.')
            .ok_or_else(|| at(bad, "the cue timing is not `00:00:01.000 --> 00:00:04.000`"))?;
        let text = block[timing_at + 1..].join("\n");
        if text.contains("-->") {
            return Err(at(
                line_no + 1,
                "a cue's text holds `-->`; cues are separated by a blank line",
            ));
        }
        let cue = Cue { id, start_ms, end_ms, settings, text };
        checked(&cue, line_no, cues.last().map(|(c, _)| c.start_ms))?;
        if !cue.text.trim().is_empty() {
            cues.push((cue, line_no));
        }
    }
    Ok(cues)
}

/// SRT: numbered blocks `n`, `start --> end`, text lines; a blank line ends each.
fn parse_srt(lines: &[&str]) -> Result<Vec<(Cue, usize)>, CaptionError> {
    let mut cues: Vec<(Cue, usize)> = Vec::new();
    for (block_start, block) in blocks(lines, 0) {
        if block[0].trim().parse::<u64>().is_err() {
            return Err(at(block_start + 1, "an SRT cue starts with its number"));
        }
        let line_no = block_start + 2;
        let (start_ms, end_ms, _) = block
            .get(1)
            .and_then(|l| timing(l, ','))
            .ok_or_else(|| at(line_no, "the cue timing is not `00:00:01,000 --> 00:00:04,000`"))?;
        let text = block[2..].join("\n");
        let cue = Cue { id: None, start_ms, end_ms, settings: String::new(), text };
        checked(&cue, line_no, cues.last().map(|(c, _)| c.start_ms))?;
        if !cue.text.trim().is_empty() {
            cues.push((cue, line_no));
        }
    }
    Ok(cues)
}

/// `hh:mm:ss.ttt`.
pub fn vtt_time(ms: u64) -> String {
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// Write `cue` as a WebVTT cue block (with its trailing blank line).
pub fn write_cue(out: &mut String, cue: &Cue) {
    if let Some(id) = &cue.id {
        let _ = writeln!(out, "{id}");
    }
    let _ = write!(out, "{} --> {}", vtt_time(cue.start_ms), vtt_time(cue.end_ms));
    if !cue.settings.is_empty() {
        let _ = write!(out, " {}", cue.settings);
    }
    let _ = write!(out, "\n{}\n\n", cue.text);
}

/// The cues as one WebVTT file.
pub fn to_vtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for cue in cues {
        write_cue(&mut out, cue);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webvtt_and_srt_read_the_same() {
        let vtt = "WEBVTT - lecture 1\n\nNOTE made by hand\n\nintro\n00:00.500 --> 00:02.000 line:90%\n안녕하세요\n여러분\n\n00:00:03.000 --> 00:00:04.250\nWelcome\n";
        let srt = "\u{feff}1\r\n00:00:00,500 --> 00:00:02,000\r\n안녕하세요\r\n여러분\r\n\r\n2\r\n00:00:03,000 --> 00:00:04,250\r\nWelcome\r\n";
        let (f1, a) = parse(vtt.as_bytes(), Some(10_000)).unwrap();
        let (f2, b) = parse(srt.as_bytes(), Some(10_000)).unwrap();
        assert_eq!((f1, f2), (Format::WebVtt, Format::Srt));
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].start_ms, a[0].end_ms, a[0].text.as_str()),
            (500, 2000, "안녕하세요\n여러분")
        );
        assert_eq!(a[0].settings, "line:90%");
        assert_eq!(a[0].id.as_deref(), Some("intro"));
        assert_eq!(
            b.iter().map(|c| (c.start_ms, c.end_ms, &c.text)).collect::<Vec<_>>(),
            a.iter().map(|c| (c.start_ms, c.end_ms, &c.text)).collect::<Vec<_>>()
        );
        let again = parse(to_vtt(&a).as_bytes(), None).unwrap().1;
        assert_eq!(again, a);
    }

    #[test]
    fn bad_files_name_the_line() {
        let cases: &[(&str, Option<usize>, &str)] = &[
            ("hello there\nthis is text\n", Some(1), "not a WebVTT"),
            ("WEBVTT\n\n00:00:01.000 -> 00:00:02.000\nx\n", Some(3), "timing"),
            ("WEBVTT\n\n00:00:05.000 --> 00:00:06.000\na\n\n00:00:01.000 --> 00:00:02.000\nb\n", Some(6), "in order"),
            ("WEBVTT\n\n00:00:02.000 --> 00:00:01.000\na\n", Some(3), "ends before"),
            ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\na\n\n00:00:12.000 --> 00:00:13.000\nlate\n", Some(6), "past the end"),
            ("1\n00:00:01,000 --> 00:00:02,000\na\n\nx\n00:00:03,000 --> 00:00:04,000\nb\n", Some(5), "number"),
            ("WEBVTT\n\n00:00:01.000 --> 00:61:02.000\na\n", Some(3), "timing"),
            ("WEBVTT\n", None, "no cues"),
        ];
        for (text, line, words) in cases {
            let e = parse(text.as_bytes(), Some(10_000)).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.to_string().contains(words), "{text:?}: {e}");
        }
        let e = parse(&[b'W', 0xff, b'\n'], None).unwrap_err();
        assert!(e.to_string().contains("UTF-8"));
        assert!(parse(&vec![b' '; MAX_BYTES + 1], None).unwrap_err().to_string().contains("5 MB"));
    }
}
