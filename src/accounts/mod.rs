//! Users, roles, passwords, access and refresh tokens.
//!
//! A login opens a *session*: the family of refresh tokens that descend from it. Each refresh
//! spends the presented token and hands out the next one in the same family; presenting a spent
//! token again means it was stolen or replayed, so the whole family is revoked. Access tokens
//! name their session (`sid`), and the auth extractor refuses those of revoked sessions, so
//! logout and a password change take effect at once rather than when tokens expire.

pub mod db;
pub mod password;
pub mod ratelimit;
pub mod routes;
pub mod tokens;

use crate::types::text::{self, TextRule};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use self::db::UserRow;
use self::tokens::{hash_refresh_token, new_refresh_token, new_session_id, AccessTokens};
use crate::db::{is_unique_violation, now, rfc3339, Db};
use crate::error::Error;
use crate::types::UserId;

crate::vocabulary! {
    /// What a user may do.
    pub enum Role: "role" {
        Student = "student",
        Instructor = "instructor",
        Admin = "admin",
    }
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub headline: String,
    pub bio: String,
    /// RFC 3339.
    pub created_at: String,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            email: r.email,
            name: r.name,
            role: r.role,
            headline: r.headline,
            bio: r.bio,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// What a successful login or refresh returns.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

/// Failures of the account operations.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// 422: a field is missing its shape (email, password length, name).
    #[error("{1}")]
    Invalid(&'static str, String),
    /// 409: the email belongs to an account already.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// 401: email and password do not match an account.
    #[error("email or password is wrong")]
    BadCredentials,
    /// 403: the current password given for a change is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// 401: the refresh token is unknown, expired, spent or revoked.
    #[error("{0}")]
    BadRefreshToken(&'static str),
    /// 429: too many login attempts.
    #[error("too many login attempts")]
    RateLimited(u64),
    /// 404.
    #[error("no such user")]
    NoSuchUser,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        AccountError::Internal(anyhow::Error::new(e).context("accounts database"))
    }
}

impl From<AccountError> for Error {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Invalid(code, msg) => Error::invalid(code, msg),
            AccountError::EmailTaken => Error::conflict("email_taken", e.to_string()),
            AccountError::BadCredentials => {
                Error::unauthenticated("invalid_credentials", e.to_string())
            }
            AccountError::WrongPassword => Error::denied("wrong_password", e.to_string()),
            AccountError::BadRefreshToken(msg) => {
                Error::unauthenticated("invalid_refresh_token", msg)
            }
            AccountError::RateLimited(secs) => Error::RateLimited { retry_after_secs: secs },
            AccountError::NoSuchUser => Error::not_found("user"),
            AccountError::Internal(e) => Error::Internal(e),
        }
    }
}

/// The JSON Schema of what [`normalize_email`] accepts.
pub fn email_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let (s, c) = (text::SPACE_CLASS, text::CONTROL_CLASS);
    // Tab, line feed and carriage return are in the space class; the rest of `Cc` in `c`.
    let part = format!("[^{s}{c}@]");
    let edge = format!("[^{s}{c}@.]");
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .max_length(Some(254))
        .pattern(Some(format!("^[{s}]*{part}+@{edge}{part}*\\.{part}*{edge}[{s}]*$")))
        .into()
}

/// Trim and lower-case an email, and check its shape: at most 254 characters as sent, no
/// white space or control characters inside, `local@domain` with a dot inside the domain.
pub fn normalize_email(raw: &str) -> Result<String, AccountError> {
    let bad =
        || AccountError::Invalid("invalid_email", "email must look like name@example.com".into());
    let email = text::trim(raw).to_lowercase();
    if raw.chars().count() > 254 || email.chars().any(|c| text::is_space(c) || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(email)
}

fn check_password(pw: &str) -> Result<(), AccountError> {
    let n = pw.chars().count();
    if !(8..=256).contains(&n) {
        return Err(AccountError::Invalid(
            "invalid_password",
            "password must be 8 to 256 characters".into(),
        ));
    }
    Ok(())
}

/// Check a text field by its `rule` (see [`TextRule`]); the stored, trimmed text.
pub fn check_text(
    code: &'static str,
    field: &str,
    value: &str,
    rule: TextRule,
) -> Result<String, AccountError> {
    rule.check(field, value).map_err(|why| AccountError::Invalid(code, why))
}

/// The account operations, with what they need.
#[derive(Clone)]
pub struct Accounts {
    db: Db,
    tokens: Arc<AccessTokens>,
    refresh_ttl_secs: i64,
    limiter: Arc<ratelimit::LoginLimiter>,
}

/// A verified caller: who they are, their role as of their token, and their session.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub role: Role,
    pub session_id: String,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl Accounts {
    pub fn new(
        db: Db,
        tokens: Arc<AccessTokens>,
        refresh_ttl_secs: u64,
        login_attempts_per_minute: u32,
    ) -> Self {
        Accounts {
            db,
            tokens,
            refresh_ttl_secs: refresh_ttl_secs as i64,
            limiter: Arc::new(ratelimit::LoginLimiter::new(login_attempts_per_minute)),
        }
    }

    /// Create an account with `role` (sign-up always passes `Student`; the admin CLI may pass any).
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        name: &str,
        role: Role,
    ) -> Result<User, AccountError> {
        let email = normalize_email(email)?;
        check_password(password)?;
        let name = check_text("invalid_name", "name", name, TextRule::NAME)?;
        let hash = password::hash(password.to_string()).await?;
        match db::insert_user(&self.db, &email, &name, &hash, role, now()).await {
            Ok(row) => Ok(row.into()),
            Err(e) if is_unique_violation(&e) => Err(AccountError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Check the password and open a new session. `client` keys the login throttle (see
    /// [`ratelimit`]): only failures count against it.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<TokenPair, AccountError> {
        let email = normalize_email(email).map_err(|_| AccountError::BadCredentials)?;
        self.limiter.check(&email, client).map_err(AccountError::RateLimited)?;
        let user = db::user_by_email(&self.db, &email).await?;
        let ok =
            password::verify(password.to_string(), user.as_ref().map(|u| u.password_hash.clone()))
                .await?;
        let user = match (ok, user) {
            (true, Some(user)) => user,
            _ => {
                self.limiter.failed(&email, client);
                return Err(AccountError::BadCredentials);
            }
        };
        let sid = new_session_id();
        let t = now();
        // The session and its first refresh token exist together or not at all.
        let mut tx = self.db.begin().await?;
        db::create_session(&mut *tx, &sid, user.id, t).await?;
        let pair = self.issue_pair(&mut tx, &user, &sid, t).await?;
        tx.commit().await?;
        Ok(pair)
    }

    async fn issue_pair(
        &self,
        tx: &mut sqlx::AnyConnection,
        user: &UserRow,
        sid: &str,
        t: i64,
    ) -> Result<TokenPair, AccountError> {
        let (refresh, hash) = new_refresh_token();
        db::insert_refresh_token(&mut *tx, sid, &hash, t, t + self.refresh_ttl_secs).await?;
        Ok(TokenPair {
            access_token: self.tokens.issue(user.id, user.role, sid, t),
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: self.tokens.ttl_secs(),
        })
    }

    /// Spend `refresh_token` for a new pair in the same session. A token spent before revokes
    /// its whole session. The new access token carries the user's current role.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AccountError> {
        let t = now();
        let row = db::find_refresh_token(&self.db, &hash_refresh_token(refresh_token))
            .await?
            .ok_or(AccountError::BadRefreshToken("unknown refresh token"))?;
        if row.session_revoked_at.is_some() {
            return Err(AccountError::BadRefreshToken("this session has been revoked"));
        }
        // Spending the old token and storing the next one are one change: a failure between
        // them must not leave the session without a usable token.
        let mut tx = self.db.begin().await?;
        if row.spent_at.is_some() || !db::spend_refresh_token(&mut *tx, row.id, t).await? {
            drop(tx);
            tracing::warn!(session = %row.session_id, user = %row.user_id, "spent refresh token reused; revoking its session");
            db::revoke_session(&self.db, &row.session_id, "refresh token reuse", t).await?;
            return Err(AccountError::BadRefreshToken(
                "refresh token already used; the session has been revoked",
            ));
        }
        if row.expires_at <= t {
            tx.commit().await?;
            return Err(AccountError::BadRefreshToken("refresh token expired"));
        }
        let user = db::user_by_id(&mut *tx, row.user_id).await?.ok_or(AccountError::NoSuchUser)?;
        let pair = self.issue_pair(&mut tx, &user, &row.session_id, t).await?;
        tx.commit().await?;
        Ok(pair)
    }

    /// Revoke the session `refresh_token` belongs to, if it is `caller`'s. Unknown tokens are
    /// ignored so that logout is idempotent.
    pub async fn logout(&self, caller: &Caller, refresh_token: &str) -> Result<(), AccountError> {
        if let Some(row) =
            db::find_refresh_token(&self.db, &hash_refresh_token(refresh_token)).await?
        {
            if row.user_id == caller.user_id {
                db::revoke_session(&self.db, &row.session_id, "logout", now()).await?;
            }
        }
        Ok(())
    }

    /// Verify a bearer access token and that its session is still live.
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller, Error> {
        let claims = self
            .tokens
            .verify(bearer)
            .map_err(|e| Error::unauthenticated("invalid_token", e.to_string()))?;
        let user_id = claims.sub.parse().map_err(|e| {
            Error::unauthenticated(
                "invalid_token",
                format!("the access token's subject is not a user id ({e})"),
            )
        })?;
        if !db::session_is_active(&self.db, &claims.sid).await? {
            return Err(Error::unauthenticated(
                "session_revoked",
                "this session has been signed out",
            ));
        }
        Ok(Caller { user_id, role: claims.role, session_id: claims.sid })
    }

    pub async fn get(&self, user_id: UserId) -> Result<User, AccountError> {
        Ok(db::user_by_id(self.db.pool(), user_id).await?.ok_or(AccountError::NoSuchUser)?.into())
    }

    /// Change the caller's own profile text.
    pub async fn update_profile(
        &self,
        user_id: UserId,
        changes: ProfileChanges,
    ) -> Result<User, AccountError> {
        let name = changes
            .name
            .as_deref()
            .map(|n| check_text("invalid_name", "name", n, TextRule::NAME))
            .transpose()?;
        let headline = changes
            .headline
            .as_deref()
            .map(|h| check_text("invalid_headline", "headline", h, TextRule::HEADLINE))
            .transpose()?;
        let bio = changes
            .bio
            .as_deref()
            .map(|b| check_text("invalid_bio", "bio", b, TextRule::BIO))
            .transpose()?;
        let row = db::update_profile(
            &self.db,
            user_id,
            name.as_deref(),
            headline.as_deref(),
            bio.as_deref(),
            now(),
        )
        .await?
        .ok_or(AccountError::NoSuchUser)?;
        Ok(row.into())
    }

    /// Change the password after checking the old one; every other session of the user is
    /// revoked, the caller's own stays.
    pub async fn change_password(
        &self,
        caller: &Caller,
        old: &str,
        new: &str,
    ) -> Result<(), AccountError> {
        let user = db::user_by_id(self.db.pool(), caller.user_id)
            .await?
            .ok_or(AccountError::NoSuchUser)?;
        if !password::verify(old.to_string(), Some(user.password_hash)).await? {
            return Err(AccountError::WrongPassword);
        }
        check_password(new)?;
        let hash = password::hash(new.to_string()).await?;
        let t = now();
        // The new password and the end of the other sessions take effect together.
        let mut tx = self.db.begin().await?;
        db::set_password_hash(&mut *tx, caller.user_id, &hash, t).await?;
        db::revoke_other_sessions(
            &mut *tx,
            caller.user_id,
            &caller.session_id,
            "password changed",
            t,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Self-service promotion to instructor, with a headline and bio. Admins stay admins.
    pub async fn become_instructor(
        &self,
        user_id: UserId,
        headline: &str,
        bio: &str,
    ) -> Result<User, AccountError> {
        let headline = check_text("invalid_headline", "headline", headline, TextRule::HEADLINE)?;
        let bio = check_text("invalid_bio", "bio", bio, TextRule::BIO)?;
        let row = db::become_instructor(&self.db, user_id, &headline, &bio, now())
            .await?
            .ok_or(AccountError::NoSuchUser)?;
        Ok(row.into())
    }
}

/// Profile fields a user may change about themselves.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    pub name: Option<String>,
    pub headline: Option<String>,
    pub bio: Option<String>,
}
