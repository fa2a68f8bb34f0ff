//! Sticky sessions by cookie (`sticky_cookie = { name, max_age_s, path, secure }`).
//!
//! The gateway names each target by a token: a hash of its address, so the same target has
//! the same token on every worker, every replica and after a reload, and the cookie tells a
//! client nothing of the network behind the gateway. A request whose cookie names a target
//! that is in rotation and under its connection cap goes there; any other request is balanced
//! as usual, and its response sets the cookie to the target that answered. A target that was
//! ejected or removed so moves its clients elsewhere once, and they stay there.

use super::balance::hash_of;
use crate::config::StickyCookieConfig;
use http::HeaderValue;

/// An upstream's sticky cookie.
pub struct Sticky {
    name: String,
    /// Each target's token, as the upstream's targets.
    tokens: Vec<String>,
    /// Each target's `Set-Cookie` value.
    set_cookie: Vec<HeaderValue>,
}

impl Sticky {
    /// The cookie for targets known by `identities` (their addresses as written).
    pub fn new(config: &StickyCookieConfig, identities: &[&str]) -> Result<Sticky, String> {
        let tokens: Vec<String> = identities
            .iter()
            .map(|id| format!("{:016x}", hash_of(&("sticky", id))))
            .collect();
        let set_cookie = tokens
            .iter()
            .map(|token| {
                let mut value = format!(
                    "{}={token}; Path={}; HttpOnly; SameSite=Lax",
                    config.name, config.path
                );
                if config.max_age_s > 0 {
                    value.push_str(&format!("; Max-Age={}", config.max_age_s));
                }
                if config.secure {
                    value.push_str("; Secure");
                }
                HeaderValue::from_str(&value)
                    .map_err(|_| format!("`{value}` is not a header value"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Sticky {
            name: config.name.clone(),
            tokens,
            set_cookie,
        })
    }

    /// The target the request's cookie names, if it names one.
    pub fn target(&self, parts: &http::request::Parts) -> Option<usize> {
        let token = super::cookie(parts, &self.name)?;
        self.tokens.iter().position(|t| t.as_bytes() == token)
    }

    /// The `Set-Cookie` value that sends a client to target `i`.
    pub fn set_cookie(&self, i: usize) -> &HeaderValue {
        &self.set_cookie[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_names_its_target_by_a_stable_token() {
        let config = StickyCookieConfig {
            name: "gw".into(),
            max_age_s: 60,
            path: "/".into(),
            secure: true,
        };
        let sticky = Sticky::new(&config, &["10.0.0.1:80", "10.0.0.2:80"]).expect("sticky");
        let again = Sticky::new(&config, &["10.0.0.2:80"]).expect("sticky");
        assert_eq!(sticky.tokens[1], again.tokens[0]);
        let value = sticky.set_cookie(1).to_str().expect("ascii").to_string();
        assert!(value.starts_with(&format!("gw={}; Path=/; HttpOnly", sticky.tokens[1])));
        assert!(value.ends_with("; Max-Age=60; Secure"));
        let request = http::Request::builder()
            .header("cookie", format!("a=1; gw={}", sticky.tokens[1]))
            .body(())
            .expect("request")
            .into_parts()
            .0;
        assert_eq!(sticky.target(&request), Some(1));
        let stranger = http::Request::builder()
            .header("cookie", "gw=0123456789abcdef")
            .body(())
            .expect("request")
            .into_parts()
            .0;
        assert_eq!(sticky.target(&stranger), None);
    }
}
