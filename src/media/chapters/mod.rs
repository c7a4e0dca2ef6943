//! Chapters: where a lecture's slides change, found when its video is transcoded (see
//! `lectern_workers`' scene measure) and editable by its owner.
//!
//! A video's detected starts are kept per video (`video_chapters`), titled when read — "장 N"
//! for a Korean course, "Slide N" otherwise — so a course's language decides them. An owner's
//! edit is kept per lecture (`lecture_chapters`) and, when present, replaces the detected ones;
//! like captions it outlives a replaced video (chapters past the new video's end are dropped
//! when it is published). Served as JSON and as a WebVTT chapters track beside the video
//! (`/hls/{video}/chapters.vtt`).

pub mod routes;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::Caller;
use crate::catalog::db::{CourseRow, LectureRow};
use crate::catalog::text;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::media::captions::parse::{to_vtt, Cue};
use crate::types::text::TextRule;
use crate::types::{lang, LectureId, VideoId};

/// Most chapters one lecture may have.
pub const MAX_CHAPTERS: usize = 500;

/// One chapter: where it starts and what it is called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Chapter {
    /// Seconds from the start of the video (millisecond precision); the first is 0.
    #[schema(minimum = 0)]
    pub start_seconds: f64,
    #[schema(schema_with = crate::types::text::title)]
    pub title: String,
}

/// Where a lecture's chapters come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChapterSource {
    /// Found in the video where its picture changes at once.
    Detected,
    /// Set by the course's owner.
    Edited,
}

/// A lecture's chapters, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChapterList {
    pub items: Vec<Chapter>,
    pub source: ChapterSource,
}

/// A new list of chapters for a lecture.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChapterEdit {
    /// The first starts at 0; starts increase and stay within the video's duration.
    #[schema(min_items = 1, max_items = 500)]
    pub items: Vec<Chapter>,
}

/// A detected chapter's title: "장 N" in a Korean course, "Slide N" in any other.
fn default_title(language: &str, n: usize) -> String {
    if lang::same_language(language, "ko") {
        format!("장 {n}")
    } else {
        format!("Slide {n}")
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The chapters of `lecture_id` playing `video` (`None`: no video yet) in a course taught in
/// `language`: its owner's when there are any and `video` is the one it plays, else those
/// found in `video` (one from the start for a video made before chapters were found).
async fn chapters_of(
    db: &Db,
    lecture_id: LectureId,
    video: Option<VideoId>,
    plays: Option<VideoId>,
    language: &str,
) -> Result<ChapterList> {
    if video.is_some() && video == plays {
        let edited: Vec<(i64, String)> = sqlx::query_as(
            "SELECT start_ms, title FROM lecture_chapters WHERE lecture_id = $1 ORDER BY start_ms",
        )
        .bind(lecture_id)
        .fetch_all(db.pool())
        .await?;
        if !edited.is_empty() {
            let items = edited
                .into_iter()
                .map(|(ms, title)| Chapter { start_seconds: seconds(ms), title })
                .collect();
            return Ok(ChapterList { items, source: ChapterSource::Edited });
        }
    }
    let Some(video) = video else {
        return Ok(ChapterList { items: Vec::new(), source: ChapterSource::Detected });
    };
    let mut starts: Vec<i64> =
        sqlx::query_as("SELECT start_ms FROM video_chapters WHERE video_id = $1 ORDER BY start_ms")
            .bind(video)
            .fetch_all(db.pool())
            .await?
            .into_iter()
            .map(|(ms,): (i64,)| ms)
            .collect();
    if starts.is_empty() {
        starts.push(0);
    }
    let items = starts
        .into_iter()
        .enumerate()
        .map(|(i, ms)| Chapter {
            start_seconds: seconds(ms),
            title: default_title(language, i + 1),
        })
        .collect();
    Ok(ChapterList { items, source: ChapterSource::Detected })
}

async fn of_lecture(db: &Db, lecture: &LectureRow, course: &CourseRow) -> Result<ChapterList> {
    chapters_of(db, lecture.id, lecture.video_id, lecture.video_id, &course.language).await
}

/// The chapters of a lecture, for anyone who may watch it.
pub async fn list(db: &Db, caller: Option<&Caller>, lecture_id: LectureId) -> Result<ChapterList> {
    let (lecture, course) = crate::catalog::visible_lecture(db, caller, lecture_id).await?;
    crate::learning::require_watch(db, caller, &course, &lecture, "see this lecture's chapters")
        .await?;
    of_lecture(db, &lecture, &course).await
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid("invalid_chapters", message)
}

/// Check an edit against a video of `duration` seconds: starts in milliseconds, titles trimmed.
fn checked(items: &[Chapter], duration: f64) -> Result<Vec<(i64, String)>> {
    if items.is_empty() || items.len() > MAX_CHAPTERS {
        return Err(invalid(format!("a lecture has 1 to {MAX_CHAPTERS} chapters")));
    }
    let end_ms = (duration * 1000.0).round() as i64;
    let mut out: Vec<(i64, String)> = Vec::with_capacity(items.len());
    for (i, c) in items.iter().enumerate() {
        let n = i + 1;
        if !c.start_seconds.is_finite() || c.start_seconds < 0.0 {
            return Err(invalid(format!("chapter {n} starts at a time that is not a time")));
        }
        let ms = (c.start_seconds * 1000.0).round() as i64;
        if i == 0 && ms != 0 {
            return Err(invalid("the first chapter starts at 0"));
        }
        if out.last().is_some_and(|(prev, _)| ms <= *prev) {
            return Err(invalid(format!("chapter {n} does not start after chapter {i}")));
        }
        if i > 0 && ms >= end_ms {
            return Err(invalid(format!(
                "chapter {n} starts at {:.3} s, past the end of the {duration:.3}-second video",
                c.start_seconds
            )));
        }
        let title = text("title", &c.title, TextRule::TITLE)
            .map_err(|_| invalid(format!("chapter {n} needs a title of 1 to 200 characters")))?;
        out.push((ms, title));
    }
    Ok(out)
}

/// Replace a lecture's chapters with its owner's `items`.
pub async fn put(
    db: &Db,
    caller: &Caller,
    lecture_id: LectureId,
    items: &[Chapter],
) -> Result<ChapterList> {
    let (lecture, course) = crate::catalog::editable_lecture(db, caller, lecture_id).await?;
    let ready = lecture.newest_video_status == Some(crate::media::VideoStatus::Ready);
    let (Some(_), Some(duration), true) = (lecture.video_id, lecture.duration_seconds, ready)
    else {
        return Err(Error::conflict(
            "video_not_ready",
            "chapters are set on a lecture whose video is ready",
        ));
    };
    let rows = checked(items, duration)?;
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM lecture_chapters WHERE lecture_id = $1")
        .bind(lecture_id)
        .execute(&mut *tx)
        .await?;
    for (ms, title) in &rows {
        sqlx::query(
            "INSERT INTO lecture_chapters (lecture_id, start_ms, title) VALUES ($1, $2, $3)",
        )
        .bind(lecture_id)
        .bind(ms)
        .bind(title)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    of_lecture(db, &lecture, &course).await
}

/// Drop the owner's chapters of a lecture: the detected ones apply again.
pub async fn reset(db: &Db, caller: &Caller, lecture_id: LectureId) -> Result<ChapterList> {
    let (lecture, course) = crate::catalog::editable_lecture(db, caller, lecture_id).await?;
    sqlx::query("DELETE FROM lecture_chapters WHERE lecture_id = $1")
        .bind(lecture_id)
        .execute(db.pool())
        .await?;
    of_lecture(db, &lecture, &course).await
}

/// The WebVTT chapters track of `video` (the segment server's view: its token was checked),
/// one cue per chapter running to the next one or to the end.
pub async fn vtt_of_video(db: &Db, video: VideoId) -> Result<String> {
    let row: Option<(LectureId, Option<VideoId>, Option<f64>, String)> = sqlx::query_as(
        "SELECT l.id, l.video_id, v.duration_seconds, c.language FROM videos v \
         JOIN lectures l ON l.id = v.lecture_id JOIN courses c ON c.id = l.course_id WHERE v.id = $1",
    )
    .bind(video)
    .fetch_optional(db.pool())
    .await?;
    let (lecture_id, plays, duration, language) = row.ok_or(Error::not_found("video"))?;
    let list = chapters_of(db, lecture_id, Some(video), plays, &language).await?;
    Ok(vtt(&list.items, duration.unwrap_or(0.0)))
}

/// The WebVTT track of `chapters` in a video of `duration` seconds.
fn vtt(chapters: &[Chapter], duration: f64) -> String {
    let end_ms = (duration * 1000.0).round() as u64;
    let cues: Vec<Cue> = chapters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let start_ms = (c.start_seconds * 1000.0).round() as u64;
            let next =
                chapters.get(i + 1).map_or(end_ms, |n| (n.start_seconds * 1000.0).round() as u64);
            Cue {
                id: Some(format!("chapter-{}", i + 1)),
                start_ms,
                end_ms: next.max(start_ms + 1),
                settings: String::new(),
                // A cue's text may not hold "-->".
                text: c.title.replace("-->", "->"),
            }
        })
        .collect();
    to_vtt(&cues)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: f64, t: &str) -> Chapter {
        Chapter { start_seconds: s, title: t.into() }
    }

    #[test]
    fn detected_titles_follow_the_course_language() {
        assert_eq!(default_title("ko", 2), "장 2");
        assert_eq!(default_title("ko-KR", 1), "장 1");
        assert_eq!(default_title("en", 3), "Slide 3");
    }

    #[test]
    fn edits_start_at_0_increase_and_stay_within_the_video() {
        let ok = checked(&[ch(0.0, " Intro "), ch(12.5, "Ownership")], 30.0).unwrap();
        assert_eq!(ok, vec![(0, "Intro".to_string()), (12_500, "Ownership".to_string())]);
        for (items, words) in [
            (vec![], "1 to 500"),
            (vec![ch(1.0, "a")], "starts at 0"),
            (
                vec![ch(0.0, "a"), ch(5.0, "b"), ch(5.0, "c")],
                "chapter 3 does not start after chapter 2",
            ),
            (vec![ch(0.0, "a"), ch(9.0, "b"), ch(4.0, "c")], "chapter 3"),
            (vec![ch(0.0, "a"), ch(30.0, "b")], "past the end"),
            (vec![ch(0.0, "a"), ch(f64::NAN, "b")], "not a time"),
            (vec![ch(0.0, "a"), ch(-1.0, "b")], "not a time"),
            (vec![ch(0.0, "  ")], "title"),
        ] {
            let e = checked(&items, 30.0).unwrap_err().to_string();
            assert!(e.contains(words), "{items:?}: {e}");
        }
        let many: Vec<Chapter> = (0..=MAX_CHAPTERS).map(|i| ch(i as f64, "x")).collect();
        assert!(checked(&many, 10_000.0).is_err());
    }

    #[test]
    fn the_track_has_a_cue_per_chapter_up_to_the_next_or_the_end() {
        let track = vtt(&[ch(0.0, "Intro"), ch(12.5, "A --> B")], 30.0);
        assert_eq!(
            track,
            "WEBVTT\n\nchapter-1\n00:00:00.000 --> 00:00:12.500\nIntro\n\n\
             chapter-2\n00:00:12.500 --> 00:00:30.000\nA -> B\n\n"
        );
    }
}
