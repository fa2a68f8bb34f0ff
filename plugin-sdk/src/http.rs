//! Request and response views that record what a filter changed, and the filter's answers.

use crate::bindings::gateway::plugin::types as wit;

/// True if `name` is a valid HTTP field name (an RFC 9110 token). Validate configured header
/// names in `Filter::new`, so a typo is a config error rather than a failed request.
pub fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The first value of `name` (case-insensitive) among lower-case `fields`.
pub(crate) fn find_header<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of `name` (case-insensitive) among lower-case `fields`.
pub(crate) fn find_all_headers<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A header view that records what the filter did as the gateway applies it: names removed,
/// names set to one value, fields appended (applied in that order). Recording operations
/// rather than diffing the view keeps `add` correct for fields the filter was never shown
/// (see `Settings::request_headers`). Set and added fields are kept as the WIT records they
/// will be sent as, so continuing moves them out instead of copying: a call's cost is mostly
/// allocations, in the guest as on the host.
#[derive(Debug, Clone, Default)]
pub(crate) struct Headers {
    /// The fields the gateway passed in that are still in effect.
    fields: Vec<(String, String)>,
    /// Lower-case names whose fields the gateway drops.
    removed: Vec<String>,
    /// Names replaced by one value (each name once).
    set: Vec<wit::Header>,
    /// Fields appended after removals and replacements.
    added: Vec<wit::Header>,
}

impl Headers {
    pub(crate) fn from_wit(fields: Vec<wit::Header>) -> Self {
        Headers {
            // The gateway sends lower-case names; lower-casing in place costs no allocation
            // for names that already are.
            fields: fields
                .into_iter()
                .map(|mut h| {
                    h.name.make_ascii_lowercase();
                    (h.name, h.value)
                })
                .collect(),
            ..Headers::default()
        }
    }

    /// Every field in effect: a set name's value comes before fields added to it, and
    /// originals of a set name are gone, so the first match is the first value.
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        fn wit(h: &wit::Header) -> (&str, &str) {
            (h.name.as_str(), h.value.as_str())
        }
        self.set
            .iter()
            .map(wit)
            .chain(self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .chain(self.added.iter().map(wit))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.get_all_iter(name).next()
    }

    fn get_all(&self, name: &str) -> Vec<&str> {
        self.get_all_iter(name).collect()
    }

    fn get_all_iter<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Drop every field of lower-case `name` from the view.
    fn forget(&mut self, name: &str) {
        self.fields.retain(|(n, _)| n != name);
        self.set.retain(|h| h.name != name);
        self.added.retain(|h| h.name != name);
    }

    fn remove(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        self.forget(&name);
        if !self.removed.contains(&name) {
            self.removed.push(name);
        }
    }

    fn set(&mut self, name: &str, value: String) {
        let name = name.to_ascii_lowercase();
        self.forget(&name);
        self.set.push(wit::Header { name, value });
    }

    fn add(&mut self, name: &str, value: String) {
        let name = name.to_ascii_lowercase();
        self.added.push(wit::Header { name, value });
    }

    pub(crate) fn into_changes(self) -> wit::HeaderChanges {
        wit::HeaderChanges {
            remove: self.removed,
            set: self.set,
            add: self.added,
        }
    }
}

macro_rules! header_methods {
    () => {
        /// The first value of header `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name)
        }

        /// All values of header `name`.
        pub fn header_all(&self, name: &str) -> Vec<&str> {
            self.headers.get_all(name)
        }

        /// All header fields as (lower-case name, value): those the filter set, then the
        /// others in received order, then those it added.
        pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
            self.headers.iter()
        }

        /// Replace all values of `name` with `value` (a `String` is moved, not copied).
        pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
            self.headers.set(name, value.into());
        }

        /// Append a value of `name`, keeping existing ones.
        pub fn add_header(&mut self, name: &str, value: impl Into<String>) {
            self.headers.add(name, value.into());
        }

        /// Remove every value of `name`.
        pub fn remove_header(&mut self, name: &str) {
            self.headers.remove(name);
        }
    };
}

/// The request as this filter sees it; changes are sent on when the filter continues.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    scheme: String,
    authority: Option<String>,
    path: String,
    query: Option<String>,
    pub(crate) headers: Headers,
    /// Changes for this request's response (see [`Request::set_response_header`]).
    response_headers: Headers,
    body: Option<Vec<u8>>,
    method_changed: bool,
    target_changed: bool,
    body_changed: bool,
}

impl Request {
    pub(crate) fn from_wit(head: wit::RequestHead, body: Option<Vec<u8>>) -> Self {
        Request {
            method: head.method,
            scheme: head.scheme,
            authority: head.authority,
            path: head.path,
            query: head.query,
            headers: Headers::from_wit(head.headers),
            response_headers: Headers::default(),
            body,
            method_changed: false,
            target_changed: false,
            body_changed: false,
        }
    }

    pub(crate) fn into_changes(self, context: Vec<(String, String)>) -> wit::RequestChanges {
        wit::RequestChanges {
            method: self.method_changed.then_some(self.method),
            path: self.target_changed.then_some(self.path),
            query: self.target_changed.then(|| self.query.unwrap_or_default()),
            headers: self.headers.into_changes(),
            body: self.body.filter(|_| self.body_changed),
            context,
            response_headers: self.response_headers.into_changes(),
        }
    }

    header_methods!();

    /// Set header `name` to `value` on this request's response, whether it comes from the
    /// upstream or from a later plugin. A plugin that only decorates the response this way
    /// needs no `on_response` (and should not ask for a response phase): it saves a call.
    pub fn set_response_header(&mut self, name: &str, value: impl Into<String>) {
        self.response_headers.set(name, value.into());
    }

    /// Append a value of `name` to this request's response (see
    /// [`Request::set_response_header`]).
    pub fn add_response_header(&mut self, name: &str, value: impl Into<String>) {
        self.response_headers.add(name, value.into());
    }

    /// Remove every value of `name` from this request's response (see
    /// [`Request::set_response_header`]).
    pub fn remove_response_header(&mut self, name: &str) {
        self.response_headers.remove(name);
    }

    /// Method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host the client asked for, if any.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// Path (percent-encoded), without the query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Query string without `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The first value of query parameter `name` (raw, not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// The body, if the filter asked for it in [`Settings::request_body`].
    pub fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Change the method.
    pub fn set_method(&mut self, method: &str) {
        self.method = method.to_string();
        self.method_changed = true;
    }

    /// Change the path (percent-encoded, starting with `/`).
    pub fn set_path(&mut self, path: &str) {
        self.path = path.to_string();
        self.target_changed = true;
    }

    /// Change or remove (`None`) the query string.
    pub fn set_query(&mut self, query: Option<&str>) {
        self.query = query.filter(|q| !q.is_empty()).map(str::to_string);
        self.target_changed = true;
    }

    /// Remove every occurrence of query parameter `name`.
    pub fn remove_query_param(&mut self, name: &str) {
        if let Some(query) = &self.query {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| pair.split('=').next() != Some(name))
                .collect();
            let kept = kept.join("&");
            self.set_query(Some(&kept));
        }
    }

    /// Replace the body (honoured only with [`Settings::request_body`]).
    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        self.body = Some(body.into());
        self.body_changed = true;
    }
}

/// The response as this filter sees it; changes are sent on when the filter continues.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    pub(crate) headers: Headers,
    body: Option<Vec<u8>>,
    status_changed: bool,
    body_changed: bool,
}

impl Response {
    pub(crate) fn from_wit(head: wit::ResponseHead, body: Option<Vec<u8>>) -> Self {
        Response {
            status: head.status,
            headers: Headers::from_wit(head.headers),
            body,
            status_changed: false,
            body_changed: false,
        }
    }

    pub(crate) fn into_changes(self) -> wit::ResponseChanges {
        wit::ResponseChanges {
            status: self.status_changed.then_some(self.status),
            headers: self.headers.into_changes(),
            body: self.body.filter(|_| self.body_changed),
        }
    }

    header_methods!();

    /// Status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Change the status code.
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
        self.status_changed = true;
    }

    /// The body, if the filter asked for it in [`Settings::response_body`].
    pub fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Replace the body (honoured only with [`Settings::response_body`]). The gateway sets
    /// `content-length` to match.
    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        self.body = Some(body.into());
        self.body_changed = true;
    }
}

/// What a filter needs from the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Buffer the request body and pass it in.
    pub request_body: bool,
    /// Buffer the response body and pass it in.
    pub response_body: bool,
    /// Call `on_response` at all (default false: a filter that implements `on_response` must
    /// ask for it, and one that does not saves a call per request). Response-header edits made
    /// in `on_request` ([`Request::set_response_header`]) are applied without it.
    pub response_phase: bool,
    /// Request headers the filter reads; `None` (default) passes all. Declaring them makes
    /// each call cheaper; setting, adding and removing headers works on any name regardless.
    pub request_headers: Option<Vec<String>>,
    /// Response headers the filter reads in `on_response`; `None` (default) passes all.
    pub response_headers: Option<Vec<String>>,
}

impl Default for Settings {
    /// No bodies, no response phase, every header passed.
    fn default() -> Self {
        Settings {
            request_body: false,
            response_body: false,
            response_phase: false,
            request_headers: None,
            response_headers: None,
        }
    }
}

/// Lower-cased header names from a filter's declaration.
fn lower_all(names: &Option<Vec<String>>) -> Option<Vec<String>> {
    names
        .as_ref()
        .map(|list| list.iter().map(|n| n.to_ascii_lowercase()).collect())
}

impl Settings {
    pub(crate) fn to_wit(&self) -> wit::Settings {
        wit::Settings {
            request_body: self.request_body,
            response_body: self.response_body,
            response_phase: self.response_phase,
            request_headers: lower_all(&self.request_headers),
            response_headers: lower_all(&self.response_headers),
        }
    }
}

/// A response a filter produces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    /// A reply with `status`, no headers and no body.
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// An error in the gateway's own JSON shape, so clients see one error format whether
    /// the gateway or a plugin refused them:
    /// `{"error": {"status", "code", "message", "request_id"}}`.
    pub fn error(status: u16, code: &str, message: &str, ctx: &crate::Context) -> Self {
        Reply::json(
            status,
            &serde_json::json!({"error": {
                "status": status, "code": code, "message": message,
                "request_id": ctx.request_id()
            }}),
        )
    }

    /// A JSON reply (sets `content-type: application/json`).
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Reply::new(status)
            .with_header("content-type", "application/json")
            .with_body(value.to_string())
    }

    /// This reply with a header field added.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// This reply with `body`.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_all_headers(&self.headers, name)
    }

    /// All header fields as (lower-case name, value), in the order added.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn into_wit(self) -> wit::Response {
        wit::Response {
            status: self.status,
            headers: self
                .headers
                .into_iter()
                .map(|(name, value)| wit::Header { name, value })
                .collect(),
            body: self.body,
        }
    }

    /// A reply as a filter sent it (for the test harness, which reads actions back).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn from_wit(response: wit::Response) -> Self {
        Reply {
            status: response.status,
            headers: response
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            body: response.body,
        }
    }
}

/// A filter's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Go on, with the changes made to the view.
    Continue,
    /// Answer with this reply instead (on a request: skip the rest and the upstream; on a
    /// response: replace it).
    Respond(Reply),
    /// This filter could not decide (a dependency it needs is missing, its state is
    /// inconsistent): a failure of the plugin, logged with this reason under the violation
    /// label `failed`, and handled by the use's `on_error` (deny: the `error_status`; allow:
    /// the filter is skipped). Better than panicking (which discards the instance) or
    /// inventing a reply the operator did not configure.
    Fail(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_wit(
            pairs
                .iter()
                .map(|(n, v)| wit::Header {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        )
    }

    /// Apply changes the way the gateway does: remove, set, add.
    fn apply(
        mut fields: Vec<(String, String)>,
        changes: &wit::HeaderChanges,
    ) -> Vec<(String, String)> {
        fields.retain(|(n, _)| !changes.remove.contains(n));
        for h in &changes.set {
            fields.retain(|(n, _)| *n != h.name);
            fields.push((h.name.clone(), h.value.clone()));
        }
        for h in &changes.add {
            fields.push((h.name.clone(), h.value.clone()));
        }
        fields
    }

    #[test]
    fn recorded_changes_reproduce_the_view() {
        let original = [("x-a", "1"), ("X-B", "2"), ("x-b", "3"), ("x-keep", "k")];
        let mut h = headers(&original);
        h.set("x-a", "one".into());
        h.add("X-A", "two".into());
        h.remove("x-b");
        h.add("x-b", "again".into());
        h.add("x-new", "n".into());
        h.remove("x-gone");
        h.add("x-late", "1".into());
        h.set("x-late", "2".into());
        h.set("x-twice", "1".into());
        h.set("X-Twice", "2".into());
        h.add("x-dropped", "1".into());
        h.remove("x-dropped");
        let start: Vec<(String, String)> = original
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect();
        let mut expected: Vec<(String, String)> = h
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(h.get("X-a"), Some("one"));
        assert_eq!(h.get_all("x-a"), vec!["one", "two"]);
        assert_eq!(h.get_all("x-twice"), vec!["2"]);
        assert_eq!(h.get("x-late"), Some("2"));
        assert_eq!(h.get("x-dropped"), None);
        let changes = h.into_changes();
        assert!(!changes.remove.contains(&"x-keep".to_string()));
        let mut result = apply(start, &changes);
        result.sort();
        expected.sort();
        assert_eq!(result, expected);
    }

    #[test]
    fn default_settings_ask_for_nothing() {
        let settings = Settings::default().to_wit();
        assert!(!settings.response_phase, "a response phase costs a call");
        assert!(!settings.request_body && !settings.response_body);
        assert!(settings.request_headers.is_none() && settings.response_headers.is_none());
    }

    #[test]
    fn reply_getters() {
        let reply = Reply::new(201)
            .with_header("X-A", "1")
            .with_header("x-a", "2")
            .with_body("b");
        assert_eq!(reply.header("x-A"), Some("1"));
        assert_eq!(reply.header_all("x-a"), ["1", "2"]);
        assert_eq!(reply.headers().count(), 2);
        assert_eq!((reply.status(), reply.body()), (201, &b"b"[..]));
    }

    #[test]
    fn untouched_view_sends_no_changes() {
        let h = headers(&[("x-a", "1")]);
        let changes = h.into_changes();
        assert!(changes.remove.is_empty() && changes.add.is_empty() && changes.set.is_empty());
    }

    #[test]
    fn query_params() {
        let head = wit::RequestHead {
            method: "GET".into(),
            scheme: "http".into(),
            authority: None,
            path: "/".into(),
            query: Some("a=1&b&c=3".into()),
            headers: vec![],
        };
        let mut req = Request::from_wit(head, None);
        assert_eq!(req.query_param("a"), Some("1"));
        assert_eq!(req.query_param("b"), Some(""));
        assert_eq!(req.query_param("z"), None);
        assert!(req.clone().into_changes(vec![]).path.is_none());
        req.set_query(None);
        let changes = req.into_changes(vec![]);
        assert_eq!(changes.path.as_deref(), Some("/"));
        assert_eq!(changes.query.as_deref(), Some(""));
    }
}
