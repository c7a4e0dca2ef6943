//! Playback sessions: one per `POST /lectures/{id}/playback`, named by the `sid` of its token.
//!
//! A session is active while its player keeps fetching playlists or the key (media playlists
//! repeat the key line under a new URI every `LECTERN_KEY_REFRESH_SECS` of video, so a playing
//! session fetches the key again and again). A student account may hold
//! `LECTERN_MAX_CONCURRENT_STREAMS` active sessions: a new one beyond that is refused (429
//! `too_many_streams`), and so is the key to a session that went idle and came back while the
//! account was already watching elsewhere up to the limit. Revoking an enrollment (a refund)
//! ends the account's sessions of that course: their next key fetch is refused (403
//! `session_ended`). Instructors and admins have no limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::accounts::{Caller, Role};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::types::{CourseId, LectureId, VideoId};

/// What the configuration says about sessions.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Active sessions per student account; 0: no limit.
    pub max_concurrent: u64,
    /// Seconds without a playlist or key fetch after which a session is idle.
    pub idle_secs: i64,
    /// Seconds of video between repeated key lines (0: one key line).
    pub key_refresh_secs: u64,
}

/// How often one node writes a session's playlist fetches to the database.
const PLAYLIST_BEAT: Duration = Duration::from_secs(15);

/// The sessions' last beats this node wrote, so playlist fetches cost no write each.
#[derive(Default)]
pub struct Beats(Mutex<HashMap<String, Instant>>);

fn too_many(limits: &StreamLimits) -> Error {
    Error::LimitReached {
        code: "too_many_streams",
        message: format!(
            "this account is already watching on {} devices: stop one of them (it stops counting {} s after its last fetch) and try again",
            limits.max_concurrent, limits.idle_secs
        ),
        retry_after_secs: Some(limits.idle_secs.max(1) as u64),
    }
}

fn limited(caller: Option<&Caller>, limits: &StreamLimits) -> bool {
    limits.max_concurrent > 0 && caller.is_some_and(|c| c.role == Role::Student)
}

/// Active sessions of `user` other than `except`, as of `t`.
async fn active_others(
    db: &Db,
    user: i64,
    except: &str,
    t: i64,
    limits: &StreamLimits,
) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM playback_sessions WHERE user_id = $1 AND id <> $2 \
         AND ended_at IS NULL AND last_seen_at >= $3",
    )
    .bind(user)
    .bind(except)
    .bind(t - limits.idle_secs)
    .fetch_one(db.pool())
    .await?;
    Ok(n)
}

/// Record a new session of `caller` (anonymous for a signed-out preview) and return its id;
/// refused past the account's limit.
pub async fn open(
    db: &Db,
    limits: &StreamLimits,
    caller: Option<&Caller>,
    course: CourseId,
    lecture: LectureId,
    video: VideoId,
    t: i64,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let user = caller.map(|c| c.user_id.get());
    sqlx::query(
        "INSERT INTO playback_sessions (id, user_id, course_id, lecture_id, video_id, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&id)
    .bind(user)
    .bind(course)
    .bind(lecture)
    .bind(video)
    .bind(t)
    .execute(db.pool())
    .await?;
    // Counted after the insert: of two sessions opened at once past the limit, neither stays.
    if let (true, Some(user)) = (limited(caller, limits), user) {
        if active_others(db, user, &id, t, limits).await? >= limits.max_concurrent as i64 {
            sqlx::query("DELETE FROM playback_sessions WHERE id = $1")
                .bind(&id)
                .execute(db.pool())
                .await?;
            return Err(too_many(limits));
        }
    }
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    user_id: Option<i64>,
    last_seen_at: i64,
    ended_at: Option<i64>,
    /// The account's role (none for a signed-out preview).
    role: Option<String>,
}

/// A key fetch of session `sid`, of the key line `part` (0 the first, `n` the one repeated
/// after `n × key_refresh_secs` of video): refused when the session ended, or when it had gone
/// idle and its account is meanwhile watching elsewhere up to the limit; otherwise the session
/// is active again and has been served at least up to that part.
pub async fn key_fetched(
    db: &Db,
    limits: &StreamLimits,
    sid: &str,
    part: u32,
    t: i64,
) -> Result<()> {
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT s.user_id, s.last_seen_at, s.ended_at, u.role FROM playback_sessions s \
         LEFT JOIN users u ON u.id = s.user_id WHERE s.id = $1",
    )
    .bind(sid)
    .fetch_optional(db.pool())
    .await?;
    let Some(SessionRow { user_id: user, last_seen_at: last_seen, ended_at: ended, role }) = row
    else {
        return Err(Error::denied(
            "session_ended",
            "this playback session has ended; start playback again",
        ));
    };
    if ended.is_some() {
        return Err(Error::denied(
            "session_ended",
            "this playback session has ended (the enrollment was revoked)",
        ));
    }
    let student = role.as_deref() == Some(Role::Student.as_str());
    if let (true, true, Some(user)) =
        (limits.max_concurrent > 0 && student, last_seen < t - limits.idle_secs, user)
    {
        if active_others(db, user, sid, t, limits).await? >= limits.max_concurrent as i64 {
            return Err(too_many(limits));
        }
    }
    let reached = f64::from(part) * limits.key_refresh_secs as f64;
    sqlx::query(
        "UPDATE playback_sessions SET last_seen_at = CASE WHEN last_seen_at < $2 THEN $2 ELSE last_seen_at END, \
         key_fetches = key_fetches + 1, \
         served_seconds = CASE WHEN served_seconds < $3 THEN $3 ELSE served_seconds END WHERE id = $1",
    )
    .bind(sid)
    .bind(t)
    .bind(reached)
    .execute(db.pool())
    .await?;
    Ok(())
}

impl Beats {
    /// A playlist fetch of session `sid`: written at most every [`PLAYLIST_BEAT`] per node.
    pub async fn playlist_fetched(&self, db: &Db, sid: &str, t: i64) -> Result<()> {
        {
            let mut beats = self.0.lock().expect("beats lock");
            if beats.get(sid).is_some_and(|at| at.elapsed() < PLAYLIST_BEAT) {
                return Ok(());
            }
            if beats.len() >= 100_000 {
                beats.clear();
            }
            beats.insert(sid.to_string(), Instant::now());
        }
        sqlx::query(
            "UPDATE playback_sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2 AND ended_at IS NULL",
        )
        .bind(sid)
        .bind(t)
        .execute(db.pool())
        .await?;
        Ok(())
    }
}
