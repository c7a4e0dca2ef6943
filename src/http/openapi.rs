//! The OpenAPI document, generated from the handlers' annotations, and the browsable page
//! (Swagger UI, vendored into the binary so it works without internet access).

use axum::Router;
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
        media::tus_delete,
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

/// The whole document: the paths listed above plus each feature module's own part.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::catalog::routes::CategoriesApi::openapi());
    doc.merge(crate::learning::routes::LearningApi::openapi());
    doc.merge(crate::commerce::routes::CommerceApi::openapi());
    doc.merge(crate::webhooks::routes::WebhooksApi::openapi());
    doc.merge(crate::community::routes::CommunityApi::openapi());
    doc
}

pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", document()))
}
