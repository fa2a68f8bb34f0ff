//! `jwt-auth`: authenticate requests by a JSON Web Token verified by the host (`crypto`
//! capability) against a configured key set; claims are judged here.
//!
//! ```toml
//! [plugins.jwt]
//! module = "builtin:jwt-auth"
//! capabilities = ["crypto", "clock"]
//!
//! # in a route's chain:
//! { use = "jwt", config = { key_set = "idp", algorithms = ["RS256"],
//!   issuer = "https://idp.example", audience = "api", leeway_s = 30,
//!   consumer_claim = "sub", groups_claim = "groups", strip_token = true } }
//! ```
//!
//! - Token from `Authorization: Bearer …` by default, or from `header`, `cookie` or
//!   `query_param`.
//! - `algorithms` is required and explicit; `none` does not exist here, and the host never
//!   checks a token against a key of another type than its `alg`.
//! - `exp` is required (a number), `nbf` is checked when present, both with `leeway_s`;
//!   `iss` and `aud` are required when configured.
//! - On success: the consumer (`consumer_claim`) and groups (`groups_claim`) go into the
//!   context (`consumer`, `consumer.groups`) and to the upstream as `X-Consumer-Id` and
//!   `X-Consumer-Groups` (client-sent copies are removed first), plus `claims_to_headers`.
//! - On failure: 401 with `WWW-Authenticate: Bearer` and an RFC 6750 error code; the body
//!   never says why a signature failed.

use plugin_sdk::crypto::{self, VerifyError};
use plugin_sdk::{Context, Filter, Flow, Reply, Request, Settings, clock};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Algorithms the host can verify.
const KNOWN_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// One string or a list of them.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The plugin's config.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of a `[keys.NAME]` key set.
    pub key_set: String,
    /// Accepted `alg` values, e.g. `["RS256", "ES256"]`.
    pub algorithms: Vec<String>,
    /// Header carrying the token; `authorization` expects the `Bearer` scheme.
    #[serde(default = "default_header")]
    pub header: String,
    /// Cookie carrying the token (tried after the header).
    #[serde(default)]
    pub cookie: Option<String>,
    /// Query parameter carrying the token (tried last).
    #[serde(default)]
    pub query_param: Option<String>,
    /// Accepted issuers; `iss` must be one of them.
    #[serde(default)]
    pub issuer: Option<OneOrMany>,
    /// Accepted audiences; `aud` must contain one of them.
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (0..=300, default 30).
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
    /// Claim naming the consumer (default `sub`).
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
    /// Claim listing the consumer's groups (array, or space/comma separated string).
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Further claims to send upstream: claim → header.
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    /// Remove the token from the request before it goes upstream.
    #[serde(default)]
    pub strip_token: bool,
    /// `realm` in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
}

fn default_header() -> String {
    "authorization".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_consumer_claim() -> String {
    "sub".into()
}
fn default_realm() -> String {
    "gateway".into()
}

/// The filter.
pub struct JwtAuth {
    config: Config,
    issuers: Vec<String>,
    audiences: Vec<String>,
}

/// Where the token was found, so it can be stripped.
enum Source {
    Header,
    Cookie,
    Query,
}

/// A refusal: RFC 6750 error code and a description safe to show.
struct Refusal {
    code: &'static str,
    description: &'static str,
}

const INVALID: Refusal = Refusal {
    code: "invalid_token",
    description: "the access token is invalid",
};

impl Filter for JwtAuth {
    type Config = Config;

    fn new(mut config: Config) -> Result<Self, String> {
        if config.key_set.is_empty() {
            return Err("key_set: must name a [keys.NAME] key set".into());
        }
        if config.algorithms.is_empty() {
            return Err("algorithms: list at least one, e.g. [\"RS256\"]".into());
        }
        for alg in &config.algorithms {
            if !KNOWN_ALGORITHMS.contains(&alg.as_str()) {
                return Err(format!(
                    "algorithms: `{alg}` is not supported (supported: {})",
                    KNOWN_ALGORITHMS.join(", ")
                ));
            }
        }
        if config.leeway_s > 300 {
            return Err("leeway_s: at most 300".into());
        }
        config.header = config.header.to_ascii_lowercase();
        for header in config.claims_to_headers.values().chain([&config.header]) {
            if !plugin_sdk::is_valid_header_name(header) {
                return Err(format!("`{header}` is not a valid header name"));
            }
        }
        let issuers = config
            .issuer
            .take()
            .map(OneOrMany::into_vec)
            .unwrap_or_default();
        let audiences = config
            .audience
            .take()
            .map(OneOrMany::into_vec)
            .unwrap_or_default();
        Ok(JwtAuth {
            config,
            issuers,
            audiences,
        })
    }

    fn settings(&self) -> Settings {
        let mut reads = vec![self.config.header.clone()];
        if self.config.cookie.is_some() {
            reads.push("cookie".into());
        }
        Settings {
            request_headers: Some(reads),
            ..Settings::default()
        }
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Flow {
        let Some((token, source)) = self.token(req) else {
            return Flow::Respond(self.challenge(None, "missing bearer token", ctx));
        };
        let verified =
            match crypto::verify_jws(&self.config.key_set, &token, &self.config.algorithms) {
                Ok(v) => v,
                Err(VerifyError::KeysUnavailable) => {
                    return Flow::Respond(Reply::error(
                        503,
                        "keys_unavailable",
                        "cannot verify tokens right now",
                        ctx,
                    ));
                }
                Err(VerifyError::UnknownKeySet) => {
                    plugin_sdk::log::error(&format!(
                        "key set `{}` is not configured",
                        self.config.key_set
                    ));
                    return Flow::Respond(Reply::error(
                        500,
                        "misconfigured",
                        "authentication is misconfigured",
                        ctx,
                    ));
                }
                Err(_) => return Flow::Respond(self.challenge(Some(INVALID), "", ctx)),
            };
        let claims: Map<String, Value> = match serde_json::from_str(&verified.claims) {
            Ok(claims) => claims,
            Err(_) => return Flow::Respond(self.challenge(Some(INVALID), "", ctx)),
        };
        if let Err(refusal) = self.check_claims(&claims, clock::now_ms() / 1000) {
            return Flow::Respond(self.challenge(Some(refusal), "", ctx));
        }
        self.forward(req, ctx, &claims, source);
        Flow::Continue
    }
}

impl JwtAuth {
    fn token(&self, req: &Request) -> Option<(String, Source)> {
        if let Some(value) = req.header(&self.config.header) {
            let token = if self.config.header == "authorization" {
                let (scheme, rest) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())?
            } else {
                value.trim()
            };
            if !token.is_empty() {
                return Some((token.to_string(), Source::Header));
            }
        }
        if let Some(name) = &self.config.cookie
            && let Some(token) = cookie(req, name)
        {
            return Some((token, Source::Cookie));
        }
        if let Some(name) = &self.config.query_param
            && let Some(token) = req.query_param(name).filter(|t| !t.is_empty())
        {
            return Some((token.to_string(), Source::Query));
        }
        None
    }

    /// Judge the claims at `now` (seconds since the epoch).
    fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<(), Refusal> {
        let leeway = self.config.leeway_s as f64;
        let now = now as f64;
        match claims.get("exp") {
            Some(Value::Number(exp)) => {
                let exp = exp.as_f64().ok_or(INVALID)?;
                if now > exp + leeway {
                    return Err(Refusal {
                        code: "invalid_token",
                        description: "the access token expired",
                    });
                }
            }
            _ => return Err(INVALID),
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_f64().ok_or(INVALID)?;
            if now + leeway < nbf {
                return Err(INVALID);
            }
        }
        if !self.issuers.is_empty() {
            match claims.get("iss") {
                Some(Value::String(iss)) if self.issuers.contains(iss) => {}
                _ => return Err(INVALID),
            }
        }
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => self.audiences.contains(aud),
                Some(Value::Array(auds)) => auds.iter().any(|a| {
                    a.as_str()
                        .is_some_and(|a| self.audiences.iter().any(|x| x == a))
                }),
                _ => false,
            };
            if !ok {
                return Err(INVALID);
            }
        }
        Ok(())
    }

    fn forward(
        &self,
        req: &mut Request,
        ctx: &mut Context,
        claims: &Map<String, Value>,
        source: Source,
    ) {
        req.remove_header("x-consumer-id");
        req.remove_header("x-consumer-groups");
        for header in self.config.claims_to_headers.values() {
            req.remove_header(header);
        }
        if let Some(consumer) = claims.get(&self.config.consumer_claim).and_then(claim_text) {
            req.set_header("x-consumer-id", &consumer);
            ctx.set("consumer", &consumer);
        }
        if let Some(name) = &self.config.groups_claim {
            let groups = match claims.get(name) {
                Some(Value::Array(items)) => items.iter().filter_map(claim_text).collect(),
                Some(Value::String(s)) => s
                    .split([' ', ','])
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            };
            let groups = groups.join(",");
            req.set_header("x-consumer-groups", &groups);
            ctx.set("consumer.groups", &groups);
        }
        for (claim, header) in &self.config.claims_to_headers {
            if let Some(value) = claims.get(claim).and_then(claim_text) {
                req.set_header(header, &value);
            }
        }
        ctx.set("auth.method", "jwt");
        if self.config.strip_token {
            match source {
                Source::Header => req.remove_header(&self.config.header),
                Source::Cookie => {}
                Source::Query => {
                    if let Some(name) = &self.config.query_param {
                        req.remove_query_param(name);
                    }
                }
            }
        }
    }

    fn challenge(&self, refusal: Option<Refusal>, message: &str, ctx: &Context) -> Reply {
        let realm = &self.config.realm;
        match refusal {
            None => Reply::error(401, "unauthorized", message, ctx)
                .with_header("www-authenticate", format!("Bearer realm=\"{realm}\"")),
            Some(r) => Reply::error(401, r.code, r.description, ctx).with_header(
                "www-authenticate",
                format!(
                    "Bearer realm=\"{realm}\", error=\"{}\", error_description=\"{}\"",
                    r.code, r.description
                ),
            ),
        }
    }
}

/// A claim value as header text (strings as they are, numbers and booleans printed).
fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn cookie(req: &Request, name: &str) -> Option<String> {
    req.header_all("cookie")
        .into_iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

plugin_sdk::export_filter!(JwtAuth);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::crypto::Verified;
    use plugin_sdk::testing::{self, TestRequest};
    use serde_json::json;

    fn now() -> u64 {
        clock::now_ms() / 1000
    }

    /// Tokens in these tests are the claims JSON itself; the fake host "verifies" any token
    /// that parses as JSON and refuses the rest as a bad signature.
    fn filter(config: serde_json::Value) -> JwtAuth {
        testing::set_verifier(|set, token, _| {
            assert_eq!(set, "idp");
            serde_json::from_str::<Value>(token)
                .map(|_| Verified {
                    algorithm: "HS256".into(),
                    key_id: None,
                    claims: token.to_string(),
                })
                .map_err(|_| VerifyError::BadSignature)
        });
        testing::init::<JwtAuth>(config).unwrap()
    }

    fn base() -> serde_json::Value {
        json!({"key_set": "idp", "algorithms": ["HS256"], "leeway_s": 5,
               "issuer": "iss-a", "audience": ["api"], "groups_claim": "groups"})
    }

    fn with_token(claims: serde_json::Value) -> TestRequest {
        TestRequest::get("/").with_header("authorization", &format!("Bearer {claims}"))
    }

    #[test]
    fn accepts_a_good_token_and_sets_the_consumer() {
        let f = filter(base());
        let out = testing::request(
            &f,
            with_token(json!({"sub": "alice", "exp": now() + 60, "iss": "iss-a",
                              "aud": ["x", "api"], "groups": ["admin", "dev"]}))
            .with_header("x-consumer-id", "spoofed"),
        );
        let up = out.upstream().expect("continues");
        assert_eq!(up.header_all("x-consumer-id"), vec!["alice"]);
        assert_eq!(up.header("x-consumer-groups"), Some("admin,dev"));
        assert_eq!(out.context_value("consumer"), Some("alice"));
    }

    #[test]
    fn refuses_bad_claims() {
        let f = filter(base());
        let t = now();
        for claims in [
            json!({"sub": "a", "iss": "iss-a", "aud": "api"}),
            json!({"sub": "a", "exp": (t + 60).to_string(), "iss": "iss-a", "aud": "api"}),
            json!({"sub": "a", "exp": t - 6, "iss": "iss-a", "aud": "api"}),
            json!({"sub": "a", "exp": t + 60, "nbf": t + 60, "iss": "iss-a", "aud": "api"}),
            json!({"sub": "a", "exp": t + 60, "iss": "other", "aud": "api"}),
            json!({"sub": "a", "exp": t + 60, "iss": "iss-a", "aud": "web"}),
            json!({"sub": "a", "exp": t + 60, "iss": "iss-a"}),
        ] {
            let out = testing::request(&f, with_token(claims.clone()));
            let reply = out
                .reply()
                .unwrap_or_else(|| panic!("{claims} was accepted"));
            assert_eq!(reply.status(), 401, "{claims}");
            assert!(
                reply
                    .header("www-authenticate")
                    .unwrap()
                    .contains("invalid_token")
            );
        }
        let ok = json!({"sub": "a", "exp": t - 4, "iss": "iss-a", "aud": "api"});
        assert!(
            testing::request(&f, with_token(ok)).upstream().is_some(),
            "within leeway"
        );
    }

    #[test]
    fn missing_and_forged_tokens_get_401() {
        let f = filter(base());
        let out = testing::request(&f, TestRequest::get("/"));
        let reply = out.reply().unwrap();
        assert_eq!(reply.status(), 401);
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"gateway\"")
        );
        let out = testing::request(
            &f,
            TestRequest::get("/").with_header("authorization", "Bearer x.y.z"),
        );
        assert_eq!(out.reply().unwrap().status(), 401);
    }

    #[test]
    fn strips_the_token_when_asked() {
        let mut config = base();
        config["strip_token"] = json!(true);
        let f = filter(config);
        let out = testing::request(
            &f,
            with_token(json!({"sub": "a", "exp": now() + 60, "iss": "iss-a", "aud": "api"})),
        );
        assert_eq!(out.upstream().unwrap().header("authorization"), None);
    }

    #[test]
    fn token_from_cookie_or_query_and_claims_to_headers() {
        let mut config = base();
        config["cookie"] = json!("session");
        config["query_param"] = json!("jwt");
        config["strip_token"] = json!(true);
        config["claims_to_headers"] = json!({"email": "x-user-email"});
        let f = filter(config);
        let claims = json!({"sub": "a", "exp": now() + 60, "iss": "iss-a", "aud": "api",
                            "email": "a@example.com"});
        let by_cookie = testing::request(
            &f,
            TestRequest::get("/").with_header("cookie", &format!("other=1; session={claims}")),
        );
        let up = by_cookie.upstream().expect("cookie token accepted");
        assert_eq!(up.header("x-user-email"), Some("a@example.com"));
        let by_query = testing::request(&f, TestRequest::get(&format!("/x?a=1&jwt={claims}")));
        let up = by_query.upstream().expect("query token accepted");
        assert_eq!(
            up.query.as_deref(),
            Some("a=1"),
            "token stripped from the query"
        );
        // A non-Bearer Authorization header is not a token.
        let basic = testing::request(
            &f,
            TestRequest::get("/").with_header("authorization", "Basic x"),
        );
        assert_eq!(basic.reply().unwrap().status(), 401);
    }

    #[test]
    fn rejects_unknown_algorithms() {
        let err = testing::init::<JwtAuth>(json!({"key_set": "k", "algorithms": ["none"]}))
            .err()
            .unwrap();
        assert!(err.contains("`none` is not supported"), "{err}");
    }
}
