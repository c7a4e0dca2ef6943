//! Per-user upload limits: how many uploads one user may have in progress, how many bytes
//! those may add up to, and how many bytes a user may upload per UTC day.
//!
//! Each upload is checked when it begins (tus creation, the start of a streamed `PUT`) and
//! again while its bytes arrive, against an [`Allowance`] taken when its request starts. The
//! counts come from the database, so every API node sees the same ones; two uploads beginning
//! at the same instant may both pass a check that only one of them would pass alone, which
//! these limits (generous, there to stop abuse) can afford.

use crate::db::Db;
use crate::error::Error;
use crate::types::{UserId, VideoId};

use super::db;

/// Seconds in the days [`db::usage_day`] counts.
const DAY_SECS: i64 = 86_400;

/// Which limit an upload ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `upload_max_concurrent`.
    Concurrent,
    /// `upload_max_bytes_in_progress`.
    BytesInProgress,
    /// `upload_daily_quota_bytes`.
    Daily,
}

impl Limit {
    /// The 429 for this limit, at `now`.
    pub fn error(self, cfg: &super::UploadSettings, now: i64) -> Error {
        match self {
            Limit::Concurrent => Error::LimitReached {
                code: "too_many_uploads",
                message: format!(
                    "you already have {} uploads in progress; finish or cancel one first",
                    cfg.upload_max_concurrent
                ),
                retry_after_secs: None,
            },
            Limit::BytesInProgress => Error::LimitReached {
                code: "upload_bytes_in_progress",
                message: format!(
                    "your unfinished uploads would exceed {} bytes; finish or cancel one first",
                    cfg.upload_max_bytes_in_progress
                ),
                retry_after_secs: None,
            },
            Limit::Daily => Error::LimitReached {
                code: "daily_upload_quota",
                message: format!(
                    "this would exceed your daily upload quota of {} bytes",
                    cfg.upload_daily_quota_bytes
                ),
                retry_after_secs: Some((DAY_SECS - now.rem_euclid(DAY_SECS)) as u64),
            },
        }
    }
}

/// What one upload may still do, as of the start of the request that carries its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Allowance {
    /// The size the whole upload may reach (its in-progress share).
    pub max_total: u64,
    /// Bytes this request may add today.
    pub today: u64,
}

impl Allowance {
    /// Check an upload that has reached `total` bytes, `added` of them in this request.
    pub fn check(&self, total: u64, added: u64) -> Result<(), Limit> {
        if total > self.max_total {
            return Err(Limit::BytesInProgress);
        }
        if added > self.today {
            return Err(Limit::Daily);
        }
        Ok(())
    }

    /// The most bytes a new upload's body may carry under this allowance and `max_upload`,
    /// and the limit that binds there (`None`: the plain size limit).
    pub fn cap(&self, max_upload: u64) -> (u64, Option<Limit>) {
        let mut cap = (max_upload, None);
        if self.max_total < cap.0 {
            cap = (self.max_total, Some(Limit::BytesInProgress));
        }
        if self.today < cap.0 {
            cap = (self.today, Some(Limit::Daily));
        }
        cap
    }
}

/// May `user_id` begin an upload of `declared` bytes (if known)? Checks the number of uploads
/// in progress, their bytes and today's quota.
pub async fn begin(
    db: &Db,
    cfg: &super::UploadSettings,
    user_id: UserId,
    declared: Option<u64>,
    now: i64,
) -> Result<Allowance, Error> {
    let (count, held) = db::uploads_in_progress(db, user_id, None, now).await?;
    if count as u64 >= cfg.upload_max_concurrent {
        return Err(Limit::Concurrent.error(cfg, now));
    }
    let allowance = allowance(db, cfg, user_id, held, now).await?;
    allowance.check(declared.unwrap_or(0), declared.unwrap_or(0)).map_err(|l| l.error(cfg, now))?;
    if allowance.today == 0 {
        return Err(Limit::Daily.error(cfg, now));
    }
    Ok(allowance)
}

/// The allowance of the upload whose video is `video_id`, for a request adding to it.
pub async fn resume(
    db: &Db,
    cfg: &super::UploadSettings,
    user_id: UserId,
    video_id: VideoId,
    now: i64,
) -> Result<Allowance, Error> {
    let (_, held) = db::uploads_in_progress(db, user_id, Some(video_id), now).await?;
    allowance(db, cfg, user_id, held, now).await
}

async fn allowance(
    db: &Db,
    cfg: &super::UploadSettings,
    user_id: UserId,
    held_by_others: i64,
    now: i64,
) -> Result<Allowance, Error> {
    let used = db::usage_today(db, user_id, now).await?;
    Ok(Allowance {
        max_total: cfg.upload_max_bytes_in_progress.saturating_sub(held_by_others.max(0) as u64),
        today: cfg.upload_daily_quota_bytes.saturating_sub(used.max(0) as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_limit_binds() {
        let a = Allowance { max_total: 100, today: 50 };
        assert_eq!(a.cap(1000), (50, Some(Limit::Daily)));
        assert_eq!(a.cap(10), (10, None));
        let b = Allowance { max_total: 30, today: 50 };
        assert_eq!(b.cap(1000), (30, Some(Limit::BytesInProgress)));
        assert_eq!(b.check(31, 0), Err(Limit::BytesInProgress));
        assert_eq!(b.check(30, 51), Err(Limit::Daily));
        assert_eq!(b.check(30, 50), Ok(()));
    }

    #[test]
    fn the_daily_quota_frees_up_at_utc_midnight() {
        let cfg = crate::media::UploadSettings::from_config(&crate::config::Config::default());
        let Error::LimitReached { retry_after_secs, .. } =
            Limit::Daily.error(&cfg, 10 * DAY_SECS + 3600)
        else {
            panic!("not a limit error")
        };
        assert_eq!(retry_after_secs, Some((DAY_SECS - 3600) as u64));
    }
}
