//! TLS to `https://` targets: certificates verified against the system's roots or the
//! upstream's own CA file, SNI from the target's host (or `server_name`), an optional client
//! certificate, ALPN by the upstream's `protocol`.

use super::certs;
use crate::config::KeyPath;
use crate::config::{UpstreamProtocol, UpstreamTlsConfig};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How one upstream's TLS targets are connected to.
#[derive(Clone)]
pub struct UpstreamTls {
    connector: TlsConnector,
    /// SNI and the name verified, when not each target's host.
    server_name: Option<ServerName<'static>>,
}

impl UpstreamTls {
    /// From `[upstreams.NAME.tls]`, files relative to `base_dir`; problems at their key
    /// under `at`.
    pub fn build(
        config: &UpstreamTlsConfig,
        protocol: UpstreamProtocol,
        base_dir: &Path,
        at: &KeyPath,
    ) -> Result<UpstreamTls, (KeyPath, String)> {
        let provider = Arc::new(super::provider());
        let roots = roots(base_dir, config.ca.as_deref()).map_err(|e| (at.key("ca"), e))?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| (at.clone(), e.to_string()))?
            .with_root_certificates(roots);
        let mut client = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => {
                let chain = certs::read_chain(base_dir, cert).map_err(|e| (at.key("cert"), e))?;
                let private = certs::read_key(base_dir, key).map_err(|e| (at.key("key"), e))?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| (at.key("key"), format!("{key}: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err((at.key("cert"), "`cert` needs `key`".into())),
            (None, Some(_)) => return Err((at.key("key"), "`key` needs `cert`".into())),
        };
        client.alpn_protocols = match protocol {
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
            UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
            UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        let server_name = match &config.server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                (
                    at.key("server_name"),
                    format!("`{name}` is not a DNS name or IP address"),
                )
            })?),
            None => None,
        };
        Ok(UpstreamTls {
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// Handshake on `stream` with the target at `host`.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, String> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|_| format!("`{host}` is not a name TLS can verify"))?
                .to_owned(),
        };
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {}", innermost(&e)))
    }
}

/// The CAs in the PEM bundle `ca` (relative to `base_dir`), or the system's roots.
pub fn roots(base_dir: &Path, ca: Option<&str>) -> Result<Arc<RootCertStore>, String> {
    let Some(ca) = ca else {
        return Ok(system_roots());
    };
    let mut roots = RootCertStore::empty();
    for cert in certs::read_chain(base_dir, ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{ca}: not a usable CA: {e}"))?;
    }
    Ok(Arc::new(roots))
}

/// A client config for HTTPS to servers verified against `roots`: TLS 1.3 and 1.2, ALPN
/// `http/1.1`, no client certificate.
pub fn client_config(roots: Arc<RootCertStore>) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(super::provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The system's trusted roots, read once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!("system CA certificates: {error}");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system CA certificates loaded");
            Arc::new(roots)
        })
        .clone()
}

fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
