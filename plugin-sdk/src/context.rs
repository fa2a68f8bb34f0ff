//! Per-request facts and values shared along the chain.

use crate::bindings::gateway::plugin::types as wit;

/// Context values as (key, value) pairs.
pub(crate) type Values = Vec<(String, String)>;

/// Facts about the request, and values earlier filters set for later ones.
#[derive(Debug, Clone, Default)]
pub struct Context {
    route: String,
    request_id: String,
    client_addr: String,
    values: Values,
    attributes: Values,
    pub(crate) changes: Values,
}

impl Context {
    /// A context from its parts (also what [`crate::testing`] builds).
    pub fn new(route: &str, request_id: &str, client_addr: &str) -> Self {
        Context {
            route: route.to_string(),
            request_id: request_id.to_string(),
            client_addr: client_addr.to_string(),
            ..Context::default()
        }
    }

    pub(crate) fn from_wit(ctx: wit::Context) -> Self {
        Context {
            route: ctx.route,
            request_id: ctx.request_id,
            client_addr: ctx.client_addr,
            values: ctx.values,
            attributes: ctx.attributes,
            changes: Vec::new(),
        }
    }

    /// A fact about the connection by its well-known name (`tls.sni`, `tls.version`,
    /// `tls.client.sha256`, …); `None` when the gateway has no such fact for this request
    /// (e.g. any `tls.*` on a cleartext listener).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Name of the matched route.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Client `ip:port`.
    pub fn client_addr(&self) -> &str {
        &self.client_addr
    }

    /// Client IP without the port.
    pub fn client_ip(&self) -> &str {
        match self.client_addr.rsplit_once(':') {
            Some((ip, _)) => ip.trim_start_matches('[').trim_end_matches(']'),
            None => &self.client_addr,
        }
    }

    /// A value set earlier in the chain (or by this filter).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set a value for later filters (and this filter's response phase).
    pub fn set(&mut self, key: &str, value: &str) {
        match self.values.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_string(),
            None => self.values.push((key.to_string(), value.to_string())),
        }
        self.changes.retain(|(k, _)| k != key);
        self.changes.push((key.to_string(), value.to_string()));
    }

    /// The values as the filter left them, and the ones it set (for the gateway).
    pub(crate) fn into_values_and_changes(self) -> (Values, Values) {
        (self.values, self.changes)
    }

    /// All values, in the order first set.
    pub fn values(&self) -> &[(String, String)] {
        &self.values
    }
}
