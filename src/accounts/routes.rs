//! HTTP handlers for sign-up, login, tokens and the caller's own profile.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ProfileChanges, Role, TokenPair, User};
use crate::error::Error;
use crate::http::error::{ApiResult, ErrorBody};

use crate::app::AppState;
use crate::http::client::ClientAddr;
use crate::http::extract::{Auth, Json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/signup", post(signup))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me).patch(update_me))
        .route("/api/v1/me/password", put(change_password))
        .route("/api/v1/me/instructor", post(become_instructor))
}

/// Sign-up form. Any `role` sent is ignored: new accounts are students.
#[derive(Deserialize, ToSchema)]
pub struct SignupRequest {
    #[schema(schema_with = crate::accounts::email_schema)]
    pub email: String,
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
    #[schema(schema_with = crate::types::text::name)]
    pub name: String,
}

/// Create a student account. Sign-ups are limited per client address
/// (`LECTERN_SIGNUPS_PER_ADDRESS_PER_HOUR`).
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 201, body = User), (status = 409, body = ErrorBody, description = "email taken"),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody, description = "too many sign-ups from this address")))]
pub async fn signup(
    State(st): State<AppState>,
    client: ClientAddr,
    Json(req): Json<SignupRequest>,
) -> ApiResult<(StatusCode, axum::Json<User>)> {
    st.quotas.signup(client.limit_key())?;
    let user = st.accounts.create_user(&req.email, &req.password, &req.name, Role::Student).await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// Exchange email and password for an access and a refresh token. Failed attempts are
/// throttled per account and per client address; a correct password from an address that has
/// not been failing is let in even while others hammer the account.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(st): State<AppState>,
    client: ClientAddr,
    Json(req): Json<LoginRequest>,
) -> ApiResult<axum::Json<TokenPair>> {
    Ok(axum::Json(st.accounts.login(&req.email, &req.password, client.limit_key()).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Spend a refresh token for a new pair. A spent token presented again revokes its session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    State(st): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<axum::Json<TokenPair>> {
    Ok(axum::Json(st.accounts.refresh(&req.refresh_token).await?))
}

/// Sign out the session the refresh token belongs to.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    security(("bearer" = [])), responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<StatusCode> {
    st.accounts.logout(&caller, &req.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's profile.
#[utoipa::path(get, path = "/api/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(State(st): State<AppState>, Auth(caller): Auth) -> ApiResult<axum::Json<User>> {
    Ok(axum::Json(st.accounts.get(caller.user_id).await?))
}

/// Profile changes. `role` and `email` cannot be changed here: sending them is a 403 / 422.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    #[schema(schema_with = crate::types::text::name_or_null)]
    pub name: Option<String>,
    #[schema(schema_with = crate::types::text::headline_or_null)]
    pub headline: Option<String>,
    #[schema(schema_with = crate::types::text::bio_or_null)]
    pub bio: Option<String>,
    /// Refused: roles are not self-assigned (see `POST /api/v1/me/instructor`).
    #[schema(ignore)]
    pub role: Option<serde_json::Value>,
}

/// Change the caller's name, headline or bio.
#[utoipa::path(patch, path = "/api/v1/me", tag = "users", request_body = UpdateMeRequest, security(("bearer" = [])),
    responses((status = 200, body = User), (status = 403, body = ErrorBody, description = "tried to change role"),
              (status = 422, body = ErrorBody)))]
pub async fn update_me(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Json(req): Json<UpdateMeRequest>,
) -> ApiResult<axum::Json<User>> {
    if req.role.is_some() {
        return Err(Error::denied(
            "role_not_editable",
            "a role cannot be changed through the profile",
        ));
    }
    let changes = ProfileChanges { name: req.name, headline: req.headline, bio: req.bio };
    Ok(axum::Json(st.accounts.update_profile(caller.user_id, changes).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub old_password: String,
    #[schema(min_length = 8, max_length = 256)]
    pub new_password: String,
}

/// Change the password; every other session of the caller is signed out. Attempts are
/// limited per client address and per account (`LECTERN_PASSWORD_CHANGES_PER_ADDRESS_PER_HOUR`).
#[utoipa::path(put, path = "/api/v1/me/password", tag = "users", request_body = ChangePasswordRequest,
    security(("bearer" = [])), responses((status = 204), (status = 403, body = ErrorBody, description = "old password wrong"),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_password(
    State(st): State<AppState>,
    Auth(caller): Auth,
    client: ClientAddr,
    Json(req): Json<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    st.quotas.password_change(client.limit_key(), caller.user_id)?;
    st.accounts.change_password(&caller, &req.old_password, &req.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct BecomeInstructorRequest {
    #[serde(default)]
    #[schema(schema_with = crate::types::text::headline)]
    pub headline: String,
    #[serde(default)]
    #[schema(schema_with = crate::types::text::bio)]
    pub bio: String,
}

/// Become an instructor. Takes effect in access tokens issued from now on (log in again or
/// refresh).
#[utoipa::path(post, path = "/api/v1/me/instructor", tag = "users", request_body = BecomeInstructorRequest,
    security(("bearer" = [])), responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn become_instructor(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Json(req): Json<BecomeInstructorRequest>,
) -> ApiResult<axum::Json<User>> {
    Ok(axum::Json(st.accounts.become_instructor(caller.user_id, &req.headline, &req.bio).await?))
}
