//! Captions: WebVTT or SRT files per lecture and language, kept as WebVTT in the database and
//! served beside the video as an HLS subtitle rendition (see [`crate::playback::subtitles`]).
//!
//! Captions belong to the lecture, not to one transcode: they are added, replaced or removed
//! at any time, the video is never transcoded again for them, and a replacement video shows
//! the same captions.

pub mod parse;
pub mod routes;

use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::Caller;
use crate::catalog::db::CourseRow;
use crate::db::{now, Db};
use crate::error::{Error, Result};
use crate::types::{lang, CourseId, LectureId, VideoId};
use parse::Cue;

/// A caption track as the lecture's viewers see it listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaptionTrack {
    /// BCP 47 language tag, canonical case.
    pub lang: String,
    pub label: String,
    /// In the course's language: players turn it on by themselves.
    pub default: bool,
}

/// The answer to a stored caption file.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaptionSaved {
    pub lang: String,
    pub label: String,
    /// How many cues it holds.
    pub cues: i64,
}

/// The captions of a lecture.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaptionList {
    pub items: Vec<CaptionTrack>,
}

/// A stored track with its cues, for the segment server.
#[derive(Debug)]
pub struct StoredTrack {
    pub track: CaptionTrack,
    pub cues: Vec<Cue>,
    pub updated_at: i64,
}

fn invalid(code: &'static str, message: impl Into<String>) -> Error {
    Error::invalid(code, message)
}

/// The longest label accepted.
const MAX_LABEL: usize = 100;

/// Store `body` (WebVTT or SRT) as `lecture_id`'s captions in `lang`, replacing any; true when
/// the language is new to the lecture.
pub async fn put(
    db: &Db,
    caller: &Caller,
    lecture_id: LectureId,
    lang: &str,
    label: Option<&str>,
    body: &[u8],
) -> Result<(bool, CaptionSaved)> {
    let (lecture, _) = crate::catalog::editable_lecture(db, caller, lecture_id).await?;
    let lang = lang::canonical(lang).map_err(|e| invalid("invalid_language", e))?;
    let label = match label.map(str::trim) {
        Some(l)
            if l.is_empty() || l.chars().count() > MAX_LABEL || l.chars().any(char::is_control) =>
        {
            return Err(invalid(
                "invalid_label",
                format!("a label is 1 to {MAX_LABEL} characters of text"),
            ))
        }
        Some(l) => l.to_string(),
        None => lang::name(&lang),
    };
    let duration_ms = lecture.duration_seconds.map(|d| (d * 1000.0).round() as u64);
    let (_, cues) = parse::parse(body, duration_ms).map_err(|e| {
        let code =
            if body.len() > parse::MAX_BYTES { "captions_too_large" } else { "invalid_captions" };
        invalid(code, e.to_string())
    })?;
    let vtt = parse::to_vtt(&cues);
    let t = now();
    let mut tx = db.begin().await?;
    let existed: Option<(i64,)> =
        sqlx::query_as("SELECT updated_at FROM captions WHERE lecture_id = $1 AND lang = $2")
            .bind(lecture_id)
            .bind(&lang)
            .fetch_optional(&mut *tx)
            .await?;
    sqlx::query(
        "INSERT INTO captions (lecture_id, lang, label, vtt, cues, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (lecture_id, lang) DO UPDATE SET \
         label = excluded.label, vtt = excluded.vtt, cues = excluded.cues, updated_at = excluded.updated_at",
    )
    .bind(lecture_id)
    .bind(&lang)
    .bind(&label)
    .bind(&vtt)
    .bind(cues.len() as i64)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((existed.is_none(), CaptionSaved { lang, label, cues: cues.len() as i64 }))
}

/// Remove `lecture_id`'s captions in `lang`.
pub async fn delete(db: &Db, caller: &Caller, lecture_id: LectureId, lang: &str) -> Result<()> {
    crate::catalog::editable_lecture(db, caller, lecture_id).await?;
    let lang = lang::canonical(lang).map_err(|_| Error::not_found("captions"))?;
    let done = sqlx::query("DELETE FROM captions WHERE lecture_id = $1 AND lang = $2")
        .bind(lecture_id)
        .bind(&lang)
        .execute(db.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("captions"));
    }
    Ok(())
}

fn tracks(course: &CourseRow, rows: &[(String, String)]) -> Vec<CaptionTrack> {
    let default = rows.iter().position(|(l, _)| lang::same_language(l, &course.language));
    rows.iter()
        .enumerate()
        .map(|(i, (lang, label))| CaptionTrack {
            lang: lang.clone(),
            label: label.clone(),
            default: Some(i) == default,
        })
        .collect()
}

/// The captions of a lecture, for anyone who may watch it.
pub async fn list(db: &Db, caller: Option<&Caller>, lecture_id: LectureId) -> Result<CaptionList> {
    let (lecture, course) = crate::catalog::visible_lecture(db, caller, lecture_id).await?;
    crate::learning::require_watch(db, caller, &course, &lecture, "see this lecture's captions")
        .await?;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT lang, label FROM captions WHERE lecture_id = $1 ORDER BY lang")
            .bind(lecture_id)
            .fetch_all(db.pool())
            .await?;
    Ok(CaptionList { items: tracks(&course, &rows) })
}

/// The caption tracks of the lecture `video` belongs to, with their cues (the segment server's
/// view: its token was already checked).
pub async fn of_video(db: &Db, video: VideoId) -> Result<Vec<StoredTrack>> {
    let rows: Vec<(String, String, String, i64, CourseId)> = sqlx::query_as(
        "SELECT c.lang, c.label, c.vtt, c.updated_at, l.course_id FROM captions c \
         JOIN videos v ON v.lecture_id = c.lecture_id JOIN lectures l ON l.id = c.lecture_id \
         WHERE v.id = $1 ORDER BY c.lang",
    )
    .bind(video)
    .fetch_all(db.pool())
    .await?;
    let Some(course_id) = rows.first().map(|r| r.4) else { return Ok(Vec::new()) };
    let course =
        crate::catalog::db::course(db, course_id).await?.ok_or(Error::not_found("course"))?;
    let names: Vec<(String, String)> = rows.iter().map(|r| (r.0.clone(), r.1.clone())).collect();
    let listed = tracks(&course, &names);
    let mut out = Vec::with_capacity(rows.len());
    for (track, (_, _, vtt, updated_at, _)) in listed.into_iter().zip(rows) {
        // Stored text was written by `to_vtt` from checked cues: it reads back.
        let cues = parse::parse(vtt.as_bytes(), None)
            .map_err(|e| Error::internal(anyhow::anyhow!("stored captions do not parse: {e}")))?
            .1;
        out.push(StoredTrack { track, cues, updated_at });
    }
    Ok(out)
}
