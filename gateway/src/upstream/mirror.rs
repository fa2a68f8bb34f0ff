//! Request mirroring (`mirror = { upstream, share, max_in_flight, max_body_bytes }`): a copy
//! of a share of a route's requests goes to a shadow upstream, fire and forget.
//!
//! The copy is its own task on the worker, sent after the real request has been handed to
//! its upstream's send, so it never delays it: the real response does not wait for the
//! shadow's, and the shadow's answer is read to its end (so its connection is reused) and
//! dropped. At most `max_in_flight` copies are out at once: past that a request is simply not
//! copied, so a hanging shadow holds `max_in_flight` tasks and connections and no more. A
//! copy needs the body in memory: a body of declared length up to `max_body_bytes` is read
//! whole before the request goes on (as for retries); a larger or streamed body is not
//! copied. Every copy, sent or not, is counted in `gateway_mirror_requests_total`.

use super::{CallOptions, RouteDeadline, Upstream, clone_parts};
use crate::config::MirrorConfig;
use crate::telemetry::metrics;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Either, Full};
use prometheus::IntCounter;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A route's mirror.
pub struct Mirror {
    upstream: Arc<Upstream>,
    /// Copies are taken when a random `u32` falls below this.
    threshold: u64,
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
    max_body_bytes: u64,
    /// `gateway_mirror_requests_total` by outcome: ok, error, busy, body.
    counted: Arc<[IntCounter; 4]>,
}

/// A copy's place among the `max_in_flight`, held until its exchange ends.
pub struct Slot {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

const OK: usize = 0;
const ERROR: usize = 1;
const BUSY: usize = 2;
const BODY: usize = 3;

impl Mirror {
    /// Route `route`'s mirror to `upstream`, as `config` says.
    pub fn new(route: &str, upstream: Arc<Upstream>, config: &MirrorConfig) -> Mirror {
        let family = &metrics::metrics().mirror_requests;
        let name = upstream.name().to_string();
        let counted = ["ok", "error", "busy", "body"]
            .map(|outcome| family.with_label_values(&[route, &name, outcome]));
        Mirror {
            upstream,
            threshold: (config.share.clamp(0.0, 1.0) * f64::from(u32::MAX) + 1.0) as u64,
            max_in_flight: config.max_in_flight,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_body_bytes: config.max_body_bytes as u64,
            counted: Arc::new(counted),
        }
    }

    /// The shadow upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Largest body read whole so it can be copied.
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes
    }

    /// Whether this request is copied: it falls in the share and a slot is free.
    pub fn take(&self) -> Option<Slot> {
        if u64::from(fastrand::u32(..)) >= self.threshold {
            return None;
        }
        let taken = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            in_flight: self.in_flight.clone(),
        };
        if taken >= self.max_in_flight {
            drop(slot);
            self.counted[BUSY].inc();
            return None;
        }
        Some(slot)
    }

    /// A request taken for copying whose body could not be copied.
    pub fn skipped(&self, slot: Slot) {
        drop(slot);
        self.counted[BODY].inc();
    }

    /// Send a copy of the request `head` with `body` to the shadow upstream, as a task; its
    /// answer is read and dropped.
    pub fn send(&self, slot: Slot, head: &http::request::Parts, body: Bytes, key: Option<u64>) {
        let upstream = self.upstream.clone();
        let counted = self.counted.clone();
        let request = Request::from_parts(clone_parts(head), Either::Right(Full::new(body)));
        tokio::spawn(async move {
            let _slot = slot;
            let options = CallOptions {
                key,
                ..CallOptions::default()
            };
            let deadline = RouteDeadline::Within(upstream.response_timeout());
            let answer = upstream.send(request, deadline, &mut None, options).await;
            let ok = match answer {
                Ok((response, _held)) => {
                    let status = response.status();
                    let body = response.into_body();
                    let read = tokio::time::timeout(upstream.body_timeout(), drain(body)).await;
                    read.is_ok_and(|read| read) && !status.is_server_error()
                }
                Err(_) => false,
            };
            counted[if ok { OK } else { ERROR }].inc();
        });
    }
}

/// Read a body to its end, keeping nothing; whether it ended cleanly.
async fn drain(mut body: hyper::body::Incoming) -> bool {
    loop {
        match body.frame().await {
            Some(Ok(_)) => continue,
            Some(Err(_)) => return false,
            None => return true,
        }
    }
}
