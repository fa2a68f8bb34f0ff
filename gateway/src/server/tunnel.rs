//! A WebSocket tunnel: once both sides of a 101 are upgraded, bytes are copied both ways
//! until either side closes or neither sends a byte for the route's idle timeout. The
//! connection's task waits for its tunnel, so the connection stays counted against the caps
//! and the shutdown drain waits for tunnels as it does for requests (they are closed when the
//! grace period ends).

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Join the client's and the upstream's upgraded connections until one closes or both idle
/// for `idle_timeout`.
pub async fn run(client: OnUpgrade, upstream: OnUpgrade, idle_timeout: Duration) {
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(client), Ok(upstream)) => (client, upstream),
        (Err(e), _) | (_, Err(e)) => return tracing::debug!("upgrade failed: {e}"),
    };
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Touched::new(TokioIo::new(client), start, &last);
    let mut upstream = Touched::new(TokioIo::new(upstream), start, &last);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        let quiet_since = start + Duration::from_millis(last.load(Ordering::Relaxed));
        tokio::select! {
            copied = &mut copy => {
                match copied {
                    Ok((up, down)) => tracing::debug!(up, down, "WebSocket tunnel closed"),
                    Err(e) => tracing::debug!("WebSocket tunnel ended: {e}"),
                }
                return;
            }
            () = tokio::time::sleep_until(quiet_since + idle_timeout) => {
                let now_last = start + Duration::from_millis(last.load(Ordering::Relaxed));
                if now_last == quiet_since {
                    return tracing::debug!("WebSocket tunnel closed: idle for {idle_timeout:?}");
                }
            }
        }
    }
}

/// A stream that records when it last read a byte.
struct Touched<T> {
    inner: T,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Touched<T> {
    fn new(inner: T, start: Instant, last: &Arc<AtomicU64>) -> Self {
        Touched {
            inner,
            start,
            last: last.clone(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Touched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let millis = u64::try_from(this.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            this.last.store(millis, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
