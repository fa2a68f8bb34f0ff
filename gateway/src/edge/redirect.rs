//! Cleartext listeners that only redirect: every request is answered 308 with the same URL
//! over HTTPS (nginx's `return 308 https://$host$request_uri`), so a client that typed
//! `http://` ends up on the TLS listener without any request being proxied in the clear. 308
//! rather than 301 keeps the method and body of a POST.

use crate::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};

/// The redirect for `request` to HTTPS on `port`; 400 without a usable host.
pub fn to_https<B>(request: &Request<B>, port: u16) -> Response<Body> {
    let host = request
        .uri()
        .authority()
        .map(|authority| authority.host().to_string())
        .or_else(|| {
            let value = request.headers().get(header::HOST)?.to_str().ok()?;
            let authority = value.parse::<http::uri::Authority>().ok()?;
            Some(authority.host().to_string())
        });
    let Some(host) = host.filter(|host| !host.is_empty()) else {
        return answer(StatusCode::BAD_REQUEST, None);
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let location = match port {
        443 => format!("https://{host}{target}"),
        port => format!("https://{host}:{port}{target}"),
    };
    match HeaderValue::try_from(location) {
        Ok(location) => answer(StatusCode::PERMANENT_REDIRECT, Some(location)),
        Err(_) => answer(StatusCode::BAD_REQUEST, None),
    }
}

fn answer(status: StatusCode, location: Option<HeaderValue>) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = status;
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(uri: &str, host: Option<&str>, port: u16) -> (u16, Option<String>) {
        let mut request = Request::builder().uri(uri);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        let response = to_https(&request.body(()).unwrap(), port);
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        (response.status().as_u16(), location)
    }

    #[test]
    fn same_host_path_and_query_on_the_https_port() {
        assert_eq!(
            location("/a/b?x=1", Some("example.com:8080"), 8443),
            (308, Some("https://example.com:8443/a/b?x=1".into()))
        );
        assert_eq!(
            location("/", Some("example.com"), 443),
            (308, Some("https://example.com/".into()))
        );
        assert_eq!(
            location("http://[::1]:80/p", None, 443),
            (308, Some("https://[::1]/p".into()))
        );
        assert_eq!(location("/", None, 443), (400, None));
        assert_eq!(location("/", Some("bad host"), 443), (400, None));
    }
}
