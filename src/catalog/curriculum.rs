//! Curriculum editing: sections and lectures, their order and their text.

use super::*;
use crate::types::text::TextRule;

/// A position given by a client, clamped into `1..=count+1` (append when absent).
fn slot(requested: Option<i64>, count: i64) -> Result<i64> {
    match requested {
        None => Ok(count + 1),
        Some(p) if p < 1 => Err(Error::invalid("invalid_position", "position starts at 1")),
        Some(p) => Ok(p.min(count + 1)),
    }
}

/// A curriculum change in progress: a transaction holding course `course_id`'s lock (see
/// [`db::lock_course`]). Everything it reads is current and nobody else changes the
/// course's order until it commits. 404 `what` when the course is gone.
async fn curriculum_tx(
    db: &Db,
    course_id: CourseId,
    what: &'static str,
) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    let mut tx = db.begin().await?;
    if !db::lock_course(&mut tx, course_id).await? {
        return Err(Error::not_found(what));
    }
    Ok(tx)
}

pub async fn create_section(
    db: &Db,
    caller: &Caller,
    course_id: CourseId,
    title: &str,
    position: Option<i64>,
) -> Result<Section> {
    editable_course(db, caller, course_id).await?;
    let title = text("title", title, TextRule::TITLE)?;
    let mut tx = curriculum_tx(db, course_id, "course").await?;
    let pos = slot(position, db::child_count(&mut tx, Ordered::Section, course_id).await?)?;
    db::open_gap(&mut tx, Ordered::Section, course_id, pos).await?;
    let id = db::insert_section(&mut tx, course_id, &title, pos, now()).await?;
    tx.commit().await?;
    Ok(Section { id, course_id, title, position: pos, lectures: vec![] })
}

async fn editable_section(db: &Db, caller: &Caller, id: SectionId) -> Result<SectionRow> {
    let section = db::section(db.pool(), id).await?.ok_or(Error::not_found("section"))?;
    editable_course(db, caller, section.course_id).await.map_err(|e| match e {
        Error::NotFound { .. } => Error::not_found("section"),
        other => other,
    })?;
    Ok(section)
}

/// Rename and/or move a section within its course.
pub async fn update_section(
    db: &Db,
    caller: &Caller,
    id: SectionId,
    title: Option<&str>,
    position: Option<i64>,
) -> Result<Section> {
    let course_id = editable_section(db, caller, id).await?.course_id;
    let title = title.map(|t| text("title", t, TextRule::TITLE)).transpose()?;
    let mut tx = curriculum_tx(db, course_id, "section").await?;
    let s = db::section(&mut *tx, id).await?.ok_or(Error::not_found("section"))?;
    if let Some(t) = title {
        db::rename_section(&mut tx, id, &t).await?;
    }
    if let Some(p) = position {
        let count = db::child_count(&mut tx, Ordered::Section, course_id).await?;
        let p = slot(Some(p), count - 1)?;
        if p != s.position {
            db::place(&mut tx, Ordered::Section, id, course_id, 0).await?;
            db::close_gap(&mut tx, Ordered::Section, course_id, s.position).await?;
            db::open_gap(&mut tx, Ordered::Section, course_id, p).await?;
            db::place(&mut tx, Ordered::Section, id, course_id, p).await?;
        }
    }
    tx.commit().await?;
    let s = db::section(db.pool(), id).await?.ok_or(Error::not_found("section"))?;
    let lectures = db::lectures_of_course(db, s.course_id)
        .await?
        .into_iter()
        .filter(|l| l.section_id == id)
        .map(|l| Lecture::from_row(l, true))
        .collect();
    Ok(Section { id, course_id: s.course_id, title: s.title, position: s.position, lectures })
}

pub async fn delete_section(db: &Db, caller: &Caller, id: SectionId) -> Result<Vec<VideoId>> {
    let course_id = editable_section(db, caller, id).await?.course_id;
    let videos = crate::media::db::video_ids_of_section(db, id).await?;
    let mut tx = curriculum_tx(db, course_id, "section").await?;
    let s = db::section(&mut *tx, id).await?.ok_or(Error::not_found("section"))?;
    db::delete_row(&mut tx, Ordered::Section, id).await?;
    db::close_gap(&mut tx, Ordered::Section, course_id, s.position).await?;
    db::refresh_course_duration(&mut *tx, course_id).await?;
    tx.commit().await?;
    Ok(videos)
}

/// A new lecture in a section.
pub struct LectureInput {
    pub title: String,
    pub description: Option<String>,
    pub is_preview: bool,
    pub position: Option<i64>,
}

pub async fn create_lecture(
    db: &Db,
    caller: &Caller,
    section_id: SectionId,
    input: LectureInput,
) -> Result<Lecture> {
    let course_id = editable_section(db, caller, section_id).await?.course_id;
    let title = text("title", &input.title, TextRule::TITLE)?;
    let description =
        text("description", input.description.as_deref().unwrap_or(""), TextRule::DESCRIPTION)?;
    let mut tx = curriculum_tx(db, course_id, "section").await?;
    db::section(&mut *tx, section_id).await?.ok_or(Error::not_found("section"))?;
    let pos = slot(input.position, db::child_count(&mut tx, Ordered::Lecture, section_id).await?)?;
    db::open_gap(&mut tx, Ordered::Lecture, section_id, pos).await?;
    let new = NewLecture {
        section_id,
        course_id,
        title: &title,
        description: &description,
        position: pos,
        is_preview: input.is_preview,
    };
    let id = db::insert_lecture(&mut tx, &new, now()).await?;
    tx.commit().await?;
    let row = db::lecture(db.pool(), id).await?.ok_or(Error::not_found("lecture"))?;
    Ok(Lecture::from_row(row, true))
}

/// Changes to a lecture; `section_id` moves it to another section of the same course.
#[derive(Default)]
pub struct LecturePatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub is_preview: Option<bool>,
    pub position: Option<i64>,
    pub section_id: Option<SectionId>,
}

/// Change a lecture's text and/or move it, in one transaction.
pub async fn update_lecture(
    db: &Db,
    caller: &Caller,
    id: LectureId,
    p: LecturePatch,
) -> Result<Lecture> {
    let (_, course) = editable_lecture(db, caller, id).await?;
    let title = p.title.as_deref().map(|t| text("title", t, TextRule::TITLE)).transpose()?;
    let description = p
        .description
        .as_deref()
        .map(|d| text("description", d, TextRule::DESCRIPTION))
        .transpose()?;
    let mut tx = curriculum_tx(db, course.id, "lecture").await?;
    let lecture = db::lecture(&mut *tx, id).await?.ok_or(Error::not_found("lecture"))?;
    if p.position.is_some() || p.section_id.is_some_and(|s| s != lecture.section_id) {
        let target = p.section_id.unwrap_or(lecture.section_id);
        let section = db::section(&mut *tx, target)
            .await?
            .filter(|s| s.course_id == course.id)
            .ok_or_else(|| {
                Error::invalid(
                    "invalid_section",
                    "section_id must name a section of the same course",
                )
            })?;
        let mut count = db::child_count(&mut tx, Ordered::Lecture, section.id).await?;
        if section.id == lecture.section_id {
            count -= 1;
        }
        let pos = slot(p.position, count)?;
        if (section.id, pos) != (lecture.section_id, lecture.position) {
            db::place(&mut tx, Ordered::Lecture, id, lecture.section_id, 0).await?;
            db::close_gap(&mut tx, Ordered::Lecture, lecture.section_id, lecture.position).await?;
            db::open_gap(&mut tx, Ordered::Lecture, section.id, pos).await?;
            db::place(&mut tx, Ordered::Lecture, id, section.id, pos).await?;
        }
    }
    db::update_lecture_text(
        &mut tx,
        id,
        title.as_deref(),
        description.as_deref(),
        p.is_preview,
        now(),
    )
    .await?;
    tx.commit().await?;
    let row = db::lecture(db.pool(), id).await?.ok_or(Error::not_found("lecture"))?;
    Ok(Lecture::from_row(row, true))
}

/// Delete a lecture; returns the ids of its videos, whose stored objects the caller removes.
pub async fn delete_lecture(db: &Db, caller: &Caller, id: LectureId) -> Result<Vec<VideoId>> {
    let (_, course) = editable_lecture(db, caller, id).await?;
    let videos = crate::media::db::video_ids_of_lecture(db, id).await?;
    let mut tx = curriculum_tx(db, course.id, "lecture").await?;
    let lecture = db::lecture(&mut *tx, id).await?.ok_or(Error::not_found("lecture"))?;
    db::delete_row(&mut tx, Ordered::Lecture, id).await?;
    db::close_gap(&mut tx, Ordered::Lecture, lecture.section_id, lecture.position).await?;
    db::refresh_course_duration(&mut *tx, course.id).await?;
    tx.commit().await?;
    Ok(videos)
}
