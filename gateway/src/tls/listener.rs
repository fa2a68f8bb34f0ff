//! A `[[server.tls]]` block made into what its listeners accept with: a rustls
//! [`ServerConfig`] (versions, ALPN, client certificates, resumption) held in an [`ArcSwap`],
//! so a certificate reload ([`TlsListener::reload`]) changes what new handshakes get while open
//! connections keep the config they started with.

use super::certs::{self, EXPIRY_WARNING};
use super::resolver::CertStore;
use crate::config::{ClientAuth, KeyPath, TlsListenerConfig, TlsVersion};
use crate::key_path;
use arc_swap::ArcSwap;
use http::HeaderValue;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// Problems placed at their config key.
pub type Problems = Vec<(KeyPath, String)>;

/// One TLS listener block, ready to accept.
pub struct TlsListener {
    /// Index of the block in `[[server.tls]]`, for messages.
    pub index: usize,
    config: ArcSwap<ServerConfig>,
    source: TlsListenerConfig,
    base_dir: PathBuf,
    /// Kept across reloads, so sessions resume over a certificate change.
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Option<Arc<dyn ProducesTickets>>,
    /// Longest a handshake may take.
    pub handshake_timeout: Duration,
    /// The `Strict-Transport-Security` value its responses carry, if any.
    pub hsts: Option<HeaderValue>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("index", &self.index)
            .field("listen", &self.source.listen)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Build block `index` of `[[server.tls]]`, reading its files relative to `base_dir`.
    /// Also returns warnings (a certificate close to expiry).
    pub fn build(
        index: usize,
        source: &TlsListenerConfig,
        base_dir: &Path,
    ) -> Result<(TlsListener, Problems), Problems> {
        let sessions: Arc<dyn StoresServerSessions> = if source.session_cache == 0 {
            Arc::new(NoServerSessionStorage {})
        } else {
            ServerSessionMemoryCache::new(source.session_cache)
        };
        let ticketer = if source.session_tickets {
            let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| {
                vec![(
                    key_path!["server", "tls", index, "session_tickets"],
                    format!("cannot make ticket keys: {e}"),
                )]
            })?;
            Some(ticketer)
        } else {
            None
        };
        let (config, warnings) =
            server_config(index, source, base_dir, sessions.clone(), ticketer.clone())?;
        let hsts = (source.hsts_max_age_s > 0).then(|| {
            let mut value = format!("max-age={}", source.hsts_max_age_s);
            if source.hsts_include_subdomains {
                value.push_str("; includeSubDomains");
            }
            HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
        });
        Ok((
            TlsListener {
                index,
                config: ArcSwap::from_pointee(config),
                source: source.clone(),
                base_dir: base_dir.to_path_buf(),
                sessions,
                ticketer,
                handshake_timeout: Duration::from_millis(source.handshake_timeout_ms),
                hsts,
            },
            warnings,
        ))
    }

    /// What a handshake starting now uses.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Take over `new`'s certificates, keys, CAs and protocol settings (the same block of a
    /// reloaded config): new handshakes use them, open connections keep theirs, and this
    /// block's session cache and ticket keys carry over, so sessions resume across the
    /// reload. A problem (a file changed again since `new` was built) keeps the current
    /// config serving and is returned.
    pub fn adopt(&self, new: &TlsListener) -> Result<(), String> {
        let (config, warnings) = server_config(
            self.index,
            &new.source,
            &new.base_dir,
            self.sessions.clone(),
            self.ticketer.clone(),
        )
        .map_err(|problems| {
            problems
                .into_iter()
                .map(|(_, message)| message)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        for (_, warning) in warnings {
            tracing::warn!(listener = self.index, "{warning}");
        }
        self.config.store(Arc::new(config));
        Ok(())
    }
}

/// The rustls config of a block: TLS 1.2 and 1.3 (or 1.3 only) with the provider's suites —
/// all AEAD with forward secrecy — ALPN `h2` then `http/1.1`, the server's suite order, no
/// early data; rustls has neither renegotiation nor compression.
fn server_config(
    index: usize,
    source: &TlsListenerConfig,
    base_dir: &Path,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Option<Arc<dyn ProducesTickets>>,
) -> Result<(ServerConfig, Problems), Problems> {
    let provider = super::provider();
    let at = key_path!["server", "tls", index];
    let mut problems = Problems::new();
    let mut warnings = Problems::new();
    let mut store: Option<CertStore> = None;
    if source.certificates.is_empty() {
        problems.push((
            at.key("certificates"),
            "at least one certificate is required".into(),
        ));
    }
    for (i, certificate) in source.certificates.iter().enumerate() {
        let path = at.key("certificates").index(i);
        let pair = match certs::load_pair(
            base_dir,
            &certificate.cert,
            &certificate.key,
            certificate.ocsp.as_deref(),
            &provider,
        ) {
            Ok(pair) => pair,
            Err(message) => {
                problems.push((path.key("cert"), message));
                continue;
            }
        };
        if pair.expires_in < EXPIRY_WARNING {
            warnings.push((
                path.key("cert"),
                format!(
                    "{}: the certificate expires in {} day(s)",
                    certificate.cert,
                    pair.expires_in.as_secs() / 86_400
                ),
            ));
        }
        let names = if certificate.hosts.is_empty() {
            pair.dns_names.clone()
        } else {
            certificate.hosts.clone()
        };
        let store = store.get_or_insert_with(|| CertStore::new(pair.key.clone()));
        for name in &names {
            store.add(name, &pair.key);
        }
    }
    let verifier = match (source.client_auth, &source.client_ca) {
        (ClientAuth::None, None) => None,
        (ClientAuth::None, Some(_)) => {
            problems.push((
                at.key("client_ca"),
                "`client_ca` is only used with client_auth = \"optional\" or \"required\"".into(),
            ));
            None
        }
        (_, None) => {
            problems.push((
                at.key("client_ca"),
                "client_auth needs `client_ca`, the CA bundle client certificates are verified \
                 against"
                    .into(),
            ));
            None
        }
        (auth, Some(ca)) => match client_verifier(auth, ca, base_dir, &provider) {
            Ok(verifier) => Some(verifier),
            Err(message) => {
                problems.push((at.key("client_ca"), message));
                None
            }
        },
    };
    let store = match store {
        Some(store) if problems.is_empty() => store,
        _ => return Err(problems),
    };
    let versions: &[&'static rustls::SupportedProtocolVersion] = match source.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .map_err(|e| vec![(at.key("min_version"), e.to_string())])?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(store));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    config.max_early_data_size = 0;
    config.session_storage = sessions;
    if let Some(ticketer) = ticketer {
        config.ticketer = ticketer;
    }
    Ok((config, warnings))
}

fn client_verifier(
    auth: ClientAuth,
    ca: &str,
    base_dir: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs::read_chain(base_dir, ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{ca}: not a usable CA certificate: {e}"))?;
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider.clone()));
    let builder = match auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder
        .build()
        .map_err(|e| format!("{ca}: cannot verify client certificates with it: {e}"))
}
