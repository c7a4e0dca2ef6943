//! HTTP handlers for a lecture's captions.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::Router;
use futures::StreamExt;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use super::{parse::MAX_BYTES, CaptionList, CaptionSaved};
use crate::app::AppState;
use crate::error::Error;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::{Auth, Path, Query};
use crate::types::LectureId;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/lectures/{lecture_id}/captions", get(list_captions)).route(
        "/api/v1/lectures/{lecture_id}/captions/{lang}",
        put(put_captions).delete(delete_captions),
    )
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(put_captions, list_captions, delete_captions))]
pub struct CaptionsApi;

#[derive(Debug, Deserialize, IntoParams)]
pub struct CaptionParams {
    /// The name players show (default: the language's own name, e.g. 한국어, English).
    #[param(min_length = 1, max_length = 100)]
    pub label: Option<String>,
}

/// The body, refused past `MAX_BYTES` without reading the rest.
async fn capped_body(body: Body) -> ApiResult<Vec<u8>> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|_| Error::malformed("body_interrupted", "the request body was cut off"))?;
        if out.len() + chunk.len() > MAX_BYTES {
            return Err(Error::invalid(
                "captions_too_large",
                format!("a caption file may be at most {} MB", MAX_BYTES / (1024 * 1024)),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Add or replace a lecture's captions in one language: a WebVTT (`text/vtt`) or SRT
/// (`application/x-subrip`) file, told apart by its content, at most 5 MB. Cues must be in
/// order and within the video's duration; a refused file names the line. Players see the
/// change at their next master playlist; the video is not transcoded again.
#[utoipa::path(put, path = "/api/v1/lectures/{lecture_id}/captions/{lang}", tag = "videos",
    params(("lecture_id" = i64, Path), ("lang" = String, Path, description = "BCP 47 tag: ko, en, pt-BR", min_length = 2, max_length = 35), CaptionParams),
    request_body(content(
        (String = "text/vtt"),
        (String = "application/x-subrip"),
    )),
    security(("bearer" = [])),
    responses((status = 200, body = CaptionSaved, description = "replaced"), (status = 201, body = CaptionSaved, description = "added"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "not WebVTT or SRT, a bad cue (the message names the line), over 5 MB, or an unknown language")))]
pub async fn put_captions(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path((lecture_id, lang)): Path<(LectureId, String)>,
    Query(q): Query<CaptionParams>,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<CaptionSaved>)> {
    let body = capped_body(body).await?;
    let (created, saved) =
        super::put(&st.db, &caller, lecture_id, &lang, q.label.as_deref(), &body).await?;
    st.playback.forget_captions();
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(saved)))
}

/// The captions of a lecture (anyone who may watch it); `default` marks the one in the
/// course's language.
#[utoipa::path(get, path = "/api/v1/lectures/{lecture_id}/captions", tag = "videos",
    params(("lecture_id" = i64, Path)), security((), ("bearer" = [])),
    responses((status = 200, body = CaptionList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list_captions(
    State(st): State<AppState>,
    caller: Option<Auth>,
    Path(lecture_id): Path<LectureId>,
) -> ApiResult<axum::Json<CaptionList>> {
    Ok(axum::Json(super::list(&st.db, caller.as_ref().map(|a| &a.0), lecture_id).await?))
}

/// Remove a lecture's captions in one language.
#[utoipa::path(delete, path = "/api/v1/lectures/{lecture_id}/captions/{lang}", tag = "videos",
    params(("lecture_id" = i64, Path), ("lang" = String, Path, min_length = 2, max_length = 35)), security(("bearer" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_captions(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path((lecture_id, lang)): Path<(LectureId, String)>,
) -> ApiResult<StatusCode> {
    super::delete(&st.db, &caller, lecture_id, &lang).await?;
    st.playback.forget_captions();
    Ok(StatusCode::NO_CONTENT)
}
