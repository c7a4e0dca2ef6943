//! Router assembly and the middleware every request passes through: request ids, a `tracing`
//! span and access-log line per request (paths only, sensitive query values redacted), metrics,
//! CORS, body limits, JSON 404/405, and graceful shutdown. [`client`] tells who is asking
//! (through trusted proxies only); [`limits`] holds the per-address and per-user quotas.

pub mod cache;
pub mod client;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod ops;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tracing::Instrument;

use crate::app::AppState;
use crate::config::Config;
use crate::error::Error;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(crate::accounts::routes::router())
        .merge(crate::catalog::routes::router())
        .merge(crate::media::routes::router())
        .merge(crate::media::captions::routes::router())
        .merge(crate::media::chapters::routes::router())
        .merge(crate::playback::routes::router())
        .merge(crate::learning::routes::router())
        .merge(crate::commerce::routes::router())
        .merge(crate::community::routes::router())
        .merge(crate::webhooks::routes::router())
        .layer(DefaultBodyLimit::max(state.cfg.max_json_body_bytes));

    Router::new()
        .merge(ops::router())
        .merge(api)
        .merge(openapi::router())
        .fallback(|| async { Error::not_found("route") })
        .method_not_allowed_fallback(|| async { error::method_not_allowed() })
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(state.clone(), access_log))
        .layer(PreflightCors(cors(&state.cfg)))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), MakeRequestUuid))
}

/// CORS for every request but a plain `OPTIONS` (no `Access-Control-Request-Method`, e.g. tus
/// discovery), which must reach its route: `tower_http`'s CORS answers every `OPTIONS` as a
/// preflight. A layer of each route, so choosing costs a branch, not a second router.
#[derive(Clone)]
struct PreflightCors(CorsLayer);

impl<S: Clone> tower::Layer<S> for PreflightCors {
    type Service = PreflightCorsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        PreflightCorsService { cors: self.0.layer(inner.clone()), plain: inner }
    }
}

#[derive(Clone)]
struct PreflightCorsService<S> {
    cors: tower_http::cors::Cors<S>,
    plain: S,
}

impl<S> tower::Service<Request> for PreflightCorsService<S>
where
    S: tower::Service<Request, Response = Response> + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        <tower_http::cors::Cors<S> as tower::Service<Request>>::Future,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Both wrap the same route; ready means ready for either path.
        match self.cors.poll_ready(cx) {
            std::task::Poll::Ready(Ok(())) => self.plain.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let preflight_or_normal = req.method() != Method::OPTIONS
            || req.headers().contains_key("access-control-request-method");
        if preflight_or_normal {
            futures::future::Either::Left(self.cors.call(req))
        } else {
            futures::future::Either::Right(self.plain.call(req))
        }
    }
}

fn cors(cfg: &Config) -> CorsLayer {
    let origin = match cfg.cors_origin_list() {
        None => AllowOrigin::any(),
        Some(list) => AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok())),
    };
    let names = |names: &[&'static str]| {
        names.iter().map(|n| HeaderName::from_static(n)).collect::<Vec<_>>()
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(names(&[
            "authorization",
            "content-type",
            "range",
            "if-range",
            "if-none-match",
            "if-modified-since",
            "idempotency-key",
            "x-request-id",
            "tus-resumable",
            "upload-length",
            "upload-offset",
            "upload-metadata",
            "upload-defer-length",
            "upload-concat",
            "x-http-method-override",
        ]))
        .expose_headers(names(&[
            "content-range",
            "content-length",
            "accept-ranges",
            "etag",
            "last-modified",
            "location",
            "retry-after",
            "x-request-id",
            "tus-resumable",
            "tus-version",
            "tus-extension",
            "tus-max-size",
            "upload-offset",
            "upload-length",
            "upload-expires",
            "lectern-video-id",
        ]))
        .max_age(Duration::from_secs(24 * 3600))
}

/// The base URL clients reach us at: `LECTERN_PUBLIC_URL` when set, else the request's
/// `X-Forwarded-Proto`/`X-Forwarded-Host`/`Host`.
pub fn base_url(cfg: &Config, headers: &axum::http::HeaderMap) -> String {
    if let Some(url) = cfg.public_url.as_deref().filter(|u| !u.is_empty()) {
        return url.trim_end_matches('/').to_string();
    }
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(',').next().unwrap_or("").trim())
    };
    let proto =
        get("x-forwarded-proto").filter(|p| *p == "https" || *p == "http").unwrap_or("http");
    let host = get("x-forwarded-host")
        .or(get("host"))
        .filter(|h| {
            !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| cfg.listen.to_string());
    format!("{proto}://{host}")
}

/// Query parameters whose values must never be logged.
const SENSITIVE_PARAMS: &[&str] =
    &["token", "access_token", "refresh_token", "signature", "sig", "key", "password"];

/// The query string with the values of [`SENSITIVE_PARAMS`] replaced.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if SENSITIVE_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s)) => {
                format!("{k}=REDACTED")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// One span and one access-log line per request, plus request metrics; then the public
/// catalog cache ([`cache::public_cache`], called here rather than layered, as every layer of
/// middleware costs each request a boxed clone of the routes below it). Resolves the client
/// address once (through trusted proxies) for the handlers' [`client::ClientAddr`]. With the
/// access log filtered out (`LECTERN_LOG_FILTER=warn`), nothing is formatted for it.
async fn access_log(
    axum::extract::State(st): axum::extract::State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let peer = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let resolved =
        peer.map(|p| client::ClientAddr::resolve(p, req.headers(), &st.cfg.trusted_proxies));
    if let Some(c) = resolved {
        req.extensions_mut().insert(c);
    }
    let logged = tracing::enabled!(target: "lectern::access", tracing::Level::INFO);
    let path = if logged || route.is_none() { req.uri().path().to_string() } else { String::new() };
    let resp = if logged {
        let query = req.uri().query().map(redact_query).unwrap_or_default();
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-")
            .to_string();
        let span = tracing::info_span!("request", id = %request_id, method = %method, path = %path);
        let resp = cache::public_cache(&st, req, next).instrument(span.clone()).await;
        let client = resolved.map(|c| c.to_string()).unwrap_or_default();
        span.in_scope(|| {
            tracing::info!(
                target: "lectern::access",
                status = resp.status().as_u16(),
                ms = started.elapsed().as_secs_f64() * 1000.0,
                query = %query,
                client = %client,
                bytes = resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-"),
                "{method} {path}"
            )
        });
        resp
    } else {
        cache::public_cache(&st, req, next).await
    };
    let status = resp.status().as_u16();
    let route = match route {
        Some(r) => r.as_str().to_string(),
        None if status == 404 => "unmatched".into(),
        None => path_family(&path),
    };
    let labels = [("method", method.to_string()), ("route", route), ("status", status.to_string())];
    metrics::counter!("lectern_http_requests_total", &labels).increment(1);
    metrics::histogram!("lectern_http_request_duration_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
    resp
}

/// A low-cardinality label for paths no route matched by pattern.
fn path_family(path: &str) -> String {
    path.split('/').take(3).collect::<Vec<_>>().join("/")
}

/// Serve `state` on `listener` until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    // Streamed bodies go out in several writes; with Nagle's algorithm on, the last small one
    // waits for the client's delayed ACK (~40 ms) on every keep-alive request.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
