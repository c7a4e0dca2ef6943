//! The OpenAPI document, generated from the handlers' annotations, and the browsable page
//! (Swagger UI, vendored into the binary so it works without internet access).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::AppState;
use crate::accounts::routes as accounts;

#[derive(OpenApi)]
#[openapi(
    info(title = "Lectern", description = "Lecture-video back end: uploads, HLS transcoding, purchase-checked streaming, course commerce."),
    paths(
        super::ops::healthz, super::ops::readyz, super::ops::metrics_text,
        accounts::signup, accounts::login, accounts::refresh, accounts::logout,
        accounts::me, accounts::update_me, accounts::change_password, accounts::become_instructor,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-up, login, token refresh and logout"),
        (name = "users", description = "The caller's own account"),
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
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", ApiDoc::openapi()))
}
