//! Capability `crypto`: JWS verification against the operator's key sets (see
//! [`crate::services::keys`]); the plugin names a set, the host holds the keys.

use crate::config::{Config, KeyPath};
use crate::key_path;
use crate::plugin::bindings::gateway::plugin::crypto::{Host, Verified, VerifyError};
use crate::plugin::state::StoreState;
use crate::services::keys;
use std::time::Instant;

super::gateway_unit!(
    Crypto,
    "crypto",
    crate::plugin::bindings::gateway::plugin::crypto,
    check = check_keys
);

/// `[keys]`: each set names where its keys come from, once each.
fn check_keys(config: &Config) -> Vec<(KeyPath, String)> {
    let mut problems = Vec::new();
    for (name, set) in &config.keys {
        let path = key_path!["keys", name];
        if set.jwks_file.is_none()
            && set.jwks_url.is_none()
            && set.pem.is_empty()
            && set.secrets.is_empty()
        {
            problems.push((
                path.clone(),
                "a key set needs at least one of `jwks_file`, `jwks_url`, `pem`, `secrets`".into(),
            ));
        }
        if let Some(url) = &set.jwks_url
            && let Err(problem) = check_jwks_url(url)
        {
            problems.push((path.key("jwks_url"), problem));
        }
        if set.jwks_ca.is_some() && set.jwks_url.is_none() {
            problems.push((
                path.key("jwks_ca"),
                "`jwks_ca` is only used with `jwks_url`".into(),
            ));
        }
        for (i, secret) in set.secrets.iter().enumerate() {
            let given = [&secret.env, &secret.file, &secret.value]
                .iter()
                .filter(|v| v.is_some())
                .count();
            if given != 1 {
                problems.push((
                    path.key("secrets").index(i),
                    "give exactly one of `env`, `file`, `value`".into(),
                ));
            }
        }
        if set.min_refetch_ms == 0 {
            problems.push((path.key("min_refetch_ms"), "must be greater than 0".into()));
        }
    }
    problems
}

/// A JWKS URL is `https://`; plain `http://` only to a loopback host, where nobody can change
/// the keys on their way.
fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = url
        .parse::<http::Uri>()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let host = parsed.host().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if loopback => Ok(()),
        Some("http") => Err(format!(
            "`{url}`: keys are fetched over https:// (plain http:// only from a loopback \
             address, where nobody can swap them on the way)"
        )),
        _ => Err(format!("`{url}` must be an https:// URL")),
    }
}

/// Longest token accepted; anything longer is malformed rather than worth parsing.
const MAX_TOKEN_BYTES: usize = 16 << 10;

impl Host for StoreState {
    async fn verify_jws(
        &mut self,
        key_set: String,
        token: String,
        algorithms: Vec<String>,
    ) -> Result<Verified, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::Malformed);
        }
        let start = Instant::now();
        let verified = self
            .services
            .keys
            .verify(&key_set, &token, &algorithms)
            .await;
        self.note_host_time(start);
        verified
            .map(|v| Verified {
                algorithm: v.algorithm,
                key_id: v.key_id,
                claims: v.claims,
            })
            .map_err(|e| match e {
                keys::VerifyError::Malformed => VerifyError::Malformed,
                keys::VerifyError::AlgorithmNotAllowed => VerifyError::AlgorithmNotAllowed,
                keys::VerifyError::UnknownKeySet => VerifyError::UnknownKeySet,
                keys::VerifyError::UnknownKey => VerifyError::UnknownKey,
                keys::VerifyError::BadSignature => VerifyError::BadSignature,
                keys::VerifyError::KeysUnavailable => VerifyError::KeysUnavailable,
            })
    }
}
