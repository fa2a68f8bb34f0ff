//! Which certificate a TLS handshake gets: by the client's SNI, exact names first, then
//! one-label wildcards (`*.example.com` covers `a.example.com`, not `a.b.example.com` nor
//! `example.com`), else the listener's default (its first certificate).

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// The certificates of one TLS listener block, by server name.
#[derive(Debug)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertStore {
    /// A store whose default is `default`.
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        CertStore {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        }
    }

    /// Serve `key` for `name` (`host` or `*.domain`); the first certificate given a name
    /// keeps it.
    pub fn add(&mut self, name: &str, key: &Arc<CertifiedKey>) {
        let name = name.to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(domain) => self.wildcard.entry(domain.to_string()),
            None => self.exact.entry(name),
        }
        .or_insert_with(|| key.clone());
    }

    /// The certificate for `sni`.
    pub fn find(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(sni) = sni else {
            return &self.default;
        };
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&sni) {
            return key;
        }
        sni.split_once('.')
            .and_then(|(_, domain)| self.wildcard.get(domain))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.find(hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;

    fn key(tag: u8) -> Arc<CertifiedKey> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let made = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        let private =
            rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let signing = provider.key_provider.load_private_key(private).unwrap();
        // The tag rides in a fake second chain entry, to tell keys apart.
        Arc::new(CertifiedKey::new(
            vec![made.cert.der().clone(), CertificateDer::from(vec![tag])],
            signing,
        ))
    }

    fn tag(key: &CertifiedKey) -> u8 {
        key.cert[1].as_ref()[0]
    }

    #[test]
    fn exact_then_one_label_wildcard_then_default() {
        let mut store = CertStore::new(key(0));
        store.add("api.example.com", &key(1));
        store.add("*.example.com", &key(2));
        store.add("API.example.com", &key(3));
        let find = |sni| tag(store.find(sni));
        assert_eq!(find(Some("api.example.com")), 1);
        assert_eq!(find(Some("Api.Example.COM.")), 1, "case and a trailing dot");
        assert_eq!(find(Some("www.example.com")), 2);
        assert_eq!(
            find(Some("a.b.example.com")),
            0,
            "a wildcard covers one label"
        );
        assert_eq!(find(Some("example.com")), 0);
        assert_eq!(find(Some("other.test")), 0);
        assert_eq!(find(None), 0);
    }
}
