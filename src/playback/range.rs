//! HTTP range and conditional-request semantics (RFC 9110 §13–14), as pure functions of the
//! request headers and the object's length, ETag and modification time.

use std::ops::Range;

use axum::http::{header, HeaderMap};

/// What to send for a GET or HEAD of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 304: the client's copy is current.
    NotModified,
    /// 200 with the whole object.
    Full,
    /// 206 with this byte range.
    Partial(Range<u64>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// The object's validators.
#[derive(Debug, Clone)]
pub struct Validators<'a> {
    pub len: u64,
    /// Without quotes.
    pub etag: &'a str,
    /// Unix seconds.
    pub last_modified: i64,
}

/// Decide the answer from `If-None-Match`, `If-Modified-Since`, `Range` and `If-Range`.
pub fn decide(headers: &HeaderMap, v: &Validators<'_>) -> Answer {
    let get = |name| headers.get(name).and_then(|h: &axum::http::HeaderValue| h.to_str().ok());
    if let Some(inm) = get(header::IF_NONE_MATCH) {
        if etag_list_matches(inm, v.etag) {
            return Answer::NotModified;
        }
    } else if let Some(ims) = get(header::IF_MODIFIED_SINCE).and_then(parse_http_date) {
        if v.last_modified <= ims {
            return Answer::NotModified;
        }
    }
    let Some(range) = get(header::RANGE) else { return Answer::Full };
    if let Some(if_range) = get(header::IF_RANGE) {
        let current = if if_range.starts_with('"') || if_range.starts_with("W/") {
            // Strong comparison: a weak tag never matches.
            !if_range.starts_with("W/") && if_range.trim_matches('"') == v.etag
        } else {
            parse_http_date(if_range) == Some(v.last_modified)
        };
        if !current {
            return Answer::Full;
        }
    }
    match parse_range(range, v.len) {
        Some(Ok(r)) => Answer::Partial(r),
        Some(Err(())) => Answer::Unsatisfiable,
        None => Answer::Full,
    }
}

/// `None` when the header is to be ignored (malformed, another unit, several ranges);
/// `Some(Err)` when unsatisfiable; otherwise the range, clamped to the object.
pub fn parse_range(header: &str, len: u64) -> Option<Result<Range<u64>, ()>> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None; // several ranges: we may answer with the whole object
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if first.is_empty() {
        let suffix = num(last)?;
        if suffix == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok(len.saturating_sub(suffix)..len));
    }
    let start = num(first)?;
    let end_inclusive = if last.is_empty() { None } else { Some(num(last)?) };
    if end_inclusive.is_some_and(|e| e < start) {
        return None; // invalid: ignore
    }
    if start >= len {
        return Some(Err(()));
    }
    let end = end_inclusive.map_or(len, |e| (e + 1).min(len));
    Some(Ok(start..end))
}

/// Does an `If-None-Match` list match `etag` (weak comparison)?
fn etag_list_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == etag)
}

/// Unix seconds of an HTTP date: an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), or one
/// of the two obsolete forms RFC 9110 says recipients accept.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let at = httpdate::parse_http_date(s.trim()).ok()?;
    Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Unix seconds as an IMF-fixdate.
pub fn http_date(ts: i64) -> String {
    // httpdate formats into a fixed buffer (chrono's strftime parses its pattern every call,
    // and every segment answer carries a Last-Modified).
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts.max(0) as u64);
    httpdate::fmt_http_date(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    const V: Validators<'static> =
        Validators { len: 1000, etag: "abc", last_modified: 1_700_000_000 };

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Ok(0..100)));
        assert_eq!(parse_range("bytes=900-", 1000), Some(Ok(900..1000)));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Ok(900..1000)));
        assert_eq!(parse_range("bytes=-5000", 1000), Some(Ok(0..1000)));
        assert_eq!(parse_range("bytes=990-5000", 1000), Some(Ok(990..1000)));
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=a-b", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("bytes=0-0", 0), Some(Err(())));
    }

    #[test]
    fn conditionals_pick_304_200_206_or_416() {
        assert_eq!(decide(&h(&[("if-none-match", "\"abc\"")]), &V), Answer::NotModified);
        assert_eq!(decide(&h(&[("if-none-match", "W/\"abc\", \"x\"")]), &V), Answer::NotModified);
        assert_eq!(decide(&h(&[("if-none-match", "\"old\"")]), &V), Answer::Full);
        let date = http_date(V.last_modified);
        assert_eq!(decide(&h(&[("if-modified-since", &date)]), &V), Answer::NotModified);
        assert_eq!(
            decide(&h(&[("if-modified-since", &http_date(V.last_modified - 10))]), &V),
            Answer::Full
        );
        assert_eq!(decide(&h(&[("range", "bytes=10-19")]), &V), Answer::Partial(10..20));
        assert_eq!(
            decide(&h(&[("range", "bytes=10-19"), ("if-range", "\"abc\"")]), &V),
            Answer::Partial(10..20)
        );
        assert_eq!(
            decide(&h(&[("range", "bytes=10-19"), ("if-range", "\"old\"")]), &V),
            Answer::Full
        );
        assert_eq!(
            decide(&h(&[("range", "bytes=10-19"), ("if-range", "W/\"abc\"")]), &V),
            Answer::Full
        );
        assert_eq!(
            decide(&h(&[("range", "bytes=10-19"), ("if-range", &date)]), &V),
            Answer::Partial(10..20)
        );
        assert_eq!(decide(&h(&[("range", "bytes=5000-")]), &V), Answer::Unsatisfiable);
        assert_eq!(parse_http_date(&date), Some(V.last_modified));
    }
}
