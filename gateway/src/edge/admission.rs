//! Admission control: caps on open client connections, in total and per client IP (an IPv6
//! client by its /64, since one host is handed a whole /64), checked as a connection is
//! accepted and refused by closing it at once, before a byte is read or a task spawned, so a
//! flood of connections costs an accept and a close each (nginx's `limit_conn`, Envoy's
//! `max_downstream_connections`).
//!
//! Trusted proxies are exempt from the per-IP cap: behind a load balancer every connection
//! comes from a few addresses.

use super::trusted::TrustedProxies;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The key a client's connections count under.
type ClientKey = u128;

/// Open connections, shared by every worker.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    trusted: Arc<TrustedProxies>,
    total: AtomicUsize,
    per_ip: DashMap<ClientKey, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_ip` are open from this client.
    PerIp,
}

impl Refused {
    /// For the log line.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerIp => "max_connections_per_ip",
        }
    }
}

/// One admitted connection; counted until dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    key: Option<ClientKey>,
}

impl Admission {
    /// Caps of `max_total` connections and `max_per_ip` per client.
    pub fn new(max_total: usize, max_per_ip: usize, trusted: Arc<TrustedProxies>) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_ip,
            trusted,
            total: AtomicUsize::new(0),
            per_ip: DashMap::new(),
        })
    }

    /// Count a connection from `ip`, or refuse it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Total);
        }
        let key = (!self.trusted.contains(ip)).then(|| client_key(ip));
        if let Some(key) = key {
            let mut open = self.per_ip.entry(key).or_insert(0);
            if *open >= self.max_per_ip {
                drop(open);
                self.total.fetch_sub(1, Ordering::Relaxed);
                return Err(Refused::PerIp);
            }
            *open += 1;
        }
        Ok(Admitted {
            admission: self.clone(),
            key,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let admission = &self.admission;
        admission.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(key) = self.key {
            // The last connection of a client takes its entry with it.
            admission.per_ip.remove_if_mut(&key, |_, open| {
                *open -= 1;
                *open == 0
            });
        }
    }
}

/// IPv4 addresses whole; IPv6 by their /64 (an IPv4-mapped address as its IPv4).
fn client_key(ip: IpAddr) -> ClientKey {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn caps_per_client_and_in_total() {
        let trusted = Arc::new(TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap());
        let admission = Admission::new(5, 2, trusted);
        let a1 = admission.admit(ip("192.0.2.1")).unwrap();
        let _a2 = admission.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            admission.admit(ip("192.0.2.1")).unwrap_err(),
            Refused::PerIp
        );
        // Same /64: the same client.
        let _b1 = admission.admit(ip("2001:db8::1")).unwrap();
        let _b2 = admission.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(
            admission.admit(ip("2001:db8::3:4")).unwrap_err(),
            Refused::PerIp
        );
        let _c = admission.admit(ip("2001:db8:0:1::1")).unwrap();
        assert_eq!(admission.open(), 5);
        assert_eq!(
            admission.admit(ip("198.51.100.1")).unwrap_err(),
            Refused::Total
        );
        drop(a1);
        assert_eq!(admission.open(), 4);
        let _a3 = admission.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(admission.admit(ip("10.0.0.1")).unwrap_err(), Refused::Total);
        assert_eq!(admission.per_ip.len(), 3);
    }

    #[test]
    fn trusted_proxies_skip_the_per_ip_cap_and_entries_go_at_zero() {
        let trusted = Arc::new(TrustedProxies::parse(&["10.0.0.1".into()]).unwrap());
        let admission = Admission::new(100, 1, trusted);
        let held: Vec<_> = (0..5)
            .map(|_| admission.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert!(admission.per_ip.is_empty());
        let one = admission.admit(ip("192.0.2.9")).unwrap();
        drop(one);
        assert!(admission.per_ip.is_empty());
        drop(held);
        assert_eq!(admission.open(), 0);
    }
}
