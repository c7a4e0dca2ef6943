//! Playback: purchase-checked sessions, signed tokens, playlist rewriting, and the
//! segment/range server under `/hls/`.
//!
//! `POST /lectures/{id}/playback` checks entitlement ([`crate::learning::may_watch`]) and hands
//! out a token for the lecture's video. Everything under `/hls/{video}/` then needs only that
//! token, verified without the database. Where segments are AES-128 encrypted (the default)
//! they are served to anyone with `Cache-Control: public, immutable`, so a CDN can cache one
//! copy for all viewers; the playlists and the key, which make them playable, stay
//! token-gated and `private, no-store`. Unencrypted videos gate their segments by token too.

pub mod cache;
pub mod identify;
pub mod playlist;
pub mod range;
pub mod routes;
pub mod sessions;
pub mod subtitles;
pub mod tokens;
pub mod watermark;

use crate::types::{LectureId, VideoId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use utoipa::ToSchema;

use self::tokens::PlaybackKeys;
use crate::accounts::Caller;
use crate::db::{now, rfc3339, Db};
use crate::error::{Error, Result};
use crate::storage::ObjectKey;

/// What the segment server needs to know about a playable video. Immutable once ready (a new
/// upload is a new video), so a ready one is cached for the life of the process; one still
/// being transcoded (`live`) is looked up again after `LIVE_TTL`, since its visible output
/// can move to another attempt's prefix and its playlists keep growing.
#[derive(Debug, Clone)]
pub struct ReadyVideo {
    pub prefix: ObjectKey,
    /// The AES-128 key, when the segments are encrypted.
    pub key: Option<[u8; 16]>,
    /// Still being transcoded: its playlists grow (`EVENT`), so they are read from the store
    /// on every request rather than kept in the origin shield.
    pub live: bool,
    /// Every rendition has a marked twin: once ready, each session's media playlists pick
    /// variant A or B per segment (see [`watermark`]); segment names derive from this secret.
    pub watermark: Option<[u8; 16]>,
    looked_up: std::time::Instant,
}

/// How long the lookup of a video still being transcoded is reused.
const LIVE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Playback keys, the ready-video cache and the origin shield of published objects.
pub struct Playback {
    pub keys: PlaybackKeys,
    /// Published playlists, segments and tracks in memory.
    pub objects: cache::ObjectCache,
    cache: Mutex<HashMap<VideoId, Arc<ReadyVideo>>>,
    /// Ready videos' captions and segment timing, each reread after [`subtitles::TTL`].
    pub(crate) captions: Mutex<HashMap<VideoId, Arc<subtitles::CaptionSet>>>,
    pub limits: sessions::StreamLimits,
    pub(crate) beats: sessions::Beats,
}

const CACHE_LIMIT: usize = 100_000;

impl Playback {
    pub fn new(
        keys: PlaybackKeys,
        objects: cache::ObjectCache,
        limits: sessions::StreamLimits,
    ) -> Self {
        Playback {
            keys,
            objects,
            cache: Mutex::new(HashMap::new()),
            captions: Mutex::new(HashMap::new()),
            limits,
            beats: sessions::Beats::default(),
        }
    }

    /// Drop what this node read of videos' captions, after a change here (other nodes see it
    /// within [`subtitles::TTL`]).
    pub fn forget_captions(&self) {
        self.captions.lock().expect("captions lock").clear();
    }

    /// The playable video `id` (ready, or being transcoded with output published), from the
    /// cache or the database. `None` if it is not playable.
    pub async fn ready_video(
        &self,
        db: &Db,
        id: VideoId,
    ) -> Result<Option<Arc<ReadyVideo>>, sqlx::Error> {
        if let Some(v) = self.cache.lock().expect("cache lock").get(&id) {
            if !v.live || v.looked_up.elapsed() < LIVE_TTL {
                return Ok(Some(v.clone()));
            }
        }
        let Some(row) = crate::media::db::video(db, id).await? else { return Ok(None) };
        if !row.playable() {
            self.cache.lock().expect("cache lock").remove(&id);
            return Ok(None);
        }
        let live = row.status != crate::media::VideoStatus::Ready;
        let (Some(prefix), key) = (row.output_prefix, row.hls_key) else { return Ok(None) };
        let Ok(prefix) = ObjectKey::new(prefix) else { return Ok(None) };
        let key = key.as_deref().and_then(crate::media::hex16);
        let looked_up = std::time::Instant::now();
        let watermark = match row.watermarked {
            0 => None,
            _ => row.watermark_secret.as_deref().and_then(crate::media::hex16),
        };
        let video = Arc::new(ReadyVideo { prefix, key, live, watermark, looked_up });
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(id, video.clone());
        Ok(Some(video))
    }
}

/// A playback session.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybackSession {
    pub video_id: VideoId,
    /// The master playlist, token in its query.
    pub url: String,
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    pub poster_url: String,
    /// The WebVTT track of scrubbing thumbnails.
    pub thumbnails_url: String,
    /// The WebVTT chapters track (`<track kind="chapters">`).
    pub chapters_url: String,
    /// This playback session (its token names it; `lectern watermark identify` prints it).
    pub session_id: String,
}

/// Open a playback session for `lecture_id`: entitlement, then a token for its video.
pub async fn start_session(
    db: &Db,
    pb: &Playback,
    caller: Option<&Caller>,
    lecture_id: LectureId,
    base_url: &str,
) -> Result<PlaybackSession> {
    let (lecture, course) = crate::catalog::visible_lecture(db, caller, lecture_id).await?;
    crate::learning::require_watch(db, caller, &course, &lecture, "watch this lecture").await?;
    let not_yet = || {
        Error::conflict(
            "video_not_ready",
            "this lecture's video is not playable yet; try again shortly",
        )
    };
    let video_id = lecture.video_id.ok_or_else(not_yet)?;
    if pb.ready_video(db, video_id).await?.is_none() {
        return Err(not_yet());
    }
    let t = now();
    let sid = sessions::open(db, &pb.limits, caller, course.id, lecture_id, video_id, t).await?;
    let sub = caller.map_or_else(|| "anonymous".to_string(), |c| c.user_id.to_string());
    let (token, exp) = pb.keys.issue_for_session(&sub, video_id, t, Some(&sid));
    let base = format!("{base_url}/hls/{video_id}");
    Ok(PlaybackSession {
        video_id,
        url: format!("{base}/master.m3u8?token={token}"),
        poster_url: format!("{base}/poster.jpg?token={token}"),
        thumbnails_url: format!("{base}/thumbnails.vtt?token={token}"),
        chapters_url: format!("{base}/chapters.vtt?token={token}"),
        token,
        expires_at: rfc3339(exp),
        session_id: sid,
    })
}
