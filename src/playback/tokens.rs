//! Playback tokens: short-lived HS256 JWTs naming a user and one video, verified without the
//! database.
//!
//! The header's `kid` picks the verification key, so keys rotate without cutting viewers off:
//! configure `new:…,old:…` (the first signs, all verify) until the old tokens have expired,
//! then drop the old key. The algorithm is pinned to HS256 — `alg: none` and every other
//! algorithm are refused — and `typ` must be `playback`, so no access token can stand in for one.

use crate::types::VideoId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

const TYP: &str = "playback";

/// The claims of a playback token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaybackClaims {
    /// User id, or `anonymous` for a free preview watched signed out.
    pub sub: String,
    /// The video this token opens, and no other.
    pub vid: VideoId,
    /// Always `playback`.
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
    /// The playback session (absent in tokens issued before sessions were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Why a playback token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaybackTokenError {
    #[error("a playback token is required")]
    Missing,
    #[error("the playback token has expired")]
    Expired,
    #[error("the playback token is invalid")]
    Invalid,
    #[error("the playback token is for another video")]
    WrongVideo,
}

/// Signing and verification keys.
pub struct PlaybackKeys {
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    validation: Validation,
    ttl_secs: i64,
    /// Tokens whose signature was checked, and their claims.
    verified: Mutex<HashMap<Box<str>, Arc<PlaybackClaims>>>,
}

/// Why a key list could not be read.
#[derive(Debug, thiserror::Error)]
#[error("playback keys must be `kid:secret[,kid:secret…]` with secrets of 32 or more characters")]
pub struct BadKeys;

impl PlaybackKeys {
    /// From `kid:secret,kid:secret`: the first key signs, every key verifies.
    pub fn parse(spec: &str, ttl_secs: u64) -> Result<PlaybackKeys, BadKeys> {
        let mut pairs = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (kid, secret) = item.split_once(':').ok_or(BadKeys)?;
            if kid.is_empty() || secret.len() < 32 {
                return Err(BadKeys);
            }
            pairs.push((kid.to_string(), secret.to_string()));
        }
        let (kid, secret) = pairs.first().cloned().ok_or(BadKeys)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(PlaybackKeys {
            signing_kid: kid,
            signing: EncodingKey::from_secret(secret.as_bytes()),
            verifying: pairs
                .into_iter()
                .map(|(k, s)| (k, DecodingKey::from_secret(s.as_bytes())))
                .collect(),
            validation,
            ttl_secs: ttl_secs as i64,
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// A token for `sub` to play `video_id` until `now + ttl`.
    pub fn issue(&self, sub: &str, video_id: VideoId, now: i64) -> (String, i64) {
        self.issue_for_session(sub, video_id, now, None)
    }

    /// [`PlaybackKeys::issue`] naming playback session `sid`.
    pub fn issue_for_session(
        &self,
        sub: &str,
        video_id: VideoId,
        now: i64,
        sid: Option<&str>,
    ) -> (String, i64) {
        let exp = now + self.ttl_secs;
        let claims = PlaybackClaims {
            sub: sub.to_string(),
            vid: video_id,
            typ: TYP.into(),
            iat: now,
            exp,
            sid: sid.map(str::to_string),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_kid.clone());
        (encode(&header, &claims, &self.signing).expect("HS256 encoding cannot fail"), exp)
    }

    /// Check the token opens `video_id`.
    ///
    /// Every playlist, key and segment request of a session carries the same token, so a
    /// token whose signature was checked once is remembered with its claims until it
    /// expires: a repeat costs a map lookup, not an HMAC and a JSON parse. Expiry and the
    /// video are checked on every use.
    pub fn verify(
        &self,
        token: Option<&str>,
        video_id: VideoId,
    ) -> Result<Arc<PlaybackClaims>, PlaybackTokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(PlaybackTokenError::Missing)?;
        let known = self.verified.lock().expect("verified lock").get(token).cloned();
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.check_signature(token)?);
                let mut verified = self.verified.lock().expect("verified lock");
                if verified.len() >= VERIFIED_LIMIT {
                    let now = crate::db::now();
                    verified.retain(|_, c| c.exp >= now);
                    if verified.len() >= VERIFIED_LIMIT {
                        verified.clear();
                    }
                }
                verified.insert(token.into(), claims.clone());
                claims
            }
        };
        if claims.exp < crate::db::now() {
            return Err(PlaybackTokenError::Expired);
        }
        if claims.vid != video_id {
            return Err(PlaybackTokenError::WrongVideo);
        }
        Ok(claims)
    }

    /// The claims of `token` if one of our keys signed it, HS256, as a playback token.
    fn check_signature(&self, token: &str) -> Result<PlaybackClaims, PlaybackTokenError> {
        let header = decode_header(token).map_err(|_| PlaybackTokenError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(PlaybackTokenError::Invalid);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|k| self.verifying.get(k))
            .ok_or(PlaybackTokenError::Invalid)?;
        let data =
            decode::<PlaybackClaims>(token, key, &self.validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => PlaybackTokenError::Expired,
                _ => PlaybackTokenError::Invalid,
            })?;
        if data.claims.typ != TYP {
            return Err(PlaybackTokenError::Invalid);
        }
        Ok(data.claims)
    }
}

/// Most verified tokens remembered (about 400 bytes each).
const VERIFIED_LIMIT: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a-secret-that-is-long-enough-for-hs256!!";
    const B: &str = "b-secret-that-is-long-enough-for-hs256!!";

    #[test]
    fn rotation_keeps_old_tokens_valid_while_the_old_key_is_listed() {
        let old = PlaybackKeys::parse(&format!("old:{A}"), 60).unwrap();
        let (token, _) = old.issue("7", VideoId::new(3), chrono::Utc::now().timestamp());
        let rotated = PlaybackKeys::parse(&format!("new:{B},old:{A}"), 60).unwrap();
        assert_eq!(rotated.verify(Some(&token), VideoId::new(3)).unwrap().sub, "7");
        let (fresh, _) = rotated.issue("7", VideoId::new(3), chrono::Utc::now().timestamp());
        assert!(
            fresh.len() > 20 && old.verify(Some(&fresh), VideoId::new(3)).is_err(),
            "old servers cannot read new-key tokens"
        );
        let dropped = PlaybackKeys::parse(&format!("new:{B}"), 60).unwrap();
        assert_eq!(
            dropped.verify(Some(&token), VideoId::new(3)).unwrap_err(),
            PlaybackTokenError::Invalid
        );
    }

    #[test]
    fn a_remembered_token_still_opens_one_video_and_still_expires() {
        let keys = PlaybackKeys::parse(&format!("k:{A}"), 1).unwrap();
        let (token, exp) = keys.issue("1", VideoId::new(5), chrono::Utc::now().timestamp());
        for _ in 0..2 {
            assert_eq!(keys.verify(Some(&token), VideoId::new(5)).unwrap().sub, "1");
            assert_eq!(
                keys.verify(Some(&token), VideoId::new(6)).unwrap_err(),
                PlaybackTokenError::WrongVideo
            );
        }
        assert_eq!(keys.verified.lock().unwrap().len(), 1, "verified once, remembered");
        while chrono::Utc::now().timestamp() <= exp {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(
            keys.verify(Some(&token), VideoId::new(5)).unwrap_err(),
            PlaybackTokenError::Expired
        );
        // A forged token that shares nothing but a prefix is not taken for the remembered one.
        let i = token.len() - 10;
        let flipped = if token.as_bytes()[i] == b'A' { "B" } else { "A" };
        let forged = format!("{}{flipped}{}", &token[..i], &token[i + 1..]);
        assert_eq!(
            keys.verify(Some(&forged), VideoId::new(5)).unwrap_err(),
            PlaybackTokenError::Invalid
        );
    }

    #[test]
    fn tokens_open_one_video_until_they_expire() {
        let keys = PlaybackKeys::parse(&format!("k:{A}"), 60).unwrap();
        let now = chrono::Utc::now().timestamp();
        let (token, _) = keys.issue("1", VideoId::new(5), now);
        assert_eq!(
            keys.verify(Some(&token), VideoId::new(6)).unwrap_err(),
            PlaybackTokenError::WrongVideo
        );
        let (stale, _) = keys.issue("1", VideoId::new(5), now - 3600);
        assert_eq!(
            keys.verify(Some(&stale), VideoId::new(5)).unwrap_err(),
            PlaybackTokenError::Expired
        );
        assert_eq!(keys.verify(None, VideoId::new(5)).unwrap_err(), PlaybackTokenError::Missing);
        assert!(PlaybackKeys::parse("short:abc", 60).is_err());
        assert!(PlaybackKeys::parse("", 60).is_err());
    }
}
