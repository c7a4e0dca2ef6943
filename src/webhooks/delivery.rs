//! Making delivery attempts: the target check, Standard Webhooks signatures, and the loop
//! every `serve` node runs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::db::{self, AttemptRow, Finished};
use crate::config::Config;
use crate::db::{now, Db};

/// Longest URL an endpoint may have.
pub const MAX_URL_LEN: usize = 2000;

/// Whether `ip` is a public unicast address (not private, loopback, link-local, shared,
/// documentation, multicast or unspecified).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local())
            }
        },
    }
}

/// Check that `url` may receive deliveries and resolve it: `(url, host, the address to use)`.
/// The answer is a readable reason when it may not.
pub async fn check_target(
    url: &str,
    allow_private: bool,
) -> Result<(url::Url, String, SocketAddr), String> {
    let url = url.trim();
    if url.len() > MAX_URL_LEN {
        return Err(format!("the URL is longer than {MAX_URL_LEN} characters"));
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("the URL must be http or https".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the URL must not carry credentials".into());
    }
    let host = parsed
        .host_str()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().ok_or("the URL has no port")?;
    let addrs: Vec<SocketAddr> = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("{host} did not resolve in time"))?
    .map_err(|e| format!("{host} does not resolve: {e}"))?
    .collect();
    let first = *addrs.first().ok_or_else(|| format!("{host} has no address"))?;
    if !allow_private {
        if let Some(private) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "{host} resolves to {}, a private, loopback or link-local address",
                private.ip()
            ));
        }
    }
    Ok((parsed, host, first))
}

/// The `webhook-signature` value for a message: `v1,` + base64 HMAC-SHA256, keyed with the
/// base64-decoded part of `secret` after `whsec_`, of `"{id}.{timestamp}.{body}"`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| format!("the endpoint secret is not base64: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", b64.encode(mac.finalize().into_bytes())))
}

/// How the delivery loop is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub allow_private: bool,
    pub timeout: Duration,
    /// Delays before the 2nd, 3rd, … attempt; after the last, the delivery has failed.
    pub retry_after: Vec<Duration>,
    pub disable_after: i64,
    pub poll: Duration,
    /// Attempts made at once by one node.
    pub concurrency: usize,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            allow_private: cfg.webhook_allow_private,
            timeout: Duration::from_secs(cfg.webhook_timeout_secs.max(1)),
            retry_after: cfg
                .webhook_retry_schedule()
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            disable_after: i64::try_from(cfg.webhook_disable_after_failures).unwrap_or(i64::MAX),
            poll: Duration::from_millis(cfg.webhook_poll_ms.max(50)),
            concurrency: 8,
        }
    }
}

/// Deliver due attempts until `shutdown` turns true.
pub async fn run(db: Db, settings: Settings, mut shutdown: watch::Receiver<bool>) {
    let node = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let settings = Arc::new(settings);
    loop {
        let lease = settings.timeout + Duration::from_secs(30);
        match db::claim_due(
            &db,
            &node,
            now(),
            now() + lease.as_secs() as i64,
            settings.concurrency as i64,
        )
        .await
        {
            Ok(batch) if !batch.is_empty() => {
                let mut set = JoinSet::new();
                for attempt in batch {
                    let (db, settings, node) = (db.clone(), settings.clone(), node.clone());
                    set.spawn(async move { deliver(&db, &settings, &node, attempt).await });
                }
                while set.join_next().await.is_some() {}
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed; retrying"),
        }
        if tokio::time::timeout(settings.poll, shutdown.changed()).await.is_ok()
            && *shutdown.borrow()
        {
            return;
        }
    }
}

/// Make one attempt and record how it went.
async fn deliver(db: &Db, settings: &Settings, node: &str, a: AttemptRow) {
    let (status, error) = match post(settings, &a).await {
        Ok(s) if (200..300).contains(&s) => (Some(s), None),
        Ok(s) => (Some(s), Some(format!("the receiver answered {s}"))),
        Err(e) => (None, Some(e)),
    };
    let succeeded = error.is_none();
    let retry_at = (!succeeded)
        .then(|| settings.retry_after.get(usize::try_from(a.attempt - 1).unwrap_or(usize::MAX)))
        .flatten()
        .map(|d| now() + d.as_secs() as i64);
    let outcome = if succeeded {
        "succeeded"
    } else if retry_at.is_some() {
        "retrying"
    } else {
        "failed"
    };
    metrics::counter!("lectern_webhook_deliveries_total", "outcome" => outcome).increment(1);
    if let Some(e) = &error {
        tracing::info!(delivery = %a.id, endpoint = %a.endpoint_id, attempt = a.attempt, error = %e, outcome, "webhook delivery failed");
    }
    let finished = Finished {
        succeeded,
        response_status: status,
        error: error.as_deref(),
        retry_at,
        disable_after: settings.disable_after,
    };
    match db::finish_attempt(db, &a, node, &finished, now()).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            delivery = %a.id,
            "a webhook attempt outlived its lease; another node took it over"
        ),
        Err(e) => {
            tracing::warn!(delivery = %a.id, error = %e, "recording a webhook attempt failed; it will be made again")
        }
    }
}

/// POST the event to the endpoint: the receiver's status, or why there was none.
async fn post(settings: &Settings, a: &AttemptRow) -> Result<i64, String> {
    let (url, host, addr) = check_target(&a.url, settings.allow_private).await?;
    let timestamp = now();
    let signature = sign(&a.secret, &a.event_id, timestamp, &a.body)?;
    // Pinned to the address just checked, so a name that resolves elsewhere a moment later
    // (DNS rebinding) cannot redirect the request.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .resolve(&host, addr)
        .user_agent(concat!("lectern-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &a.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(a.body.clone())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {} s", settings.timeout.as_secs())
            } else {
                format!("could not reach the receiver: {e}")
            }
        })?;
    Ok(i64::from(resp.status().as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn only_public_addresses_are_targets() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
