//! `ip-restriction`: allow or deny clients by IP address or CIDR range, IPv4 and IPv6.
//!
//! ```toml
//! { use = "ip-restriction", config = { allow = ["10.0.0.0/8", "2001:db8::/32"],
//!   deny = ["10.0.0.13"] } }
//! ```
//! `deny` wins over `allow`; with a non-empty `allow`, everything not in it is refused.
//! Refused clients get 403. The address is the TCP peer's (an IPv4-mapped IPv6 peer counts as
//! its IPv4 address).

use plugin_sdk::{Context, Filter, Flow, Reply, Request, Settings};
use serde::Deserialize;
use std::net::IpAddr;

/// The plugin's config.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Addresses or CIDR ranges let through.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Addresses or CIDR ranges refused.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Status for refused clients (default 403).
    #[serde(default = "default_status")]
    pub status: u16,
}

fn default_status() -> u16 {
    403
}

/// An address range: network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `addr` or `addr/prefix`.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }

    /// True if `ip` is in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, normalize(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The filter.
pub struct IpRestriction {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    status: u16,
}

impl Filter for IpRestriction {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let parse = |key: &str, list: &[String]| -> Result<Vec<Cidr>, String> {
            list.iter()
                .map(|c| Cidr::parse(c).map_err(|e| format!("{key}: {e}")))
                .collect()
        };
        let allow = parse("allow", &config.allow)?;
        let deny = parse("deny", &config.deny)?;
        if allow.is_empty() && deny.is_empty() {
            return Err("give `allow` or `deny` (addresses or CIDR ranges)".into());
        }
        if !(400..=599).contains(&config.status) {
            return Err("status: must be 400..=599".into());
        }
        Ok(IpRestriction {
            allow,
            deny,
            status: config.status,
        })
    }

    fn settings(&self) -> Settings {
        Settings {
            request_headers: Some(Vec::new()),
            ..Settings::default()
        }
    }

    fn on_request(&self, _req: &mut Request, ctx: &mut Context) -> Flow {
        let allowed = match ctx.client_ip().parse::<IpAddr>() {
            Ok(ip) => {
                !self.deny.iter().any(|c| c.contains(ip))
                    && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
            }
            Err(_) => false,
        };
        if allowed {
            return Flow::Continue;
        }
        Flow::Respond(Reply::error(
            self.status,
            "forbidden",
            "your IP address is not allowed",
            ctx,
        ))
    }
}

plugin_sdk::export_filter!(IpRestriction);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest};
    use serde_json::json;

    fn status(config: serde_json::Value, client: &str) -> u16 {
        let f = testing::init::<IpRestriction>(config).unwrap();
        let out = testing::request(&f, TestRequest::get("/").with_client(client));
        out.reply().map_or(200, |r| r.status())
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn allow_and_deny_lists() {
        let config = json!({"allow": ["127.0.0.0/8", "::1"], "deny": ["127.0.0.13"]});
        assert_eq!(status(config.clone(), "127.0.0.1:5000"), 200);
        assert_eq!(status(config.clone(), "[::1]:5000"), 200);
        assert_eq!(status(config.clone(), "127.0.0.13:5000"), 403);
        assert_eq!(status(config, "192.168.1.1:5000"), 403);
        assert_eq!(status(json!({"deny": ["::/0"]}), "[2001:db8::1]:1"), 403);
    }
}
