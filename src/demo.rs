//! `lectern demo`: fill an empty instance with an instructor, a student and a few courses whose
//! lectures have real (synthetic, generated in-process) videos, transcoded by the same worker
//! code `lectern serve` runs — so a newcomer sees the whole product in a minute.

use crate::types::{CategoryId, CourseId, LectureId, VideoId};
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
    pub courses: Vec<(CourseId, String)>,
    pub preview_lecture: LectureId,
    pub videos: usize,
}

/// Fill the instance. Refuses when it already has users.
pub async fn fill(st: &AppState, progress: &mut dyn FnMut(&str)) -> anyhow::Result<DemoSummary> {
    if crate::accounts::db::user_count(&st.db).await? > 0 {
        bail!("this instance already has users; `lectern demo` only fills an empty one (use a fresh --data-dir)");
    }
    let teacher = st
        .accounts
        .create_user(DEMO_INSTRUCTOR, DEMO_PASSWORD, "김강사 (Demo Instructor)", Role::Instructor)
        .await?;
    let student = st
        .accounts
        .create_user(DEMO_STUDENT, DEMO_PASSWORD, "이학생 (Demo Student)", Role::Student)
        .await?;
    let scratch = st.cfg.data_dir.join("scratch").join("demo");
    tokio::fs::create_dir_all(&scratch).await?;
    let mut seeder = Seeder {
        st,
        caller: Caller { user_id: teacher.id, role: Role::Instructor, session_id: String::new() },
        category: crate::catalog::db::first_subcategory(&st.db).await?,
        scratch: scratch.clone(),
        videos: Vec::new(),
    };
    let (mut courses, mut first_preview) = (Vec::new(), None);
    for (ci, c) in COURSES.iter().enumerate() {
        let (course_id, preview) = seeder.course(c, progress).await?;
        if ci == 0 {
            first_preview = Some(preview);
            crate::learning::enroll(st.db.pool(), student.id, course_id, "demo").await?;
        }
        courses.push((course_id, c.title.to_string()));
    }
    transcode_all(st, progress).await?;
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    Ok(DemoSummary {
        courses,
        preview_lecture: first_preview.context("the demo has no courses")?,
        videos: seeder.videos.len(),
    })
}

/// What the demo's courses are made with.
struct Seeder<'a> {
    st: &'a AppState,
    /// The demo instructor.
    caller: Caller,
    category: Option<CategoryId>,
    scratch: std::path::PathBuf,
    videos: Vec<VideoId>,
}

impl Seeder<'_> {
    /// Make and publish course `c` with a video for each lecture; returns its id and the id of
    /// its free-preview lecture.
    async fn course(
        &mut self,
        c: &DemoCourse,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<(CourseId, LectureId)> {
        let db = &self.st.db;
        let input = CourseInput {
            title: c.title.into(),
            description: Some(c.description.into()),
            price: c.price,
            currency: Some("KRW".into()),
            category_id: self.category,
            language: Some("ko".into()),
            level: Some("beginner".into()),
        };
        let course_id = crate::catalog::create_course(db, &self.caller, input).await?.course.id;
        let mut preview = None;
        for (si, (section_title, lectures)) in c.sections.iter().enumerate() {
            let section =
                crate::catalog::create_section(db, &self.caller, course_id, section_title, None)
                    .await?;
            for (li, title) in lectures.iter().enumerate() {
                let is_preview = si == 0 && li == 0;
                let input = LectureInput {
                    title: (*title).into(),
                    description: None,
                    is_preview,
                    position: None,
                };
                let lecture =
                    crate::catalog::create_lecture(db, &self.caller, section.id, input).await?;
                if is_preview {
                    preview = Some(lecture.id);
                }
                progress(&format!("making a video for “{title}”"));
                self.video(lecture.id, li % 2 == 0).await?;
            }
        }
        crate::catalog::publish_course(db, &self.caller, course_id).await?;
        Ok((course_id, preview.context("a demo course has no free-preview lecture")?))
    }

    /// Generate a clip for `lecture_id` (720p or 480p), store it as the lecture's source and
    /// queue its transcode.
    async fn video(&mut self, lecture_id: LectureId, large: bool) -> anyhow::Result<()> {
        let st = self.st;
        let clip = self.scratch.join(format!("lecture-{lecture_id}.mp4"));
        let (w, h, secs, tone) = if large { (1280, 720, 12.0, 440) } else { (854, 480, 8.0, 660) };
        let path = clip.clone();
        tokio::task::spawn_blocking(move || {
            lectern_workers::write_sample_clip(&path, w, h, secs, tone)
        })
        .await?
        .context("generating a demo clip")?;
        let video_id = crate::media::db::insert_video(
            st.db.pool(),
            lecture_id,
            self.caller.user_id,
            "demo.mp4",
            now(),
        )
        .await?;
        let file = tokio::fs::File::open(&clip).await?;
        let meta =
            st.storage.put(&keys::source(video_id), stream_from_reader(file), "video/mp4").await?;
        crate::media::db::set_source_size(st.db.pool(), video_id, meta.size as i64, now()).await?;
        crate::media::queue::enqueue(st.db.pool(), video_id, st.cfg.job_max_attempts as i64)
            .await?;
        let _ = tokio::fs::remove_file(&clip).await;
        self.videos.push(video_id);
        Ok(())
    }
}

/// Transcode every queued video with one in-process worker, the same code `lectern serve`'s
/// pool runs, reporting as they finish.
async fn transcode_all(st: &AppState, progress: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    let ctx = WorkerCtx::new(WorkerSettings::from(&*st.cfg), st.db.clone(), st.storage.clone())?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let worker =
        tokio::spawn(crate::media::worker::run(ctx, format!("demo-{}", std::process::id()), rx));
    let counts = loop {
        let counts = crate::media::db::status_counts(&st.db).await?;
        progress(&format!("transcoding: {}/{} videos done", counts.finished(), counts.total));
        if counts.finished() == counts.total {
            break counts;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let _ = tx.send(true);
    worker.await.context("demo worker")?;
    if counts.failed > 0 {
        bail!("{} demo video(s) failed to transcode; see the log", counts.failed);
    }
    Ok(())
}
