//! Capability `crypto`: JWS verification against the operator's key sets (see
//! [`crate::services::keys`]); the plugin names a set, the host holds the keys.

use crate::plugin::bindings::gateway::plugin::crypto::{Host, Verified, VerifyError};
use crate::plugin::state::StoreState;
use crate::services::keys;

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
        self.services
            .keys
            .verify(&key_set, &token, &algorithms)
            .await
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
