//! Who is asking: the client address of a request.
//!
//! The peer of the TCP connection is the client unless it is a configured trusted proxy
//! (`LECTERN_TRUSTED_PROXIES`). Then the client is read from the forwarding header, walking it
//! from the right (the hop nearest us) past every trusted proxy: the first address that is not
//! one is the client. Entries to its left were written by the client itself and are never
//! believed, so a client cannot pick its own address by sending the header. `X-Forwarded-For`
//! is read when present, otherwise `Forwarded` (RFC 7239); a proxy that speaks only
//! `Forwarded` must drop an incoming `X-Forwarded-For` (the shipped nginx config sets
//! `X-Forwarded-For` and clears `Forwarded`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::app::AppState;
use crate::config::TrustedProxies;
use crate::error::Error;

/// The client's address, resolved through trusted proxies. Also an extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client behind `peer`, given the request's headers.
    pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> ClientAddr {
        let mut client = peer.to_canonical();
        if !trusted.contains(client) {
            return ClientAddr(client);
        }
        let hops = forwarded_for(headers);
        for hop in hops.iter().rev() {
            // An entry that is no address (`unknown`, an obfuscated name, garbage) ends the
            // walk: nothing to its left can be traced.
            let Some(addr) = hop.as_deref().and_then(parse_addr) else { break };
            client = addr;
            if !trusted.contains(addr) {
                break;
            }
        }
        ClientAddr(client)
    }

    /// The key that per-address limits count under: an IPv4 address, or the /64 network of
    /// an IPv6 one (one host, or one household, commonly holds a whole /64).
    pub fn limit_key(&self) -> IpAddr {
        match self.0 {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        }
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The `for` entries of the forwarding header, oldest hop first; `None` for an entry that has
/// no `for`.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<String>> {
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    };
    let xff = values("x-forwarded-for");
    if !xff.is_empty() {
        return xff.iter().flat_map(|v| v.split(',')).map(|h| Some(h.trim().to_string())).collect();
    }
    values("forwarded")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"').to_string())
            })
        })
        .collect()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = s.parse::<SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    s.strip_prefix('[')?
        .split_once(']')
        .and_then(|(ip, _)| ip.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Error;

    /// Resolved once per request by the access-log middleware; resolved here when it did not.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(client) = parts.extensions.get::<ClientAddr>() {
            return Ok(*client);
        }
        Ok(ClientAddr::resolve(peer(parts), &parts.headers, &state.cfg.trusted_proxies))
    }
}

/// The TCP peer of the request (unspecified when served without connection info).
pub fn peer(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(peer: &str, headers: &[(&str, &str)], trusted: &str) -> String {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        ClientAddr::resolve(peer.parse().unwrap(), &map, &trusted.parse().unwrap()).to_string()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let xff = [("x-forwarded-for", "203.0.113.9")];
        assert_eq!(resolve("198.51.100.1", &xff, ""), "198.51.100.1");
        assert_eq!(resolve("198.51.100.1", &xff, "127.0.0.1"), "198.51.100.1");
        assert_eq!(resolve("127.0.0.1", &xff, "127.0.0.1"), "203.0.113.9");
        assert_eq!(resolve("::ffff:127.0.0.1", &xff, "127.0.0.1"), "203.0.113.9");
        assert_eq!(resolve("127.0.0.1", &[], "127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_hop_from_the_right() {
        // The client sent its own header claiming 1.1.1.1; nginx appended the real address.
        let spoofed = [("x-forwarded-for", "1.1.1.1, 203.0.113.9")];
        assert_eq!(resolve("127.0.0.1", &spoofed, "127.0.0.1"), "203.0.113.9");
        // Through a CDN edge (trusted) and nginx: the CDN's client is the client.
        let chain = [("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.7")];
        assert_eq!(resolve("127.0.0.1", &chain, "127.0.0.1, 10.0.0.0/8"), "203.0.113.9");
        // Several header lines are one list.
        let lines = [("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "203.0.113.9")];
        assert_eq!(resolve("127.0.0.1", &lines, "127.0.0.1"), "203.0.113.9");
        // Garbage ends the walk at the last hop we could trace.
        let junk = [("x-forwarded-for", "203.0.113.9, not-an-ip, 10.0.0.7")];
        assert_eq!(resolve("127.0.0.1", &junk, "127.0.0.1, 10.0.0.0/8"), "10.0.0.7");
        // Only proxies: the leftmost one.
        let all = [("x-forwarded-for", "10.0.0.8, 10.0.0.7")];
        assert_eq!(resolve("127.0.0.1", &all, "127.0.0.1, 10.0.0.0/8"), "10.0.0.8");
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let fwd = [("forwarded", r#"for=1.1.1.1, for="[2001:db8::7]:4711";proto=https"#)];
        assert_eq!(resolve("127.0.0.1", &fwd, "127.0.0.1"), "2001:db8::7");
        let v4port = [("forwarded", "proto=https;for=203.0.113.9:1234")];
        assert_eq!(resolve("127.0.0.1", &v4port, "127.0.0.1"), "203.0.113.9");
        let both = [("forwarded", "for=1.1.1.1"), ("x-forwarded-for", "203.0.113.9")];
        assert_eq!(resolve("127.0.0.1", &both, "127.0.0.1"), "203.0.113.9");
        let unknown = [("forwarded", "for=unknown")];
        assert_eq!(resolve("127.0.0.1", &unknown, "127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a = ClientAddr("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientAddr("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = ClientAddr("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a.limit_key(), b.limit_key());
        assert_ne!(a.limit_key(), c.limit_key());
        assert_eq!(ClientAddr("192.0.2.1".parse().unwrap()).limit_key().to_string(), "192.0.2.1");
    }
}
