//! Host capabilities, as safe functions. Each must be granted to the plugin in the gateway
//! config (`capabilities = ["log", "clock"]`); a plugin that uses one it was not granted is
//! refused at load, so at run time these calls cannot fail.
//!
//! Compiled for anything but wasm32 (native unit tests), they do not call the host: log lines
//! are captured for [`crate::testing::logs`] and the clock is the system clock.

/// Capability `log`: lines land in the gateway's log tagged with plugin, route and request id.
pub mod log {
    #[cfg(target_arch = "wasm32")]
    use crate::bindings::gateway::plugin::log::{Level, write};

    #[cfg(not(target_arch = "wasm32"))]
    #[derive(Debug, Clone, Copy)]
    #[allow(missing_docs)]
    pub(crate) enum Level {
        Trace,
        Debug,
        Info,
        Warn,
        Error,
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn write(level: Level, message: &str) {
        crate::testing::capture_log(format!("{level:?}: {message}"));
    }

    /// Log at trace level.
    pub fn trace(message: &str) {
        write(Level::Trace, message)
    }
    /// Log at debug level.
    pub fn debug(message: &str) {
        write(Level::Debug, message)
    }
    /// Log at info level.
    pub fn info(message: &str) {
        write(Level::Info, message)
    }
    /// Log at warn level.
    pub fn warn(message: &str) {
        write(Level::Warn, message)
    }
    /// Log at error level.
    pub fn error(message: &str) {
        write(Level::Error, message)
    }
}

/// Capability `clock`: wall-clock and monotonic time.
pub mod clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::gateway::plugin::clock::now_ms()
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        }
    }

    /// Monotonic nanoseconds from an arbitrary fixed point.
    pub fn monotonic_ns() -> u64 {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::gateway::plugin::clock::monotonic_ns()
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            use std::sync::OnceLock;
            static START: OnceLock<std::time::Instant> = OnceLock::new();
            START
                .get_or_init(std::time::Instant::now)
                .elapsed()
                .as_nanos() as u64
        }
    }
}

/// Capability `crypto`: verify JWS tokens (JWTs) natively against a key set the operator
/// configured under `[keys.NAME]`. Key material never enters the plugin.
pub mod crypto {
    #[cfg(any(target_arch = "wasm32", test))]
    use crate::bindings::gateway::plugin::crypto as wit;

    /// A token whose signature verified.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Verified {
        /// The token's `alg`, e.g. `RS256`.
        pub algorithm: String,
        /// The token's `kid`, if it had one.
        pub key_id: Option<String>,
        /// The payload (claims) as JSON object text.
        pub claims: String,
    }

    /// Why a token was not verified. Deliberately coarse: enough to choose an RFC 6750 error
    /// code, never enough to help forge a signature.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum VerifyError {
        /// Not three base64url parts, header not JSON, or an unknown `alg` (including `none`).
        Malformed,
        /// The token's `alg` is not in the list the plugin allowed.
        AlgorithmNotAllowed,
        /// No key set of this name is configured.
        UnknownKeySet,
        /// The set has no key with the token's `kid` (even after a refresh), or no key whose
        /// type fits the token's `alg`.
        UnknownKey,
        /// The signature does not verify, or the payload is not a JSON object.
        BadSignature,
        /// The key set's keys could not be loaded and none are cached.
        KeysUnavailable,
    }

    impl std::fmt::Display for VerifyError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                VerifyError::Malformed => "malformed token",
                VerifyError::AlgorithmNotAllowed => "token algorithm not allowed",
                VerifyError::UnknownKeySet => "unknown key set",
                VerifyError::UnknownKey => "no key fits the token",
                VerifyError::BadSignature => "bad signature",
                VerifyError::KeysUnavailable => "keys unavailable",
            })
        }
    }

    impl std::error::Error for VerifyError {}

    /// Verify `token` with key set `key_set`, accepting only `algorithms` (e.g. `["RS256"]`).
    /// On success the claims come back as JSON text, unchecked: `exp`, `nbf`, `iss`, `aud`
    /// are for the plugin to judge.
    pub fn verify_jws(
        key_set: &str,
        token: &str,
        algorithms: &[String],
    ) -> Result<Verified, VerifyError> {
        #[cfg(target_arch = "wasm32")]
        {
            wit::verify_jws(key_set, token, algorithms)
                .map(verified_from_wit)
                .map_err(error_from_wit)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::fake_verify(key_set, token, algorithms)
        }
    }

    #[cfg(any(target_arch = "wasm32", test))]
    fn verified_from_wit(v: wit::Verified) -> Verified {
        Verified {
            algorithm: v.algorithm,
            key_id: v.key_id,
            claims: v.claims,
        }
    }

    /// No wildcard arm: a variant added to the WIT fails to compile here until it is mapped.
    #[cfg(any(target_arch = "wasm32", test))]
    fn error_from_wit(e: wit::VerifyError) -> VerifyError {
        match e {
            wit::VerifyError::Malformed => VerifyError::Malformed,
            wit::VerifyError::AlgorithmNotAllowed => VerifyError::AlgorithmNotAllowed,
            wit::VerifyError::UnknownKeySet => VerifyError::UnknownKeySet,
            wit::VerifyError::UnknownKey => VerifyError::UnknownKey,
            wit::VerifyError::BadSignature => VerifyError::BadSignature,
            wit::VerifyError::KeysUnavailable => VerifyError::KeysUnavailable,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Every WIT variant, with the SDK variant it must become and back: the reverse map is
        /// exhaustive over the SDK type, so a mapping onto the wrong variant fails one way.
        #[test]
        fn every_error_variant_round_trips() {
            fn to_wit(e: VerifyError) -> wit::VerifyError {
                match e {
                    VerifyError::Malformed => wit::VerifyError::Malformed,
                    VerifyError::AlgorithmNotAllowed => wit::VerifyError::AlgorithmNotAllowed,
                    VerifyError::UnknownKeySet => wit::VerifyError::UnknownKeySet,
                    VerifyError::UnknownKey => wit::VerifyError::UnknownKey,
                    VerifyError::BadSignature => wit::VerifyError::BadSignature,
                    VerifyError::KeysUnavailable => wit::VerifyError::KeysUnavailable,
                }
            }
            let cases = [
                (wit::VerifyError::Malformed, VerifyError::Malformed),
                (
                    wit::VerifyError::AlgorithmNotAllowed,
                    VerifyError::AlgorithmNotAllowed,
                ),
                (wit::VerifyError::UnknownKeySet, VerifyError::UnknownKeySet),
                (wit::VerifyError::UnknownKey, VerifyError::UnknownKey),
                (wit::VerifyError::BadSignature, VerifyError::BadSignature),
                (
                    wit::VerifyError::KeysUnavailable,
                    VerifyError::KeysUnavailable,
                ),
            ];
            for (generated, sdk) in cases {
                assert_eq!(error_from_wit(generated), sdk, "{generated:?}");
                assert_eq!(to_wit(sdk), generated, "{sdk:?}");
            }
        }

        #[test]
        fn verified_keeps_its_fields() {
            let v = verified_from_wit(wit::Verified {
                algorithm: "RS256".into(),
                key_id: Some("k1".into()),
                claims: "{}".into(),
            });
            assert_eq!(
                v,
                Verified {
                    algorithm: "RS256".into(),
                    key_id: Some("k1".into()),
                    claims: "{}".into(),
                }
            );
        }
    }
}

/// Capability `counters`: atomic windowed counters, shared by every gateway on the same
/// `[state]` backend, namespaced to this plugin by the host.
pub mod counters {
    #[cfg(any(target_arch = "wasm32", test))]
    use crate::bindings::gateway::plugin::counters as wit;

    /// One counter to bump.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Bump {
        /// Counter name (at most 512 bytes), e.g. `consumer:alice`.
        pub key: String,
        /// Window length in milliseconds (1 ms to 31 days); windows start at multiples of it.
        pub window_ms: u64,
        /// Amount to add; 0 reads without changing.
        pub delta: u64,
    }

    /// A counter's state after the increment.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Count {
        /// Total in the current window, including this increment.
        pub current: u64,
        /// Final total of the previous window (for sliding-window estimates).
        pub previous: u64,
        /// Milliseconds since the current window started.
        pub elapsed_ms: u64,
    }

    /// What the operator chose (`[state] on_unavailable`) for when the backend is down.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum UnavailablePolicy {
        /// Let requests through.
        Allow,
        /// Refuse requests.
        Deny,
    }

    /// Why counting failed.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum CounterError {
        /// The backend did not answer in time; apply the operator's policy.
        Unavailable(UnavailablePolicy),
        /// The request was invalid (key too long, zero window, too many counters).
        Invalid(String),
    }

    impl std::fmt::Display for CounterError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                CounterError::Unavailable(UnavailablePolicy::Allow) => {
                    f.write_str("counters unavailable (policy: allow)")
                }
                CounterError::Unavailable(UnavailablePolicy::Deny) => {
                    f.write_str("counters unavailable (policy: deny)")
                }
                CounterError::Invalid(message) => write!(f, "invalid counter request: {message}"),
            }
        }
    }

    impl std::error::Error for CounterError {}

    /// Add to up to 16 counters atomically (one round trip to Redis) and return their
    /// state in order.
    pub fn increment(counters: Vec<Bump>) -> Result<Vec<Count>, CounterError> {
        #[cfg(target_arch = "wasm32")]
        {
            // Taken by value: each key moves into the generated record, and the vector is
            // converted in place (same layout), so not exposing generated types costs no copy.
            let bumps: Vec<wit::Bump> = counters.into_iter().map(bump_to_wit).collect();
            wit::increment(&bumps)
                .map(|counts| counts.into_iter().map(count_from_wit).collect())
                .map_err(error_from_wit)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::fake_increment(&counters)
        }
    }

    /// Sliding-window estimate of requests in the last `window_ms`: the current window's
    /// count plus the previous window's, weighted by how much of it still overlaps.
    pub fn sliding_estimate(count: &Count, window_ms: u64) -> u64 {
        let window = window_ms.max(1) as u128;
        let overlap = window.saturating_sub(count.elapsed_ms as u128);
        count.current + ((count.previous as u128 * overlap) / window) as u64
    }

    #[cfg(any(target_arch = "wasm32", test))]
    fn bump_to_wit(b: Bump) -> wit::Bump {
        wit::Bump {
            key: b.key,
            window_ms: b.window_ms,
            delta: b.delta,
        }
    }

    #[cfg(any(target_arch = "wasm32", test))]
    fn count_from_wit(c: wit::Count) -> Count {
        Count {
            current: c.current,
            previous: c.previous,
            elapsed_ms: c.elapsed_ms,
        }
    }

    /// No wildcard arm: a policy added to the WIT fails to compile here until it is mapped.
    #[cfg(any(target_arch = "wasm32", test))]
    fn policy_from_wit(p: wit::UnavailablePolicy) -> UnavailablePolicy {
        match p {
            wit::UnavailablePolicy::Allow => UnavailablePolicy::Allow,
            wit::UnavailablePolicy::Deny => UnavailablePolicy::Deny,
        }
    }

    /// No wildcard arm: a variant added to the WIT fails to compile here until it is mapped.
    #[cfg(any(target_arch = "wasm32", test))]
    fn error_from_wit(e: wit::CounterError) -> CounterError {
        match e {
            wit::CounterError::Unavailable(policy) => {
                CounterError::Unavailable(policy_from_wit(policy))
            }
            wit::CounterError::Invalid(message) => CounterError::Invalid(message),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Every WIT variant (each policy, a payload), with the SDK value it must become and
        /// back; the generated variant type has no `PartialEq`, so it is compared by `Debug`.
        #[test]
        fn every_error_variant_round_trips() {
            fn to_wit(e: CounterError) -> wit::CounterError {
                match e {
                    CounterError::Unavailable(UnavailablePolicy::Allow) => {
                        wit::CounterError::Unavailable(wit::UnavailablePolicy::Allow)
                    }
                    CounterError::Unavailable(UnavailablePolicy::Deny) => {
                        wit::CounterError::Unavailable(wit::UnavailablePolicy::Deny)
                    }
                    CounterError::Invalid(message) => wit::CounterError::Invalid(message),
                }
            }
            let cases = [
                (
                    wit::CounterError::Unavailable(wit::UnavailablePolicy::Allow),
                    CounterError::Unavailable(UnavailablePolicy::Allow),
                ),
                (
                    wit::CounterError::Unavailable(wit::UnavailablePolicy::Deny),
                    CounterError::Unavailable(UnavailablePolicy::Deny),
                ),
                (
                    wit::CounterError::Invalid("key too long".into()),
                    CounterError::Invalid("key too long".into()),
                ),
            ];
            for (generated, sdk) in cases {
                let expected = format!("{generated:?}");
                assert_eq!(error_from_wit(generated), sdk, "{expected}");
                assert_eq!(format!("{:?}", to_wit(sdk.clone())), expected, "{sdk:?}");
            }
        }

        #[test]
        fn records_keep_their_fields() {
            let bump = bump_to_wit(Bump {
                key: "consumer:alice".into(),
                window_ms: 60_000,
                delta: 1,
            });
            assert_eq!(
                (bump.key.as_str(), bump.window_ms, bump.delta),
                ("consumer:alice", 60_000, 1)
            );
            let count = count_from_wit(wit::Count {
                current: 3,
                previous: 7,
                elapsed_ms: 500,
            });
            assert_eq!(
                count,
                Count {
                    current: 3,
                    previous: 7,
                    elapsed_ms: 500,
                }
            );
        }
    }
}

/// Capability `kv`: small shared values with a TTL, namespaced to this plugin by the host.
pub mod kv {
    #[cfg(any(target_arch = "wasm32", test))]
    use crate::bindings::gateway::plugin::kv as wit;

    /// Why a kv call failed.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum KvError {
        /// The backend did not answer in time.
        Unavailable,
        /// The call was invalid (key over 512 bytes, value over 64 KiB, TTL 0 or over 31 days).
        Invalid(String),
    }

    impl std::fmt::Display for KvError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                KvError::Unavailable => f.write_str("kv unavailable"),
                KvError::Invalid(message) => write!(f, "invalid kv call: {message}"),
            }
        }
    }

    impl std::error::Error for KvError {}

    /// The value of `key`, if set and not expired.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        #[cfg(target_arch = "wasm32")]
        {
            wit::get(key).map_err(error_from_wit)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::fake_kv_get(key)
        }
    }

    /// Store `value` under `key` for `ttl_ms` milliseconds.
    pub fn set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), KvError> {
        #[cfg(target_arch = "wasm32")]
        {
            wit::set(key, value, ttl_ms).map_err(error_from_wit)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::fake_kv_set(key, value, ttl_ms)
        }
    }

    /// Remove `key`; true if it was there.
    pub fn delete(key: &str) -> Result<bool, KvError> {
        #[cfg(target_arch = "wasm32")]
        {
            wit::delete(key).map_err(error_from_wit)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::fake_kv_delete(key)
        }
    }

    /// No wildcard arm: a variant added to the WIT fails to compile here until it is mapped.
    #[cfg(any(target_arch = "wasm32", test))]
    fn error_from_wit(e: wit::KvError) -> KvError {
        match e {
            wit::KvError::Unavailable => KvError::Unavailable,
            wit::KvError::Invalid(message) => KvError::Invalid(message),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Every WIT variant, with the SDK value it must become and back; the generated
        /// variant type has no `PartialEq`, so it is compared by `Debug`.
        #[test]
        fn every_error_variant_round_trips() {
            fn to_wit(e: KvError) -> wit::KvError {
                match e {
                    KvError::Unavailable => wit::KvError::Unavailable,
                    KvError::Invalid(message) => wit::KvError::Invalid(message),
                }
            }
            let cases = [
                (wit::KvError::Unavailable, KvError::Unavailable),
                (
                    wit::KvError::Invalid("value over 64 KiB".into()),
                    KvError::Invalid("value over 64 KiB".into()),
                ),
            ];
            for (generated, sdk) in cases {
                let expected = format!("{generated:?}");
                assert_eq!(error_from_wit(generated), sdk, "{expected}");
                assert_eq!(format!("{:?}", to_wit(sdk.clone())), expected, "{sdk:?}");
            }
        }
    }
}

/// Capability `metrics`: the plugin's own counters and histograms, on the gateway's `/metrics`
/// as `gateway_plugin_NAME{plugin="…", …}`. Declare them in [`crate::Filter::new`] (the
/// gateway refuses declarations during a call), each label with every value it may take; a
/// bad declaration fails `init`, so `gateway check` reports it. The rules are
/// [`crate::rules::metrics`].
///
/// ```ignore
/// let lookups = Counter::declare("cache_lookups_total", "Cache lookups.", &[("result", &["hit", "miss"])])?;
/// lookups.inc(&["hit"])?;
/// ```
pub mod metrics {
    #[cfg(target_arch = "wasm32")]
    use crate::bindings::gateway::plugin::metrics as wit;
    #[cfg(not(target_arch = "wasm32"))]
    use crate::rules::metrics::Kind;
    use crate::rules::metrics::Label;

    /// A declared counter.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Counter(u32);

    /// A declared histogram.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Histogram(u32);

    fn labels_of(labels: &[(&str, &[&str])]) -> Vec<Label> {
        labels
            .iter()
            .map(|(name, values)| Label::new(name, values))
            .collect()
    }

    fn values_of(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[cfg(target_arch = "wasm32")]
    fn labels_to_wit(labels: Vec<Label>) -> Vec<wit::Label> {
        labels
            .into_iter()
            .map(|l| wit::Label {
                name: l.name,
                values: l.values,
            })
            .collect()
    }

    impl Counter {
        /// Declare counter `name` (ending in `_total`) with `labels`, each with every value
        /// it may take.
        pub fn declare(
            name: &str,
            help: &str,
            labels: &[(&str, &[&str])],
        ) -> Result<Counter, String> {
            let labels = labels_of(labels);
            #[cfg(target_arch = "wasm32")]
            {
                wit::declare_counter(name, help, &labels_to_wit(labels)).map(Counter)
            }
            #[cfg(not(target_arch = "wasm32"))]
            {
                crate::testing::fake_declare(Kind::Counter, name, help, labels, &[]).map(Counter)
            }
        }

        /// Add `delta` at label `values` (one per declared label, in order).
        pub fn add(&self, values: &[&str], delta: u64) -> Result<(), String> {
            let values = values_of(values);
            #[cfg(target_arch = "wasm32")]
            {
                wit::add(self.0, &values, delta)
            }
            #[cfg(not(target_arch = "wasm32"))]
            {
                crate::testing::fake_record(self.0, Kind::Counter, values, delta as f64)
            }
        }

        /// Add one at label `values`.
        pub fn inc(&self, values: &[&str]) -> Result<(), String> {
            self.add(values, 1)
        }
    }

    impl Histogram {
        /// Declare histogram `name` with `labels` and bucket upper bounds `buckets`.
        pub fn declare(
            name: &str,
            help: &str,
            labels: &[(&str, &[&str])],
            buckets: &[f64],
        ) -> Result<Histogram, String> {
            let labels = labels_of(labels);
            #[cfg(target_arch = "wasm32")]
            {
                wit::declare_histogram(name, help, &labels_to_wit(labels), buckets).map(Histogram)
            }
            #[cfg(not(target_arch = "wasm32"))]
            {
                crate::testing::fake_declare(Kind::Histogram, name, help, labels, buckets)
                    .map(Histogram)
            }
        }

        /// Observe `value` at label `values`.
        pub fn observe(&self, values: &[&str], value: f64) -> Result<(), String> {
            let values = values_of(values);
            #[cfg(target_arch = "wasm32")]
            {
                wit::observe(self.0, &values, value)
            }
            #[cfg(not(target_arch = "wasm32"))]
            {
                crate::testing::fake_record(self.0, Kind::Histogram, values, value)
            }
        }
    }
}
