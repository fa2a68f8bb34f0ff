//! `mtls-auth`: authenticate requests by the client certificate the TLS listener verified
//! (`client_auth = "optional"` or `"required"`), as Kong's mtls-auth does.
//!
//! ```toml
//! { use = "mtls-auth", config = { consumers = [
//!     { id = "alice", sha256 = "…64 hex…", groups = ["admin"] },
//!     { id = "bob", subject = "CN=bob, O=Example" },
//!     { id = "billing", san = "URI:spiffe://example.org/billing" },
//! ] } }
//! ```
//! Each consumer names its certificate by exactly one of: the SHA-256 fingerprint of the
//! certificate (`openssl x509 -in c.pem -outform der | sha256sum`; colons and case are
//! ignored), its subject as the gateway prints it, or one of its subject alternative names.
//!
//! On success the consumer and its groups go into the context (`consumer`,
//! `consumer.groups`) and upstream as `X-Consumer-Id` / `X-Consumer-Groups`, client-sent
//! copies of those removed first, so `acl` and `rate-limit` work with it unchanged. No
//! certificate answers 401 (or, with `anonymous = "ID"`, goes on as that consumer); a
//! verified certificate no consumer names answers 403.

use plugin_sdk::{Context, Filter, Flow, Reply, Request};
use serde::Deserialize;
use std::collections::HashMap;

/// One consumer and the certificate that identifies it.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Consumer id passed on as `X-Consumer-Id`.
    pub id: String,
    /// SHA-256 of the certificate (DER), hex.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The certificate's subject, e.g. `CN=bob, O=Example`.
    #[serde(default)]
    pub subject: Option<String>,
    /// One of its subject alternative names, e.g. `DNS:bob.example` or `URI:spiffe://…`.
    #[serde(default)]
    pub san: Option<String>,
    /// Groups for `acl`.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The plugin's config.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Known consumers.
    pub consumers: Vec<Consumer>,
    /// Consumer id for requests without a client certificate; unset: they get 401.
    #[serde(default)]
    pub anonymous: Option<String>,
}

/// (consumer id, groups joined by commas).
type Identity = (String, String);

/// The filter.
pub struct MtlsAuth {
    by_sha256: HashMap<String, Identity>,
    by_subject: HashMap<String, Identity>,
    by_san: HashMap<String, Identity>,
    anonymous: Option<String>,
}

/// A fingerprint in the form the gateway gives it: 64 lowercase hex digits.
fn fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

impl Filter for MtlsAuth {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let mut filter = MtlsAuth {
            by_sha256: HashMap::new(),
            by_subject: HashMap::new(),
            by_san: HashMap::new(),
            anonymous: config.anonymous.filter(|id| !id.is_empty()),
        };
        for (i, consumer) in config.consumers.into_iter().enumerate() {
            if consumer.id.is_empty() {
                return Err(format!("consumers[{i}].id: must not be empty"));
            }
            let identity = (consumer.id, consumer.groups.join(","));
            let (table, key) = match (consumer.sha256, consumer.subject, consumer.san) {
                (Some(sha), None, None) => (
                    &mut filter.by_sha256,
                    fingerprint(&sha).ok_or_else(|| {
                        format!("consumers[{i}].sha256: must be 64 hex digits (a SHA-256)")
                    })?,
                ),
                (None, Some(subject), None) => (&mut filter.by_subject, subject),
                (None, None, Some(san)) => (&mut filter.by_san, san),
                _ => {
                    return Err(format!(
                        "consumers[{i}]: give exactly one of `sha256`, `subject` or `san`"
                    ));
                }
            };
            if table.insert(key, identity).is_some() {
                return Err(format!(
                    "consumers[{i}]: the same certificate names two consumers"
                ));
            }
        }
        Ok(filter)
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Flow {
        let Some(sha256) = ctx.attribute("tls.client.sha256").map(str::to_string) else {
            return match &self.anonymous {
                Some(anonymous) => {
                    let identity = (anonymous.clone(), String::new());
                    admit(req, ctx, &identity);
                    Flow::Continue
                }
                None => Flow::Respond(refuse(401, "a client certificate is required", ctx)),
            };
        };
        let found = self.by_sha256.get(&sha256).or_else(|| {
            let subject = ctx.attribute("tls.client.subject")?;
            self.by_subject.get(subject)
        });
        let found = found.or_else(|| {
            ctx.attribute("tls.client.san")?
                .split(", ")
                .find_map(|name| self.by_san.get(name))
        });
        match found {
            Some(identity) => {
                admit(req, ctx, identity);
                Flow::Continue
            }
            None => Flow::Respond(refuse(
                403,
                "the client certificate is not one of a known consumer",
                ctx,
            )),
        }
    }
}

fn admit(req: &mut Request, ctx: &mut Context, (id, groups): &Identity) {
    req.remove_header("x-consumer-id");
    req.remove_header("x-consumer-groups");
    req.set_header("x-consumer-id", id);
    req.set_header("x-consumer-groups", groups);
    ctx.set("consumer", id);
    ctx.set("consumer.groups", groups);
    ctx.set("auth.method", "mtls-auth");
}

fn refuse(status: u16, message: &str, ctx: &Context) -> Reply {
    let code = if status == 401 {
        "unauthorized"
    } else {
        "forbidden"
    };
    Reply::error(status, code, message, ctx)
}

plugin_sdk::export_filter!(MtlsAuth);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest};
    use serde_json::json;

    const ALICE: &str = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";

    fn filter(anonymous: Option<&str>) -> MtlsAuth {
        testing::init::<MtlsAuth>(json!({"anonymous": anonymous, "consumers": [
            {"id": "alice", "sha256": ALICE.to_uppercase(), "groups": ["admin", "dev"]},
            {"id": "bob", "subject": "CN=bob, O=Example"},
            {"id": "svc", "san": "URI:spiffe://example.org/svc"},
        ]}))
        .unwrap()
    }

    fn with_cert(sha256: &str, subject: &str, san: &str) -> TestRequest {
        TestRequest::get("/")
            .with_attribute("tls.client.sha256", sha256)
            .with_attribute("tls.client.subject", subject)
            .with_attribute("tls.client.san", san)
            .with_header("x-consumer-id", "evil")
    }

    #[test]
    fn a_certificate_is_matched_by_fingerprint_subject_or_san() {
        let other = "bb".repeat(32);
        for (request, id, groups) in [
            (with_cert(ALICE, "CN=x", ""), "alice", "admin,dev"),
            (with_cert(&other, "CN=bob, O=Example", "DNS:b"), "bob", ""),
            (
                with_cert(&other, "CN=y", "DNS:y, URI:spiffe://example.org/svc"),
                "svc",
                "",
            ),
        ] {
            let out = testing::request(&filter(None), request);
            let up = out.upstream().unwrap();
            assert_eq!(up.header_all("x-consumer-id"), vec![id]);
            assert_eq!(up.header("x-consumer-groups"), Some(groups));
            assert_eq!(out.context_value("consumer"), Some(id));
            assert_eq!(out.context_value("auth.method"), Some("mtls-auth"));
        }
    }

    #[test]
    fn no_certificate_is_401_or_anonymous_and_an_unknown_one_403() {
        let out = testing::request(&filter(None), TestRequest::get("/"));
        assert_eq!(out.reply().unwrap().status(), 401);
        let out = testing::request(&filter(Some("guest")), TestRequest::get("/"));
        assert_eq!(out.context_value("consumer"), Some("guest"));
        let unknown = with_cert(&"cc".repeat(32), "CN=z", "DNS:z");
        let out = testing::request(&filter(Some("guest")), unknown);
        assert_eq!(out.reply().unwrap().status(), 403);
    }

    #[test]
    fn a_consumer_names_its_certificate_once() {
        let err = testing::init::<MtlsAuth>(json!({"consumers": [
            {"id": "a", "sha256": ALICE, "subject": "CN=a"}]}));
        assert!(err.err().unwrap().contains("exactly one"));
        let err = testing::init::<MtlsAuth>(json!({"consumers": [{"id": "a", "sha256": "12"}]}));
        assert!(err.err().unwrap().contains("64 hex"));
    }
}
