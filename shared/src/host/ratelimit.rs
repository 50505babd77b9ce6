//! The inbound rate limit (docs/configuration.md "Rate limits"): a token
//! bucket per source address, answered `429` + `Retry-After` at the door.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::IntCounter;

use crate::delivery::metrics::Metrics;
use crate::delivery::ratelimit::{Buckets, Clock, MAX_KEYS, SystemClock};
use crate::event::config::{InboundLimit, Rate};
use crate::host::ingress::IngressError;

/// The inbound limit: one bucket per source address.
pub struct InboundLimiter {
    rate: Rate,
    trusted_proxies: Vec<ipnet::IpNet>,
    buckets: Buckets<IpAddr>,
    refused: IntCounter,
}

impl InboundLimiter {
    pub fn new(spec: &InboundLimit, metrics: &Metrics) -> Arc<InboundLimiter> {
        InboundLimiter::with_clock(spec, metrics, Arc::new(SystemClock))
    }

    pub fn with_clock(
        spec: &InboundLimit,
        metrics: &Metrics,
        clock: Arc<dyn Clock>,
    ) -> Arc<InboundLimiter> {
        Arc::new(InboundLimiter {
            rate: spec.rate,
            trusted_proxies: spec.trusted_proxies.clone(),
            buckets: Buckets::new(clock, MAX_KEYS),
            // The address is not a label: its cardinality is the attacker's choice.
            refused: metrics
                .rate_limited
                .with_label_values(&["inbound", "source"]),
        })
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The request's source: the peer address, unless the peer is a trusted
    /// proxy; then the `X-Forwarded-For` hops are read from the right (each
    /// proxy appends the address it received from) and the first one that
    /// is not a trusted proxy is the source. Hops further left were written
    /// by the sender and are never read, so a sender cannot pick its bucket.
    /// A hop that is no address ends the walk at the last trusted one.
    pub fn source(&self, headers: &http::HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        let peer = peer?;
        let mut source = peer;
        if self.is_trusted(peer) {
            // Bytes, not `to_str`: a sender's non-ASCII hop on the same line
            // must not hide the hops its proxies appended after it.
            let hops: Vec<&[u8]> = headers
                .get_all("x-forwarded-for")
                .iter()
                .flat_map(|v| v.as_bytes().split(|b| *b == b','))
                .collect();
            for hop in hops.iter().rev() {
                let Some(ip) = parse_hop(hop) else { break };
                source = ip;
                if !self.is_trusted(ip) {
                    break;
                }
            }
        }
        Some(bucket_key(source))
    }

    /// `Err(retry_after)` when `source` is over its limit.
    pub fn check(&self, source: IpAddr) -> Result<(), Duration> {
        match self.buckets.reserve(&source, self.rate, Duration::ZERO) {
            Ok(_) => Ok(()),
            Err(wait) => {
                self.refused.inc();
                Err(wait)
            }
        }
    }
}

/// One `X-Forwarded-For` hop: an address, or one with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`), as some proxies write it.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(hop).ok()?.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// IPv4 addresses by themselves; IPv6 by their /64, which one host can
/// cycle through freely.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Applies the inbound limit to the routes of `router` added so far (not
/// to those added after: health and metrics stay reachable).
pub fn limit_routes<S>(router: Router<S>, limiter: Option<Arc<InboundLimiter>>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    match limiter {
        Some(l) => router.route_layer(axum::middleware::from_fn_with_state(l, limit_inbound)),
        None => router,
    }
}

async fn limit_inbound(
    State(limiter): State<Arc<InboundLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // No address at all (a runtime without peer info, no trusted header):
    // nothing to key on, so not limited.
    let Some(source) = limiter.source(req.headers(), peer) else {
        return next.run(req).await;
    };
    match limiter.check(source) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut resp = IngressError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from this source; retry after {secs} s"),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::ratelimit::manual::Manual;

    fn rate(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn inbound_sources_and_the_forwarded_header() {
        let metrics = Metrics::new();
        let spec = |proxies: &[&str]| InboundLimit {
            rate: rate(1.0, 1),
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
        };
        let h = xff(&["203.0.113.9, 10.0.0.1"]);
        let peer = ip("10.1.2.3");
        let untrusted = InboundLimiter::with_clock(&spec(&[]), &metrics, Manual::new());
        assert_eq!(untrusted.source(&h, Some(peer)), Some(peer));
        assert_eq!(untrusted.source(&h, None), None);
        let trusted = InboundLimiter::with_clock(&spec(&["10.0.0.0/8"]), &metrics, Manual::new());
        assert_eq!(trusted.source(&h, Some(peer)), Some(ip("203.0.113.9")));
        let h = xff(&["not an address"]);
        assert_eq!(trusted.source(&h, Some(peer)), Some(peer));
        // One IPv6 /64 is one source; IPv4-mapped is IPv4.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(bucket_key(a), bucket_key(b));
        assert_ne!(
            bucket_key(a),
            bucket_key("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(
            bucket_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        // Refusals are counted under a fixed label.
        assert!(untrusted.check(peer).is_ok());
        assert_eq!(untrusted.check(peer), Err(Duration::from_secs(1)));
        assert!(
            metrics
                .render()
                .contains("relay_rate_limited_total{direction=\"inbound\",key=\"source\"} 1")
        );
    }

    /// The attack: a sender behind the proxy writes hops of its own to the
    /// left of what the proxy appends, a new one per request, to get a new
    /// bucket each time. Only the hop the trusted proxy appended counts.
    #[test]
    fn spoofed_leftmost_forwarded_hops_do_not_choose_the_bucket() {
        let metrics = Metrics::new();
        let spec = InboundLimit {
            rate: rate(0.001, 1),
            trusted_proxies: vec![
                "127.0.0.1/32".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
        };
        let l = InboundLimiter::with_clock(&spec, &metrics, Manual::new());
        let proxy = Some(ip("127.0.0.1"));
        let mut keys = Vec::new();
        for i in 0..5 {
            let h = xff(&[&format!("198.51.100.{i}, 192.0.2.77, 10.0.0.5")]);
            keys.push(l.source(&h, proxy).unwrap());
        }
        assert!(keys.iter().all(|k| *k == ip("192.0.2.77")), "{keys:?}");
        assert!(l.check(keys[0]).is_ok());
        assert!(l.check(keys[1]).is_err(), "the same bucket");

        // The same hops split over several header lines, and a sender's
        // non-UTF-8 junk before them, change nothing.
        let mut h = http::HeaderMap::new();
        h.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe, 192.0.2.77").unwrap(),
        );
        h.append("x-forwarded-for", "10.0.0.5".parse().unwrap());
        assert_eq!(l.source(&h, proxy), Some(ip("192.0.2.77")));
        // Hops with ports, as some proxies write them.
        let h = xff(&["192.0.2.80:4711, [2001:db8::1]:80, 10.0.0.5:1"]);
        assert_eq!(l.source(&h, proxy), Some(bucket_key(ip("2001:db8::1"))));
        // Two senders behind the same proxy have their own buckets.
        let a = l.source(&xff(&["192.0.2.1"]), proxy).unwrap();
        let b = l.source(&xff(&["192.0.2.2"]), proxy).unwrap();
        assert_ne!(a, b);
        // A peer that is no trusted proxy is the source, whatever it writes.
        let direct = Some(ip("192.0.2.9"));
        assert_eq!(l.source(&xff(&["10.0.0.1"]), direct), direct);
        // Every hop trusted: the leftmost is as far as the chain goes.
        assert_eq!(
            l.source(&xff(&["10.0.0.7, 10.0.0.5"]), proxy),
            Some(ip("10.0.0.7"))
        );
        // IPv4-mapped peers match IPv4 proxies.
        assert_eq!(
            l.source(&xff(&["192.0.2.3"]), Some(ip("::ffff:127.0.0.1"))),
            Some(ip("192.0.2.3"))
        );
    }
}
