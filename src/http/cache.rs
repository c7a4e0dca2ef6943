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
//! bound a CDN honouring `max-age` gives, plus the time to compute one answer: an answer past
//! its lifetime is still served while one request computes its successor in the background,
//! so no visitor waits on a slow query that a cache could have spared).
//!
//! A generation is taken *before* an answer is computed, so an answer computed while a write
//! ran is stored under the old generation and never served after it.
//!
//! Misses fly once: when many visitors ask for the same answer that is not cached (a cold
//! start, the first reads after a write), one request computes it and the others wait for it,
//! so a burst costs one query, not one per visitor. If that answer turns out not to be one
//! to keep (an error, a 404) or its request goes away, each waiter computes its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
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
    made: Instant,
    /// A request is computing this answer's successor.
    refreshing: AtomicBool,
}

/// The cache, one per process; off when its lifetime is zero.
pub struct PublicCache {
    answers: Option<moka::future::Cache<String, Arc<Answer>>>,
    /// How long an answer is fresh; past that it is served while it is computed again.
    lifetime: Duration,
    max_age: HeaderValue,
    generation: AtomicU64,
    /// Answers being computed for a miss, by key, with the generation they are for.
    flights: Mutex<HashMap<String, Flight>>,
    /// How many answers were computed to be kept.
    computed: AtomicU64,
}

/// One computation others may wait for: `Some(answer)` once kept, `Some(None)` when the
/// answer was not one to keep; the sender dropped without a value means it was abandoned.
#[derive(Clone)]
struct Flight {
    generation: u64,
    done: tokio::sync::watch::Receiver<Option<Option<Arc<Answer>>>>,
}

/// Takes a flight off the board when its computation ends, however it ends.
struct Landing<'a> {
    flights: &'a Mutex<HashMap<String, Flight>>,
    key: String,
    done: tokio::sync::watch::Sender<Option<Option<Arc<Answer>>>>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().expect("flights lock");
        if flights.get(&self.key).is_some_and(|f| f.done.same_channel(&self.done.subscribe())) {
            flights.remove(&self.key);
        }
    }
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
                // Kept past its lifetime so that it can be served while its successor is
                // computed; an answer nobody asked for in ten lifetimes is dropped.
                .time_to_live(Duration::from_secs(secs * 10))
                .build()
        });
        let max_age = HeaderValue::try_from(format!("public, max-age={secs}")).expect("ascii");
        let lifetime = Duration::from_secs(secs);
        PublicCache {
            answers,
            lifetime,
            max_age,
            generation: AtomicU64::new(0),
            flights: Mutex::new(HashMap::new()),
            computed: AtomicU64::new(0),
        }
    }

    /// Something may have changed: no answer computed before now is served again.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn current(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many times a cacheable request was passed to its handler (misses and refreshes).
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }
}

/// The middleware (run by the access log's): serve, fill or invalidate the cache (see the
/// module documentation).
pub async fn public_cache(st: &AppState, req: Request, next: Next) -> Response {
    let cache = st.public_cache.clone();
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
        // Past its lifetime: still served, while one request computes its successor.
        if hit.made.elapsed() >= cache.lifetime && !hit.refreshing.swap(true, Ordering::AcqRel) {
            let again = replay(&req);
            let (cache, stale) = (cache.clone(), hit.clone());
            tokio::spawn(async move {
                // Failed (the database is away, say): the next request past the lifetime
                // tries again, and until then, or ten lifetimes, the stale answer stands.
                if cache.fill(key, generation, next, again).await.is_err() {
                    stale.refreshing.store(false, Ordering::Release);
                }
            });
        }
        return answer(&hit, &cache.max_age, audience, req.headers().get(header::IF_NONE_MATCH));
    }
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    // Someone is computing this answer already: wait for theirs, else compute it for others.
    let flight = cache.flights.lock().expect("flights lock").get(&key).cloned();
    let landing = match flight.filter(|f| f.generation == generation) {
        Some(mut flight) => {
            if let Ok(done) = flight.done.wait_for(Option::is_some).await {
                if let Some(Some(fresh)) = done.clone() {
                    return answer(&fresh, &cache.max_age, audience, if_none_match.as_ref());
                }
            }
            None
        }
        None => {
            let (done, receiver) = tokio::sync::watch::channel(None);
            let flight = Flight { generation, done: receiver };
            cache.flights.lock().expect("flights lock").insert(key.clone(), flight);
            Some(Landing { flights: &cache.flights, key: key.clone(), done })
        }
    };
    let filled = cache.fill(key, generation, next, req).await;
    if let Some(landing) = landing {
        landing.done.send_replace(Some(filled.as_ref().ok().map(|(a, _)| a.clone())));
    }
    let (fresh, headers) = match filled {
        Ok(filled) => filled,
        Err(uncached) => return uncached,
    };
    let mut out = answer(&fresh, &cache.max_age, audience, if_none_match.as_ref());
    for (name, value) in headers.iter() {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            out.headers_mut().entry(name).or_insert_with(|| value.clone());
        }
    }
    out
}

/// The same GET again, without a body, for a refresh in the background.
fn replay(req: &Request) -> Request {
    let mut again = Request::new(Body::empty());
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.headers_mut() = req.headers().clone();
    *again.extensions_mut() = req.extensions().clone();
    again
}

impl PublicCache {
    /// Compute the answer to `req` and keep it under `key` as of `generation`: the answer
    /// and the handler's headers, or the handler's response itself when it is not one to
    /// keep (not a 200, or too large).
    async fn fill(
        &self,
        key: String,
        generation: u64,
        next: Next,
        req: Request,
    ) -> Result<(Arc<Answer>, HeaderMap), Response> {
        self.computed.fetch_add(1, Ordering::Relaxed);
        let resp = next.run(req).await;
        let small = http_body::Body::size_hint(resp.body())
            .exact()
            .is_some_and(|n| n <= MAX_ANSWER_BYTES as u64);
        if resp.status() != StatusCode::OK || !small {
            return Err(resp);
        }
        let (parts, body) = resp.into_parts();
        let body = match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
            Ok(body) => body,
            // A body that failed midway: the client hears of it as it would have without us.
            Err(e) => return Err(crate::error::Error::internal(e).into_response()),
        };
        let fresh = Arc::new(Answer {
            generation,
            etag: etag(&body),
            body,
            made: Instant::now(),
            refreshing: AtomicBool::new(false),
        });
        if let Some(answers) = &self.answers {
            answers.insert(key, fresh.clone()).await;
        }
        Ok((fresh, parts.headers))
    }
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
fn answer(
    a: &Answer,
    max_age: &HeaderValue,
    audience: Audience,
    if_none_match: Option<&HeaderValue>,
) -> Response {
    let fresh = if_none_match
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
