//! `lectern demo`: fill an empty instance with an instructor, a student and a few courses whose
//! lectures have real (synthetic, generated in-process) videos, transcoded by the same worker
//! code `lectern serve` runs — so a newcomer sees the whole product in a minute.

use std::time::Duration;

use anyhow::{bail, Context};

use crate::accounts::{Caller, Role};
use crate::app::AppState;
use crate::catalog::{CourseInput, LectureInput};
use crate::db::now;
use crate::media::worker::{WorkerCtx, WorkerSettings};
use crate::storage::{keys, stream_from_reader};

/// Password of the demo accounts.
pub const DEMO_PASSWORD: &str = "lectern-demo";
pub const DEMO_INSTRUCTOR: &str = "instructor@demo.lectern.dev";
pub const DEMO_STUDENT: &str = "student@demo.lectern.dev";

struct DemoCourse {
    title: &'static str,
    description: &'static str,
    price: i64,
    sections: &'static [(&'static str, &'static [&'static str])],
}

const COURSES: &[DemoCourse] = &[
    DemoCourse {
        title: "러스트로 만드는 동영상 서버",
        description: "Build a lecture-video server in Rust: uploads, HLS transcoding with FFmpeg, signed playback.",
        price: 55_000,
        sections: &[("시작하기 · Getting started", &["Welcome (free preview)", "The HLS ladder"]), ("Playback", &["Signed tokens"])],
    },
    DemoCourse {
        title: "HLS Streaming Basics",
        description: "Playlists, segments and adaptive bitrate in fifteen minutes. Free.",
        price: 0,
        sections: &[("Basics", &["What is a segment?", "Master and media playlists"])],
    },
];

/// What the demo made, for the summary printed at the end.
pub struct DemoSummary {
    pub courses: Vec<(i64, String)>,
    pub preview_lecture: i64,
    pub videos: usize,
}

/// Fill the instance. Refuses when it already has users.
pub async fn fill(st: &AppState, progress: &mut dyn FnMut(&str)) -> anyhow::Result<DemoSummary> {
    let (users,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(st.db.pool()).await?;
    if users > 0 {
        bail!("this instance already has users; `lectern demo` only fills an empty one (use a fresh --data-dir)");
    }
    let err = |e: crate::accounts::AccountError| anyhow::anyhow!("{e}");
    let teacher = st
        .accounts
        .create_user(DEMO_INSTRUCTOR, DEMO_PASSWORD, "김강사 (Demo Instructor)", Role::Instructor)
        .await
        .map_err(err)?;
    let student = st
        .accounts
        .create_user(DEMO_STUDENT, DEMO_PASSWORD, "이학생 (Demo Student)", Role::Student)
        .await
        .map_err(err)?;
    let caller = Caller { user_id: teacher.id, role: Role::Instructor, session_id: String::new() };
    let category: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM categories WHERE parent_id IS NOT NULL ORDER BY id LIMIT 1")
            .fetch_optional(st.db.pool())
            .await?;
    let api = |e: crate::error::Error| anyhow::anyhow!("{e}");

    let scratch = st.cfg.data_dir.join("scratch").join("demo");
    tokio::fs::create_dir_all(&scratch).await?;
    let mut summary = DemoSummary { courses: Vec::new(), preview_lecture: 0, videos: 0 };
    let mut videos = Vec::new();
    for (ci, c) in COURSES.iter().enumerate() {
        let input = CourseInput {
            title: c.title.into(),
            description: Some(c.description.into()),
            price: c.price,
            currency: Some("KRW".into()),
            category_id: category.map(|c| c.0),
            level: Some("beginner".into()),
        };
        let course = crate::catalog::create_course(&st.db, &caller, input).await.map_err(api)?;
        let course_id = course.course.id;
        for (si, (section_title, lectures)) in c.sections.iter().enumerate() {
            let section =
                crate::catalog::create_section(&st.db, &caller, course_id, section_title, None)
                    .await
                    .map_err(api)?;
            for (li, title) in lectures.iter().enumerate() {
                let is_preview = si == 0 && li == 0;
                let input = LectureInput {
                    title: (*title).into(),
                    description: None,
                    is_preview,
                    position: None,
                };
                let lecture = crate::catalog::create_lecture(&st.db, &caller, section.id, input)
                    .await
                    .map_err(api)?;
                if is_preview && ci == 0 {
                    summary.preview_lecture = lecture.id;
                }
                progress(&format!("making a video for “{title}”"));
                let clip = scratch.join(format!("lecture-{}.mp4", lecture.id));
                let (w, h, secs, tone) =
                    if li % 2 == 0 { (1280, 720, 12.0, 440) } else { (854, 480, 8.0, 660) };
                let path = clip.clone();
                tokio::task::spawn_blocking(move || {
                    lectern_workers::write_sample_clip(&path, w, h, secs, tone)
                })
                .await?
                .map_err(|e| anyhow::anyhow!("generating a demo clip: {e}"))?;
                let video_id = crate::media::db::insert_video(
                    st.db.pool(),
                    lecture.id,
                    teacher.id,
                    "demo.mp4",
                    now(),
                )
                .await?;
                let file = tokio::fs::File::open(&clip).await?;
                let meta = st
                    .storage
                    .put(&keys::source(video_id), stream_from_reader(file), "video/mp4")
                    .await?;
                crate::media::db::set_source_size(st.db.pool(), video_id, meta.size as i64, now())
                    .await?;
                crate::media::queue::enqueue(
                    st.db.pool(),
                    video_id,
                    st.cfg.job_max_attempts as i64,
                )
                .await?;
                let _ = tokio::fs::remove_file(&clip).await;
                videos.push(video_id);
            }
        }
        crate::catalog::publish_course(&st.db, &caller, course_id).await.map_err(api)?;
        if ci == 0 {
            crate::learning::enroll(st.db.pool(), student.id, course_id, "demo").await?;
        }
        summary.courses.push((course_id, c.title.to_string()));
    }

    // Transcode with one in-process worker, the same code `lectern serve`'s pool runs.
    let ctx = WorkerCtx::new(WorkerSettings::from(&*st.cfg), st.db.clone(), st.storage.clone())?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let worker =
        tokio::spawn(crate::media::worker::run(ctx, format!("demo-{}", std::process::id()), rx));
    loop {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT status FROM videos").fetch_all(st.db.pool()).await?;
        let done = rows.iter().filter(|r| r.0 == "ready" || r.0 == "failed").count();
        progress(&format!("transcoding: {done}/{} videos done", rows.len()));
        if done == rows.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let _ = tx.send(true);
    worker.await.context("demo worker")?;
    let (failed,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM videos WHERE status = 'failed'")
        .fetch_one(st.db.pool())
        .await?;
    if failed > 0 {
        bail!("{failed} demo video(s) failed to transcode; see the log");
    }
    summary.videos = videos.len();
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    Ok(summary)
}
