//! Forward: the upstream call, after the route's rewrites (prefix, `Host`, origin form).

use super::route::Route;
use crate::body::Body;
use crate::error::{Culprit, ErrorKind, GatewayError};
use http::{HeaderValue, Request, header, request, response};
use http_body_util::Either;

/// Send the request to the route's upstream and take the response head, without its
/// hop-by-hop headers.
pub(super) async fn forward(
    route: &Route,
    mut parts: request::Parts,
    body: Body,
) -> Result<(response::Parts, Body), GatewayError> {
    let upstream = route.upstream.as_ref().ok_or_else(|| {
        GatewayError::new(
            ErrorKind::UpstreamUnreachable,
            Culprit::Internal,
            format!(
                "route `{}` has no upstream and no plugin answered",
                route.name
            ),
        )
    })?;
    prepare_upstream_request(route, &mut parts);
    let response = upstream.send(Request::from_parts(parts, body)).await?;
    let (mut parts, body) = response.into_parts();
    super::headers::strip_hop_by_hop(&mut parts.headers);
    Ok((parts, Either::Left(body)))
}

/// Rewrite the request for the upstream: strip the route prefix, fix `Host`.
fn prepare_upstream_request(route: &Route, parts: &mut request::Parts) {
    if let Some(prefix) = &route.strip_prefix
        && let Some(rest) = parts.uri.path().strip_prefix(prefix.as_str())
    {
        let path = if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        };
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        if let Ok(uri) = path_and_query.parse() {
            parts.uri = uri;
        }
    }
    if !route.preserve_host {
        // The client sets `Host` to the target's address.
        parts.headers.remove(header::HOST);
    } else if !parts.headers.contains_key(header::HOST)
        && let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, value);
    }
    if let Some(path_and_query) = parts.uri.path_and_query().cloned() {
        parts.uri = http::Uri::from(path_and_query);
    }
}
