//! Access tokens (short-lived JWTs) and refresh tokens (opaque, stored hashed).
//!
//! Access tokens are HS256 JWTs whose `typ` claim is `"access"`; the verifier pins the
//! algorithm and refuses any other `typ`, so no other kind of token Lectern signs (playback
//! tokens, say) can stand in for one. Refresh tokens are 256 random bits, shown to the client
//! once and kept only as a SHA-256 hash; being opaque, they can never pass for a JWT, and a JWT
//! can never pass for one.

use base64::Engine;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Role;
use crate::config::Secret;

const ACCESS_TYP: &str = "access";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// User id.
    pub sub: String,
    /// Role at the time the token was issued.
    pub role: Role,
    /// The login session (refresh-token family) this token belongs to.
    pub sid: String,
    /// Always `"access"`.
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and verifies access tokens.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

/// Why a bearer token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
}

impl AccessTokens {
    pub fn new(secret: &Secret, ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        AccessTokens {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            ttl_secs: ttl_secs as i64,
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// A new access token for `user_id` in session `sid`.
    pub fn issue(&self, user_id: crate::types::UserId, role: Role, sid: &str, now: i64) -> String {
        let claims = AccessClaims {
            sub: user_id.to_string(),
            role,
            sid: sid.to_string(),
            typ: ACCESS_TYP.into(),
            iat: now,
            exp: now + self.ttl_secs,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail")
    }

    /// Check signature, algorithm, expiry and kind.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let data =
            decode::<AccessClaims>(token, &self.decoding, &self.validation).map_err(|e| match e
                .kind()
            {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.typ != ACCESS_TYP {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }
}

/// A fresh refresh token: what the client gets, and the hash we keep.
pub fn new_refresh_token() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = format!("rt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A random id for a login session.
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
