//! Chapters over HTTP: found at transcode where a lecture's slides change (quick changes
//! merged), titled by the course's language, counted in the course detail, served as JSON and
//! as a WebVTT chapters track, edited by the owner (422 for lists that don't start at 0, don't
//! increase or run past the end) and reset; on SQLite + filesystem and PostgreSQL + S3.

mod common;

use common::playback::{fixture_of, get, playback, Fixture};
use common::{assert_error, Backend};
use lectern::config::StorageKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A 44-second "slide deck": four still pictures shown 12, 3, 15 and 14 seconds, with a tone.
fn slides(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("slides.mp4");
    let pictures =
        [("smptebars", 12), ("rgbtestsrc", 3), ("pal100bars", 15), ("color=c=navy:", 14)];
    let mut args = String::new();
    for (source, secs) in pictures {
        let sep = if source.ends_with(':') { "" } else { "=" };
        args.push_str(&format!("-f lavfi -i {source}{sep}size=640x360:rate=30:duration={secs} "));
    }
    args.push_str(
        "-f lavfi -i sine=frequency=440:sample_rate=48000:duration=44 \
         -filter_complex [0:v][1:v][2:v][3:v]concat=n=4:v=1:a=0,format=yuv420p[v] \
         -map [v] -map 4:a -c:v libx264 -preset ultrafast -c:a aac -b:a 96k -shortest",
    );
    common::media::ffmpeg(&args, &out);
    out
}

fn starts(list: &Value) -> Vec<f64> {
    list["items"].as_array().unwrap().iter().map(|c| c["start_seconds"].as_f64().unwrap()).collect()
}

fn titles(list: &Value) -> Vec<&str> {
    list["items"].as_array().unwrap().iter().map(|c| c["title"].as_str().unwrap()).collect()
}

/// The paid lecture's chapter count in the course detail.
async fn count(f: &Fixture) -> i64 {
    let (status, course) =
        f.srv.get(&format!("/api/v1/courses/{}", f.course_id), Some(&f.enrolled)).await;
    assert_eq!(status, StatusCode::OK, "{course}");
    let lectures = course["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["lectures"].as_array().unwrap().to_vec());
    let lecture = lectures.into_iter().find(|l| l["id"] == f.paid).unwrap();
    lecture["chapter_count"].as_i64().unwrap()
}

async fn put(f: &Fixture, lecture: i64, token: &str, body: Value) -> (StatusCode, Value) {
    let path = format!("/api/v1/lectures/{lecture}/chapters");
    f.srv.call(Method::PUT, &path, Some(token), Some(body)).await
}

async fn chapters_track(f: &Fixture) -> String {
    let (_, session) = playback(f, f.paid, Some(&f.enrolled)).await;
    let resp = get(f, session["chapters_url"].as_str().unwrap(), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/vtt");
    resp.text().await.unwrap()
}

async fn chapters_are_found_edited_and_served(b: Backend, s: StorageKind) {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture_of(b, s, true, 0, &slides(dir.path())).await;
    let path = format!("/api/v1/lectures/{}/chapters", f.paid);

    // Found where the slides change; the 3-second slide is merged into the one before it. The
    // course is taught in Korean: "장 N".
    let (status, found) = f.srv.get(&path, Some(&f.enrolled)).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["source"], "detected");
    let at = starts(&found);
    assert_eq!(at.len(), 3, "{found}");
    for (got, want) in at.iter().zip([0.0, 12.0, 30.0]) {
        assert!((got - want).abs() <= 0.3, "{found}");
    }
    assert_eq!(titles(&found), ["장 1", "장 2", "장 3"]);
    assert_eq!(count(&f).await, 3);
    // Outsiders don't see them; a lecture without a video has none.
    let (status, _) = f.srv.get(&path, Some(&f.outsider)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, none) =
        f.srv.get(&format!("/api/v1/lectures/{}/chapters", f.empty), Some(&f.teacher)).await;
    assert_eq!((status, none["items"].clone()), (StatusCode::OK, json!([])));

    // The WebVTT track: a cue per chapter, to the next one or to the video's end.
    let track = chapters_track(&f).await;
    assert!(track.starts_with("WEBVTT\n\n"), "{track}");
    assert_eq!(track.matches(" --> ").count(), 3, "{track}");
    let (_, video) = f.srv.get(&format!("/api/v1/videos/{}", f.video), Some(&f.teacher)).await;
    let end = video["duration_seconds"].as_f64().unwrap();
    let last_end = track.lines().filter_map(|l| l.split(" --> ").nth(1)).next_back().unwrap();
    let secs: f64 = last_end.rsplit(':').next().unwrap().parse().unwrap();
    assert!((secs - end).abs() < 0.01, "{track} vs {end}");
    assert!(track.contains("\n장 2\n"), "{track}");
    // The token guards it like the rest of the video.
    let bare = f.srv.url(&format!("/hls/{}/chapters.vtt", f.video));
    assert_eq!(get(&f, &bare, &[]).await.status(), StatusCode::UNAUTHORIZED);

    // Bad edits: a 422 naming what is wrong; nothing changes.
    for (items, words) in [
        (json!([{"start_seconds": 5, "title": "Late"}]), "starts at 0"),
        (
            json!([{"start_seconds": 0, "title": "A"}, {"start_seconds": 20, "title": "B"}, {"start_seconds": 10, "title": "C"}]),
            "chapter 3 does not start after chapter 2",
        ),
        (
            json!([{"start_seconds": 0, "title": "A"}, {"start_seconds": 44.5, "title": "B"}]),
            "past the end",
        ),
        (json!([{"start_seconds": 0, "title": " "}]), "title"),
        (json!([]), "1 to 500"),
    ] {
        let (status, body) = put(&f, f.paid, &f.teacher, json!({ "items": items })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_error(&body, "invalid_chapters");
        assert!(body["error"]["message"].as_str().unwrap().contains(words), "{body}");
    }
    let (status, body) =
        put(&f, f.paid, &f.enrolled, json!({"items": [{"start_seconds": 0, "title": "Mine"}]}))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) =
        put(&f, f.empty, &f.teacher, json!({"items": [{"start_seconds": 0, "title": "Soon"}]}))
            .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "video_not_ready");
    let (_, still) = f.srv.get(&path, Some(&f.enrolled)).await;
    assert_eq!(still, found);

    // The owner's chapters replace the detected ones, in the JSON, the count and the track.
    let edit = json!({"items": [
        {"start_seconds": 0, "title": "  소개 "},
        {"start_seconds": 8.25, "title": "Ownership --> borrowing"},
        {"start_seconds": 30, "title": "Lifetimes"},
        {"start_seconds": 40, "title": "정리"},
    ]});
    let (status, edited) = put(&f, f.paid, &f.teacher, edit).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["source"], "edited");
    assert_eq!(starts(&edited), [0.0, 8.25, 30.0, 40.0]);
    assert_eq!(titles(&edited), ["소개", "Ownership --> borrowing", "Lifetimes", "정리"]);
    let (_, listed) = f.srv.get(&path, Some(&f.enrolled)).await;
    assert_eq!(listed, edited);
    assert_eq!(count(&f).await, 4);
    let track = chapters_track(&f).await;
    assert!(track.contains("00:00:08.250 --> 00:00:30.000\nOwnership -> borrowing\n"), "{track}");

    // Reset: the detected ones again, now titled for an English course.
    let (status, _) = f
        .srv
        .call(
            Method::PATCH,
            &format!("/api/v1/courses/{}", f.course_id),
            Some(&f.teacher),
            Some(json!({"language": "en"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = f.srv.call(Method::DELETE, &path, Some(&f.enrolled), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, reset) = f.srv.call(Method::DELETE, &path, Some(&f.teacher), None).await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!((reset["source"].as_str(), starts(&reset)), (Some("detected"), at));
    assert_eq!(titles(&reset), ["Slide 1", "Slide 2", "Slide 3"]);
    assert_eq!(count(&f).await, 3);
}

on_both_setups!(chapters_are_found_edited_and_served);
