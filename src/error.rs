//! The error policy.
//!
//! Domain code fails with [`Error`] (or a module's own `thiserror` enum that converts into it):
//! a variant says what went wrong in the product's terms — invalid input, not allowed, not
//! found, a conflict with the current state, a limit reached — with a stable snake_case `code`
//! that clients may match on. Nothing here knows HTTP: the HTTP edge (`crate::http::error`)
//! alone maps each variant to a status and to the one JSON body, `{"error": {"code",
//! "message"}}`; the doc comment on each variant says which status it becomes there.
//!
//! A database that cannot serve (see [`crate::db::is_outage`]: pool exhausted or closed, broken
//! connection, server shutting down, schema missing) is [`Error::Unavailable`], which a client
//! may retry — decided here, at the root, for every `sqlx::Error` and for every internal error
//! whose cause chain holds one, so that no caller can turn an outage into "not found" or a bug.
//! Nobody `map_err(|_| …)`s a fallible call: a converted error keeps its cause, either as the
//! source of an [`Error::Internal`] or in the message of the user-facing variant.
//!
//! Other internal failures (storage unreachable, a bug) become [`Error::Internal`]: the HTTP
//! edge logs the cause with its context and answers a generic 500 with no details. A 500 is
//! always a bug, never a way to report bad input.
//!
//! Unique-constraint violations are turned into conflicts in one place,
//! [`crate::db::is_unique_violation`], not in every caller.

/// A failure as the product names it. The HTTP status each variant becomes is in its doc.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the input is malformed or a value is out of range.
    #[error("{message}")]
    Malformed { code: &'static str, message: String },
    /// 422: the input is well-formed but not acceptable.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// 401: no credentials, or credentials that are invalid or expired.
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    /// 403: the caller is known but not allowed to do this.
    #[error("{message}")]
    Denied { code: &'static str, message: String },
    /// 402: the payment provider declined the payment; the order stays payable.
    #[error("{message}")]
    PaymentDeclined { code: &'static str, message: String },
    /// 404: no such thing, or a thing the caller may not know exists.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// 410: it existed but is gone for good (an expired upload).
    #[error("{what} is gone")]
    Gone { what: &'static str },
    /// 409: conflicts with the current state (duplicate, wrong state).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 423: someone else is writing this resource right now; retry shortly.
    #[error("{message}")]
    Busy { code: &'static str, message: String },
    /// 413: the content is larger than allowed.
    #[error("request body too large")]
    TooLarge,
    /// 415: the content is not of a kind accepted here.
    #[error("{message}")]
    UnsupportedMedia { code: &'static str, message: String },
    /// 408: the content stopped arriving for longer than allowed.
    #[error("{message}")]
    Stalled { code: &'static str, message: String },
    /// 429: too many attempts; retry after the given number of seconds.
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// 429: a per-account limit is reached (uploads in progress, their bytes, the daily
    /// quota); `retry_after_secs` says when it frees up, if that is known.
    #[error("{message}")]
    LimitReached { code: &'static str, message: String, retry_after_secs: Option<u64> },
    /// 503: a dependency is down (the database, for readiness and any work that needs it).
    #[error("{message}")]
    Unavailable { message: String },
    /// 500: a bug or an outage. Logged with context, answered without details.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

/// Result of domain functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn malformed(code: &'static str, message: impl Into<String>) -> Self {
        Error::Malformed { code, message: message.into() }
    }
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid { code, message: message.into() }
    }
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Error::Unauthenticated { code, message: message.into() }
    }
    pub fn denied(code: &'static str, message: impl Into<String>) -> Self {
        Error::Denied { code, message: message.into() }
    }
    pub fn payment_declined(code: &'static str, message: impl Into<String>) -> Self {
        Error::PaymentDeclined { code, message: message.into() }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict { code, message: message.into() }
    }
    pub fn not_found(what: &'static str) -> Self {
        Error::NotFound { what }
    }
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Error::Internal(err.into())
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            Error::Malformed { code, .. }
            | Error::Invalid { code, .. }
            | Error::Unauthenticated { code, .. }
            | Error::Denied { code, .. }
            | Error::PaymentDeclined { code, .. }
            | Error::Conflict { code, .. }
            | Error::Busy { code, .. }
            | Error::UnsupportedMedia { code, .. }
            | Error::Stalled { code, .. }
            | Error::LimitReached { code, .. } => code,
            Error::NotFound { .. } => "not_found",
            Error::Gone { .. } => "gone",
            Error::TooLarge => "payload_too_large",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable { .. } => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// When the caller may try again, if the error says.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Error::LimitReached { retry_after_secs, .. } => *retry_after_secs,
            _ => None,
        }
    }

    /// An internal error caused by a database outage becomes [`Error::Unavailable`].
    pub fn classified(self) -> Self {
        match self {
            Error::Internal(err) => {
                match err
                    .chain()
                    .find_map(|cause| cause.downcast_ref::<sqlx::Error>())
                    .filter(|e| crate::db::is_outage(e))
                {
                    Some(_) => {
                        tracing::warn!(error = format!("{err:#}"), "database unavailable");
                        Error::Unavailable {
                            message: "the database is unavailable; retry shortly".into(),
                        }
                    }
                    None => Error::Internal(err),
                }
            }
            other => other,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(anyhow::Error::new(e).context("database")).classified()
    }
}
