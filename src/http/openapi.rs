//! The OpenAPI document, generated from the handlers' annotations, and the browsable page
//! (Swagger UI, vendored into the binary so it works without internet access).

use axum::Router;
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::accounts::routes as accounts;
use crate::app::AppState;
use crate::catalog::routes as catalog;
use crate::media::routes as media;
use crate::playback::routes as playback;

#[derive(OpenApi)]
#[openapi(
    info(title = "Lectern", description = "Lecture-video back end: uploads, HLS transcoding, purchase-checked streaming, course commerce."),
    paths(
        super::ops::healthz, super::ops::readyz, super::ops::metrics_text,
        accounts::signup, accounts::login, accounts::refresh, accounts::logout,
        accounts::me, accounts::update_me, accounts::change_password, accounts::become_instructor,
        catalog::list_courses, catalog::create_course, catalog::get_course, catalog::update_course, catalog::delete_course,
        catalog::publish_course, catalog::create_section, catalog::update_section, catalog::delete_section,
        catalog::create_lecture, catalog::update_lecture, catalog::delete_lecture,
        media::put_video, media::get_video, media::tus_options, media::tus_create, media::tus_head, media::tus_patch,
        media::tus_delete, media::tus_post_override,
        playback::start_playback, playback::serve_hls,
    ),
    components(schemas(crate::http::error::ErrorBody, crate::http::error::ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-up, login, token refresh and logout"),
        (name = "users", description = "The caller's own account"),
        (name = "catalog", description = "Courses, sections and lectures"),
        (name = "videos", description = "Uploads (streamed and tus 1.0.0) and transcoding status"),
        (name = "learning", description = "Watch progress and enrolled courses"),
        (name = "playback", description = "Playback sessions; the segment server itself lives under /hls/"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// The whole document: the paths listed above plus each feature module's own part, with the
/// answers every operation shares added ([`add_shared_answers`]).
pub fn document() -> Value {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::catalog::routes::CategoriesApi::openapi());
    doc.merge(crate::learning::routes::LearningApi::openapi());
    doc.merge(crate::commerce::routes::CommerceApi::openapi());
    doc.merge(crate::webhooks::routes::WebhooksApi::openapi());
    doc.merge(crate::community::routes::CommunityApi::openapi());
    doc.merge(crate::media::captions::routes::CaptionsApi::openapi());
    doc.merge(crate::media::chapters::routes::ChaptersApi::openapi());
    let mut doc = serde_json::to_value(doc).expect("the document serializes");
    declare_tus_headers(&mut doc);
    add_shared_answers(&mut doc);
    doc
}

/// The tus 1.0.0 headers of the upload endpoints, which the handlers read from the header map
/// rather than through an extractor: `Tus-Resumable: 1.0.0` on every request but `OPTIONS`
/// (412 without it), `Upload-Length` or `Upload-Defer-Length: 1` and `Upload-Metadata` on
/// creation, `Upload-Offset` on `PATCH`. Upload bodies are raw bytes.
fn declare_tus_headers(doc: &mut Value) {
    let header = |name: &str, required: bool, schema: Value, description: &str| json!({ "name": name, "in": "header", "required": required, "schema": schema, "description": description });
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            let content = op.get_mut("requestBody").and_then(|b| b.get_mut("content"));
            if let Some(content) = content.and_then(Value::as_object_mut) {
                for (media, body) in content.iter_mut() {
                    if media.contains("octet-stream") {
                        body["schema"] = json!({ "type": "string", "format": "binary" });
                    }
                }
            }
            if !path.starts_with("/api/v1/uploads") || method == "options" {
                continue;
            }
            let mut params = vec![header(
                "Tus-Resumable",
                true,
                json!({ "type": "string", "enum": ["1.0.0"] }),
                "the tus protocol version; 412 for any other",
            )];
            match method.as_str() {
                "patch" | "post" if path.ends_with('}') => params.push(header(
                    "Upload-Offset",
                    method == "patch",
                    json!({ "type": "integer", "minimum": 0, "maximum": i64::MAX }),
                    "the offset this body starts at (`PATCH`, or `POST` overriding to it)",
                )),
                "post" => {
                    params.push(header(
                        "Upload-Length",
                        false,
                        json!({ "type": "integer", "minimum": 1, "maximum": i64::MAX }),
                        "the upload's size in bytes; or send `Upload-Defer-Length: 1`",
                    ));
                    params.push(header(
                        "Upload-Defer-Length",
                        false,
                        json!({ "type": "string", "enum": ["1"] }),
                        "the size is sent later, with a `PATCH`",
                    ));
                    params.push(header(
                        "Upload-Metadata",
                        true,
                        json!({ "type": "string" }),
                        "comma-separated `key base64value` pairs; `lecture_id` is required",
                    ));
                }
                _ => {}
            }
            let list = op
                .as_object_mut()
                .expect("an operation is an object")
                .entry("parameters")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("parameters are a list");
            list.retain(|p| p["in"] != "header" || p["name"] == "X-HTTP-Method-Override");
            list.extend(params);
            op["responses"]["412"] = json!({ "description": "`Tus-Resumable` is not `1.0.0`" });
        }
    }
}

/// The error answers that follow from an operation's shape rather than from what it does, added
/// to every operation that has that shape (each handler documents its own on top):
///
/// - it needs a bearer token → 401 (missing, malformed, expired or revoked);
/// - it has path parameters → 404 (no such thing, or a malformed id, which names nothing);
/// - it has query or header parameters → 400 (one that does not parse);
/// - it takes a JSON body → 400 (not JSON), 413 (over the body limit), 415 (not
///   `application/json`), 422 (JSON of the wrong shape or values).
///
/// Every 4xx answer carries the one error body.
fn add_shared_answers(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "options" | "head" | "patch"
            ) {
                continue;
            }
            let mut add: Vec<(&str, &str)> = Vec::new();
            let secured = op["security"].as_array().is_some_and(|reqs| {
                reqs.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
            });
            if secured {
                add.push(("401", "no valid access token"));
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            if params.iter().any(|p| p["in"] == "path") {
                add.push(("404", "no such resource (or not one the caller may know of)"));
            }
            if params.iter().any(|p| p["in"] == "query") {
                add.push(("400", "a query parameter that does not parse or is out of range"));
            }
            if params.iter().any(|p| p["in"] == "header") {
                add.push(("400", "a header that does not parse or is out of range"));
            }
            if op["requestBody"]["content"].get("application/json").is_some() {
                add.push(("400", "the body is not JSON"));
                add.push(("413", "the body is over the size limit"));
                add.push(("415", "the body is not sent as `application/json`"));
                add.push(("422", "the body does not have the documented shape or values"));
            }
            let responses = op
                .as_object_mut()
                .expect("an operation is an object")
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("responses are an object");
            for (status, description) in add {
                responses.entry(status).or_insert_with(|| json!({ "description": description }));
            }
            for (status, response) in responses.iter_mut() {
                if status.starts_with('4') && response.get("content").is_none() {
                    response["content"] = json!({
                        "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } }
                    });
                }
            }
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(SwaggerUi::new("/api/docs").external_url_unchecked("/api/openapi.json", document()))
}
