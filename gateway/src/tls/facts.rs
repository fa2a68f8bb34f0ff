//! What a TLS connection tells plugins: the request context's `attributes`, by the dotted
//! names the WIT documents, read once per connection after the handshake.
//!
//! | name | value |
//! |---|---|
//! | `tls.version` | `TLSv1.3` or `TLSv1.2` |
//! | `tls.cipher` | the suite, e.g. `TLS13_AES_128_GCM_SHA256` |
//! | `tls.sni` | the server name the client sent (absent if none) |
//! | `tls.alpn` | `h2` or `http/1.1` (absent if none was negotiated) |
//! | `tls.client.subject` | the verified client certificate's subject, `CN=…, O=…` |
//! | `tls.client.issuer` | its issuer |
//! | `tls.client.san` | its subject alternative names, `DNS:…, URI:…` |
//! | `tls.client.serial` | its serial number, hex |
//! | `tls.client.sha256` | SHA-256 of its DER, lowercase hex |
//!
//! The `tls.client.*` facts are there only when the client presented a certificate the
//! listener verified (`client_auth = "optional"` or `"required"`).

use super::certs::Leaf;
use rustls::ServerConnection;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Facts about a connection, as `(name, value)` pairs.
pub type Attributes = std::sync::Arc<[(String, String)]>;

/// The facts of an established connection.
pub fn of(connection: &ServerConnection) -> Attributes {
    let mut facts = Vec::with_capacity(9);
    let mut add = |name: &str, value: String| facts.push((name.to_string(), value));
    if let Some(version) = connection.protocol_version() {
        let version = match version {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            other => format!("{other:?}"),
        };
        add("tls.version", version);
    }
    if let Some(suite) = connection.negotiated_cipher_suite() {
        add("tls.cipher", format!("{:?}", suite.suite()));
    }
    if let Some(sni) = connection.server_name() {
        add("tls.sni", sni.to_string());
    }
    if let Some(alpn) = connection.alpn_protocol() {
        add("tls.alpn", String::from_utf8_lossy(alpn).into_owned());
    }
    if let Some(leaf) = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
    {
        if let Ok(parsed) = Leaf::parse(leaf) {
            add("tls.client.subject", parsed.subject);
            add("tls.client.issuer", parsed.issuer);
            add("tls.client.san", parsed.alt_names.join(", "));
            add("tls.client.serial", parsed.serial);
        }
        add("tls.client.sha256", hex(&Sha256::digest(leaf.as_ref())));
    }
    facts.into()
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}
