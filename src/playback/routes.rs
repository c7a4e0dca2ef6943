//! The playback session endpoint and the segment/range server under `/hls/`.

use crate::types::{LectureId, VideoId};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::cache::{read_whole, CacheMiss, CachedObject};
use super::range::{decide, http_date, Answer, Validators};
use super::subtitles::{self, CaptionSet};
use super::tokens::PlaybackTokenError;
use super::watermark::{self, MARKED_SUFFIX};
use super::{PlaybackSession, ReadyVideo};
use crate::error::Error;
use crate::http::error::{ApiResult, ErrorBody};

use crate::app::AppState;
use crate::http::base_url;
use crate::http::extract::{Auth, Path, Query};
use crate::storage::{content_type, ObjectMeta, StorageError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/lectures/{lecture_id}/playback", post(start_playback))
        .route("/hls/{video_id}/{*rest}", get(serve_hls))
}

/// Start watching a lecture: checks that the caller may (enrolled, free preview, owner or
/// admin) and returns a signed, short-lived token and the master playlist URL carrying it.
#[utoipa::path(post, path = "/api/v1/lectures/{lecture_id}/playback", tag = "playback",
    params(("lecture_id" = i64, Path)), security((), ("bearer" = [])),
    responses((status = 200, body = PlaybackSession), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "video not ready")))]
pub async fn start_playback(
    State(st): State<AppState>,
    caller: Option<Auth>,
    Path(lecture_id): Path<LectureId>,
    headers: HeaderMap,
) -> ApiResult<axum::Json<PlaybackSession>> {
    let base = base_url(&st.cfg, &headers);
    let session = super::start_session(
        &st.db,
        &st.playback,
        caller.as_ref().map(|a| &a.0),
        lecture_id,
        &base,
    )
    .await?;
    Ok(axum::Json(session))
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
    /// Which repetition of the key line a key URI is (`part=N`, see `LECTERN_KEY_REFRESH_SECS`).
    pub part: Option<u32>,
}

/// What a request under `/hls/{video}/` asks for.
#[derive(Debug, PartialEq, Eq)]
enum HlsObject<'a> {
    Master,
    Media {
        rendition: &'a str,
    },
    Segment {
        rendition: &'a str,
        name: &'a str,
    },
    Key,
    /// Poster, sprite, thumbnail track.
    Asset(&'a str),
    /// The WebVTT chapters track (`chapters.vtt`).
    Chapters,
    /// A caption language's media playlist (`subs/{lang}/index.m3u8`).
    Subtitles {
        lang: &'a str,
    },
    /// One of its WebVTT segments (`subs/{lang}/seg_NNNNN.vtt`).
    SubtitleSegment {
        lang: &'a str,
        index: usize,
    },
}

fn plain(seg: &str, max: usize) -> bool {
    !seg.is_empty()
        && seg.len() <= max
        && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Map the path below `/hls/{video}/` to an object, refusing anything else.
fn classify(rest: &str) -> Option<HlsObject<'_>> {
    if let Some(sub) = rest.strip_prefix("subs/") {
        let (lang, name) = sub.split_once('/')?;
        if !plain(lang, 35) || name.contains('/') {
            return None;
        }
        if name == "index.m3u8" {
            return Some(HlsObject::Subtitles { lang });
        }
        let digits = name.strip_prefix("seg_")?.strip_suffix(".vtt")?;
        if digits.len() != 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return Some(HlsObject::SubtitleSegment { lang, index: digits.parse().ok()? });
    }
    match rest.split_once('/') {
        None if rest == "master.m3u8" => Some(HlsObject::Master),
        None if rest == "key" => Some(HlsObject::Key),
        None if rest == "chapters.vtt" => Some(HlsObject::Chapters),
        None if matches!(rest, "poster.jpg" | "sprite.jpg" | "thumbnails.vtt") => {
            Some(HlsObject::Asset(rest))
        }
        Some((rendition, "index.m3u8")) if plain(rendition, 16) => {
            Some(HlsObject::Media { rendition })
        }
        Some((rendition, name)) if plain(rendition, 16) && !name.contains('/') => {
            let (stem, ext) = name.rsplit_once('.')?;
            (plain(stem, 64) && matches!(ext, "ts" | "m4s" | "mp4"))
                .then_some(HlsObject::Segment { rendition, name })
        }
        _ => None,
    }
}

fn token_error(e: PlaybackTokenError) -> Error {
    match e {
        PlaybackTokenError::Missing => Error::unauthenticated("missing_token", e.to_string()),
        PlaybackTokenError::Expired | PlaybackTokenError::Invalid => {
            Error::unauthenticated("invalid_token", e.to_string())
        }
        PlaybackTokenError::WrongVideo => Error::denied("wrong_video", e.to_string()),
    }
}

const NO_STORE: &str = "private, no-store";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const PRIVATE_CACHE: &str = "private, max-age=3600";

/// `GET`/`HEAD /hls/{video}/…`: the segment/range server. `path` is `master.m3u8`,
/// `{rendition}/index.m3u8`, `{rendition}/seg_NNNNN.ts`, `key`, `poster.jpg`, `sprite.jpg`,
/// `thumbnails.vtt`, `chapters.vtt` or a caption language's `subs/{lang}/…`. Playlists come
/// back rewritten so every child URI carries the token; every object supports `Range` (206/416), `If-Range`, `ETag`/`If-None-Match` and
/// `Last-Modified`/`If-Modified-Since` (304), and `HEAD`. Segments of encrypted videos need no
/// token and are `public, immutable`; everything else needs `?token=` (401 missing/invalid or
/// expired, 403 for another video).
#[utoipa::path(get, path = "/hls/{video_id}/{path}", tag = "playback",
    params(("video_id" = i64, Path), ("path" = String, Path, description = "object below the video"),
           ("token" = Option<String>, Query, description = "playback token")),
    responses((status = 200, description = "the object"), (status = 206, description = "a byte range"),
              (status = 304), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 416)))]
pub async fn serve_hls(
    State(st): State<AppState>,
    Path((video, rest)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    req: Request,
) -> Response {
    match serve(&st, &video, &rest, &q, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    st: &AppState,
    video: &str,
    rest: &str,
    q: &TokenQuery,
    req: Request,
) -> ApiResult<Response> {
    let token = q.token.as_deref();
    // Encoded separators or dots never name an object; refuse before anything else.
    let encoded_separator = req.uri().path().as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!((w[1], w[2].to_ascii_lowercase()), (b'2', b'f' | b'e') | (b'5', b'c'))
    });
    if encoded_separator
        || req.uri().path().contains('\\')
        || rest.split('/').any(|s| s == ".." || s == ".")
    {
        return Err(Error::malformed("invalid_path", "the path is not valid"));
    }
    let video_id: VideoId =
        video.parse().ok().filter(|v: &VideoId| v.get() > 0).ok_or(Error::not_found("video"))?;
    let object = classify(rest).ok_or(Error::not_found("object"))?;
    let head = req.method() == Method::HEAD;
    let headers = req.headers();

    // Public encrypted segments need no token; everything else does, checked before the
    // video is even looked up.
    let needs_token = !matches!(object, HlsObject::Segment { .. });
    let mut session = None;
    if needs_token {
        let claims = st.playback.keys.verify(token, video_id).map_err(token_error)?;
        session = claims.sid.clone();
        if let Some(sid) = claims.sid.as_deref() {
            let t = crate::db::now();
            match object {
                HlsObject::Key => {
                    let part = q.part.unwrap_or(0);
                    super::sessions::key_fetched(&st.db, &st.playback.limits, sid, part, t).await?
                }
                HlsObject::Master | HlsObject::Media { .. } | HlsObject::Subtitles { .. } => {
                    st.playback.beats.playlist_fetched(&st.db, sid, t).await?
                }
                _ => {}
            }
        }
    }
    let ready =
        st.playback.ready_video(&st.db, video_id).await?.ok_or(Error::not_found("video"))?;
    let encrypted = ready.key.is_some();
    if !needs_token && !encrypted {
        st.playback.keys.verify(token, video_id).map_err(token_error)?;
    }

    let kind = match object {
        HlsObject::Key => "key",
        HlsObject::Master | HlsObject::Media { .. } | HlsObject::Subtitles { .. } => "playlist",
        HlsObject::SubtitleSegment { .. } | HlsObject::Chapters => "subtitles",
        HlsObject::Segment { .. } => "segment",
        HlsObject::Asset(_) => "asset",
    };
    let resp =
        respond(st, video_id, &ready, object, token, session.as_deref(), headers, head).await?;
    if !head {
        let sent = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        metrics::counter!("lectern_hls_bytes_total", "kind" => kind).increment(sent);
    }
    Ok(resp)
}

/// The answer for `object` of the `ready` video, to a caller whose token (if it needed one)
/// was verified, naming playback `session`.
#[allow(clippy::too_many_arguments)]
async fn respond(
    st: &AppState,
    video_id: VideoId,
    ready: &ReadyVideo,
    object: HlsObject<'_>,
    token: Option<&str>,
    session: Option<&str>,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult<Response> {
    let encrypted = ready.key.is_some();
    match object {
        HlsObject::Key => {
            let key = ready.key.ok_or(Error::not_found("key"))?;
            let meta = ObjectMeta {
                size: 16,
                last_modified: 0,
                etag: hex::encode(Sha256::digest(key))[..32].to_string(),
            };
            Ok(respond_bytes(
                headers,
                head,
                Bytes::copy_from_slice(&key),
                &meta,
                "application/octet-stream",
                NO_STORE,
            ))
        }
        HlsObject::Master => {
            let token = token.expect("verified");
            let captions = caption_set(st, video_id, ready).await?;
            let extra = Extra::Master(captions.as_deref().filter(|c| !c.tracks.is_empty()));
            rewritten(st, ready, "master.m3u8", token, encrypted, extra, headers, head).await
        }
        HlsObject::Subtitles { lang } => {
            let token = token.expect("verified");
            let set =
                caption_set(st, video_id, ready).await?.ok_or(Error::not_found("captions"))?;
            set.track(lang).ok_or(Error::not_found("captions"))?;
            let body = Bytes::from(subtitles::subtitle_playlist(&set, token));
            Ok(generated(headers, head, body, set.last_modified(), "application/vnd.apple.mpegurl"))
        }
        HlsObject::SubtitleSegment { lang, index } => {
            let set =
                caption_set(st, video_id, ready).await?.ok_or(Error::not_found("captions"))?;
            let track = set.track(lang).ok_or(Error::not_found("captions"))?;
            let text = subtitles::subtitle_segment(&set, &track.cues, index)
                .ok_or(Error::not_found("object"))?;
            Ok(generated(headers, head, Bytes::from(text), set.last_modified(), "text/vtt"))
        }
        HlsObject::Media { rendition }
            if ready.watermark.is_some() && rendition.ends_with(MARKED_SUFFIX) =>
        {
            // The marked twins are only ever served segment by segment, as a session's code says.
            Err(Error::not_found("object"))
        }
        HlsObject::Media { rendition } => {
            let token = token.expect("verified");
            let variants = match (ready.watermark.as_ref().filter(|_| !ready.live), session) {
                (Some(names), Some(sid)) => Variants::Chosen { rendition, session: sid, names },
                _ => Variants::Plain,
            };
            let rel = format!("{rendition}/index.m3u8");
            rewritten(st, ready, &rel, token, encrypted, Extra::Media(variants), headers, head)
                .await
        }
        HlsObject::Chapters => {
            let body = Bytes::from(crate::media::chapters::vtt_of_video(&st.db, video_id).await?);
            Ok(generated(headers, head, body, 0, "text/vtt"))
        }
        HlsObject::Asset(name) if name.ends_with(".vtt") => {
            let token = token.expect("verified");
            let stored = read_small(st, ready, name).await?;
            let text = String::from_utf8_lossy(&stored.body)
                .replace("sprite.jpg#", &format!("sprite.jpg?token={token}#"));
            let body = Bytes::from(text);
            let meta = ObjectMeta {
                size: body.len() as u64,
                etag: digest_etag(&body),
                ..stored.meta.clone()
            };
            Ok(respond_bytes(headers, head, body, &meta, content_type(name), NO_STORE))
        }
        HlsObject::Asset(name) => {
            stream_object(st, ready, name, headers, head, PRIVATE_CACHE).await
        }
        HlsObject::Segment { rendition, name } => {
            let cache = if encrypted { IMMUTABLE } else { PRIVATE_CACHE };
            stream_object(st, ready, &format!("{rendition}/{name}"), headers, head, cache).await
        }
    }
}

/// What a rewritten playlist gets beyond the token.
enum Extra<'a> {
    /// A master playlist: the lecture's caption tracks, if it has any.
    Master(Option<&'a CaptionSet>),
    /// A media playlist: which variant each segment comes from.
    Media(Variants<'a>),
}

/// The segments of a media playlist: as stored, or chosen per segment by a session's code.
enum Variants<'a> {
    Plain,
    Chosen { rendition: &'a str, session: &'a str, names: &'a [u8; 16] },
}

/// A playlist or track made on request from `set`: validated by its bytes, never cached.
fn generated(
    headers: &HeaderMap,
    head: bool,
    body: Bytes,
    last_modified: i64,
    ctype: &'static str,
) -> Response {
    let meta = ObjectMeta { size: body.len() as u64, etag: digest_etag(&body), last_modified };
    respond_bytes(headers, head, body, &meta, ctype, NO_STORE)
}

/// The captions of ready video `id` with its segment timing, from this node's cache (reread
/// after [`subtitles::TTL`]) or the database and the store. `None` while it is still being
/// transcoded: its segments are not all known yet.
async fn caption_set(
    st: &AppState,
    id: VideoId,
    v: &ReadyVideo,
) -> ApiResult<Option<Arc<CaptionSet>>> {
    if v.live {
        return Ok(None);
    }
    let previous = st.playback.captions.lock().expect("captions lock").get(&id).cloned();
    if let Some(set) = previous.as_ref().filter(|s| s.looked_up.elapsed() < subtitles::TTL) {
        return Ok(Some(set.clone()));
    }
    let tracks = crate::media::captions::of_video(&st.db, id).await?;
    // Segment timing never changes for a ready video: keep what was read before.
    let (segments, mpegts) = match previous {
        Some(p) if !p.segments.is_empty() => (p.segments.clone(), p.mpegts),
        _ if tracks.is_empty() => (Vec::new(), 0),
        _ => segment_timing(st, v).await?,
    };
    let set =
        Arc::new(CaptionSet { tracks, segments, mpegts, looked_up: std::time::Instant::now() });
    let mut cache = st.playback.captions.lock().expect("captions lock");
    if cache.len() >= 10_000 {
        cache.clear();
    }
    cache.insert(id, set.clone());
    Ok(Some(set))
}

/// Segment durations of `v`'s first rendition and the MPEG-TS time of its first frame.
async fn segment_timing(st: &AppState, v: &ReadyVideo) -> ApiResult<(Vec<f64>, u64)> {
    let broken =
        |what: &str| Error::internal(anyhow::anyhow!("{what} of {} does not parse", v.prefix));
    let master = read_small(st, v, "master.m3u8").await?;
    let variant =
        subtitles::first_variant(&master.body).ok_or_else(|| broken("the master playlist"))?;
    let media = read_small(st, v, &variant).await?;
    let (segments, first, iv) =
        subtitles::segment_timing(&media.body).ok_or_else(|| broken("the media playlist"))?;
    let dir = variant.rsplit_once('/').map_or("", |(d, _)| d);
    let key =
        v.prefix.join(&format!("{dir}/{first}")).map_err(|_| broken("the first segment's name"))?;
    let got = st.storage.get(&key, None).await.map_err(storage_error)?;
    let mut opening = Vec::new();
    let mut body = got.body;
    while opening.len() < 64 * 1024 {
        match body.next().await {
            Some(chunk) => opening.extend_from_slice(
                &chunk.map_err(|e| Error::internal(anyhow::anyhow!("reading {key}: {e}")))?,
            ),
            None => break,
        }
    }
    let mpegts = subtitles::mpegts_of(v, &opening, iv).unwrap_or_else(|| {
        tracing::warn!(%key, "no timestamp in the first segment; captions map to 0");
        0
    });
    Ok((segments, mpegts))
}

fn digest_etag(b: &[u8]) -> String {
    hex::encode(&Sha256::digest(b)[..16])
}

fn storage_error(e: StorageError) -> Error {
    match e {
        StorageError::NotFound(_) | StorageError::InvalidKey(_) => Error::not_found("object"),
        other => Error::internal(anyhow::Error::new(other).context("reading a stored object")),
    }
}

/// Read a small stored object (a playlist, a track) whole: from the cache, or the store. The
/// playlists of a video still being transcoded grow under the same key, so they always come
/// from the store.
async fn read_small(st: &AppState, v: &ReadyVideo, rel: &str) -> ApiResult<Arc<CachedObject>> {
    const PLAUSIBLE: u64 = 4 * 1024 * 1024;
    let key = v.prefix.join(rel).map_err(|_| Error::not_found("object"))?;
    let cached = match v.live && rel.ends_with(".m3u8") {
        true => Err(CacheMiss::Uncacheable),
        false => st.playback.objects.get(&st.storage, &key).await,
    };
    let read = match cached {
        Err(CacheMiss::Uncacheable) => read_whole(&st.storage, &key, PLAUSIBLE).await.map(Arc::new),
        cached => cached,
    };
    read.map_err(|e| match e {
        CacheMiss::Uncacheable => {
            Error::internal(anyhow::anyhow!("playlist {key} is implausibly large"))
        }
        other => cache_error(other),
    })
}

fn cache_error(e: CacheMiss) -> Error {
    match e {
        CacheMiss::NotFound => Error::not_found("object"),
        other => Error::internal(anyhow::anyhow!("reading a stored object: {other}")),
    }
}

/// The stored playlist `rel` rewritten for `token`; with `captions` (a master playlist's), its
/// subtitle group added.
#[allow(clippy::too_many_arguments)]
async fn rewritten(
    st: &AppState,
    v: &ReadyVideo,
    rel: &str,
    token: &str,
    public_segments: bool,
    extra: Extra<'_>,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult<Response> {
    let stored = read_small(st, v, rel).await?;
    let template = stored
        .template(public_segments, st.playback.limits.key_refresh_secs)
        .ok_or_else(|| Error::internal(anyhow::anyhow!("stored playlist {rel} does not parse")))?;
    let body = template.render(token);
    let (body, etag, last_modified) = match extra {
        Extra::Master(None) | Extra::Media(Variants::Plain) => {
            (body, template.etag(token), stored.meta.last_modified)
        }
        Extra::Media(Variants::Chosen { rendition, session, names }) => {
            let text = watermark::choose_variants(
                &String::from_utf8_lossy(&body),
                rendition,
                session,
                names,
            );
            let etag = digest_etag(format!("{}{session}", template.etag(token)).as_bytes());
            (Bytes::from(text), etag, stored.meta.last_modified)
        }
        Extra::Master(Some(set)) => {
            let text =
                subtitles::master_with_subtitles(&String::from_utf8_lossy(&body), set, token);
            (
                Bytes::from(text),
                digest_etag(format!("{}{}", template.etag(token), set.version()).as_bytes()),
                stored.meta.last_modified.max(set.last_modified()),
            )
        }
    };
    let meta = ObjectMeta { size: body.len() as u64, etag, last_modified };
    Ok(respond_bytes(headers, head, body, &meta, "application/vnd.apple.mpegurl", NO_STORE))
}

fn base_headers(resp: &mut Response, meta: &ObjectMeta, ctype: &'static str, cache: &'static str) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, HeaderValue::from_str(&format!("\"{}\"", meta.etag)).expect("etag"));
    h.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&http_date(meta.last_modified)).expect("date"),
    );
}

/// A response for `answer`, with the body (or the range of it) from `body_for`.
fn shaped(
    answer: &Answer,
    meta: &ObjectMeta,
    ctype: &'static str,
    cache: &'static str,
    head: bool,
    body: Option<Body>,
) -> Response {
    let (status, len, range) = match answer {
        Answer::NotModified => (StatusCode::NOT_MODIFIED, None, None),
        Answer::Full => (StatusCode::OK, Some(meta.size), None),
        Answer::Partial(r) => (StatusCode::PARTIAL_CONTENT, Some(r.end - r.start), Some(r.clone())),
        Answer::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, Some(0), None),
    };
    let mut resp =
        Response::new(if head { Body::empty() } else { body.unwrap_or_else(Body::empty) });
    *resp.status_mut() = status;
    base_headers(&mut resp, meta, ctype, cache);
    let h = resp.headers_mut();
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(r) = range {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.end - 1, meta.size))
                .expect("range"),
        );
    }
    if *answer == Answer::Unsatisfiable {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes */{}", meta.size)).expect("range"),
        );
        h.remove(header::CACHE_CONTROL);
    }
    resp
}

fn respond_bytes(
    headers: &HeaderMap,
    head: bool,
    body: Bytes,
    meta: &ObjectMeta,
    ctype: &'static str,
    cache: &'static str,
) -> Response {
    let answer = decide(
        headers,
        &Validators { len: meta.size, etag: &meta.etag, last_modified: meta.last_modified },
    );
    let part = match &answer {
        Answer::Full => Some(Body::from(body)),
        Answer::Partial(r) => Some(Body::from(body.slice(r.start as usize..r.end as usize))),
        _ => None,
    };
    shaped(&answer, meta, ctype, cache, head, part)
}

/// Serve a stored object (or the requested range of it): from the origin shield when it fits
/// there, else streamed from the store without holding it in memory.
///
/// A streamed whole object costs one read: it is opened once and its metadata decides the
/// answer. Only a range request reopens it at the right offset.
async fn stream_object(
    st: &AppState,
    v: &ReadyVideo,
    rel: &str,
    headers: &HeaderMap,
    head: bool,
    cache: &'static str,
) -> ApiResult<Response> {
    let key = v.prefix.join(rel).map_err(|_| Error::not_found("object"))?;
    match st.playback.objects.get(&st.storage, &key).await {
        Ok(hit) => {
            return Ok(respond_bytes(
                headers,
                head,
                hit.body.clone(),
                &hit.meta,
                content_type(rel),
                cache,
            ))
        }
        Err(CacheMiss::Uncacheable) => {}
        Err(other) => return Err(cache_error(other)),
    }
    let whole = st.storage.get(&key, None).await.map_err(storage_error)?;
    let meta = whole.meta.clone();
    let answer = decide(
        headers,
        &Validators { len: meta.size, etag: &meta.etag, last_modified: meta.last_modified },
    );
    let body = match (&answer, head) {
        (Answer::Full, false) => Some(Body::from_stream(whole.body)),
        (Answer::Partial(r), false) => {
            drop(whole);
            let got = st.storage.get(&key, Some(r.clone())).await.map_err(storage_error)?;
            Some(Body::from_stream(got.body))
        }
        _ => None,
    };
    Ok(shaped(&answer, &meta, content_type(rel), cache, head, body))
}

#[cfg(test)]
mod tests {
    use super::{classify, HlsObject};

    #[test]
    fn only_known_objects_are_served() {
        assert_eq!(classify("master.m3u8"), Some(HlsObject::Master));
        assert_eq!(classify("720p/index.m3u8"), Some(HlsObject::Media { rendition: "720p" }));
        assert_eq!(
            classify("720p/seg_00001.ts"),
            Some(HlsObject::Segment { rendition: "720p", name: "seg_00001.ts" })
        );
        for bad in [
            "../source",
            "720p/../../source",
            "source",
            "720p/seg.exe",
            "a/b/c.ts",
            "",
            "720p/",
            "/etc/passwd",
            "720p/.ts",
        ] {
            assert_eq!(classify(bad), None, "{bad}");
        }
    }
}
