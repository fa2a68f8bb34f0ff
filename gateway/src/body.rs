//! The body type both halves of the proxy carry: a request body going to an upstream, a
//! response body coming back. A leaf module, so `proxy` (which builds bodies) and `upstream`
//! (which sends them) both name it without depending on each other.
//!
//! A streamed body is hyper's [`Incoming`] inside a [`Streamed`], which bounds it while it
//! streams: a byte limit (the route's `max_body_bytes` on a request) and an idle limit (the
//! longest pause between two frames). Either ends the body with a [`BodyFault`], which the
//! pipeline finds in the error chain and answers (413, 408) while the response has not
//! started; once it has, the fault cuts the message off. Bounds cost nothing until a frame
//! is not ready: the idle timer is made on the first wait.

use crate::error::{Culprit, ErrorKind, GatewayError};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Streamed from the peer, or buffered/generated in full.
pub type Body = Either<Streamed, Full<Bytes>>;

/// Why a streamed body was ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyFault {
    /// More bytes than allowed.
    #[error("body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// No frame for longer than allowed.
    #[error("no body data for {0} ms")]
    Idle(u128),
    /// The peer's framing was broken (a bad chunk), or its connection failed.
    #[error("cannot read body: {0}")]
    Broken(#[source] hyper::Error),
}

impl BodyFault {
    /// The answer for a request body that ended in this fault (the client's error).
    pub fn request_error(&self) -> GatewayError {
        match self {
            BodyFault::TooLarge(cap) => GatewayError::new(
                ErrorKind::RequestBodyTooLarge,
                Culprit::Downstream,
                format!("request body exceeds the route's limit of {cap} bytes"),
            ),
            BodyFault::Idle(ms) => GatewayError::new(
                ErrorKind::RequestBodyTimeout,
                Culprit::Downstream,
                format!("the client sent no body data for {ms} ms"),
            ),
            BodyFault::Broken(e) => GatewayError::new(
                ErrorKind::BadRequest,
                Culprit::Downstream,
                format!("cannot read the request body: {e}"),
            ),
        }
    }

    /// The fault in `error`'s source chain, if one ended a body.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyFault> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(fault) = error.downcast_ref::<BodyFault>() {
                return Some(fault);
            }
            current = error.source();
        }
        None
    }
}

/// Something let go of when a response body ends (or is dropped): its target's place among
/// the requests in flight, which `least_request` and `max_connections` count until the
/// connection is free again, not just until the head arrived.
pub trait Release: Send + Sync + 'static {
    /// Let go.
    fn release(&self);
}

/// Holds a [`Release`] until dropped.
pub struct Held(Arc<dyn Release>);

impl Held {
    /// Hold `what`.
    pub fn new(what: Arc<dyn Release>) -> Held {
        Held(what)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

/// A peer's body with its bounds.
#[derive(Debug)]
pub struct Streamed {
    inner: Incoming,
    /// Let go with the body.
    held: Option<Held>,
    /// Bytes still allowed, and the limit they started from.
    left: u64,
    limit: u64,
    idle: Option<Duration>,
    /// Made on the first wait; reset when a wait follows a frame.
    timer: Option<Pin<Box<Sleep>>>,
    fresh: bool,
}

impl Streamed {
    /// `body` bounded to `limit` bytes (`None`: unbounded) and `idle` between frames.
    pub fn new(body: Incoming, limit: Option<u64>, idle: Option<Duration>) -> Self {
        let limit = limit.unwrap_or(u64::MAX);
        Streamed {
            inner: body,
            held: None,
            left: limit,
            limit,
            idle,
            timer: None,
            fresh: true,
        }
    }
}

impl Streamed {
    /// The body, holding `held` until it is dropped.
    pub fn holding(mut self, held: Option<Held>) -> Self {
        self.held = held;
        self
    }
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = BodyFault;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFault>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.fresh = true;
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.left {
                        this.left = 0;
                        return Poll::Ready(Some(Err(BodyFault::TooLarge(this.limit))));
                    }
                    this.left -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyFault::Broken(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(idle) = this.idle else {
                    return Poll::Pending;
                };
                let deadline = Instant::now() + idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if this.fresh {
                    this.fresh = false;
                    timer.as_mut().reset(deadline);
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyFault::Idle(idle.as_millis()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
