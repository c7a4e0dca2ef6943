//! Payment providers: the interface orders are charged and refunded through, and its two
//! implementations.
//!
//! - `dev` ([`DevProvider`], the default): approves every payment key except those starting
//!   with `fail_`, which it declines; refunds always succeed. No money moves.
//! - `toss` ([`Toss`]): Toss Payments' core API. Confirm is `POST {base}/v1/payments/confirm`
//!   with `{paymentKey, orderId, amount}`, cancel is `POST {base}/v1/payments/{paymentKey}/cancel`
//!   with `{cancelReason, cancelAmount}`; both authenticate with
//!   `Authorization: Basic base64("{secret_key}:")`.
//!
//! Outcomes are few, and the caller acts on them without knowing the provider: done;
//! [`PaymentError::Declined`] (the provider said no: nothing was charged);
//! [`PaymentError::WrongCharge`] (approved, but not for this order's amount: money was taken
//! and must be given back); and [`PaymentError::Unavailable`] (no clear answer: a timeout, a
//! 5xx). After `Unavailable` nobody knows whether money moved, so the caller keeps its payment
//! intent and asks later with [`PaymentProvider::lookup`] (Toss:
//! `GET {base}/v1/payments/orders/{orderId}` after a confirm, `GET {base}/v1/payments/{paymentKey}`
//! after a cancel). Sending the same request again is also safe: Toss answers a second confirm
//! of an already-approved payment with `ALREADY_PROCESSED_PAYMENT`, and this client then looks
//! the payment up and accepts it when it is done for the same order and amount; a second cancel
//! carries the same `Idempotency-Key` and `ALREADY_CANCELED_PAYMENT` counts as done.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Config;
use crate::types::Currency;

/// Why a provider call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The provider refused: card declined, unknown or expired payment key, and so on.
    /// Nothing was charged (or refunded).
    #[error("[{code}] {message}")]
    Declined { code: String, message: String },
    /// The provider did not answer clearly (timeout, connection failure, its own 5xx).
    /// Nothing is known to have happened; the same call may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// The provider rejects our credentials, or its configured address is unusable: an
    /// operator's problem, not the buyer's.
    #[error("{0}")]
    Misconfigured(String),
    /// The provider approved the payment, but for another amount or order than asked: the
    /// money is taken under `payment_key` and must be cancelled, never kept.
    #[error("the payment was approved for {amount}, not for the order's amount")]
    WrongCharge { payment_key: String, amount: i64 },
}

/// Which earlier request a [`PaymentProvider::lookup`] asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A confirm (approval) of `payment_key` for the order.
    Confirm,
    /// A cancel (refund) of the approved `payment_key`.
    Cancel,
}

/// An earlier request whose answer was lost.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    pub asked: Asked,
    /// The order id the provider knows (`orders.payment_order_id`).
    pub order_id: &'a str,
    /// The payment key the request carried.
    pub payment_key: &'a str,
    /// The amount it asked for, in minor units.
    pub amount: i64,
}

/// What the provider knows of an order's payment, asked after the fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentState {
    /// Nothing is charged: never approved (or the approval never reached the provider, or it
    /// was aborted or expired).
    NotCharged,
    /// Approved and not given back: `amount` is taken under `payment_key`.
    Charged { payment_key: String, amount: i64 },
    /// Approved and then cancelled in full: the money is back with the buyer.
    Refunded,
}

/// A payment to approve.
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    /// The key the provider's checkout gave the buyer for this payment.
    pub payment_key: &'a str,
    /// The order id the provider knows (`orders.payment_order_id`).
    pub order_id: &'a str,
    /// Minor units of `currency`.
    pub amount: i64,
}

/// A full refund of an approved payment.
#[derive(Debug, Clone, Copy)]
pub struct Refund<'a> {
    pub payment_key: &'a str,
    pub order_id: &'a str,
    pub amount: i64,
    /// Shown to the buyer and kept by the provider.
    pub reason: &'a str,
}

crate::vocabulary! {
    /// A payment provider, as configured (`payment_provider`) and stored with each payment.
    pub enum ProviderName: "payment provider" {
        /// [`DevProvider`]: approves without taking money; refused in production.
        Dev = "dev",
        /// [`Toss`]: Toss Payments.
        Toss = "toss",
    }
}

/// Charges and refunds through one payment provider.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// The name stored with a payment (`dev`, `toss`); refunds go through the same provider.
    fn name(&self) -> ProviderName;
    /// Whether it can take payments in `currency` (ISO 4217).
    fn supports_currency(&self, currency: Currency) -> bool;
    /// Approve the payment: after `Ok` the money is taken.
    async fn confirm(&self, charge: &Charge<'_>) -> Result<(), PaymentError>;
    /// Cancel the whole payment: after `Ok` the money is given back.
    async fn cancel(&self, refund: &Refund<'_>) -> Result<(), PaymentError>;
    /// Where the payment of an earlier confirm or cancel stands now. The reconciler asks this
    /// about every payment intent whose request ended without a clear answer.
    async fn lookup(&self, lookup: &Lookup<'_>) -> Result<PaymentState, PaymentError>;
}

/// The provider the configuration names (`payment_provider`).
pub fn from_config(cfg: &Config) -> Box<dyn PaymentProvider> {
    match cfg.payment_provider {
        ProviderName::Toss => Box::new(Toss::new(cfg)),
        ProviderName::Dev => Box::new(DevProvider),
    }
}

/// Approves any payment key except those starting with `fail_`; refunds always succeed.
pub struct DevProvider;

#[async_trait]
impl PaymentProvider for DevProvider {
    fn name(&self) -> ProviderName {
        ProviderName::Dev
    }

    fn supports_currency(&self, _currency: Currency) -> bool {
        true
    }

    async fn confirm(&self, charge: &Charge<'_>) -> Result<(), PaymentError> {
        if charge.payment_key.starts_with("fail_") {
            return Err(PaymentError::Declined {
                code: "DEV_DECLINED".into(),
                message: "the dev payment provider declines payment keys that start with fail_"
                    .into(),
            });
        }
        Ok(())
    }

    async fn cancel(&self, _refund: &Refund<'_>) -> Result<(), PaymentError> {
        Ok(())
    }

    /// The dev provider keeps no records; it answers what it does to every request: a confirm
    /// is approved unless its key starts with `fail_`, a cancel always succeeds.
    async fn lookup(&self, lookup: &Lookup<'_>) -> Result<PaymentState, PaymentError> {
        Ok(match lookup.asked {
            Asked::Confirm if lookup.payment_key.starts_with("fail_") => PaymentState::NotCharged,
            Asked::Confirm => PaymentState::Charged {
                payment_key: lookup.payment_key.to_string(),
                amount: lookup.amount,
            },
            Asked::Cancel => PaymentState::Refunded,
        })
    }
}

/// One HTTP client for every provider call: connection pooling across requests. Timeouts are
/// set per request from the configuration.
static HTTP: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .user_agent(concat!("lectern/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client's TLS backend initialises")
});

/// Toss Payments' core API (<https://docs.tosspayments.com/reference>).
pub struct Toss {
    base: String,
    /// `Basic base64("{secret_key}:")`.
    authorization: String,
    timeout: Duration,
}

/// A Toss error body.
#[derive(Debug, Deserialize)]
struct TossError {
    code: String,
    message: String,
}

/// Toss codes that mean our credentials are wrong, not that the buyer's payment failed.
const CREDENTIAL_ERRORS: &[&str] =
    &["UNAUTHORIZED_KEY", "INVALID_API_KEY", "INCORRECT_BASIC_AUTH_FORMAT"];

impl Toss {
    pub fn new(cfg: &Config) -> Toss {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:", cfg.toss_secret_key.expose()));
        Toss {
            base: cfg.toss_api_base.trim_end_matches('/').to_string(),
            authorization: format!("Basic {token}"),
            timeout: Duration::from_secs(cfg.payment_timeout_secs.max(1)),
        }
    }

    /// `{base}/v1/payments/{segments…}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<url::Url, PaymentError> {
        let mut url = url::Url::parse(&self.base).map_err(|e| {
            PaymentError::Misconfigured(format!("toss_api_base {:?} is not a URL: {e}", self.base))
        })?;
        url.path_segments_mut()
            .map_err(|_| {
                PaymentError::Misconfigured(format!(
                    "toss_api_base {:?} cannot take a path",
                    self.base
                ))
            })?
            .pop_if_empty()
            .extend(["v1", "payments"])
            .extend(segments);
        Ok(url)
    }

    /// Send a request and read the payment object it answers, or classify the failure.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<Result<Value, TossError>, PaymentError> {
        let resp = req
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| PaymentError::Unavailable(format!("Toss Payments did not answer: {e}")))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            PaymentError::Unavailable(format!("Toss Payments' answer was cut off: {e}"))
        })?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map(Ok)
                // As ambiguous as no answer: the payment may be done; a retry finds out.
                .map_err(|e| {
                    PaymentError::Unavailable(format!(
                        "Toss Payments answered {status} with an unreadable body: {e}"
                    ))
                });
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(PaymentError::Unavailable(format!("Toss Payments answered {status}")));
        }
        match serde_json::from_slice::<TossError>(&body) {
            Ok(e)
                if status == reqwest::StatusCode::UNAUTHORIZED
                    || CREDENTIAL_ERRORS.contains(&e.code.as_str()) =>
            {
                Err(PaymentError::Misconfigured(format!(
                    "Toss Payments refused our credentials: [{}] {}",
                    e.code, e.message
                )))
            }
            Ok(e) => Ok(Err(e)),
            Err(_) => Err(PaymentError::Unavailable(format!(
                "Toss Payments answered {status} without an error body"
            ))),
        }
    }

    /// Accept `payment` as the approval of `charge` only if it is done, for that order and
    /// amount. A done payment that does not match is a [`PaymentError::WrongCharge`] (money
    /// taken that must go back) when `ours`: our confirm approved it, or it is of this order.
    /// A payment of another order that an earlier request approved is not ours to touch.
    fn approved(payment: &Value, charge: &Charge<'_>, ours: bool) -> Result<(), PaymentError> {
        let status = payment["status"].as_str().unwrap_or("");
        let same_order = payment["orderId"].as_str() == Some(charge.order_id);
        if !same_order && !ours {
            return Err(PaymentError::Declined {
                code: "PAYMENT_MISMATCH".into(),
                message: "this payment key belongs to another order".into(),
            });
        }
        if status != "DONE" {
            return Err(PaymentError::Declined {
                code: "PAYMENT_NOT_DONE".into(),
                message: format!("the payment is {status}, not DONE"),
            });
        }
        match payment["totalAmount"].as_i64() {
            Some(amount) if amount == charge.amount && same_order => Ok(()),
            amount => Err(PaymentError::WrongCharge {
                payment_key: payment["paymentKey"]
                    .as_str()
                    .unwrap_or(charge.payment_key)
                    .to_string(),
                amount: amount.unwrap_or(0),
            }),
        }
    }

    /// What a Toss payment object says about the money.
    fn state(payment: &Value) -> Result<PaymentState, PaymentError> {
        let key = payment["paymentKey"].as_str().unwrap_or_default().to_string();
        match payment["status"].as_str() {
            // Approved, possibly partly cancelled: what is left is still taken.
            Some("DONE") | Some("PARTIAL_CANCELED") => Ok(PaymentState::Charged {
                payment_key: key,
                amount: payment["balanceAmount"]
                    .as_i64()
                    .or(payment["totalAmount"].as_i64())
                    .unwrap_or(0),
            }),
            Some("CANCELED") => Ok(PaymentState::Refunded),
            // Checkout opened, authenticated but never approved, aborted, expired, or a virtual
            // account still waiting for its deposit: nothing is taken.
            Some("READY" | "IN_PROGRESS" | "ABORTED" | "EXPIRED" | "WAITING_FOR_DEPOSIT") => {
                Ok(PaymentState::NotCharged)
            }
            other => Err(PaymentError::Unavailable(format!(
                "Toss Payments reported the unknown payment status {other:?}"
            ))),
        }
    }
}

#[async_trait]
impl PaymentProvider for Toss {
    fn name(&self) -> ProviderName {
        ProviderName::Toss
    }

    fn supports_currency(&self, currency: Currency) -> bool {
        currency == Currency::KRW
    }

    async fn confirm(&self, charge: &Charge<'_>) -> Result<(), PaymentError> {
        let body = json!({"paymentKey": charge.payment_key, "orderId": charge.order_id, "amount": charge.amount});
        match self.send(HTTP.post(self.url(&["confirm"])?).json(&body)).await? {
            Ok(payment) => Self::approved(&payment, charge, true),
            // A retry after an answer we never got: the payment may be done already.
            Err(e) if e.code == "ALREADY_PROCESSED_PAYMENT" => {
                match self.send(HTTP.get(self.url(&[charge.payment_key])?)).await? {
                    Ok(payment) => Self::approved(&payment, charge, false),
                    Err(e) => Err(PaymentError::Declined { code: e.code, message: e.message }),
                }
            }
            Err(e) => Err(PaymentError::Declined { code: e.code, message: e.message }),
        }
    }

    async fn cancel(&self, refund: &Refund<'_>) -> Result<(), PaymentError> {
        let body = json!({"cancelReason": refund.reason, "cancelAmount": refund.amount});
        let req = HTTP
            .post(self.url(&[refund.payment_key, "cancel"])?)
            // Per order and payment: the cancel of a wrong approval must not answer for a later
            // refund of the same order paid under another key.
            .header(
                "Idempotency-Key",
                format!("lectern-refund-{}-{}", refund.order_id, refund.payment_key),
            )
            .json(&body);
        match self.send(req).await? {
            Ok(payment) if payment["status"].as_str() == Some("CANCELED") => Ok(()),
            Ok(payment) => Err(PaymentError::Declined {
                code: "CANCEL_NOT_DONE".into(),
                message: format!(
                    "the payment is {}, not CANCELED",
                    payment["status"].as_str().unwrap_or("in an unknown state")
                ),
            }),
            Err(e) if e.code == "ALREADY_CANCELED_PAYMENT" => Ok(()),
            Err(e) => Err(PaymentError::Declined { code: e.code, message: e.message }),
        }
    }

    async fn lookup(&self, lookup: &Lookup<'_>) -> Result<PaymentState, PaymentError> {
        let url = match lookup.asked {
            // Whatever was approved for the order, under any key.
            Asked::Confirm => self.url(&["orders", lookup.order_id])?,
            Asked::Cancel => self.url(&[lookup.payment_key])?,
        };
        match self.send(HTTP.get(url)).await? {
            Ok(payment) if payment["orderId"].as_str() != Some(lookup.order_id) => {
                Err(PaymentError::Misconfigured(format!(
                    "Toss Payments answered a lookup of order {} with a payment of another order",
                    lookup.order_id
                )))
            }
            Ok(payment) => Self::state(&payment),
            Err(e) if e.code == "NOT_FOUND_PAYMENT" || e.code == "NOT_FOUND_PAYMENT_SESSION" => {
                Ok(PaymentState::NotCharged)
            }
            Err(e) => Err(PaymentError::Unavailable(format!(
                "Toss Payments answered a lookup with [{}] {}",
                e.code, e.message
            ))),
        }
    }
}
