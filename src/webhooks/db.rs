//! SQL for webhook endpoints, events and delivery attempts.

use crate::types::{CourseId, DeliveryId, EndpointId, UserId};
use sqlx::FromRow;

use super::{DeliveryStatus, EventType, Scope};
use crate::db::Db;

/// An endpoint as stored.
#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub id: EndpointId,
    pub owner_id: UserId,
    /// `all` or `own`.
    pub scope: Scope,
    pub url: String,
    /// Space-separated, with a space at each end.
    pub events: String,
    pub description: String,
    pub secret: String,
    pub enabled: i64,
    pub failures_in_a_row: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const ENDPOINT_SELECT: &str =
    "SELECT id, owner_id, scope, url, events, description, secret, enabled, failures_in_a_row, \
     created_at, updated_at FROM webhook_endpoints";

/// A new endpoint.
pub struct NewEndpoint<'a> {
    pub owner_id: UserId,
    pub scope: Scope,
    pub url: &'a str,
    pub events: &'a str,
    pub description: &'a str,
    pub secret: &'a str,
}

pub async fn insert_endpoint(
    db: &Db,
    e: &NewEndpoint<'_>,
    now: i64,
) -> Result<EndpointId, sqlx::Error> {
    let (id,): (EndpointId,) = sqlx::query_as(
        "INSERT INTO webhook_endpoints (owner_id, scope, url, events, description, secret, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(e.owner_id)
    .bind(e.scope)
    .bind(e.url)
    .bind(e.events)
    .bind(e.description)
    .bind(e.secret)
    .bind(now)
    .fetch_one(db.pool())
    .await?;
    Ok(id)
}

pub async fn endpoint(db: &Db, id: EndpointId) -> Result<Option<EndpointRow>, sqlx::Error> {
    sqlx::query_as(&format!("{ENDPOINT_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// Endpoints of `owner` (every endpoint when `None`), oldest first.
pub async fn endpoints(db: &Db, owner: Option<UserId>) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let (filtered, owner) = (i64::from(owner.is_some()), owner.map_or(0, UserId::get));
    sqlx::query_as(&format!("{ENDPOINT_SELECT} WHERE ($1 = 0 OR owner_id = $2) ORDER BY id"))
        .bind(filtered)
        .bind(owner)
        .fetch_all(db.pool())
        .await
}

/// Store an endpoint's changed settings; enabling it again forgets its failures.
pub async fn update_endpoint(db: &Db, e: &EndpointRow, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET url = $2, events = $3, description = $4, enabled = $5, \
         failures_in_a_row = CASE WHEN $5 = 1 AND enabled = 0 THEN 0 ELSE failures_in_a_row END, updated_at = $6 WHERE id = $1",
    )
    .bind(e.id)
    .bind(&e.url)
    .bind(&e.events)
    .bind(&e.description)
    .bind(e.enabled)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn delete_endpoint(db: &Db, id: EndpointId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(db.pool()).await?;
    Ok(())
}

/// Record an event and a first delivery attempt for every enabled endpoint that wants it:
/// admins' endpoints subscribed to its type, and those of the owners of `course_ids`. Nothing
/// is stored when no endpoint wants it. `conn` is the caller's transaction, so the event exists
/// exactly when the change it reports was committed.
pub async fn record_event(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    kind: EventType,
    course_ids: &[CourseId],
    body: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let pattern = format!("% {kind} %");
    let subscribed: Vec<(EndpointId, Scope, UserId)> = sqlx::query_as(
        "SELECT id, scope, owner_id FROM webhook_endpoints WHERE enabled = 1 AND events LIKE $1",
    )
    .bind(&pattern)
    .fetch_all(&mut *conn)
    .await?;
    if subscribed.is_empty() {
        return Ok(0);
    }
    let mut owners = Vec::new();
    for course_id in course_ids {
        let owner: Option<(UserId,)> =
            sqlx::query_as("SELECT instructor_id FROM courses WHERE id = $1")
                .bind(course_id)
                .fetch_optional(&mut *conn)
                .await?;
        owners.extend(owner.map(|o| o.0));
    }
    let targets: Vec<(EndpointId,)> = subscribed
        .into_iter()
        .filter(|(_, scope, owner)| *scope == Scope::All || owners.contains(owner))
        .map(|(id, _, _)| (id,))
        .collect();
    if targets.is_empty() {
        return Ok(0);
    }
    sqlx::query("INSERT INTO webhook_events (id, type, course_id, body, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(kind)
        .bind(course_ids.first().copied())
        .bind(body)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    for (endpoint_id,) in &targets {
        insert_attempt(&mut *conn, *endpoint_id, id, 1, now, now).await?;
    }
    Ok(targets.len() as u64)
}

async fn insert_attempt<'e, E>(
    exec: E,
    endpoint_id: EndpointId,
    event_id: &str,
    attempt: i64,
    due_at: i64,
    now: i64,
) -> Result<DeliveryId, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (id,): (DeliveryId,) = sqlx::query_as(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, attempt, status, due_at, created_at) \
         VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING id",
    )
    .bind(endpoint_id)
    .bind(event_id)
    .bind(attempt)
    .bind(due_at)
    .bind(now)
    .fetch_one(exec)
    .await?;
    Ok(id)
}

/// A delivery attempt with what it needs to be made.
#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub event_id: String,
    pub attempt: i64,
    pub url: String,
    pub secret: String,
    pub body: String,
}

/// Take up to `limit` due attempts for `owner` until `lease_until`: pending ones whose time
/// has come, and ones whose node died mid-attempt. Each is taken by one node only.
pub async fn claim_due(
    db: &Db,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    let candidates: Vec<(DeliveryId,)> = sqlx::query_as(
        "SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE e.enabled = 1 \
         AND ((d.status = 'pending' AND d.due_at <= $1) OR (d.status = 'delivering' AND d.lease_expires_at < $1)) \
         ORDER BY d.due_at, d.id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut taken = Vec::new();
    for (id,) in candidates {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'delivering', lease_owner = $2, lease_expires_at = $3 \
             WHERE id = $1 AND (status = 'pending' OR (status = 'delivering' AND lease_expires_at < $4))",
        )
        .bind(id)
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .execute(db.pool())
        .await?;
        if done.rows_affected() == 1 {
            let row = sqlx::query_as(
                "SELECT d.id, d.endpoint_id, d.event_id, d.attempt, e.url, e.secret, ev.body FROM webhook_deliveries d \
                 JOIN webhook_endpoints e ON e.id = d.endpoint_id JOIN webhook_events ev ON ev.id = d.event_id WHERE d.id = $1",
            )
            .bind(id)
            .fetch_one(db.pool())
            .await?;
            taken.push(row);
        }
    }
    Ok(taken)
}

/// How an attempt ended.
pub struct Finished<'a> {
    pub succeeded: bool,
    pub response_status: Option<i64>,
    pub error: Option<&'a str>,
    /// When to try again after a failure; `None`: no more attempts.
    pub retry_at: Option<i64>,
    /// Disable the endpoint once this many attempts in a row have failed (0: never).
    pub disable_after: i64,
}

/// Record the end of an attempt held by `owner`, schedule the next one and keep the
/// endpoint's failure count, in one transaction. False when the lease was lost (another node
/// took the attempt over): nothing is recorded.
pub async fn finish_attempt(
    db: &Db,
    a: &AttemptRow,
    owner: &str,
    f: &Finished<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = $3, response_status = $4, error = $5, finished_at = $6, lease_expires_at = NULL \
         WHERE id = $1 AND lease_owner = $2 AND status = 'delivering'",
    )
    .bind(a.id)
    .bind(owner)
    .bind(if f.succeeded { DeliveryStatus::Succeeded } else { DeliveryStatus::Failed })
    .bind(f.response_status)
    .bind(f.error)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    if f.succeeded {
        sqlx::query("UPDATE webhook_endpoints SET failures_in_a_row = 0 WHERE id = $1")
            .bind(a.endpoint_id)
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query(
            "UPDATE webhook_endpoints SET failures_in_a_row = failures_in_a_row + 1, \
             enabled = CASE WHEN $2 > 0 AND failures_in_a_row + 1 >= $2 THEN 0 ELSE enabled END WHERE id = $1",
        )
        .bind(a.endpoint_id)
        .bind(f.disable_after)
        .execute(&mut *tx)
        .await?;
        if let Some(at) = f.retry_at {
            insert_attempt(&mut *tx, a.endpoint_id, &a.event_id, a.attempt + 1, at, now).await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// A line of an endpoint's delivery log.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    pub event_id: String,
    pub kind: EventType,
    pub attempt: i64,
    pub status: DeliveryStatus,
    pub response_status: Option<i64>,
    pub error: Option<String>,
    pub due_at: i64,
    pub created_at: i64,
}

/// The newest `limit` attempts of an endpoint, newest first.
pub async fn deliveries(
    db: &Db,
    endpoint_id: EndpointId,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id, d.event_id, ev.type AS kind, d.attempt, d.status, d.response_status, d.error, d.due_at, d.created_at \
         FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id WHERE d.endpoint_id = $1 ORDER BY d.id DESC LIMIT $2",
    )
    .bind(endpoint_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Queue the event of delivery `delivery_id` of `endpoint_id` again, now, as attempt 1 of a
/// new series. `None` when there is no such delivery of that endpoint.
pub async fn resend(
    db: &Db,
    endpoint_id: EndpointId,
    delivery_id: DeliveryId,
    now: i64,
) -> Result<Option<DeliveryId>, sqlx::Error> {
    let event: Option<(String,)> = sqlx::query_as(
        "SELECT event_id FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2",
    )
    .bind(delivery_id)
    .bind(endpoint_id)
    .fetch_optional(db.pool())
    .await?;
    match event {
        Some((event_id,)) => {
            Ok(Some(insert_attempt(db.pool(), endpoint_id, &event_id, 1, now, now).await?))
        }
        None => Ok(None),
    }
}

/// The delivery queue for operators: attempts waiting (pending, on enabled endpoints), being
/// made, and how long the oldest due one has been due (0: none).
pub async fn queue_figures(db: &Db, now: i64) -> Result<(i64, i64, i64), sqlx::Error> {
    let (waiting, delivering, oldest_due): (i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(CASE WHEN d.status = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN d.status = 'delivering' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         MIN(CASE WHEN d.status = 'pending' AND d.due_at <= $1 THEN d.due_at END) \
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
         WHERE e.enabled = 1 AND d.status IN ('pending', 'delivering')",
    )
    .bind(now)
    .fetch_one(db.pool())
    .await?;
    Ok((waiting, delivering, oldest_due.map_or(0, |o| (now - o).max(0))))
}
