//! Hostname targets follow DNS, so an upstream follows its containers as they come and go.
//!
//! A target written as a name (`api.internal:8080`) is resolved by a task of its upstream
//! (started with the health checks) and resolved again when the answer's TTL runs out,
//! bounded by `[resolver] min_ttl_s` and `max_ttl_s`. New connections go to the addresses of
//! the last good answer in turn (the others tried when one refuses); a failed resolution
//! keeps that answer (and is tried again after `min_ttl_s`). When the answer changes, pooled
//! connections opened before the change are not reused, so traffic moves within one request
//! per connection. Until a first answer arrives (or when the resolver cannot be set up),
//! connections resolve the name through the system, as before. The target stays one target
//! for balancing and health (Envoy's "logical DNS"): its health is the service's behind the
//! name.

use crate::config::ResolverConfig;
use crate::telemetry::metrics;
use arc_swap::ArcSwap;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use http::uri::Authority;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The addresses a hostname target resolves to now.
pub struct Addresses {
    host: String,
    port: u16,
    /// The last good answer, sorted; empty until the first.
    set: ArcSwap<Vec<SocketAddr>>,
    next: AtomicUsize,
    /// Bumped at each change of `set`: a connection opened under an older one is not reused.
    generation: AtomicU64,
}

impl Addresses {
    /// The addresses of `authority`, or none if its host is an IP address.
    pub fn of(authority: &Authority) -> Option<Addresses> {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.parse::<IpAddr>().is_ok() {
            return None;
        }
        Some(Addresses {
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(80),
            set: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
        })
    }

    /// The addresses to try for a new connection, starting from the next in turn (so new
    /// connections spread over them, and one that refuses is passed over); none before the
    /// first answer.
    pub fn in_turn(&self) -> Option<Vec<SocketAddr>> {
        let set = self.set.load();
        if set.is_empty() {
            return None;
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed) % set.len();
        Some(set[first..].iter().chain(&set[..first]).copied().collect())
    }

    /// Which answer connections opened now belong to.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Take a new answer; whether it differs from the last.
    fn update(&self, ips: impl Iterator<Item = IpAddr>) -> bool {
        let mut found: Vec<SocketAddr> = ips.map(|ip| SocketAddr::new(ip, self.port)).collect();
        found.sort();
        found.dedup();
        if **self.set.load() == found {
            return false;
        }
        self.set.store(Arc::new(found));
        self.generation.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// A resolver with the `[resolver]` bounds.
pub struct Dns {
    resolver: TokioResolver,
    min_ttl: Duration,
    max_ttl: Duration,
}

impl Dns {
    /// A resolver as `config` says (its name servers, or the system's).
    pub fn new(config: &ResolverConfig) -> Result<Dns, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if config.nameservers.is_empty() {
            Resolver::builder(provider).map_err(|e| format!("system resolver: {e}"))?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|text| {
                    let address = nameserver(text)?;
                    let mut udp = ConnectionConfig::udp();
                    udp.port = address.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = address.port();
                    Ok(NameServerConfig::new(address.ip(), true, vec![udp, tcp]))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let config = hickory_resolver::config::ResolverConfig::from_name_servers(servers);
            Resolver::builder_with_config(config, provider)
        };
        let options = builder.options_mut();
        options.timeout = Duration::from_millis(config.timeout_ms);
        options.attempts = 2;
        // The task asks again when the TTL ran out: a cached answer would only be older.
        options.cache_size = 0;
        let resolver = builder.build().map_err(|e| e.to_string())?;
        Ok(Dns {
            resolver,
            min_ttl: Duration::from_secs(config.min_ttl_s),
            max_ttl: Duration::from_secs(config.max_ttl_s.max(config.min_ttl_s)),
        })
    }

    /// Resolve `target`'s name once, record the outcome for `upstream`, and say when to
    /// resolve it again.
    pub async fn refresh(&self, upstream: &str, label: &str, target: &Addresses) -> Duration {
        let answer = self.resolver.lookup_ip(target.host.as_str()).await;
        let result = match answer {
            Ok(lookup) if lookup.iter().next().is_some() => {
                let ttl = lookup
                    .valid_until()
                    .saturating_duration_since(Instant::now());
                if target.update(lookup.iter()) {
                    let now: Vec<String> =
                        target.set.load().iter().map(|a| a.to_string()).collect();
                    tracing::info!(upstream, target = label, addresses = %now.join(", "), "target resolved anew");
                    self.count(upstream, label, "changed");
                } else {
                    self.count(upstream, label, "same");
                }
                return ttl.clamp(self.min_ttl, self.max_ttl);
            }
            Ok(_) => "no address in the answer".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(
            upstream,
            target = label,
            "cannot resolve {}: {result}; keeping the last answer",
            target.host
        );
        self.count(upstream, label, "failed");
        self.min_ttl
    }

    fn count(&self, upstream: &str, target: &str, result: &str) {
        metrics::metrics()
            .dns_resolutions
            .with_label_values(&[upstream, target, result])
            .inc();
    }
}

/// `ip` or `ip:port` (port 53 by default).
pub fn nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| format!("`{text}` is not ip or ip:port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_target_is_not_resolved_and_a_name_is() {
        let ip: Authority = "127.0.0.1:80".parse().expect("authority");
        assert!(Addresses::of(&ip).is_none());
        let v6: Authority = "[::1]:80".parse().expect("authority");
        assert!(Addresses::of(&v6).is_none());
        let name: Authority = "api.internal:8080".parse().expect("authority");
        let addresses = Addresses::of(&name).expect("a name");
        assert_eq!(addresses.in_turn(), None);
        let first = [IpAddr::from([10, 0, 0, 2]), IpAddr::from([10, 0, 0, 1])];
        assert!(addresses.update(first.into_iter()));
        assert_eq!(addresses.generation(), 1);
        // The same set in another order is no change.
        assert!(!addresses.update(first.into_iter().rev()));
        assert_eq!(addresses.generation(), 1);
        let (one, two) = (
            addresses.in_turn().expect("set"),
            addresses.in_turn().expect("set"),
        );
        assert_eq!(one.len(), 2);
        assert!(one.iter().all(|a| a.port() == 8080));
        assert_eq!((one[0], one[1]), (two[1], two[0]));
    }

    #[test]
    fn nameservers_take_a_default_port() {
        assert_eq!(nameserver("10.0.0.53").expect("ip").port(), 53);
        assert_eq!(nameserver("127.0.0.1:5353").expect("ip:port").port(), 5353);
        assert!(nameserver("dns.internal").is_err());
    }
}
