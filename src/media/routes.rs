//! HTTP handlers for video uploads (streamed `PUT` and tus) and video status.

use super::VideoStatus;
use crate::types::{LectureId, UploadId, VideoId};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use futures::TryStreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use super::tus::{self, TusError, TUS_EXTENSIONS, TUS_VERSION};
use super::Video;
use crate::error::Error;
use crate::http::error::{ApiResult, ErrorBody};

use crate::app::AppState;
use crate::http::base_url;
use crate::http::extract::{Auth, Path};
use crate::playback::range::http_date;
use crate::storage::ByteStream;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/lectures/{lecture_id}/video", put(put_video))
        .route("/api/v1/videos/{video_id}", get(get_video))
        .route("/api/v1/uploads", axum::routing::options(tus_options).post(tus_create))
        .route(
            "/api/v1/uploads/{upload_id}",
            axum::routing::head(tus_head)
                .patch(tus_patch)
                .delete(tus_delete)
                .post(tus_post_override),
        )
}

/// The answer to an accepted upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadAccepted {
    pub video_id: VideoId,
    /// `queued` once the source is stored.
    pub status: VideoStatus,
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Upload a lecture's video in one streamed request body (any size up to the limit). The
/// lecture switches to it once it is transcoded.
#[utoipa::path(put, path = "/api/v1/lectures/{lecture_id}/video", tag = "videos", params(("lecture_id" = i64, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"), security(("bearer" = [])),
    responses((status = 202, body = UploadAccepted), (status = 400, body = ErrorBody, description = "an empty body (`empty_upload`)"),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody, description = "not a video (`not_a_video`)"),
              (status = 404, body = ErrorBody), (status = 408, description = "the body stalled past the idle timeout", body = ErrorBody),
              (status = 429, description = "a per-user upload limit is reached", body = ErrorBody)))]
pub async fn put_video(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(lecture_id): Path<LectureId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<UploadAccepted>)> {
    let declared = header_str(&headers, "content-length").and_then(|v| v.parse().ok());
    let filename = header_str(&headers, "content-disposition")
        .and_then(|d| d.split("filename=").nth(1))
        .map(|f| f.trim_matches(['"', ' ', ';']).chars().take(255).collect::<String>())
        .unwrap_or_default();
    let video = super::upload_streamed(
        &st.uploads,
        &caller,
        lecture_id,
        &filename,
        declared,
        body_stream(body),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(UploadAccepted { video_id: video.id, status: video.status }),
    ))
}

/// A video's state, renditions and duration (lecture owner and admins).
#[utoipa::path(get, path = "/api/v1/videos/{video_id}", tag = "videos", params(("video_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 200, body = Video), (status = 404, body = ErrorBody)))]
pub async fn get_video(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<VideoId>,
) -> ApiResult<axum::Json<Video>> {
    Ok(axum::Json(super::get_video(&st.db, &caller, id).await?))
}

static TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");

/// Add `Tus-Resumable` to any response.
fn tus(resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    resp.headers_mut().insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(TUS_VERSION));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn tus_error(e: TusError) -> Response {
    tus(match e {
        TusError::OffsetMismatch { .. } => Error::conflict("offset_mismatch", e.to_string()),
        TusError::Expired => Error::Gone { what: "upload" },
        TusError::Locked => Error::Busy { code: "upload_locked", message: e.to_string() },
        TusError::Api(api) => api,
    })
}

/// The refusal of a request without `Tus-Resumable: 1.0.0` (412, as the protocol says).
fn version_refused(headers: &HeaderMap) -> Option<Response> {
    if header_str(headers, "tus-resumable") == Some(TUS_VERSION) {
        return None;
    }
    let body = crate::http::error::ErrorBody {
        error: crate::http::error::ErrorDetail {
            code: "tus_version".into(),
            message: format!("send Tus-Resumable: {TUS_VERSION}"),
        },
    };
    let mut resp = tus((StatusCode::PRECONDITION_FAILED, axum::Json(body)));
    resp.headers_mut().insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    Some(resp)
}

fn int_header(headers: &HeaderMap, name: &str) -> Result<Option<i64>, Error> {
    match header_str(headers, name) {
        None => Ok(None),
        Some(v) => v.trim().parse::<i64>().ok().filter(|n| *n >= 0).map(Some).ok_or_else(|| {
            Error::malformed("invalid_header", format!("{name} must be a non-negative integer"))
        }),
    }
}

/// tus discovery: version, extensions, maximum size.
#[utoipa::path(options, path = "/api/v1/uploads", tag = "videos", responses((status = 204)))]
pub async fn tus_options(State(st): State<AppState>) -> Response {
    let mut resp = tus(StatusCode::NO_CONTENT);
    let h = resp.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    h.insert("tus-max-size", HeaderValue::from(st.cfg.max_upload_bytes));
    resp
}

/// tus creation: `Upload-Length` (or `Upload-Defer-Length: 1`) and `Upload-Metadata` with
/// `lecture_id` (and `filename`). A body with `Content-Type: application/offset+octet-stream`
/// is the upload's first bytes.
#[utoipa::path(post, path = "/api/v1/uploads", tag = "videos", security(("bearer" = [])),
    params(("Upload-Length" = Option<i64>, Header), ("Upload-Metadata" = String, Header), ("Tus-Resumable" = String, Header)),
    responses((status = 201, description = "created; Location names the upload"), (status = 412), (status = 413, body = ErrorBody),
              (status = 429, description = "a per-user upload limit is reached", body = ErrorBody)))]
pub async fn tus_create(
    State(st): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    let length = match int_header(&headers, "upload-length") {
        Ok(l) => l,
        Err(e) => return tus(e),
    };
    let deferred = header_str(&headers, "upload-defer-length") == Some("1");
    if length.is_none() && !deferred {
        return tus(Error::malformed(
            "missing_length",
            "send Upload-Length or Upload-Defer-Length: 1",
        ));
    }
    let metadata = header_str(&headers, "upload-metadata").unwrap_or("");
    let (id, _video) = match tus::create(&st.uploads, &caller, length, metadata).await {
        Ok(x) => x,
        Err(e) => return tus(e),
    };
    let location = format!("{}/api/v1/uploads/{id}", base_url(&st.cfg, &headers));
    let with_body = header_str(&headers, "content-type") == Some("application/offset+octet-stream");
    let mut resp = tus(StatusCode::CREATED);
    if with_body {
        match tus::append(&st.uploads, &caller, &id, 0, None, body_stream(body)).await {
            Ok(p) => patched_headers(&mut resp, &p),
            Err(e) => return tus_error(e),
        }
    }
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(&location).expect("valid location"));
    if let Ok(info) = tus::info(&st.uploads, &caller, &id).await {
        resp.headers_mut().insert(
            "upload-expires",
            HeaderValue::from_str(&http_date(info.expires_at)).expect("date"),
        );
    }
    resp
}

fn patched_headers(resp: &mut Response, p: &tus::Patched) {
    let h = resp.headers_mut();
    h.insert("upload-offset", HeaderValue::from(p.offset));
    h.insert("upload-expires", HeaderValue::from_str(&http_date(p.expires_at)).expect("date"));
    if let Some(v) = p.completed_video {
        h.insert("lectern-video-id", HeaderValue::from(v.get()));
    }
}

/// tus offset query.
#[utoipa::path(head, path = "/api/v1/uploads/{upload_id}", tag = "videos", params(("upload_id" = String, Path)),
    security(("bearer" = [])), responses((status = 200, description = "Upload-Offset and Upload-Length headers"), (status = 404), (status = 410)))]
pub async fn tus_head(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<UploadId>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    match tus::info(&st.uploads, &caller, &id).await {
        Ok(info) => {
            let mut resp = tus(StatusCode::OK);
            let h = resp.headers_mut();
            h.insert("upload-offset", HeaderValue::from(info.offset));
            match info.length {
                Some(len) => h.insert("upload-length", HeaderValue::from(len)),
                None => h.insert("upload-defer-length", HeaderValue::from_static("1")),
            };
            h.insert(
                "upload-expires",
                HeaderValue::from_str(&http_date(info.expires_at)).expect("date"),
            );
            if let Some(v) = info.video_id {
                h.insert("lectern-video-id", HeaderValue::from(v.get()));
            }
            resp
        }
        Err(e) => {
            // HEAD answers carry no body.
            let mut resp = tus_error(e);
            *resp.body_mut() = Body::empty();
            resp
        }
    }
}

/// tus append: `Upload-Offset` must equal the upload's offset; the body is
/// `application/offset+octet-stream`. The request that completes the upload answers with
/// `Lectern-Video-Id`.
#[utoipa::path(patch, path = "/api/v1/uploads/{upload_id}", tag = "videos", params(("upload_id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"), security(("bearer" = [])),
    responses((status = 204, description = "Upload-Offset is the new offset"), (status = 409, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 423, body = ErrorBody),
              (status = 429, description = "a per-user upload limit is reached", body = ErrorBody)))]
pub async fn tus_patch(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<UploadId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    if header_str(&headers, "content-type") != Some("application/offset+octet-stream") {
        return tus(Error::UnsupportedMedia {
            code: "expected_offset_octet_stream",
            message: "PATCH bodies are Content-Type: application/offset+octet-stream".into(),
        });
    }
    let offset = match int_header(&headers, "upload-offset") {
        Ok(Some(o)) => o,
        Ok(None) => return tus(Error::malformed("missing_offset", "send Upload-Offset")),
        Err(e) => return tus(e),
    };
    let length = match int_header(&headers, "upload-length") {
        Ok(l) => l,
        Err(e) => return tus(e),
    };
    match tus::append(&st.uploads, &caller, &id, offset, length, body_stream(body)).await {
        Ok(p) => {
            let mut resp = tus(StatusCode::NO_CONTENT);
            patched_headers(&mut resp, &p);
            resp
        }
        Err(e) => tus_error(e),
    }
}

/// `POST` with `X-HTTP-Method-Override: PATCH` or `DELETE`, for clients behind proxies that
/// only pass GET and POST: answered as that method would be (400 without the header or with
/// another method).
#[utoipa::path(post, path = "/api/v1/uploads/{upload_id}", tag = "videos",
    params(("upload_id" = String, Path), ("X-HTTP-Method-Override" = String, Header, pattern = "^(PATCH|DELETE|patch|delete)$")),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"), security(("bearer" = [])),
    responses((status = 204, description = "as `PATCH` or `DELETE`"), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 423, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn tus_post_override(
    st: State<AppState>,
    auth: Auth,
    id: Path<UploadId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match header_str(&headers, "x-http-method-override").map(str::to_ascii_uppercase).as_deref() {
        Some("PATCH") => tus_patch(st, auth, id, headers, body).await,
        Some("DELETE") => tus_delete(st, auth, id, headers).await,
        // The header is what makes this POST mean something: without it (or with another
        // method) the request is malformed, not a method this path lacks.
        _ => tus(Error::malformed(
            "method_override",
            "POST on an upload takes X-HTTP-Method-Override: PATCH or DELETE",
        )),
    }
}

/// tus termination: drop the upload and what it received.
#[utoipa::path(delete, path = "/api/v1/uploads/{upload_id}", tag = "videos", params(("upload_id" = String, Path)),
    security(("bearer" = [])), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn tus_delete(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<UploadId>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    match tus::terminate(&st.uploads, &caller, &id).await {
        Ok(()) => tus(StatusCode::NO_CONTENT),
        Err(e) => tus_error(e),
    }
}
