//! The config as the admin API shows it (`GET /config`): the file's TOML as JSON, with every
//! secret replaced by `"<redacted>"`.
//!
//! What is secret is known for the gateway's own keys (HMAC `value`s, the admin `token`, a
//! password in the Redis URL); inside a plugin's `config` the schema is the plugin's, so any
//! key whose name suggests a credential (`secret`, `password`, `token`, `key`, `hash`,
//! `sha256`, `credential`, `private`) is redacted whatever its value — an operator would
//! rather see too little there than a key hash an attacker could replay.

use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// The TOML `text` (already accepted by the parser) as redacted JSON.
pub fn redacted_json(text: &str) -> Value {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return Value::Null;
    };
    let mut json = serde_json::to_value(table).unwrap_or(Value::Null);
    redact_config(&mut json);
    json
}

fn redact_config(config: &mut Value) {
    if let Some(admin) = config.get_mut("admin") {
        redact_key(admin, "token");
    }
    if let Some(url) = config.pointer_mut("/state/url") {
        redact_url_password(url);
    }
    if let Some(Value::Object(key_sets)) = config.get_mut("keys") {
        for key_set in key_sets.values_mut() {
            if let Some(Value::Array(secrets)) = key_set.get_mut("secrets") {
                for secret in secrets {
                    redact_key(secret, "value");
                }
            }
        }
    }
    let mut uses: Vec<&mut Value> = Vec::new();
    let Value::Object(top) = config else {
        return;
    };
    for (name, value) in top.iter_mut() {
        match (name.as_str(), value) {
            ("global_plugins", Value::Array(list)) => uses.extend(list.iter_mut()),
            ("routes", Value::Array(routes)) => {
                for route in routes {
                    if let Some(Value::Array(list)) = route.get_mut("plugins") {
                        uses.extend(list.iter_mut());
                    }
                }
            }
            _ => {}
        }
    }
    for use_ in uses {
        if let Some(plugin_config) = use_.get_mut("config") {
            redact_credentials(plugin_config);
        }
    }
}

fn redact_key(table: &mut Value, key: &str) {
    if let Some(value) = table.get_mut(key) {
        *value = Value::from(REDACTED);
    }
}

/// `redis://user:pass@host` → `redis://user:<redacted>@host`.
fn redact_url_password(url: &mut Value) {
    let Some(text) = url.as_str() else {
        return;
    };
    let Some((scheme, rest)) = text.split_once("://") else {
        return;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if let Some((userinfo, host)) = authority.rsplit_once('@') {
        let user = userinfo.split(':').next().unwrap_or_default();
        *url = Value::from(format!("{scheme}://{user}:{REDACTED}@{host}{path}"));
    }
}

fn looks_like_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "secret",
        "password",
        "passwd",
        "token",
        "key",
        "hash",
        "sha256",
        "credential",
        "private",
    ]
    .iter()
    .any(|word| name.contains(word))
}

fn redact_credentials(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, inner) in map.iter_mut() {
                if looks_like_credential(name) {
                    *inner = Value::from(REDACTED);
                } else {
                    redact_credentials(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_credentials),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let text = r#"
            [admin]
            listen = "127.0.0.1:9901"
            token = "admin-token-0123456789"
            [state]
            backend = "redis"
            url = "redis://default:hunter2-redis@127.0.0.1:6379/0"
            [keys.hs]
            secrets = [{ kid = "k1", value = "hmac-secret-value" }]
            [[routes]]
            name = "r"
            plugins = [{ plugin = "key-auth", config = { header = "x-api-key", consumers = [{ id = "alice", key_sha256 = "abcdef0123" }] } }]
        "#;
        let json = redacted_json(text);
        let out = json.to_string();
        for secret in [
            "admin-token-0123456789",
            "hunter2-redis",
            "hmac-secret-value",
            "abcdef0123",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert_eq!(
            json["state"]["url"],
            "redis://default:<redacted>@127.0.0.1:6379/0"
        );
        assert_eq!(
            json["routes"][0]["plugins"][0]["config"]["consumers"][0]["id"],
            "alice"
        );
        assert_eq!(
            json["routes"][0]["plugins"][0]["config"]["header"],
            "x-api-key"
        );
        assert_eq!(json["keys"]["hs"]["secrets"][0]["kid"], "k1");
    }
}
