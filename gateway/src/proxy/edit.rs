//! What a filter asks to change, as one validated value that applies whole.
//!
//! A filter never mutates the request or response itself: it answers with an edit, built and
//! checked in full before anything is applied (a bad header name in a plugin's answer fails
//! the whole answer, so the request stays exactly as it was before that filter and the
//! filter's `on_error` decides what happens next). Applying an edit cannot fail.

use super::filter::RequestContext;
use super::headers::HeaderEdits;
use bytes::Bytes;
use http::{Method, StatusCode, Uri, request, response};

/// Changes to a request, all valid.
#[derive(Debug, Default)]
pub struct RequestEdit {
    /// New method.
    pub method: Option<Method>,
    /// New request target (path and query, with the request's scheme and authority kept).
    pub uri: Option<Uri>,
    /// Header changes.
    pub headers: HeaderEdits,
    /// New body; applied only for a filter that was given the body.
    pub body: Option<Bytes>,
    /// Context values for later filters, in order.
    pub context: Vec<(String, String)>,
    /// Header changes for this request's response, applied as it passes back through the
    /// filter that asked for them.
    pub response_headers: HeaderEdits,
}

impl RequestEdit {
    /// Apply everything but the body and the response headers, which the pipeline places
    /// itself (it knows whether the filter was given the body, and where the response
    /// phase stands).
    pub fn apply(
        self,
        request: &mut request::Parts,
        ctx: &mut RequestContext,
    ) -> (Option<Bytes>, HeaderEdits) {
        if let Some(method) = self.method {
            request.method = method;
        }
        if let Some(uri) = self.uri {
            request.uri = uri;
        }
        self.headers.apply(&mut request.headers);
        for (key, value) in self.context {
            ctx.set(key, value);
        }
        (self.body, self.response_headers)
    }
}

/// Changes to a response, all valid.
#[derive(Debug, Default)]
pub struct ResponseEdit {
    /// New status.
    pub status: Option<StatusCode>,
    /// Header changes.
    pub headers: HeaderEdits,
    /// New body; applied only for a filter that was given the body.
    pub body: Option<Bytes>,
}

impl ResponseEdit {
    /// Apply the status and headers; the body is returned for the pipeline to place.
    pub fn apply(self, response: &mut response::Parts) -> Option<Bytes> {
        if let Some(status) = self.status {
            response.status = status;
        }
        self.headers.apply(&mut response.headers);
        self.body
    }
}
