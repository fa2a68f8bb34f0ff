//! Parking idle HTTP/1.1 keep-alive connections: a connection idle for a second or more holds
//! only its socket, not hyper's buffers.
//!
//! hyper's HTTP/1 server keeps an 8 KiB write buffer, an 8 KiB read buffer and room for the
//! service future (≈ 4.6 KB) for as long as a connection lives, idle or not: ≈ 24 KB per idle
//! keep-alive connection against nginx's ≈ 1 KB. hyper has no knob to release them, so the
//! connection loop ([`super::connection`]) ends hyper's connection once it has been idle for
//! [`PARK_CHECK`] and starts a fresh one when the socket becomes readable again. Doing it after
//! every response instead cost 30% more instructions per request under load (a new hyper
//! connection each time); a connection busy enough never to idle that long never parks.
//!
//! hyper ends a connection cleanly when the client closes it between requests. [`ParkingIo`]
//! therefore reports end-of-stream to hyper — without closing or even reading the socket — at
//! the one moment that is safe: parking was asked for, every response has been handed to hyper
//! and flushed since the last request began, and hyper's read buffer is provably empty. The
//! last is the subtle part, since hyper may have read ahead (a pipelined request): it holds when
//! the last bytes read were the end of a request head (`\r\n\r\n`) and the last request had
//! no body. An unread remainder ending in `\r\n\r\n` would be a complete head, which hyper
//! dispatches before it reads again (and a dispatched request ends the quiet); a partial head
//! never ends that way. After a request with a body the connection is not parked until a later
//! bodyless request (hyper may still be draining the body). Bytes the client sent meanwhile
//! wait in the socket, which is then readable at once, so the next hyper connection reads them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How often a running hyper connection is checked for idleness: one found idle through a whole
/// period is parked, so a connection parks after one to two periods without a request.
pub const PARK_CHECK: Duration = Duration::from_secs(1);

/// What the service knows about the requests on one connection, shared with its
/// [`ParkingIo`]. Atomics only because hyper's futures must be `Send`; everything here is
/// touched from the connection's one task.
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests dispatched so far.
    began: AtomicUsize,
    /// Requests dispatched whose response body hyper still holds.
    in_flight: AtomicUsize,
    /// The last request dispatched came without a body.
    last_bodyless: AtomicBool,
    /// The connection loop asks the running hyper connection to park when next safe, unless a
    /// request begins first: [`Activity::began`] + 1 when asked, 0 when not.
    park_unless_began: AtomicUsize,
    /// The hyper connection running now ended by parking (its io reported the end-of-stream).
    parked: AtomicBool,
    /// Park checks the connection loop has made: the clock request heads are timed by,
    /// free to read.
    checks: AtomicU64,
    /// When bytes arrived with no request in flight and none began since, so a request head
    /// is being read (what the head timeout bounds): [`Activity::tick`]s then, plus one; 0
    /// for none.
    head_started: AtomicU64,
}

impl Activity {
    /// A request was dispatched; the guard ends it when hyper drops its response body.
    pub fn begin<T: AsRef<Activity>>(owner: Arc<T>, bodyless: bool) -> InFlight<T> {
        let activity = (*owner).as_ref();
        activity.began.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.last_bodyless.store(bodyless, Ordering::Relaxed);
        activity.head_started.store(0, Ordering::Relaxed);
        InFlight(owner)
    }

    /// One [`PARK_CHECK`] passed.
    pub fn tick(&self) {
        self.checks.fetch_add(1, Ordering::Relaxed);
    }

    /// At least how long ago a request head started arriving that has not been dispatched
    /// yet, in whole checks (it may be up to one check more). Bytes read while a request is in
    /// flight are its body, or a pipelined head the idle timeout bounds.
    pub fn head_waiting(&self) -> Option<Duration> {
        let since = self.head_started.load(Ordering::Relaxed);
        // Checks since the first one after its first byte.
        let whole = self.checks.load(Ordering::Relaxed).checked_sub(since)?;
        (since != 0).then(|| PARK_CHECK * u32::try_from(whole).unwrap_or(u32::MAX))
    }

    /// Requests dispatched so far: unchanged over a [`PARK_CHECK`] means idle through it.
    pub fn began(&self) -> usize {
        self.began.load(Ordering::Relaxed)
    }

    /// Requests whose response hyper still holds.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Ask the running hyper connection to park at its next safe moment, unless a request
    /// begins before that.
    pub fn request_park(&self) {
        self.park_unless_began
            .store(self.began() + 1, Ordering::Relaxed);
    }

    fn park_requested(&self) -> bool {
        self.park_unless_began.load(Ordering::Relaxed) == self.began() + 1
    }

    /// Whether the last hyper connection ended by parking; resets both flags for the next one.
    pub fn take_parked(&self) -> bool {
        self.park_unless_began.store(0, Ordering::Relaxed);
        self.parked.swap(false, Ordering::Relaxed)
    }

    /// Nothing is being answered and the last request carried no body.
    pub fn is_quiet(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && self.last_bodyless.load(Ordering::Relaxed)
    }
}

/// One request in flight on a connection, from dispatch until hyper is done with its response.
#[derive(Debug)]
pub struct InFlight<T: AsRef<Activity>>(Arc<T>);

impl<T: AsRef<Activity>> InFlight<T> {
    /// What the activity belongs to (the connection's shared state).
    pub fn owner(&self) -> &T {
        &self.0
    }
}

impl<T: AsRef<Activity>> Drop for InFlight<T> {
    fn drop(&mut self) {
        (*self.0).as_ref().in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that ends its request's [`InFlight`] when hyper drops it: after its last
/// frame, or at once when it is empty.
#[derive(Debug)]
pub struct Tracked<B, T: AsRef<Activity>> {
    body: B,
    _in_flight: InFlight<T>,
}

impl<B, T: AsRef<Activity>> Tracked<B, T> {
    /// Track `body` as the response of `in_flight`.
    pub fn new(body: B, in_flight: InFlight<T>) -> Self {
        Tracked {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B, T> Body for Tracked<B, T>
where
    B: Body<Data = Bytes> + Unpin,
    T: AsRef<Activity>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket as one hyper connection sees it: reads and writes pass through, except that a
/// read at a safe moment after parking was requested reports end-of-stream and marks the
/// connection parked, and shutting down a parked connection leaves the socket open. It owns
/// the socket (hyper's upgrades need an owned one) and hands it back to `home` when hyper
/// drops it, for the connection loop to wait on and serve again.
#[derive(Debug)]
pub struct ParkingIo<S, A: AsRef<Activity>> {
    stream: Option<S>,
    home: Home<S>,
    owner: Arc<A>,
    /// The bytes read last ended a request head.
    read_ended_head: bool,
    /// [`Activity::began`] when a flush last found the connection quiet, if nothing was read
    /// since: still current means every response so far is on the wire.
    quiet_flush: Option<usize>,
}

/// Where a [`ParkingIo`] leaves its socket when hyper is done with it.
pub type Home<S> = Arc<std::sync::Mutex<Option<S>>>;

impl<S, A: AsRef<Activity>> ParkingIo<S, A> {
    /// Wrap `stream` for one hyper connection whose service reports to `owner`'s activity;
    /// the stream goes back to `home` when this is dropped.
    pub fn new(stream: S, owner: Arc<A>, home: Home<S>) -> Self {
        ParkingIo {
            stream: Some(stream),
            home,
            owner,
            read_ended_head: false,
            quiet_flush: None,
        }
    }

    fn activity(&self) -> &Activity {
        (*self.owner).as_ref()
    }

    fn stream(&mut self) -> io::Result<Pin<&mut S>>
    where
        S: Unpin,
    {
        match self.stream.as_mut() {
            Some(stream) => Ok(Pin::new(stream)),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn may_park(&self) -> bool {
        let activity = self.activity();
        activity.park_requested()
            && self.read_ended_head
            && self.quiet_flush == Some(activity.began())
            && activity.is_quiet()
    }
}

impl<S, A: AsRef<Activity>> Drop for ParkingIo<S, A> {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take()
            && let Ok(mut home) = self.home.lock()
        {
            *home = Some(stream);
        }
    }
}

impl<S: AsyncRead + Unpin, A: AsRef<Activity>> AsyncRead for ParkingIo<S, A> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.may_park() {
            // End-of-stream between requests: hyper finishes the connection cleanly. The socket
            // is not read, so whatever the client sent meanwhile waits there for the next one.
            this.activity().parked.store(true, Ordering::Relaxed);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = match this.stream() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if polled.is_ready() {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                this.read_ended_head = read.ends_with(b"\r\n\r\n");
                this.quiet_flush = None;
                let activity = this.activity();
                if activity.in_flight() == 0 && activity.head_started.load(Ordering::Relaxed) == 0 {
                    let now = activity.checks.load(Ordering::Relaxed);
                    activity.head_started.store(now + 1, Ordering::Relaxed);
                }
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin, A: AsRef<Activity>> AsyncWrite for ParkingIo<S, A> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(S::is_write_vectored)
    }

    /// hyper flushes after it has written everything it buffered: with no request in flight,
    /// the last response is on the wire.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = match this.stream() {
            Ok(stream) => stream.poll_flush(cx),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if flushed.is_ready() && this.activity().is_quiet() {
            this.quiet_flush = Some(this.activity().began());
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity().parked.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        match this.stream() {
            Ok(stream) => stream.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}
