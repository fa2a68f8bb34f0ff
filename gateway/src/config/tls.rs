//! The TLS part of the schema: `[[server.tls]]` listeners and `[upstreams.NAME.tls]`.

use serde::Deserialize;

/// `[[server.tls]]`: TLS listeners sharing certificates and client-certificate policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Addresses to listen on for HTTPS (HTTP/1.1 and HTTP/2, chosen by ALPN).
    pub listen: Vec<String>,
    /// Certificates, chosen by the SNI the client sends; the first is the default for a
    /// client that sends none or an unknown name.
    pub certificates: Vec<CertificateConfig>,
    /// Oldest protocol accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Client certificates: `none` (default), `optional` or `required`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM bundle of the CAs client certificates must chain to (required unless
    /// `client_auth = "none"`).
    #[serde(default)]
    pub client_ca: Option<String>,
    /// Resume sessions by ticket (keys rotate every 6 hours; TLS 1.2 and 1.3).
    #[serde(default = "super::defaults::yes")]
    pub session_tickets: bool,
    /// Sessions kept in memory for resumption by id (0: none).
    #[serde(default = "defaults::session_cache")]
    pub session_cache: usize,
    /// Longest a TLS handshake may take from accept.
    #[serde(default = "defaults::handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// Send `Strict-Transport-Security` with this `max-age` on every response (0: not sent).
    #[serde(default)]
    pub hsts_max_age_s: u64,
    /// Add `includeSubDomains` to the HSTS header.
    #[serde(default)]
    pub hsts_include_subdomains: bool,
    /// Cleartext addresses that answer every request with a 308 redirect to this listener.
    #[serde(default)]
    pub redirect_from: Vec<String>,
}

/// One certificate of a TLS listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the certificate chain, leaf first (relative to the config file).
    pub cert: String,
    /// PEM file with its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// Server names this certificate is served for (`api.example.com`, `*.example.com`);
    /// empty means the DNS names the certificate itself lists.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// A DER OCSP response to staple, if the certificate's file set has one.
    #[serde(default)]
    pub ocsp: Option<String>,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// Whether a TLS listener asks for client certificates.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Never asked for.
    #[default]
    None,
    /// Asked for; a client without one is served without identity, one with an
    /// unverifiable certificate is refused.
    Optional,
    /// A verified client certificate is needed to complete the handshake.
    Required,
}

/// `[upstreams.NAME.tls]`: how `https://` targets are verified and what the gateway presents.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM bundle of CAs the targets' certificates must chain to; default the system's roots.
    #[serde(default)]
    pub ca: Option<String>,
    /// Name sent as SNI and verified in the certificate; default each target's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Client certificate chain (PEM) presented to targets that ask (mTLS to the backend).
    #[serde(default)]
    pub cert: Option<String>,
    /// Its private key.
    #[serde(default)]
    pub key: Option<String>,
}

mod defaults {
    /// Sessions kept for resumption by id, per listener block.
    pub fn session_cache() -> usize {
        20_480
    }
    /// Milliseconds for a TLS handshake (nginx's `ssl_handshake_timeout` is 60 s).
    pub fn handshake_timeout_ms() -> u64 {
        10_000
    }
}
