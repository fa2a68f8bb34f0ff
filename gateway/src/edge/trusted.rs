//! Which peers the gateway believes about the client: `trusted_proxies`, a list of CIDRs.
//! Only a connection from one of them may send a PROXY header, and only their
//! `X-Forwarded-For` entries are read (see [`super::client_ip`]).

use ipnet::IpNet;
use std::net::IpAddr;

/// The trusted proxy networks; empty trusts nobody.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parse CIDRs (`10.0.0.0/8`) or bare addresses (a /32 or /128); the error names the
    /// entry at fault.
    pub fn parse(entries: &[String]) -> Result<Self, (usize, String)> {
        let mut networks = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let network = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    (
                        i,
                        format!("`{entry}` is not a CIDR or IP address (e.g. 10.0.0.0/8)"),
                    )
                })?;
            networks.push(network.trunc());
        }
        Ok(TrustedProxies { networks })
    }

    /// Whether nobody is trusted (the per-request checks can be skipped).
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `ip` is a trusted proxy (an IPv4-mapped IPv6 address counts as its IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|network| network.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_bare_addresses() {
        let trusted =
            TrustedProxies::parse(&["10.0.0.0/8".into(), "192.168.1.7".into(), "fd00::/8".into()])
                .unwrap();
        for (ip, expected) in [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("fd12::1", true),
            ("fe80::1", false),
            ("::ffff:10.9.9.9", true),
        ] {
            assert_eq!(trusted.contains(ip.parse().unwrap()), expected, "{ip}");
        }
        let error = TrustedProxies::parse(&["10.0.0.0/8".into(), "ten".into()]).unwrap_err();
        assert_eq!(error.0, 1);
        assert!(TrustedProxies::default().is_empty());
    }
}
