//! What becomes of tus uploads nobody finishes, and of the ones a crash cut short: the running
//! server's housekeeping (every `housekeeping_interval_secs`, and once at start-up) expires,
//! completes and sweeps them; on SQLite + filesystem and PostgreSQL + S3. The states a crash
//! leaves are made by writing to the database and storage directly; what housekeeping does
//! about them is seen over HTTP and in storage, never by calling it.

mod common;

use std::time::Duration;

use common::tus::{
    create, fake_mp4, head, patch, scratch, sha, stored_source_sha, upload_id, video_id,
};
use common::{assert_error, eventually, Backend, TestServer};
use lectern::config::StorageKind;
use lectern::types::UploadId;
use reqwest::StatusCode;

const MIB: usize = 1024 * 1024;

/// Long enough for several housekeeping rounds at a 1 s interval.
const ROUNDS: Duration = Duration::from_secs(20);

/// A server doing housekeeping every `housekeeping_secs`, an instructor and their lecture.
async fn setup(b: Backend, s: StorageKind, housekeeping_secs: u64) -> (TestServer, String, i64) {
    let srv =
        TestServer::start_with(b, s, |c| c.housekeeping_interval_secs = housekeeping_secs).await;
    let t = srv.instructor("uploader@example.com").await;
    let (_, _, lecture) = srv.course_with_lecture(&t, "Uploads").await;
    (srv, t, lecture)
}

/// An unfinished upload answers 410 once it expires, and the next housekeeping round (here the
/// one a server does as it starts) removes it and its video.
async fn unfinished_uploads_expire(b: Backend, s: StorageKind) {
    // No round of housekeeping but the one at start-up, so the expired upload stays to be seen.
    let srv = TestServer::start_with(b, s, |c| {
        c.upload_expiry_secs = 1;
        c.housekeeping_interval_secs = 3600;
    })
    .await;
    let t = srv.instructor("slow@example.com").await;
    let (_, _, lecture) = srv.course_with_lecture(&t, "Slow").await;
    let resp = srv
        .http
        .post(srv.url("/api/v1/uploads"))
        .bearer_auth(&t)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "100000")
        .header("upload-metadata", format!("lecture_id {}", common::tus::b64(&lecture.to_string())))
        .header("content-type", "application/offset+octet-stream")
        .body(fake_mp4(32).repeat(10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()["upload-offset"],
        "320",
        "creation-with-upload stored the first bytes"
    );
    let id = upload_id(resp.headers()["location"].to_str().unwrap());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let url = srv.url(&format!("/api/v1/uploads/{id}"));
    assert_eq!(head(&srv, &url, &t).await.status(), StatusCode::GONE);

    let srv = srv.restart().await;
    let url = srv.url(&format!("/api/v1/uploads/{id}"));
    eventually("the expired upload is removed", ROUNDS, || async {
        (head(&srv, &url, &t).await.status() == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM videos")
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

/// The status the API shows for a video.
async fn api_status(srv: &TestServer, token: &str, video_id: i64) -> String {
    let (status, v) = srv.get(&format!("/api/v1/videos/{video_id}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["status"].as_str().unwrap().to_string()
}

/// Wait until the API shows the video `queued`.
async fn until_queued(srv: &TestServer, token: &str, video_id: i64) {
    eventually("housekeeping queues the video", ROUNDS, || async {
        (api_status(srv, token, video_id).await == "queued").then_some(())
    })
    .await;
}

/// Let a few housekeeping rounds (at a 1 s interval) go by.
async fn a_few_rounds() {
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

/// The last PATCH stores the source, then the database fails as the job is enqueued (a node
/// dying at that point): the upload must not be left "complete" with no job. Everything it
/// received is kept, and housekeeping finishes it.
async fn a_completion_cut_short_is_finished_by_housekeeping(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s, 1).await;
    let bytes = fake_mp4(9 * MIB + 1000);
    let url = create(&srv, &t, lecture, bytes.len()).await;
    let id = upload_id(&url);
    let first = 8 * MIB + MIB / 2;
    let resp = patch(&srv, &url, &t, 0, bytes[..first].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    refuse_jobs(&srv, b).await;
    let resp = patch(&srv, &url, &t, first, bytes[first..].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let (video_id, completed, offset) = upload_row(&srv, &id).await;
    assert!(
        completed.is_none(),
        "the upload was marked complete though its transcode was never queued"
    );
    assert_eq!(offset as usize, bytes.len(), "every received byte is kept");
    assert_eq!(video_state(&srv, video_id).await, ("uploading".to_string(), None, 0));

    allow_jobs(&srv, b).await;
    until_queued(&srv, &t, video_id).await;
    assert_eq!(
        video_state(&srv, video_id).await,
        ("queued".to_string(), Some(bytes.len() as i64), 1)
    );
    let resp = head(&srv, &url, &t).await;
    assert_eq!(resp.headers()["upload-offset"], bytes.len().to_string().as_str());
    assert_eq!(resp.headers()["lectern-video-id"], video_id.to_string().as_str());
    assert_eq!(stored_source_sha(&srv, video_id).await, sha(&bytes));
    assert_eq!(scratch(&srv).await, Vec::<String>::new());
    // Later rounds change nothing.
    a_few_rounds().await;
    assert_eq!(video_state(&srv, video_id).await.2, 1);
}

/// The state an API node killed between marking an upload complete and enqueueing its job left
/// behind (before completion was one transaction): housekeeping queues the job.
async fn a_completed_upload_an_older_crash_left_without_a_job_gets_one(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s, 1).await;
    let bytes = fake_mp4(300_000);
    let url = create(&srv, &t, lecture, bytes.len()).await;
    let id = upload_id(&url);
    let resp = patch(&srv, &url, &t, 0, bytes.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let video_id = video_id(&resp);
    // One change, so that no round of housekeeping sees half of it.
    let mut tx = srv.app_state.db.pool().begin().await.unwrap();
    sqlx::query("DELETE FROM jobs WHERE video_id = $1")
        .bind(video_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE videos SET status = 'uploading', source_size = NULL WHERE id = $1")
        .bind(video_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // …and a tail an earlier PATCH stored just before the node died, which no row points to.
    let orphan = lectern::storage::keys::upload_tail(
        &UploadId::new(id.clone()),
        "0123456789abcdef0123456789abcdef",
    );
    put_scratch(&srv, &orphan, vec![1u8; 1000]).await;

    until_queued(&srv, &t, video_id).await;
    assert_eq!(
        video_state(&srv, video_id).await,
        ("queued".to_string(), Some(bytes.len() as i64), 1)
    );
    // The tail may have been stored just after the round that queued the job; the next takes it.
    eventually("a finished upload keeps no scratch objects", ROUNDS, || async {
        scratch(&srv).await.is_empty().then_some(())
    })
    .await;
    a_few_rounds().await;
    assert_eq!(video_state(&srv, video_id).await.2, 1, "repair is done once");
}

async fn put_scratch(srv: &TestServer, key: &lectern::storage::ObjectKey, bytes: Vec<u8>) {
    srv.app_state
        .storage
        .put(key, lectern::storage::stream_from_bytes(bytes), "application/octet-stream")
        .await
        .unwrap();
}

/// Tails a killed PATCH stored but never recorded, and scratch prefixes of uploads that are
/// gone, are removed; an upload in progress keeps its tail.
async fn scratch_objects_no_upload_points_to_are_removed(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s, 1).await;
    let bytes = fake_mp4(600_000);
    let url = create(&srv, &t, lecture, bytes.len()).await;
    let id = upload_id(&url);
    assert_eq!(
        patch(&srv, &url, &t, 0, bytes[..200_000].to_vec()).await.status(),
        StatusCode::NO_CONTENT
    );
    let (tail,): (Option<String>,) = sqlx::query_as("SELECT tail_key FROM uploads WHERE id = $1")
        .bind(&id)
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap();
    let tail = tail.expect("a tail is stored");
    let orphan = lectern::storage::keys::upload_tail(
        &UploadId::new(id.clone()),
        "11111111111111111111111111111111",
    );
    put_scratch(&srv, &orphan, vec![9u8; 5000]).await;
    let stray = lectern::storage::keys::upload_tail(
        &UploadId::new("22222222222222222222222222222222"),
        "33333333333333333333333333333333",
    );
    put_scratch(&srv, &stray, vec![9u8; 5000]).await;

    let left =
        eventually("the scratch of an upload that no longer exists is removed", ROUNDS, || {
            let srv = &srv;
            let stray = stray.to_string();
            async move {
                let left = scratch(srv).await;
                (!left.contains(&stray)).then_some(left)
            }
        })
        .await;
    assert!(left.contains(&tail), "the tail in use was removed: {left:?}");

    // The upload's own orphan goes with the rest of its scratch space when it completes.
    assert_eq!(
        patch(&srv, &url, &t, 200_000, bytes[200_000..400_000].to_vec()).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(scratch(&srv).await.contains(&orphan.to_string()));
    let resp = patch(&srv, &url, &t, 400_000, bytes[400_000..].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(stored_source_sha(&srv, video_id(&resp)).await, sha(&bytes));
    assert_eq!(scratch(&srv).await, Vec::<String>::new());
}

/// Two PATCHes at the same offset: the one that gets the lock second must see what the first
/// recorded and answer 409, not write over it. The first is played by the test holding the
/// row (as a PATCH recording its progress does) while the second waits for its lock.
async fn a_patch_checks_its_offset_against_the_locked_row(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s, 30).await;
    let bytes = fake_mp4(1000);
    let url = create(&srv, &t, lecture, bytes.len()).await;
    let id = upload_id(&url);
    let db = srv.app_state.db.clone();
    let tail = lectern::storage::keys::upload_tail(
        &UploadId::new(id.clone()),
        "44444444444444444444444444444444",
    );
    put_scratch(&srv, &tail, bytes[..320].to_vec()).await;
    let mut tx = db.pool().begin().await.unwrap();
    sqlx::query(
        "UPDATE uploads SET upload_offset = 320, tail_key = $2, tail_size = 320 WHERE id = $1",
    )
    .bind(&id)
    .bind(tail.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();

    let second = {
        let (http, url, t, body) =
            (srv.http.clone(), url.clone(), t.clone(), bytes[..320].to_vec());
        tokio::spawn(async move {
            http.patch(&url)
                .bearer_auth(&t)
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", "0")
                .header("content-type", "application/offset+octet-stream")
                .body(body)
                .send()
                .await
                .unwrap()
        })
    };
    // Let the second request read the row and reach the lock.
    match b {
        Backend::Postgres => {
            eventually("the second PATCH waits for the row lock", ROUNDS, || async {
                let (waiting,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(db.pool())
                .await
                .unwrap();
                (waiting > 0).then_some(())
            })
            .await
        }
        Backend::Sqlite => tokio::time::sleep(Duration::from_millis(1500)).await,
    }
    tx.commit().await.unwrap();
    let resp = second.await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CONFLICT,
        "a PATCH wrote at an offset the upload had moved past"
    );
    assert_error(&resp.json().await.unwrap(), "offset_mismatch");
    assert_eq!(head(&srv, &url, &t).await.headers()["upload-offset"], "320");
    let resp = patch(&srv, &url, &t, 320, bytes[320..].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(stored_source_sha(&srv, video_id(&resp)).await, sha(&bytes));
}

/// Make the database refuse new jobs, as if the process died at the moment it enqueued one.
async fn refuse_jobs(srv: &TestServer, b: Backend) {
    let pool = srv.app_state.db.pool();
    match b {
        Backend::Sqlite => {
            sqlx::query("CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'simulated crash'); END")
                .execute(pool)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            sqlx::query("CREATE FUNCTION refuse_jobs() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'simulated crash'; END $$ LANGUAGE plpgsql")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION refuse_jobs()")
                .execute(pool)
                .await
                .unwrap();
        }
    }
}

async fn allow_jobs(srv: &TestServer, b: Backend) {
    let sql = match b {
        Backend::Sqlite => "DROP TRIGGER refuse_jobs",
        Backend::Postgres => "DROP TRIGGER refuse_jobs ON jobs",
    };
    sqlx::query(sql).execute(srv.app_state.db.pool()).await.unwrap();
}

async fn video_state(srv: &TestServer, video_id: i64) -> (String, Option<i64>, i64) {
    let db = srv.app_state.db.pool();
    let (status, size): (String, Option<i64>) =
        sqlx::query_as("SELECT status, source_size FROM videos WHERE id = $1")
            .bind(video_id)
            .fetch_one(db)
            .await
            .unwrap();
    let (jobs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE video_id = $1")
        .bind(video_id)
        .fetch_one(db)
        .await
        .unwrap();
    (status, size, jobs)
}

async fn upload_row(srv: &TestServer, id: &str) -> (i64, Option<i64>, i64) {
    sqlx::query_as("SELECT video_id, completed_at, upload_offset FROM uploads WHERE id = $1")
        .bind(id)
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap()
}

on_both_setups!(
    unfinished_uploads_expire,
    a_completion_cut_short_is_finished_by_housekeeping,
    a_completed_upload_an_older_crash_left_without_a_job_gets_one,
    scratch_objects_no_upload_points_to_are_removed,
    a_patch_checks_its_offset_against_the_locked_row,
);
