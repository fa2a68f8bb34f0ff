//! `WasmFilter`: a plugin use as a pipeline [`Filter`], translating between hyper's types and
//! the WIT records, and between plugin violations and the use's `on_error` policy.

use super::bindings::types::{
    Context, HeaderChanges, HeaderParam, HeaderResult, RequestAction, RequestHead,
    Response as WitResponse, ResponseAction, ResponseHead,
};
use super::limits::{self, Limits, Violation};
use super::pool::{GuestCall, Instance, InstancePool, Lease, Outcome};
use crate::config::Isolation;
use crate::proxy::edit::{RequestEdit, ResponseEdit};
use crate::proxy::filter::{
    Filter, FilterFailure, FilterNeeds, LocalResponse, RequestContext, RequestVerdict,
    ResponseVerdict, Slot,
};
use crate::proxy::headers::{Attributes, HeaderEdits};
use crate::proxy::local_response;
use crate::telemetry::metrics::{self, CostSeries};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, request, response};
use plugin_sdk::rules::{self, HeaderPlace};
use std::borrow::Cow;
use std::sync::Arc;

/// One plugin use in a route's chain.
pub struct WasmFilter {
    pool: Arc<InstancePool>,
    needs: FilterNeeds,
    /// Request headers the plugin reads (`None`: all).
    request_headers: Option<Vec<HeaderName>>,
    /// Response headers the plugin reads (`None`: all).
    response_headers: Option<Vec<HeaderName>>,
    /// Fuel and host-call time of the request phase's calls, and the response phase's.
    costs: (CostSeries, Option<CostSeries>),
}

/// Valid header names of a plugin's declaration; a name that is not a header name cannot
/// match any field, so it is dropped.
fn declared(names: &Option<Vec<String>>) -> Option<Vec<HeaderName>> {
    names.as_ref().map(|names| {
        names
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect()
    })
}

impl WasmFilter {
    /// Warm the use's pool up to `count` instances ([`InstancePool::prewarm`]).
    pub async fn prewarm(&self, count: usize) {
        self.pool.prewarm(count).await;
    }

    /// Wrap an instance pool of a use on `route`.
    pub fn new(pool: Arc<InstancePool>, route: &str) -> Self {
        let settings = pool.settings();
        let plugin = pool.plugin_name();
        let fueled = pool.limits().fuel.is_some();
        let costs = (
            CostSeries::new(plugin, route, "request", fueled),
            settings
                .response_phase
                .then(|| CostSeries::new(plugin, route, "response", fueled)),
        );
        WasmFilter {
            costs,
            needs: FilterNeeds {
                request_body: settings.request_body,
                response_body: settings.response_body,
                response_phase: settings.response_phase,
            },
            request_headers: declared(&settings.request_headers),
            response_headers: declared(&settings.response_headers),
            pool,
        }
    }

    fn failure(&self, violation: &Violation) -> FilterFailure {
        let limits = self.pool.limits();
        FilterFailure {
            plugin: self.pool.plugin_name().clone(),
            label: violation.label(),
            detail: violation.to_string(),
            on_error: limits.on_error,
            status: violation.status(limits.error_status),
        }
    }

    /// The lease an earlier phase of this request kept in `slot` (request isolation).
    fn kept_lease(slot: &mut Slot) -> Option<Lease> {
        slot.take()
            .and_then(|b| b.downcast::<Lease>().ok())
            .map(|lease| *lease)
    }

    /// After a call: count its cost in `costs`, check its answer against the output caps
    /// (`check`), put the instance back ([`Self::put_back`]), and turn a violation into this
    /// use's failure.
    fn settle<T>(
        &self,
        slot: &mut Slot,
        (lease, result, cost): Outcome<T>,
        costs: Option<&CostSeries>,
        keep: bool,
        check: fn(&T, &Limits) -> Result<(), Violation>,
    ) -> Result<T, FilterFailure> {
        if let Some(costs) = costs.filter(|_| metrics::enabled()) {
            // A call that ran out of fuel burnt the whole budget.
            let fuel = match &result {
                Err(Violation::Fuel) => self.pool.limits().fuel,
                _ => cost.fuel,
            };
            costs.observe(fuel, cost.host_time);
        }
        let result = result.and_then(|answer| check(&answer, self.pool.limits()).map(|()| answer));
        if let Some(lease) = lease {
            self.put_back(slot, lease, &result, keep);
        }
        result.map_err(|v| self.failure(&v))
    }

    /// Drop a poisoned instance, keep a request-scoped one for the response phase (`keep`),
    /// or return it to the pool.
    fn put_back<T>(
        &self,
        slot: &mut Slot,
        lease: Lease,
        result: &Result<T, Violation>,
        keep: bool,
    ) {
        match result {
            Err(violation) if violation.poisons_instance() => {}
            _ if keep && self.pool.isolation() == Isolation::Request => {
                *slot = Some(Box::new(lease))
            }
            _ => self.pool.release_lease(lease),
        }
    }
}

impl Filter for WasmFilter {
    fn name(&self) -> &str {
        self.pool.plugin_name()
    }

    fn needs(&self) -> FilterNeeds {
        self.needs
    }

    fn alive_instances(&self) -> usize {
        self.pool.alive()
    }

    fn inventory(&self) -> Option<serde_json::Value> {
        let pool = &self.pool;
        let plugin = pool.plugin();
        let limits = pool.limits();
        let alive = pool.alive();
        let warm = pool.warm();
        Some(serde_json::json!({
            "plugin": &*plugin.name,
            "module": plugin.audit.module,
            "sha256": plugin.audit.sha256,
            "imports": plugin.audit.imports,
            "granted": plugin.audit.granted,
            "isolation": format!("{:?}", plugin.isolation).to_lowercase(),
            "limits": {
                "timeout_ms": limits.timeout.as_millis() as u64,
                "fuel": limits.fuel,
                "memory_bytes": limits.memory_bytes,
                "max_headers": limits.output.max_headers,
                "max_header_bytes": limits.output.max_header_bytes,
                "max_body_bytes": limits.output.max_body_bytes,
                "on_error": format!("{:?}", limits.on_error).to_lowercase(),
                "error_status": limits.error_status.as_u16(),
            },
            "instances": {
                "max": plugin.max_instances,
                "alive": alive,
                "warm": warm,
                "busy": alive.saturating_sub(warm),
            },
        }))
    }

    fn on_request<'a>(
        &'a self,
        request: &'a request::Parts,
        body: Option<&'a Bytes>,
        ctx: &'a RequestContext,
        slot: &'a mut Slot,
    ) -> BoxFuture<'a, Result<RequestVerdict, FilterFailure>> {
        async move {
            let args = RequestArgs::new(request, ctx, self.request_headers.as_deref(), body);
            let lease = Self::kept_lease(slot);
            let call = OnRequest(args);
            let outcome = self.pool.call(lease, ctx.call_names(), call).await;
            let keep = self.needs.response_phase;
            let costs = Some(&self.costs.0);
            let action = self.settle(slot, outcome, costs, keep, limits::check_request_action)?;
            request_verdict(action, request).map_err(|v| self.failure(&v))
        }
        .boxed()
    }

    fn on_response<'a>(
        &'a self,
        request: &'a request::Parts,
        response: &'a response::Parts,
        body: Option<&'a Bytes>,
        ctx: &'a RequestContext,
        slot: &'a mut Slot,
    ) -> BoxFuture<'a, Result<ResponseVerdict, FilterFailure>> {
        async move {
            let call = OnResponse {
                request: RequestArgs::new(request, ctx, self.request_headers.as_deref(), body),
                status: response.status.as_u16(),
                fields: Fields::select(&response.headers, self.response_headers.as_deref()),
            };
            let lease = Self::kept_lease(slot);
            let outcome = self.pool.call(lease, ctx.call_names(), call).await;
            let costs = self.costs.1.as_ref();
            let action = self.settle(slot, outcome, costs, false, limits::check_response_action)?;
            response_verdict(action).map_err(|v| self.failure(&v))
        }
        .boxed()
    }
}

/// `on-request`, with its arguments.
struct OnRequest(RequestArgs);

impl GuestCall for OnRequest {
    type Answer = RequestAction;

    async fn call(self, instance: &mut Instance) -> wasmtime::Result<RequestAction> {
        let args = self.0;
        let texts = args.fields.texts();
        let headers = params(&texts);
        let pairs = args.pairs();
        let authority = args.authority();
        let (guest, store) = instance.filter();
        let head = args.head(&headers, authority.as_deref());
        guest
            .call_on_request(store, args.context(&pairs), head, args.body())
            .await
    }
}

/// `on-response`, with its arguments.
struct OnResponse {
    request: RequestArgs,
    status: u16,
    fields: Fields,
}

impl GuestCall for OnResponse {
    type Answer = ResponseAction;

    async fn call(self, instance: &mut Instance) -> wasmtime::Result<ResponseAction> {
        let OnResponse {
            request,
            status,
            fields,
        } = self;
        let texts = request.fields.texts();
        let request_headers = params(&texts);
        let response_texts = fields.texts();
        let response_headers = params(&response_texts);
        let pairs = request.pairs();
        let authority = request.authority();
        let (guest, store) = instance.filter();
        let response_head = ResponseHead {
            status,
            headers: &response_headers,
        };
        guest
            .call_on_response(
                store,
                request.context(&pairs),
                request.head(&request_headers, authority.as_deref()),
                response_head,
                request.body(),
            )
            .await
    }
}

/// A call's request arguments, owned so the call can move to a guest thread: cheap clones
/// (reference counts, not copies) of the request's method, URI, header names and values, and
/// of the context's id and values.
struct RequestArgs {
    route: Arc<str>,
    request_id: Arc<str>,
    client_addr: Arc<str>,
    attributes: Attributes,
    values: Arc<Vec<(String, String)>>,
    method: Method,
    scheme: &'static str,
    uri: http::Uri,
    /// `Host`, when the URI has no authority.
    host: Option<HeaderValue>,
    fields: Fields,
    body: Option<Bytes>,
}

impl RequestArgs {
    fn new(
        request: &request::Parts,
        ctx: &RequestContext,
        declared: Option<&[HeaderName]>,
        body: Option<&Bytes>,
    ) -> Self {
        RequestArgs {
            route: ctx.route.clone(),
            request_id: ctx.request_id.clone(),
            client_addr: ctx.client_addr.clone(),
            attributes: ctx.attributes.clone(),
            values: ctx.values.clone(),
            method: request.method.clone(),
            scheme: ctx.scheme,
            uri: request.uri.clone(),
            host: match request.uri.authority() {
                Some(_) => None,
                None => request.headers.get(http::header::HOST).cloned(),
            },
            fields: Fields::select(&request.headers, declared),
            body: body.cloned(),
        }
    }

    /// The context's values and the connection's attributes, borrowed as the bindings take
    /// them (no allocation for either when empty, as attributes are on cleartext).
    fn pairs(&self) -> [Vec<(&str, &str)>; 2] {
        [&self.values[..], &self.attributes[..]].map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
    }

    fn context<'b>(
        &'b self,
        [values, attributes]: &'b [Vec<(&'b str, &'b str)>; 2],
    ) -> Context<'b> {
        Context {
            route: &self.route,
            request_id: &self.request_id,
            client_addr: &self.client_addr,
            values,
            attributes,
        }
    }

    /// The URI's authority, else the `Host` header's text.
    fn authority(&self) -> Option<Cow<'_, str>> {
        match self.uri.authority() {
            Some(authority) => Some(Cow::Borrowed(authority.as_str())),
            None => self.host.as_ref().map(|v| text(v.as_bytes())),
        }
    }

    /// The request head, with `headers` from [`params`] of `self.fields` and `authority`
    /// from [`Self::authority`].
    fn head<'b>(
        &'b self,
        headers: &'b [HeaderParam<'b>],
        authority: Option<&'b str>,
    ) -> RequestHead<'b> {
        RequestHead {
            method: self.method.as_str(),
            scheme: self.scheme,
            authority,
            path: self.uri.path(),
            query: self.uri.query(),
            headers,
        }
    }

    fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }
}

/// Text of a header value: borrowed when it is UTF-8, else with invalid bytes replaced.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The header fields a plugin is passed: every one, or only those of its declared names.
/// Owned, but sharing the bytes of the request's names and values.
struct Fields(Vec<(HeaderName, HeaderValue)>);

impl Fields {
    fn select(headers: &HeaderMap, declared: Option<&[HeaderName]>) -> Self {
        let field = |(name, value): (&HeaderName, &HeaderValue)| (name.clone(), value.clone());
        Fields(match declared {
            None => headers.iter().map(field).collect(),
            Some(names) => names
                .iter()
                .flat_map(|name| headers.get_all(name).iter().map(move |v| (name, v)))
                .map(field)
                .collect(),
        })
    }

    /// The fields as text: values borrowed when UTF-8, else with invalid bytes replaced.
    fn texts(&self) -> Vec<(&str, Cow<'_, str>)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), text(value.as_bytes())))
            .collect()
    }
}

/// The WIT header records of [`Fields::texts`].
fn params<'a>(texts: &'a [(&'a str, Cow<'a, str>)]) -> Vec<HeaderParam<'a>> {
    texts
        .iter()
        .map(|(name, value)| HeaderParam { name, value })
        .collect()
}

fn bad(message: String) -> Violation {
    Violation::BadOutput(message)
}

fn header_name(name: &str) -> Result<HeaderName, Violation> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| bad(format!("invalid header name {name:?}")))
}

/// A header field from the plugin's text, set (`adds == false`) or added at `place`. The value
/// keeps the buffer the string was lifted into rather than being copied once more.
fn header_field(
    header: HeaderResult,
    place: HeaderPlace,
    adds: bool,
) -> Result<(HeaderName, HeaderValue), Violation> {
    let name = header_name(&header.name)?;
    rules::header_field_name(name.as_str(), place, adds).map_err(bad)?;
    let value = HeaderValue::from_maybe_shared(Bytes::from(header.value))
        .map_err(|_| bad(format!("invalid value for header {name}")))?;
    Ok((name, value))
}

/// Validate header changes bound for `place`; a bad name or value fails the whole set.
fn header_edits(changes: HeaderChanges, place: HeaderPlace) -> Result<HeaderEdits, Violation> {
    let pairs = |list: Vec<HeaderResult>, adds| {
        list.into_iter()
            .map(|header| header_field(header, place, adds))
            .collect::<Result<Vec<_>, Violation>>()
    };
    Ok(HeaderEdits {
        remove: changes
            .remove
            .iter()
            .map(|n| header_name(n))
            .collect::<Result<Vec<_>, _>>()?,
        set: pairs(changes.set, false)?,
        add: pairs(changes.add, true)?,
    })
}

/// The request target after a plugin's path and query changes (`None` when it changed
/// neither), keeping the request's scheme and authority.
fn new_target(
    request: &request::Parts,
    path: Option<&str>,
    query: Option<&str>,
) -> Result<Option<http::Uri>, Violation> {
    if path.is_none() && query.is_none() {
        return Ok(None);
    }
    let path = path.unwrap_or(request.uri.path());
    let query = match query {
        Some(query) => Some(query).filter(|q| !q.is_empty()),
        None => request.uri.query(),
    };
    rules::target_shape(path, query).map_err(bad)?;
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut parts = request.uri.clone().into_parts();
    parts.path_and_query = Some(
        target
            .parse()
            .map_err(|_| bad(format!("invalid path or query {target:?}")))?,
    );
    http::Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| bad(format!("invalid request target {target:?}")))
}

/// A plugin's request action as a verdict: every part validated before any is applied, so a
/// bad part leaves the request exactly as it was.
pub(crate) fn request_verdict(
    action: RequestAction,
    request: &request::Parts,
) -> Result<RequestVerdict, Violation> {
    let changes = match action {
        RequestAction::Respond(response) => {
            return Ok(RequestVerdict::Respond(to_local_response(response)?));
        }
        RequestAction::Continue(changes) => changes,
        RequestAction::Fail(reason) => return Err(Violation::failed(&reason)),
    };
    let method = changes
        .method
        .as_deref()
        .map(|method| {
            Method::from_bytes(method.as_bytes())
                .map_err(|_| bad(format!("invalid method {method:?}")))
        })
        .transpose()?;
    Ok(RequestVerdict::Continue(RequestEdit {
        method,
        uri: new_target(request, changes.path.as_deref(), changes.query.as_deref())?,
        headers: header_edits(changes.headers, HeaderPlace::Request)?,
        body: changes.body.map(Bytes::from),
        context: changes.context,
        response_headers: header_edits(changes.response_headers, HeaderPlace::Response)?,
    }))
}

/// A plugin's response action as a verdict, validated whole.
fn response_verdict(action: ResponseAction) -> Result<ResponseVerdict, Violation> {
    let changes = match action {
        ResponseAction::Replace(replacement) => {
            return Ok(ResponseVerdict::Replace(to_local_response(replacement)?));
        }
        ResponseAction::Continue(changes) => changes,
        ResponseAction::Fail(reason) => return Err(Violation::failed(&reason)),
    };
    Ok(ResponseVerdict::Continue(ResponseEdit {
        status: changes.status.map(status_code).transpose()?,
        headers: header_edits(changes.headers, HeaderPlace::Response)?,
        body: changes.body.map(Bytes::from),
    }))
}

fn status_code(status: u16) -> Result<StatusCode, Violation> {
    let status = rules::status(status).map_err(bad)?;
    StatusCode::from_u16(status).map_err(|_| bad(format!("invalid status {status}")))
}

fn to_local_response(response: WitResponse) -> Result<LocalResponse, Violation> {
    let mut headers = HeaderMap::new();
    for header in response.headers {
        let (name, value) = header_field(header, HeaderPlace::Response, true)?;
        headers.append(name, value);
    }
    Ok(local_response(
        status_code(response.status)?,
        headers,
        Bytes::from(response.body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> HeaderResult {
        HeaderResult {
            name: name.into(),
            value: value.into(),
        }
    }

    fn no_changes() -> HeaderChanges {
        HeaderChanges {
            remove: vec![],
            set: vec![],
            add: vec![],
        }
    }

    #[test]
    fn fields_borrow_utf8_values_and_replace_invalid_bytes() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        headers.append("x-b", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        headers.append("x-a", HeaderValue::from_static("2"));
        let all = Fields::select(&headers, None);
        let all_texts = all.texts();
        let texts: Vec<(&str, &str)> = params(&all_texts)
            .iter()
            .map(|h| (h.name, h.value))
            .collect();
        assert_eq!(
            texts,
            [("x-a", "café"), ("x-a", "2"), ("x-b", "caf\u{fffd}")]
        );
        assert!(
            matches!(all_texts[0].1, Cow::Borrowed(_)),
            "UTF-8 is not copied"
        );
        let declared = [
            HeaderName::from_static("x-b"),
            HeaderName::from_static("x-a"),
        ];
        let some = Fields::select(&headers, Some(&declared));
        let some_texts = some.texts();
        let names: Vec<&str> = params(&some_texts).iter().map(|h| h.name).collect();
        assert_eq!(names, ["x-b", "x-a", "x-a"]);
    }

    #[test]
    fn header_changes_apply_remove_set_add() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        headers.append("x-b", HeaderValue::from_static("1"));
        let changes = HeaderChanges {
            remove: vec!["x-b".into()],
            set: vec![header("x-a", "only")],
            add: vec![header("x-a", "more"), header("x-c", "new")],
        };
        header_edits(changes, HeaderPlace::Request)
            .unwrap()
            .apply(&mut headers);
        let a: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["only", "more"]);
        assert!(!headers.contains_key("x-b"));
        assert_eq!(headers["x-c"], "new");
    }

    #[test]
    fn bad_output_leaves_headers_untouched() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        let changes = HeaderChanges {
            remove: vec!["x-a".into()],
            set: vec![header("bad name", "v")],
            add: vec![],
        };
        let err = header_edits(changes, HeaderPlace::Request).unwrap_err();
        assert_eq!(err.label(), "bad_output");
        assert_eq!(headers["x-a"], "1");
        // A value with a line break is refused the same way, naming its header.
        let changes = HeaderChanges {
            remove: vec!["x-a".into()],
            set: vec![header("x-ok", "v"), header("x-split", "a\r\nx-evil: 1")],
            add: vec![],
        };
        let err = header_edits(changes, HeaderPlace::Request).unwrap_err();
        assert_eq!(err, bad("invalid value for header x-split".into()));
        assert_eq!(headers["x-a"], "1");
        assert!(!headers.contains_key("x-ok"));
    }

    /// A `continue` that changes method and path but carries a bad header name is refused
    /// whole: the verdict is an error, and nothing of it reached the request (before, the
    /// method and path were already rewritten when the header failed, and `on_error =
    /// "allow"` sent the half-rewritten request upstream).
    #[test]
    fn a_bad_part_of_a_continue_applies_nothing() {
        use super::super::bindings::types::RequestChanges;
        let request = http::Request::get("/original?q=1").body(()).unwrap();
        let (parts, ()) = request.into_parts();
        let action = RequestAction::Continue(RequestChanges {
            method: Some("DELETE".into()),
            path: Some("/elsewhere".into()),
            query: None,
            headers: HeaderChanges {
                remove: vec![],
                set: vec![header("bad name", "v")],
                add: vec![],
            },
            body: None,
            context: vec![("consumer".into(), "mallory".into())],
            response_headers: no_changes(),
        });
        let Err(violation) = request_verdict(action, &parts) else {
            panic!("a bad header name must fail the whole action");
        };
        assert_eq!(violation.label(), "bad_output");
        // The same changes without the bad header are one edit that applies whole.
        let action = RequestAction::Continue(RequestChanges {
            method: Some("DELETE".into()),
            path: Some("/elsewhere".into()),
            query: None,
            headers: no_changes(),
            body: None,
            context: vec![],
            response_headers: no_changes(),
        });
        let Ok(RequestVerdict::Continue(edit)) = request_verdict(action, &parts) else {
            panic!("valid changes are one edit");
        };
        assert_eq!(edit.method, Some(Method::DELETE));
        assert_eq!(edit.uri.unwrap(), "/elsewhere?q=1");
    }
}
