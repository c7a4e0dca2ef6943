//! A short-lived in-process cache of public catalog reads, with `ETag` and
//! `Cache-Control: public` so browsers and a CDN can keep them too.
//!
//! The course list, search, course pages, categories, reviews and comments are what every
//! visitor asks for and what changes seldom. A `GET` of one of those routes is answered from
//! memory — by anyone for the list, search and categories, which are the same for every
//! caller; signed out (no `Authorization`, no cookie) for the rest, whose answers say things
//! about the caller — when this process produced the same
//! answer less than `catalog_cache_secs` ago and nothing has changed since *on this process*:
//! every request with a method that may write (POST, PUT, PATCH, DELETE) moves the cache to a
//! new generation, and answers of an older generation are never served. So a writer reading
//! its own change through this node sees it at once; changes made on other nodes, by the
//! transcoding workers or by the payment reconciler show within `catalog_cache_secs` (the same
//! bound a CDN honouring `max-age` gives).
//!
//! A generation is taken *before* an answer is computed, so an answer computed while a write
//! ran is stored under the old generation and never served after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::app::AppState;

/// Most bytes of answers kept.
const CAPACITY_BYTES: u64 = 64 * 1024 * 1024;
/// Largest answer kept; larger ones are computed every time.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// One cached answer.
struct Answer {
    generation: u64,
    etag: HeaderValue,
    body: Bytes,
}

/// The cache, one per process; off when its lifetime is zero.
pub struct PublicCache {
    answers: Option<moka::future::Cache<String, Arc<Answer>>>,
    max_age: HeaderValue,
    generation: AtomicU64,
}

impl PublicCache {
    /// A cache whose answers live `secs` seconds; 0 turns it off.
    pub fn new(secs: u64) -> PublicCache {
        let answers = (secs > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(CAPACITY_BYTES)
                .weigher(|key: &String, a: &Arc<Answer>| {
                    u32::try_from(key.len() + a.body.len() + 96).unwrap_or(u32::MAX)
                })
                .time_to_live(Duration::from_secs(secs))
                .build()
        });
        let max_age = HeaderValue::try_from(format!("public, max-age={secs}")).expect("ascii");
        PublicCache { answers, max_age, generation: AtomicU64::new(0) }
    }

    /// Something may have changed: no answer computed before now is served again.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn current(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// The middleware: serve, fill or invalidate the cache (see the module documentation).
pub async fn public_cache(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let cache = &st.public_cache;
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let resp = next.run(req).await;
        cache.invalidate();
        return resp;
    }
    let (Some(answers), Some(audience)) = (&cache.answers, audience(&req)) else {
        return next.run(req).await;
    };
    let key = req.uri().to_string();
    let generation = cache.current();
    if let Some(hit) = answers.get(&key).await.filter(|a| a.generation == generation) {
        return answer(&hit, &cache.max_age, audience, req.headers());
    }
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    let resp = next.run(req).await;
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let small = http_body::Body::size_hint(resp.body())
        .exact()
        .is_some_and(|n| n <= MAX_ANSWER_BYTES as u64);
    if !small {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let body = match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
        Ok(body) => body,
        // A body that failed midway: the client hears of it as it would have without us.
        Err(e) => return crate::error::Error::internal(e).into_response(),
    };
    let fresh = Arc::new(Answer { generation, etag: etag(&body), body });
    answers.insert(key, fresh.clone()).await;
    let mut headers = HeaderMap::new();
    if let Some(v) = if_none_match {
        headers.insert(header::IF_NONE_MATCH, v);
    }
    let mut out = answer(&fresh, &cache.max_age, audience, &headers);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            out.headers_mut().entry(name).or_insert_with(|| value.clone());
        }
    }
    out
}

/// Who may be served an answer from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// The answer is the same for every caller (the course list, search, categories).
    Everyone,
    /// The answer depends on who asks (a course page says whether you are enrolled): only
    /// anonymous callers share it.
    Anonymous,
}

/// Whether `req` is a GET of a public catalog route, and for whom.
fn audience(req: &Request) -> Option<Audience> {
    if req.method() != Method::GET {
        return None;
    }
    let id = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let route = match req.uri().path().strip_prefix("/api/v1/")? {
        "courses" | "categories" => Audience::Everyone,
        rest => match rest.strip_prefix("courses/")?.split_once('/') {
            None if id(&rest["courses/".len()..]) => Audience::Anonymous,
            Some((course, "reviews" | "comments")) if id(course) => Audience::Anonymous,
            _ => return None,
        },
    };
    let signed_in = req.headers().contains_key(header::AUTHORIZATION)
        || req.headers().contains_key(header::COOKIE);
    (route == Audience::Everyone || !signed_in).then_some(route)
}

/// `a` as a response, or 304 when the client already holds it.
fn answer(a: &Answer, max_age: &HeaderValue, audience: Audience, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(a.body.clone()));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, a.etag.clone());
    h.insert(header::CACHE_CONTROL, max_age.clone());
    if audience == Audience::Anonymous {
        h.insert(header::VARY, HeaderValue::from_static("authorization, cookie"));
    }
    resp
}

/// A strong validator: the first 16 bytes of the body's SHA-256, quoted.
fn etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    HeaderValue::try_from(format!("\"{}\"", hex::encode(&digest[..16]))).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> Request {
        Request::builder().uri(uri).body(Body::empty()).unwrap()
    }

    #[test]
    fn only_public_catalog_reads_are_cacheable() {
        use Audience::*;
        for (uri, who) in [
            ("/api/v1/courses", Everyone),
            ("/api/v1/courses?q=rust&page=2", Everyone),
            ("/api/v1/categories", Everyone),
            ("/api/v1/courses/12", Anonymous),
            ("/api/v1/courses/12/reviews?page=1", Anonymous),
            ("/api/v1/courses/12/comments", Anonymous),
        ] {
            assert_eq!(audience(&get(uri)), Some(who), "{uri}");
        }
        for uri in [
            "/api/v1/courses/12/progress",
            "/api/v1/courses/x",
            "/api/v1/courses/",
            "/api/v1/courses/12/reviews/3",
            "/api/v1/orders",
            "/api/v1/lectures/1/playback",
            "/healthz",
        ] {
            assert_eq!(audience(&get(uri)), None, "{uri}");
        }
        let signed_in = |uri: &str| {
            let mut r = get(uri);
            r.headers_mut().insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
            r
        };
        assert_eq!(audience(&signed_in("/api/v1/courses")), Some(Everyone));
        assert_eq!(audience(&signed_in("/api/v1/courses/12")), None);
    }
}
