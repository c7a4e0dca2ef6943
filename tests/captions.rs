//! Captions over HTTP: WebVTT and SRT uploads checked line by line, listed for viewers, served
//! as an HLS subtitle rendition aligned with the video's segments (with the MPEG-TS timestamp
//! map), changed and removed without a transcode, read by ffprobe; on SQLite + filesystem and
//! PostgreSQL + S3, with encrypted segments.

mod common;

use common::playback::{fixture, get, playback, Fixture};
use common::{assert_error, Backend};
use lectern::config::StorageKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

const SRT_KO: &str = "1\r\n00:00:00,500 --> 00:00:02,000\r\n안녕하세요\r\n\r\n2\r\n00:00:02,500 --> 00:00:04,800\r\n강의를 시작합니다\r\n\r\n3\r\n00:00:05,000 --> 00:00:05,900\r\n끝\r\n";
const VTT_EN: &str =
    "WEBVTT\n\n00:00.500 --> 00:02.000\nHello\n\n00:02.500 --> 00:04.800\nLet us begin\n";

async fn put(
    f: &Fixture,
    lecture: i64,
    lang: &str,
    query: &str,
    ctype: &str,
    body: &[u8],
    token: &str,
) -> (StatusCode, Value) {
    let resp = f
        .srv
        .http
        .put(f.srv.url(&format!("/api/v1/lectures/{lecture}/captions/{lang}{query}")))
        .bearer_auth(token)
        .header("content-type", ctype)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(!status.is_server_error(), "{status}: {body}");
    (status, body)
}

async fn text(f: &Fixture, url: &str) -> (StatusCode, String) {
    let resp = get(f, url, &[]).await;
    (resp.status(), resp.text().await.unwrap())
}

/// The URI of `line`'s `URI="…"` attribute, resolved against `base`.
fn uri_attr(line: &str, base: &str) -> String {
    let uri = line.split("URI=\"").nth(1).unwrap().split('"').next().unwrap();
    format!("{base}/{uri}")
}

/// A caption PUT refused: language, content type, body, error code, words in the message.
type Refusal<'a> = (&'a str, &'a str, Vec<u8>, &'a str, Option<&'a str>);

async fn captions_are_checked_listed_and_played(b: Backend, s: StorageKind) {
    let f = fixture(b, s, true).await;
    let lecture = f.paid;
    // Bad files name what is wrong (and the line), a 422 each; nothing is stored.
    let long = format!("WEBVTT\n\n{}", "00:00:01.000 --> 00:00:02.000\nx\n\n".repeat(200_000));
    let refusals: [Refusal; 6] = [
        (
            "ko",
            "text/vtt",
            b"<html>not captions</html>".to_vec(),
            "invalid_captions",
            Some("line 1"),
        ),
        (
            "ko",
            "text/vtt",
            b"WEBVTT\n\n00:00:03.000 --> 00:00:04.000\nb\n\n00:00:01.000 --> 00:00:02.000\na\n"
                .to_vec(),
            "invalid_captions",
            Some("line 6"),
        ),
        (
            "ko",
            "application/x-subrip",
            b"1\n00:00:01,000 --> 00:00:02,000\na\n\n2\n00:00:30,000 --> 00:00:31,000\nlate\n"
                .to_vec(),
            "invalid_captions",
            Some("past the end"),
        ),
        ("xx", "text/vtt", VTT_EN.as_bytes().to_vec(), "invalid_language", None),
        ("en_US", "text/vtt", VTT_EN.as_bytes().to_vec(), "invalid_language", None),
        ("ko", "text/vtt", long.into_bytes(), "captions_too_large", Some("5 MB")),
    ];
    for (lang, ctype, body, code, words) in &refusals {
        let (status, answer) = put(&f, lecture, lang, "", ctype, body, &f.teacher).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_error(&answer, code);
        if let Some(w) = words {
            assert!(answer["error"]["message"].as_str().unwrap().contains(w), "{answer}");
        }
    }
    // Only the owner writes.
    let (status, _) = put(&f, lecture, "ko", "", "text/vtt", VTT_EN.as_bytes(), &f.enrolled).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, listed) =
        f.srv.get(&format!("/api/v1/lectures/{lecture}/captions"), Some(&f.enrolled)).await;
    assert_eq!((status, listed["items"].as_array().unwrap().len()), (StatusCode::OK, 0));

    // SRT becomes WebVTT; the language name is the default label; a second PUT replaces.
    let (status, saved) =
        put(&f, lecture, "ko", "", "application/x-subrip", SRT_KO.as_bytes(), &f.teacher).await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    assert_eq!(saved, json!({"lang": "ko", "label": "한국어", "cues": 3}));
    let (status, saved) =
        put(&f, lecture, "ko", "", "application/x-subrip", SRT_KO.as_bytes(), &f.teacher).await;
    assert_eq!((status, saved["cues"].as_i64()), (StatusCode::OK, Some(3)));
    let (status, saved) =
        put(&f, lecture, "EN", "?label=English%20(CC)", "text/vtt", VTT_EN.as_bytes(), &f.teacher)
            .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    assert_eq!(
        (saved["lang"].as_str(), saved["label"].as_str()),
        (Some("en"), Some("English (CC)"))
    );

    // Viewers see them listed, the course's language (ko) as the default; outsiders do not.
    let (_, listed) =
        f.srv.get(&format!("/api/v1/lectures/{lecture}/captions"), Some(&f.enrolled)).await;
    assert_eq!(
        listed["items"],
        json!([{"lang": "en", "label": "English (CC)", "default": false}, {"lang": "ko", "label": "한국어", "default": true}])
    );
    let (status, _) =
        f.srv.get(&format!("/api/v1/lectures/{lecture}/captions"), Some(&f.outsider)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The master playlist carries the group, every variant names it.
    let (_, session) = playback(&f, lecture, Some(&f.enrolled)).await;
    let master_url = session["url"].as_str().unwrap().to_string();
    let base = f.srv.url(&format!("/hls/{}", f.video));
    let (status, master) = text(&f, &master_url).await;
    assert_eq!(status, StatusCode::OK);
    let media: Vec<&str> =
        master.lines().filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES")).collect();
    assert_eq!(media.len(), 2, "{master}");
    let ko = media.iter().find(|l| l.contains("LANGUAGE=\"ko\"")).unwrap();
    assert!(
        ko.contains("GROUP-ID=\"subs\"")
            && ko.contains("DEFAULT=YES")
            && ko.contains("NAME=\"한국어\""),
        "{ko}"
    );
    assert!(media.iter().any(|l| l.contains("LANGUAGE=\"en\"") && l.contains("DEFAULT=NO")));
    let variants: Vec<&str> =
        master.lines().filter(|l| l.starts_with("#EXT-X-STREAM-INF")).collect();
    assert!(
        !variants.is_empty() && variants.iter().all(|v| v.contains("SUBTITLES=\"subs\"")),
        "{master}"
    );

    // The subtitle playlist has one segment per video segment, of the same lengths.
    let subs_url = uri_attr(ko, &base);
    let (status, subs) = text(&f, &subs_url).await;
    assert_eq!(status, StatusCode::OK, "{subs}");
    let subs_pl = m3u8_rs::parse_media_playlist_res(subs.as_bytes()).unwrap();
    let rendition_uri =
        master.lines().find(|l| !l.starts_with('#') && l.contains("index.m3u8")).unwrap();
    let (_, video_pl) = text(&f, &format!("{base}/{rendition_uri}")).await;
    let video_pl = m3u8_rs::parse_media_playlist_res(video_pl.as_bytes()).unwrap();
    assert_eq!(subs_pl.segments.len(), video_pl.segments.len());
    for (a, v) in subs_pl.segments.iter().zip(&video_pl.segments) {
        assert!((a.duration - v.duration).abs() < 0.01, "{} vs {}", a.duration, v.duration);
    }
    assert!(subs_pl.end_list);
    // Each WebVTT segment holds the cues of its span and maps them to the video's clock.
    let subs_dir = subs_url.split("/index.m3u8").next().unwrap();
    let (status, first) = text(&f, &format!("{subs_dir}/{}", subs_pl.segments[0].uri)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(first.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:"), "{first}");
    assert!(first.contains("00:00:00.500 --> 00:00:02.000\n안녕하세요"), "{first}");
    let mpegts: f64 =
        first.split("MPEGTS:").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    let start = ffprobe_start(&format!("{base}/{rendition_uri}"));
    assert!(
        (mpegts / 90_000.0 - start).abs() < 0.05,
        "map {mpegts} vs the video's start {start} s"
    );
    let (_, last) = text(&f, &format!("{subs_dir}/{}", subs_pl.segments.last().unwrap().uri)).await;
    assert!(last.contains("끝") && !last.contains("안녕하세요"), "{last}");
    // Tokens as for the rest: none, or another video's, is refused.
    let bare = subs_url.split('?').next().unwrap();
    assert_eq!(get(&f, bare, &[]).await.status(), StatusCode::UNAUTHORIZED);
    let (status, _) =
        text(&f, &format!("{base}/subs/fr/index.m3u8?{}", subs_url.split('?').nth(1).unwrap()))
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // ffprobe reads the rendition as a WebVTT subtitle stream with every cue. (FFmpeg 5.1's HLS
    // demuxer skips a master playlist's SUBTITLES renditions, so it is given the rendition.)
    let probed = ffprobe_json(&["-show_streams", "-show_packets"], &subs_url);
    let streams = probed["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{probed}");
    assert_eq!(
        (streams[0]["codec_type"].as_str(), streams[0]["codec_name"].as_str()),
        (Some("subtitle"), Some("webvtt"))
    );
    let starts: std::collections::BTreeSet<String> = probed["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pts_time"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(starts.len(), 3, "each cue once, however many segments it spans: {starts:?}");

    // hls.js, Shaka Player and Video.js in Chromium list both tracks and show the Korean cues.
    for mode in ["hlsjs", "shaka", "videojs"] {
        let result = common::browser::play(&master_url, mode, 3.0, Some("ko")).await;
        assert_eq!(result["ok"], true, "{mode}: {result}");
        let cues = result["cues"].to_string();
        assert!(
            ["안녕하세요", "강의를 시작합니다", "끝"].iter().any(|c| cues.contains(c)),
            "{mode}: no Korean cue showed: {result}"
        );
        if mode != "shaka" {
            // Shaka shows its cues on one track of its own; the others add one per language.
            let tracks = result["tracks"].to_string();
            assert!(tracks.contains("\"ko\"") && tracks.contains("\"en\""), "{mode}: {result}");
        } else {
            let events = result["events"].to_string();
            assert!(events.contains("ko/") && events.contains("en/"), "{mode}: {result}");
        }
    }

    // Removed (and the course's language changed) without a transcode: the next master shows it.
    let remove_ko = format!("/api/v1/lectures/{lecture}/captions/ko");
    for expected in [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND] {
        let (status, _) =
            f.srv.call(reqwest::Method::DELETE, &remove_ko, Some(&f.teacher), None).await;
        assert_eq!(status, expected);
    }
    let (status, course) = f
        .srv
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/courses/{}", f.course_id),
            Some(&f.teacher),
            Some(json!({"language": "en-us"})),
        )
        .await;
    assert_eq!((status, course["language"].as_str()), (StatusCode::OK, Some("en-US")), "{course}");
    let (_, master) = text(&f, &master_url).await;
    let media: Vec<&str> =
        master.lines().filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES")).collect();
    assert_eq!(media.len(), 1, "{master}");
    assert!(media[0].contains("LANGUAGE=\"en\"") && media[0].contains("DEFAULT=YES"), "{master}");
    let (status, _) = text(&f, &subs_url).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, video) = f.srv.get(&format!("/api/v1/videos/{}", f.video), Some(&f.teacher)).await;
    assert_eq!(video["status"], "ready");
}

fn ffprobe_json(args: &[&str], url: &str) -> Value {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(url)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The start time (seconds) of the media playlist at `url`, as ffprobe reads its MPEG-TS.
fn ffprobe_start(url: &str) -> f64 {
    let v = ffprobe_json(&["-show_entries", "format=start_time"], url);
    v["format"]["start_time"].as_str().unwrap().parse().unwrap()
}

on_both_setups!(captions_are_checked_listed_and_played);
