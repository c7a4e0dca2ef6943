//! Webhooks: signed event deliveries to endpoints that admins and instructors register.
//!
//! # Rules
//!
//! - **Who hears what.** An admin's endpoint may subscribe to every event; an instructor's
//!   hears the events of their own courses (an order is "of" each course in it). Students
//!   cannot register endpoints (403). Endpoints are seen and changed by their owner and admins
//!   (404 for anyone else).
//! - **Events are recorded with the change.** [`emit`] runs inside the transaction that makes
//!   the change (an order paid, a course published, …), so an event exists exactly when its
//!   change was committed. It stores the body once and a first delivery attempt per endpoint.
//! - **Deliveries** ([`delivery`]) are `POST {url}` with the Standard Webhooks headers
//!   (`webhook-id`, the event's id on every retry; `webhook-timestamp`; `webhook-signature:
//!   v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`). Any 2xx within the timeout is
//!   success; anything else is retried after 5 s, 5 min, 30 min, 2 h, 5 h and 10 h, then the
//!   delivery is `failed`. Attempts are rows in the database, leased by one node at a time, so
//!   several `serve` nodes share them and a restart loses none.
//! - **Targets.** `http(s)` URLs of at most 2,000 characters whose host resolves to public
//!   addresses only (private, loopback and link-local are refused with 422 unless
//!   `webhook_allow_private`); checked when registered and again, with the address pinned,
//!   at every attempt. Redirects are not followed.
//!
//! # Layout
//!
//! - this file: event types, [`emit`], endpoints (create, list, change, delete).
//! - [`delivery`] — signing, the target check and the delivery loop.
//! - [`db`] — the SQL. [`routes`] — the HTTP handlers.

pub mod db;
pub mod delivery;
pub mod routes;

use crate::types::{CourseId, DeliveryId, EndpointId, UnknownWord};
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::accounts::{Caller, Role};
use crate::config::Config;
use crate::db::{now, rfc3339, Db};
use crate::error::{Error, Result};

crate::vocabulary! {
    /// What happened.
    pub enum EventType: "event type" {
        VideoPlayable = "video.playable",
        VideoReady = "video.ready",
        VideoFailed = "video.failed",
        CoursePublished = "course.published",
        OrderPaid = "order.paid",
        OrderRefunded = "order.refunded",
        EnrollmentCreated = "enrollment.created",
        EnrollmentRevoked = "enrollment.revoked",
    }
}

crate::vocabulary! {
    /// Which events an endpoint gets.
    pub enum Scope: "webhook scope" {
        /// An admin's: every event.
        All = "all",
        /// An instructor's: the events of their own courses.
        Own = "own",
    }
}

crate::vocabulary! {
    /// Where a delivery attempt stands.
    pub enum DeliveryStatus: "delivery status" {
        /// Waiting for its time.
        Pending = "pending",
        /// Being made by a node (which holds its lease).
        Delivering = "delivering",
        /// The receiver answered 2xx.
        Succeeded = "succeeded",
        /// It did not; a retry is a new attempt.
        Failed = "failed",
    }
}

/// Record that `kind` happened (to the courses `course_ids`, if it is about any) with `data`,
/// for every endpoint that wants it. `conn` is the transaction making the change.
pub async fn emit(
    conn: &mut sqlx::AnyConnection,
    kind: EventType,
    course_ids: &[CourseId],
    data: Value,
) -> Result<(), sqlx::Error> {
    let t = now();
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let body = json!({"type": kind.as_str(), "timestamp": rfc3339(t), "data": data}).to_string();
    db::record_event(conn, &id, kind, course_ids, &body, t).await?;
    Ok(())
}

/// An endpoint as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Endpoint {
    pub id: EndpointId,
    pub url: String,
    /// Event types delivered to it.
    pub events: Vec<String>,
    pub description: String,
    /// False after it was switched off, or after too many failed attempts in a row.
    pub enabled: bool,
    /// Failed attempts since the last success.
    pub failures_in_a_row: i64,
    pub scope: Scope,
    pub created_at: String,
}

/// A new endpoint: the only time its signing secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_` + base64 of the signing key; verify deliveries with it (Standard Webhooks).
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

fn view(row: db::EndpointRow) -> Endpoint {
    Endpoint {
        id: row.id,
        url: row.url,
        events: row.events.split_whitespace().map(str::to_string).collect(),
        description: row.description,
        enabled: row.enabled != 0,
        failures_in_a_row: row.failures_in_a_row,
        scope: row.scope,
        created_at: rfc3339(row.created_at),
    }
}

/// What may be set on an endpoint.
pub struct EndpointInput {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// The stored form of a list of event types: each known (422 otherwise), at least one.
fn events_field(events: &[String]) -> Result<String> {
    if events.is_empty() {
        return Err(Error::invalid("no_events", "events must name at least one event type"));
    }
    let mut kinds = Vec::new();
    for e in events {
        let kind: EventType =
            e.parse().map_err(|u: UnknownWord| Error::invalid("unknown_event", u.to_string()))?;
        if !kinds.contains(&kind.as_str()) {
            kinds.push(kind.as_str());
        }
    }
    Ok(format!(" {} ", kinds.join(" ")))
}

fn description_field(d: &str) -> Result<String> {
    let d = d.trim();
    if d.chars().count() > 500 || d.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid(
            "invalid_description",
            "description must be at most 500 characters",
        ));
    }
    Ok(d.to_string())
}

/// `whsec_` + base64 of 32 random bytes.
fn new_secret() -> String {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// Register an endpoint for `caller` (an admin or an instructor).
pub async fn create(
    db: &Db,
    cfg: &Config,
    caller: &Caller,
    input: EndpointInput,
) -> Result<CreatedEndpoint> {
    let scope = match caller.role {
        Role::Admin => Scope::All,
        Role::Instructor => Scope::Own,
        Role::Student => {
            return Err(Error::denied(
                "not_instructor",
                "only instructors and admins register webhooks",
            ))
        }
    };
    let url = input.url.ok_or_else(|| Error::invalid("url_required", "url is required"))?;
    delivery::check_target(&url, cfg.webhook_allow_private)
        .await
        .map_err(|why| Error::invalid("invalid_url", why))?;
    let events = events_field(&input.events.unwrap_or_default())?;
    let description = description_field(input.description.as_deref().unwrap_or(""))?;
    let secret = new_secret();
    let new = db::NewEndpoint {
        owner_id: caller.user_id,
        scope,
        url: url.trim(),
        events: &events,
        description: &description,
        secret: &secret,
    };
    let id = db::insert_endpoint(db, &new, now()).await?;
    let row = db::endpoint(db, id).await?.ok_or(Error::not_found("webhook"))?;
    Ok(CreatedEndpoint { endpoint: view(row), secret })
}

/// The endpoint if `caller` owns it or is an admin; 404 otherwise.
pub async fn visible(db: &Db, caller: &Caller, id: EndpointId) -> Result<db::EndpointRow> {
    match db::endpoint(db, id).await? {
        Some(e) if e.owner_id == caller.user_id || caller.is_admin() => Ok(e),
        _ => Err(Error::not_found("webhook")),
    }
}

/// The caller's endpoints (an admin's: everyone's).
pub async fn list(db: &Db, caller: &Caller) -> Result<Vec<Endpoint>> {
    if caller.role == Role::Student {
        return Err(Error::denied("not_instructor", "only instructors and admins have webhooks"));
    }
    let owner = (!caller.is_admin()).then_some(caller.user_id);
    Ok(db::endpoints(db, owner).await?.into_iter().map(view).collect())
}

/// Change an endpoint's URL, events, description or switch it on or off.
pub async fn update(
    db: &Db,
    cfg: &Config,
    caller: &Caller,
    id: EndpointId,
    input: EndpointInput,
) -> Result<Endpoint> {
    let mut row = visible(db, caller, id).await?;
    if let Some(url) = input.url {
        delivery::check_target(&url, cfg.webhook_allow_private)
            .await
            .map_err(|why| Error::invalid("invalid_url", why))?;
        row.url = url.trim().to_string();
    }
    if let Some(events) = input.events {
        row.events = events_field(&events)?;
    }
    if let Some(d) = input.description {
        row.description = description_field(&d)?;
    }
    if let Some(enabled) = input.enabled {
        row.enabled = i64::from(enabled);
    }
    db::update_endpoint(db, &row, now()).await?;
    Ok(view(db::endpoint(db, id).await?.ok_or(Error::not_found("webhook"))?))
}

pub async fn delete(db: &Db, caller: &Caller, id: EndpointId) -> Result<()> {
    visible(db, caller, id).await?;
    db::delete_endpoint(db, id).await?;
    Ok(())
}

/// A line of the delivery log.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub id: DeliveryId,
    /// The `webhook-id` of the event: the same on every attempt.
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// 1 for the first attempt; retries count up (a re-send starts again at 1).
    pub attempt: i64,
    pub status: DeliveryStatus,
    /// The receiver's HTTP status, when it answered.
    pub response_status: Option<i64>,
    pub error: Option<String>,
    pub created_at: String,
    /// When a pending attempt is due.
    pub next_attempt_at: Option<String>,
}

/// The newest 100 attempts of an endpoint.
pub async fn deliveries(db: &Db, caller: &Caller, id: EndpointId) -> Result<Vec<Delivery>> {
    visible(db, caller, id).await?;
    Ok(db::deliveries(db, id, 100)
        .await?
        .into_iter()
        .map(|d| Delivery {
            next_attempt_at: (d.status == DeliveryStatus::Pending).then(|| rfc3339(d.due_at)),
            id: d.id,
            event_id: d.event_id,
            kind: d.kind,
            attempt: d.attempt,
            status: d.status,
            response_status: d.response_status,
            error: d.error,
            created_at: rfc3339(d.created_at),
        })
        .collect())
}

/// Send a delivery's event again, now.
pub async fn resend(
    db: &Db,
    caller: &Caller,
    id: EndpointId,
    delivery_id: DeliveryId,
) -> Result<()> {
    visible(db, caller, id).await?;
    db::resend(db, id, delivery_id, now()).await?.ok_or(Error::not_found("delivery"))?;
    Ok(())
}
