//! The real client behind trusted proxies: `X-Forwarded-For` read right to left, skipping
//! trusted hops, up to the first address that is not a trusted proxy (Envoy's
//! `xff_num_trusted_hops` by address rather than count; nginx's `real_ip_recursive on`).
//!
//! Only what trusted proxies wrote is believed, so what the gateway forwards is the verified
//! part of the chain: the real client, the trusted hops after it, and the peer itself. An
//! untrusted peer's own `X-Forwarded-For` is dropped: the upstream learns only the peer, and
//! a client cannot spoof an address by sending the header itself.

use super::trusted::TrustedProxies;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Who the client is, and the `X-Forwarded-For` to send on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The real client's address.
    pub client: IpAddr,
    /// Verified `X-Forwarded-For` entries, the real client first (the peer not yet added);
    /// empty when the client is the peer itself.
    pub chain: Vec<IpAddr>,
}

/// Resolve the client of a request from `peer` carrying `headers`. `None` when the client
/// is the peer and nothing is to be forwarded but the peer (the common, cheap case).
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> Option<Resolved> {
    if trusted.is_empty() || !trusted.contains(peer) {
        return None;
    }
    let entries: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    // Right to left: the nearest hop first. The client is the first untrusted address; if an
    // entry cannot be read, the last trusted hop before it is as far as the chain is known.
    let mut kept: Vec<IpAddr> = Vec::new();
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry) else { break };
        kept.push(ip);
        if !trusted.contains(ip) {
            break;
        }
    }
    let client = *kept.last()?;
    kept.reverse();
    Some(Resolved {
        client,
        chain: kept,
    })
}

/// One `X-Forwarded-For` element: an address, maybe with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

/// The `X-Forwarded-For` value to send: `chain`, then `peer`.
pub fn forwarded_for(chain: &[IpAddr], peer: IpAddr) -> Option<HeaderValue> {
    let mut text = String::with_capacity(16 * (chain.len() + 1));
    for ip in chain.iter().chain(std::iter::once(&peer)) {
        if !text.is_empty() {
            text.push_str(", ");
        }
        text.push_str(&ip.to_string());
    }
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/8".into(), "fd00::/8".into()]).unwrap()
    }

    fn with_xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let headers = with_xff(&["1.2.3.4"]);
        assert_eq!(resolve(ip("203.0.113.9"), &headers, &trusted()), None);
        assert_eq!(
            resolve(ip("10.0.0.1"), &headers, &TrustedProxies::default()),
            None
        );
    }

    #[test]
    fn walks_right_to_left_past_trusted_hops() {
        // X-Forwarded-For values, and the client and chain expected.
        type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a [&'a str])>);
        let cases: &[Case] = &[
            // spoofed, real client, trusted hop: the spoofed entry is not believed.
            (
                &["6.6.6.6, 1.2.3.4", "10.0.0.2"],
                Some(("1.2.3.4", &["1.2.3.4", "10.0.0.2"])),
            ),
            (&["1.2.3.4:5678"], Some(("1.2.3.4", &["1.2.3.4"]))),
            (
                &["[2001:db8::1]:80, fd00::1"],
                Some(("2001:db8::1", &["2001:db8::1", "fd00::1"])),
            ),
            // Only trusted hops: the leftmost is as far as it goes.
            (
                &["10.0.0.3, 10.0.0.2"],
                Some(("10.0.0.3", &["10.0.0.3", "10.0.0.2"])),
            ),
            // Unreadable entry: the chain stops at the last trusted hop before it.
            (
                &["1.2.3.4, garbage, 10.0.0.2"],
                Some(("10.0.0.2", &["10.0.0.2"])),
            ),
            (&["garbage"], None),
            (&[], None),
        ];
        for (values, expected) in cases {
            let got = resolve(ip("10.0.0.1"), &with_xff(values), &trusted());
            let expected = expected.map(|(client, chain)| Resolved {
                client: ip(client),
                chain: chain.iter().map(|e| ip(e)).collect(),
            });
            assert_eq!(got, expected, "{values:?}");
        }
    }

    #[test]
    fn forwarded_chain_ends_with_the_peer() {
        let value = forwarded_for(&[ip("1.2.3.4"), ip("10.0.0.2")], ip("10.0.0.1")).unwrap();
        assert_eq!(value, "1.2.3.4, 10.0.0.2, 10.0.0.1");
        assert_eq!(forwarded_for(&[], ip("::1")).unwrap(), "::1");
    }
}
