//! Proxy header hygiene: hop-by-hop headers stay on their hop, forwarding headers say where the
//! request came from, and every request carries an id.

use crate::edge::client_ip::{Resolved, forwarded_for};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1). All are
/// `HeaderName`s, so a check compares names, not their text.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Names the gateway sets on every request, parsed once.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// See [`X_FORWARDED_FOR`].
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// See [`X_FORWARDED_FOR`].
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// See [`X_FORWARDED_FOR`].
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// See [`X_FORWARDED_FOR`].
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Validated header changes, applied in the documented order: remove, set, add.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    /// Names whose every value goes.
    pub remove: Vec<HeaderName>,
    /// Fields replacing every value of their name.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Fields appended.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Apply to `headers`.
    pub fn apply(self, headers: &mut HeaderMap) {
        for name in self.remove {
            headers.remove(name);
        }
        for (name, value) in self.set {
            headers.insert(name, value);
        }
        for (name, value) in self.add {
            headers.append(name, value);
        }
    }
}

pub use crate::tls::facts::Attributes;

/// A cleartext connection's facts: none (shared, so a connection costs no allocation).
static NO_ATTRIBUTES: std::sync::LazyLock<Attributes> = std::sync::LazyLock::new(|| Arc::from([]));

/// The client end of a connection, with the text forms its requests need, formatted once per
/// connection rather than once per request (or per plugin call).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// `ip:port`, as plugins see it.
    pub addr_text: Arc<str>,
    /// The IP, as an `X-Forwarded-For` element.
    pub ip: HeaderValue,
    /// Facts about the connection for plugins (TLS: `tls.version`, `tls.client.sha256`, …;
    /// none on cleartext), shared by all its requests.
    pub attributes: Attributes,
}

impl Peer {
    /// Describe the client at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let ip = addr.ip().to_string();
        Peer {
            addr,
            addr_text: Arc::from(addr.to_string()),
            // An IP address is always a valid header value.
            ip: HeaderValue::from_str(&ip).unwrap_or_else(|_| HeaderValue::from_static("")),
            attributes: NO_ATTRIBUTES.clone(),
        }
    }

    /// The same connection's facts for a client at `addr` (the real client behind a proxy).
    pub fn behind(&self, addr: SocketAddr) -> Self {
        Peer::new(addr).with_attributes(self.attributes.clone())
    }

    /// With these connection facts.
    pub fn with_attributes(mut self, attributes: Attributes) -> Self {
        self.attributes = attributes;
        self
    }
}

/// Remove a request's hop-by-hop headers, including those the `Connection` header names,
/// except that `TE: trailers` is kept (as exactly that): it is how a client says it reads
/// trailers, and gRPC servers refuse calls without it.
pub fn strip_request_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none, or only `Connection: keep-alive`/`close`: one pass over the
    // names, and no allocation unless `Connection` names other headers.
    if !has_hop_by_hop(headers) {
        return;
    }
    let trailers = headers.get_all(header::TE).iter().any(|value| {
        value
            .as_bytes()
            .split(|b| *b == b',')
            .any(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    });
    strip_present_hop_by_hop(headers);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Whether `headers` has any hop-by-hop header (what a caller that must look at them before
/// they go checks first, then calls [`strip_present_hop_by_hop`]).
pub fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(is_hop_by_hop)
}

/// Remove hop-by-hop headers from headers known to have one ([`has_hop_by_hop`]).
pub fn strip_present_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        // Nearly every upstream response says just `keep-alive`: no tokenizing for that.
        .filter(|v| !is_connection_option(v.as_bytes()))
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| !is_connection_option(token.as_bytes()))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    // Remove only names present (usually just `connection`), not every candidate.
    while let Some(name) = headers
        .keys()
        .find(|name| is_hop_by_hop(name) || named.contains(name))
        .cloned()
    {
        headers.remove(name);
    }
}

/// `Connection`'s own options, which name no header to strip.
fn is_connection_option(token: &[u8]) -> bool {
    token.eq_ignore_ascii_case(b"keep-alive") || token.eq_ignore_ascii_case(b"close")
}

/// Say who the client is and how it came: `X-Forwarded-For` (the verified chain behind
/// trusted proxies and the peer; only the peer when it is not a trusted proxy, whatever it
/// sent), `X-Real-IP` (the client, when `real_ip`: a gateway with trusted proxies),
/// `X-Forwarded-Proto` and `-Host`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    peer: &Peer,
    resolved: Option<&Resolved>,
    real_ip: bool,
    scheme: &str,
    host: Option<HeaderValue>,
) {
    match resolved {
        None => {
            headers.insert(X_FORWARDED_FOR, peer.ip.clone());
            if real_ip {
                headers.insert(X_REAL_IP, peer.ip.clone());
            }
        }
        Some(resolved) => {
            if let Some(chain) = forwarded_for(&resolved.chain, peer.addr.ip()) {
                headers.insert(X_FORWARDED_FOR, chain);
            }
            if real_ip && let Ok(client) = HeaderValue::from_str(&resolved.client.to_string()) {
                headers.insert(X_REAL_IP, client);
            }
        }
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }),
    );
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// The request id: the client's `X-Request-Id` if sane (1–128 visible ASCII characters),
/// else a new unique one. A header value, since it is sent on both sides; its text is
/// `to_str()` of it, which cannot fail for either kind.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(value) = headers.get(&X_REQUEST_ID)
        && (1..=128).contains(&value.len())
        && value.as_bytes().iter().all(u8::is_ascii_graphic)
    {
        return value.clone();
    }
    new_request_id()
}

/// A process-unique id: a random per-process prefix and a counter, 32 hex digits.
fn new_request_id() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(std::process::id())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Hex by hand: `format!` cost ≈ 2,000 instructions per request here.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    for (digit, slot) in id.iter_mut().enumerate() {
        let (value, index) = if digit < 16 {
            (prefix, digit)
        } else {
            (n, digit - 16)
        };
        *slot = HEX[((value >> ((15 - index) * 4)) & 0xf) as usize];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_request_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        // `TE: trailers` survives, alone; other codings do not.
        for (te, kept) in [
            ("trailers", true),
            ("gzip, Trailers", true),
            ("gzip", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert("te", HeaderValue::from_static(te));
            strip_request_hop_by_hop(&mut h);
            assert_eq!(
                h.get("te").map(|v| v.to_str().unwrap()),
                kept.then_some("trailers")
            );
        }
    }

    #[test]
    fn connection_options_alone_strip_only_hop_by_hop_names() {
        for value in ["keep-alive", "Keep-Alive", "close", "CLOSE"] {
            let mut h = HeaderMap::new();
            h.insert("connection", HeaderValue::from_static(value));
            h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            h.insert("x-kept", HeaderValue::from_static("1"));
            strip_request_hop_by_hop(&mut h);
            assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"], "{value}");
        }
        // Several `Connection` fields: every one's names go.
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("close"));
        h.append("connection", HeaderValue::from_static("X-A , x-b"));
        for name in ["x-a", "x-b", "x-kept"] {
            h.insert(name, HeaderValue::from_static("1"));
        }
        strip_request_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn forwarded_headers_name_the_peer_or_the_resolved_client() {
        let peer = Peer::new("127.0.0.1:5000".parse().unwrap());
        // An untrusted peer's own `X-Forwarded-For` is not passed on.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        add_forwarded(
            &mut h,
            &peer,
            None,
            true,
            "http",
            Some(HeaderValue::from_static("api.test")),
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-real-ip"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.test");
        let resolved = Resolved {
            client: "1.2.3.4".parse().unwrap(),
            chain: vec!["1.2.3.4".parse().unwrap(), "10.0.0.2".parse().unwrap()],
        };
        add_forwarded(&mut h, &peer, Some(&resolved), true, "https", None);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.2, 127.0.0.1");
        assert_eq!(h["x-real-ip"], "1.2.3.4");
        assert_eq!(h["x-forwarded-proto"], "https");
        // Without trusted proxies the gateway sends no `X-Real-IP` (the edge removed the
        // client's).
        let mut without = HeaderMap::new();
        add_forwarded(&mut without, &peer, None, false, "http", None);
        assert!(!without.contains_key("x-real-ip"));
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        let text = |value: HeaderValue| value.to_str().unwrap().to_string();
        let a = text(request_id(&h));
        let b = text(request_id(&h));
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        // Same per-process prefix, increasing counter, lower-case hex that round-trips.
        let parts = |id: &str| {
            (
                u64::from_str_radix(&id[..16], 16).unwrap(),
                u64::from_str_radix(&id[16..], 16).unwrap(),
            )
        };
        let ((prefix_a, n_a), (prefix_b, n_b)) = (parts(&a), parts(&b));
        assert_eq!(prefix_a, prefix_b);
        assert!(n_b > n_a);
        assert_eq!(a, format!("{prefix_a:016x}{n_a:016x}"));
        h.insert("x-request-id", HeaderValue::from_static("client-id-1"));
        assert_eq!(request_id(&h), "client-id-1");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
    }
}
