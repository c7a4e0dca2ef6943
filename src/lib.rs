//! Lectern: the video back end of an online course site.
//!
//! # Layout
//!
//! - [`app`]      — [`AppState`] (what handlers and background loops use), [`App::start`],
//!   [`spawn_background`].
//! - [`config`]   — one typed [`config::Config`]: defaults → TOML → `LECTERN_*` env → flags.
//! - [`error`]    — the error policy and the domain [`error::Error`], named for what went wrong.
//! - [`http`]     — router assembly, middleware (request ids, access log, CORS, limits),
//!   extractors, operations endpoints, the OpenAPI document, and `http::error`: the status
//!   each domain error becomes and the one JSON error body. Only `http/` and the features'
//!   `routes.rs` files know axum.
//! - [`quotas`]   — per-address and per-user write quotas (sign-ups, password changes, posts).
//! - [`db`]       — SQLite and PostgreSQL pools, migrations, the few dialect-specific helpers.
//! - [`storage`]  — the object-store interface and its filesystem and S3 backends.
//! - [`accounts`] — users, roles, passwords, access and refresh tokens, login throttling.
//! - [`catalog`]  — categories, courses, ordered sections and lectures, search (Korean and
//!   English), visibility and ownership rules.
//! - [`commerce`] — cart, orders, payments (dev and Toss Payments), refunds, dashboard figures.
//! - [`community`] — reviews and threaded comments.
//! - [`learning`] — enrollments, entitlement (may this person watch this lecture?), watch
//!   progress; their SQL in `learning::db`.
//! - [`playback`] — playback tokens, playlist rewriting, the segment/range server.
//! - [`media`]    — videos, streamed and tus uploads (working on [`media::Uploads`], not the
//!   app state), the job queue, workers and their pool, housekeeping.
//! - [`demo`]     — `lectern demo`: sample accounts, courses and transcoded videos.
//! - [`webhooks`] — signed event deliveries (Standard Webhooks) from the database queue.
//! - [`telemetry`] — `tracing` subscriber set-up.
//! - [`types`]    — the vocabulary everything else speaks: typed ids, [`types::Money`] and
//!   [`types::Currency`], and [`vocabulary!`] for stored word lists (roles, statuses).
//!
//! The transcoding engine is the separate crate `lectern-workers` (`workers/`), which this crate
//! uses and which never uses this one.
//!
//! [`App::start`] turns a configuration into a ready [`app::AppState`] (data dir, database,
//! migrations, storage); [`http::serve`] serves it and [`app::spawn_background`] starts the
//! loops that run beside it.

pub mod accounts;
pub mod app;
pub mod catalog;
pub mod commerce;
pub mod community;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod http;
pub mod learning;
pub mod media;
pub mod playback;
pub mod quotas;
pub mod storage;
pub mod telemetry;
pub mod types;
pub mod webhooks;

pub use app::{spawn_background, App, AppState};
