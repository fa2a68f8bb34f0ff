//! The body type both halves of the proxy carry: a request body going to an upstream, a
//! response body coming back. A leaf module, so `proxy` (which builds bodies) and `upstream`
//! (which sends them) both name it without depending on each other.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// Streamed from the peer, or buffered/generated in full.
pub type Body = Either<Incoming, Full<Bytes>>;
