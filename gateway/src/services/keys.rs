//! Key sets for the `crypto` capability: JWS verification with `jsonwebtoken`, natively, against
//! keys the operator configured. Plugins pass a key-set *name*; key material stays here.
//!
//! A set's keys come from PEM files, HMAC secrets, a JWKS file, and a JWKS URL. Remote keys are
//! fetched at first use, refreshed every `refresh_s`, and refetched when a token names an
//! unknown `kid` — at most once per `min_refetch_ms`, so a burst of forged `kid`s cannot turn
//! the gateway into a load generator against the identity provider. When a fetch fails the
//! keys fetched last stay in use.

use crate::config::{KeyPath, KeySetConfig, PemKeyConfig, SecretConfig};
use crate::key_path;
use crate::telemetry::metrics;
use crate::tls::upstream;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Why a token did not verify (mirrors the WIT `verify-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// Not a compact JWS, or an unknown `alg` (including `none`).
    Malformed,
    /// `alg` not among the plugin's allowed algorithms.
    AlgorithmNotAllowed,
    /// No such key set.
    UnknownKeySet,
    /// No key for this `kid`/`alg`.
    UnknownKey,
    /// Signature does not verify.
    BadSignature,
    /// Keys could not be loaded and none are cached.
    KeysUnavailable,
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The token's algorithm name.
    pub algorithm: String,
    /// The token's `kid`.
    pub key_id: Option<String>,
    /// Claims as JSON object text.
    pub claims: String,
}

/// One usable key.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    /// Set when the JWK pins its algorithm (`alg`).
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

impl Key {
    fn fits(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        let kid_ok = match (&self.kid, kid) {
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => true,
            (None, _) => true,
        };
        kid_ok
            && self.key.family() == alg.family()
            && self.algorithm.is_none_or(|pinned| pinned == alg)
    }
}

/// All configured key sets by name.
#[derive(Default)]
pub struct KeySets {
    sets: HashMap<String, KeySet>,
}

struct KeySet {
    local: Vec<Key>,
    remote: Option<RemoteJwks>,
}

impl KeySets {
    /// Load every `[keys.NAME]`: files are read now (a bad file is a config error at its key);
    /// remote JWKS are fetched on first use.
    pub fn load(
        config: &BTreeMap<String, KeySetConfig>,
        base_dir: &Path,
    ) -> Result<Self, Vec<(KeyPath, String)>> {
        let mut sets = HashMap::new();
        let mut errors = Vec::new();
        for (name, set) in config {
            let path = key_path!["keys", name];
            let mut local = Vec::new();
            for (i, pem) in set.pem.iter().enumerate() {
                match load_pem(pem, base_dir) {
                    Ok(key) => local.push(key),
                    Err(e) => errors.push((path.key("pem").index(i), e)),
                }
            }
            for (i, secret) in set.secrets.iter().enumerate() {
                match load_secret(secret, base_dir) {
                    Ok(key) => local.push(key),
                    Err(e) => errors.push((path.key("secrets").index(i), e)),
                }
            }
            if let Some(file) = &set.jwks_file {
                let file_path = base_dir.join(file);
                match std::fs::read(&file_path)
                    .map_err(|e| format!("cannot read {}: {e}", file_path.display()))
                    .and_then(|bytes| parse_jwks(&bytes))
                {
                    Ok(keys) => local.extend(keys),
                    Err(e) => errors.push((path.key("jwks_file"), e)),
                }
            }
            let remote = match &set.jwks_url {
                Some(url) => match upstream::roots(base_dir, set.jwks_ca.as_deref())
                    .and_then(|roots| RemoteJwks::new(name, url, set, roots))
                {
                    Ok(remote) => Some(remote),
                    Err(e) => {
                        errors.push((path.key("jwks_ca"), e));
                        None
                    }
                },
                None => None,
            };
            sets.insert(name.clone(), KeySet { local, remote });
        }
        if errors.is_empty() {
            Ok(KeySets { sets })
        } else {
            Err(errors)
        }
    }

    /// Verify `token` against set `set_name`, accepting only `allowed` algorithms.
    pub async fn verify(
        &self,
        set_name: &str,
        token: &str,
        allowed: &[String],
    ) -> Result<Verified, VerifyError> {
        let set = self.sets.get(set_name).ok_or(VerifyError::UnknownKeySet)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let alg = header.alg;
        if !allowed
            .iter()
            .any(|a| a.parse::<Algorithm>().is_ok_and(|a| a == alg))
        {
            return Err(VerifyError::AlgorithmNotAllowed);
        }
        let kid = header.kid.as_deref();
        let fits = |keys: &[Key]| keys.iter().any(|k| k.fits(kid, alg));
        // Remote keys: `None` while none could ever be fetched.
        let mut remote: Option<Arc<Vec<Key>>> = match &set.remote {
            Some(jwks) => jwks.keys(false).await,
            None => None,
        };
        let remote_fits =
            |remote: &Option<Arc<Vec<Key>>>| remote.as_deref().is_some_and(|k| fits(k));
        if !fits(&set.local)
            && !remote_fits(&remote)
            && let Some(jwks) = &set.remote
        {
            // An unknown kid may be a freshly rotated key: refetch (rate-limited).
            remote = jwks.keys(true).await;
        }
        if !fits(&set.local) && !remote_fits(&remote) {
            return Err(if set.local.is_empty() && remote.is_none() {
                VerifyError::KeysUnavailable
            } else {
                VerifyError::UnknownKey
            });
        }
        let remote_slice: &[Key] = remote.as_deref().map_or(&[], Vec::as_slice);
        // `header.payload` is what is signed; the header was parsed above, so the signature is
        // checked directly (jsonwebtoken's `decode` would parse the header twice more and
        // deserialize the claims twice, all of it thrown away here).
        let (message, signature) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
        let (_, payload) = message.split_once('.').ok_or(VerifyError::Malformed)?;
        let mut outcome = VerifyError::UnknownKey;
        for key in set
            .local
            .iter()
            .chain(remote_slice)
            .filter(|k| k.fits(kid, alg))
        {
            match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, alg) {
                Ok(true) => {
                    return Ok(Verified {
                        algorithm: format!("{alg:?}"),
                        key_id: header.kid.clone(),
                        claims: claims_object(payload).ok_or(VerifyError::BadSignature)?,
                    });
                }
                Ok(false) => outcome = VerifyError::BadSignature,
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    outcome = match e.kind() {
                        ErrorKind::InvalidSignature
                        | ErrorKind::InvalidEcdsaKey
                        | ErrorKind::InvalidRsaKey(_)
                        | ErrorKind::InvalidAlgorithm
                        | ErrorKind::InvalidKeyFormat => VerifyError::BadSignature,
                        _ => VerifyError::Malformed,
                    };
                    if outcome == VerifyError::Malformed {
                        break;
                    }
                }
            }
        }
        Err(outcome)
    }
}

/// A verified token's payload as JSON object text, or `None` if it is not base64url of a
/// JSON object. Validated without building it: the plugin parses the claims it judges.
fn claims_object(payload: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.trim_start().starts_with('{').then_some(())?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text).ok()?;
    Some(text)
}

fn load_pem(pem: &PemKeyConfig, base_dir: &Path) -> Result<Key, String> {
    let path = base_dir.join(&pem.path);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key = DecodingKey::from_rsa_pem(&bytes)
        .or_else(|_| DecodingKey::from_ec_pem(&bytes))
        .or_else(|_| DecodingKey::from_ed_pem(&bytes))
        .map_err(|_| {
            format!(
                "{} holds no RSA, EC or Ed25519 public key in PEM form",
                path.display()
            )
        })?;
    Ok(Key {
        kid: pem.kid.clone(),
        algorithm: None,
        key,
    })
}

fn load_secret(secret: &SecretConfig, base_dir: &Path) -> Result<Key, String> {
    let bytes = if let Some(var) = &secret.env {
        std::env::var(var)
            .map_err(|_| format!("environment variable `{var}` is not set"))?
            .into_bytes()
    } else if let Some(file) = &secret.file {
        let path = base_dir.join(file);
        let mut bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        bytes
    } else {
        secret.value.clone().unwrap_or_default().into_bytes()
    };
    if bytes.len() < 32 {
        return Err(format!(
            "HMAC secret is {} bytes; use at least 32 (RFC 7518 §3.2)",
            bytes.len()
        ));
    }
    Ok(Key {
        kid: secret.kid.clone(),
        algorithm: None,
        key: DecodingKey::from_secret(&bytes),
    })
}

/// The usable keys of a JWKS document; keys this gateway cannot use are skipped.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Key>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("not a JWKS document: no `keys` array")?;
    let mut keys = Vec::new();
    for entry in entries {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            tracing::warn!(?entry, "JWKS entry skipped: not a usable JWK");
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            tracing::warn!(kid = ?jwk.common.key_id, "JWKS entry skipped: unsupported key");
            continue;
        };
        let algorithm = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    Ok(keys)
}

/// A JWKS URL with its cached keys.
struct RemoteJwks {
    set_name: String,
    url: http::Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    refresh: Duration,
    min_refetch: Duration,
    timeout: Duration,
    cache: RwLock<Option<(Arc<Vec<Key>>, Instant)>>,
    last_attempt: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl RemoteJwks {
    /// The fetcher of `url`, trusting `roots`.
    fn new(
        set_name: &str,
        url: &str,
        config: &KeySetConfig,
        roots: Arc<rustls::RootCertStore>,
    ) -> Result<Self, String> {
        // Both outcomes exported from the start (at 0), so dashboards and alerts find them.
        for outcome in ["ok", "error"] {
            metrics::metrics()
                .jwks_fetches
                .with_label_values(&[set_name, outcome]);
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.fetch_timeout_ms)));
        connector.enforce_http(false);
        let mut tls = upstream::client_config(roots)?;
        // The builder sets ALPN itself (`enable_http1`), and refuses a config that has it.
        tls.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(RemoteJwks {
            set_name: set_name.to_string(),
            url: url.parse().unwrap_or_default(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            refresh: Duration::from_secs(config.refresh_s),
            min_refetch: Duration::from_millis(config.min_refetch_ms),
            timeout: Duration::from_millis(config.fetch_timeout_ms),
            cache: RwLock::new(None),
            last_attempt: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The cached keys, fetched first if there are none, they are stale, or `unknown_kid`
    /// asks for a refetch — each fetch at most once per `min_refetch`.
    async fn keys(&self, unknown_kid: bool) -> Option<Arc<Vec<Key>>> {
        let cached = self.cached();
        let stale = cached
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= self.refresh);
        if !(stale || unknown_kid) {
            return cached.map(|(keys, _)| keys);
        }
        let _guard = self.fetch_lock.lock().await;
        // Another request may have fetched while we waited.
        if let Some((keys, at)) = self.cached()
            && cached.as_ref().is_none_or(|(_, before)| at > *before)
        {
            return Some(keys);
        }
        if self.may_attempt() {
            let fetched = self.fetch().await;
            let outcome = if fetched.is_ok() { "ok" } else { "error" };
            metrics::metrics()
                .jwks_fetches
                .with_label_values(&[&*self.set_name, outcome])
                .inc();
            match fetched {
                Ok(keys) => {
                    tracing::info!(key_set = %self.set_name, keys = keys.len(), "JWKS fetched");
                    let keys = Arc::new(keys);
                    if let Ok(mut cache) = self.cache.write() {
                        *cache = Some((keys.clone(), Instant::now()));
                    }
                    return Some(keys);
                }
                Err(e) => tracing::warn!(
                    key_set = %self.set_name,
                    url = %self.url,
                    "JWKS fetch failed, using cached keys: {e}"
                ),
            }
        }
        self.cached().map(|(keys, _)| keys)
    }

    fn cached(&self) -> Option<(Arc<Vec<Key>>, Instant)> {
        self.cache.read().ok().and_then(|c| c.clone())
    }

    /// True (and records the attempt) unless a fetch was attempted within `min_refetch`.
    fn may_attempt(&self) -> bool {
        let Ok(mut last) = self.last_attempt.lock() else {
            return false;
        };
        if last.is_some_and(|at| at.elapsed() < self.min_refetch) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let request = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            let body = http_body_util::Limited::new(response.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            parse_jwks(&body)
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| format!("timed out after {:?}", self.timeout))?
    }
}
