//! TLS, on rustls: listeners ([`listener`]: SNI ([`resolver`]), ALPN, client certificates,
//! resumption, reload), the facts a connection hands to plugins ([`facts`]), and connections
//! to `https://` targets ([`upstream`]). Certificate files are read in one place ([`certs`]).
//!
//! The crypto provider is aws-lc-rs, rustls's default: its handshakes (ECDSA P-256 and RSA
//! signing, X25519) are the faster of rustls's two providers, it offers the post-quantum
//! hybrid X25519MLKEM768 key exchange, and it has a FIPS-validated build. Its cost is a C
//! library built with the gateway (a few minutes once). Its default suites are exactly the
//! policy we want — TLS 1.3's three, and for TLS 1.2 only ECDHE with AES-GCM or
//! ChaCha20-Poly1305 — so the gateway uses them as they are.

pub mod certs;
pub mod facts;
pub mod listener;
pub mod resolver;
pub mod upstream;

pub use listener::TlsListener;

/// The crypto provider every TLS config is built with.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}
