//! A progress deadline for one connection's writes: a client that accepts no byte for the
//! whole deadline while a response waits for it is cut off, so nobody can hold a connection
//! slot for ever by sending a request and never reading the answer. Both sockets use it: the
//! stream port (deadline `stream.client-timeout`, with flush counting for the stream body,
//! see [`Progress::count_flushes`]) and the still socket.
//!
//! It wraps the socket below hyper: when a write cannot proceed (the client's receive
//! window and our send buffer are full) a timer is armed; any byte that leaves disarms it;
//! if it fires first, the write fails with `TimedOut` and hyper closes the connection. A slow
//! client that keeps reading is never cut off. Reads are not watched here: hyper's header
//! read timeout already bounds how long a request head may take, and idle keep-alive
//! connections are its business too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A socket whose writes must make progress within `timeout`.
pub struct Progress<S> {
    inner: S,
    timeout: Duration,
    /// The setting that chose `timeout`, named in the error (`None`: a built-in deadline).
    key: Option<&'static str>,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
    /// Counts the flushes that found hyper's write buffer empty, when someone asked.
    flushes: Option<Arc<FlushCount>>,
}

/// A connection's flush count and the one task that may wait on it (its stream body).
///
/// Not a `tokio::sync::watch`: hyper flushes on every poll of the connection, and a watch
/// sender takes eight locks per send to wake its waiters (~6% of the fan-out's CPU at 200
/// clients), where this is one atomic add and, with nobody waiting, one atomic swap.
#[derive(Default)]
struct FlushCount {
    count: AtomicU64,
    closed: AtomicBool,
    waiter: AtomicWaker,
}

/// The reading end of [`Progress::count_flushes`].
#[derive(Clone)]
pub struct Flushed(Arc<FlushCount>);

impl Flushed {
    /// Flushes counted so far.
    pub fn get(&self) -> u64 {
        self.0.count.load(Ordering::Acquire)
    }

    /// Waits until more than `n` flushes have been counted: `false` if the connection went
    /// first. One waiter at a time (a connection has one response body at a time).
    pub async fn beyond(&self, n: u64) -> bool {
        std::future::poll_fn(|cx| {
            let done = |c: &FlushCount| {
                if c.count.load(Ordering::Acquire) > n {
                    Some(true)
                } else if c.closed.load(Ordering::Acquire) {
                    Some(false)
                } else {
                    None
                }
            };
            if let Some(r) = done(&self.0) {
                return Poll::Ready(r);
            }
            self.0.waiter.register(cx.waker());
            // Again after registering: a flush between the first look and the registration
            // would otherwise wake nobody.
            done(&self.0).map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }
}

impl<S> Drop for Progress<S> {
    fn drop(&mut self) {
        if let Some(f) = &self.flushes {
            f.closed.store(true, Ordering::Release);
            f.waiter.wake();
        }
    }
}

impl<S> Progress<S> {
    /// `key` names the setting `timeout` came from, for the error a stalled client gets.
    pub fn new(inner: S, timeout: Duration, key: Option<&'static str>) -> Self {
        Progress {
            inner,
            timeout,
            key,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
            flushes: None,
        }
    }

    /// Starts counting successful flushes and returns the counter. hyper flushes its
    /// connection only once its write buffer is empty, so a flush counted after a body
    /// handed hyper a chunk means that chunk has left user space (the stream body waits on
    /// this, see `stream::Flushes`).
    pub fn count_flushes(&mut self) -> Flushed {
        Flushed(self.flushes.get_or_insert_with(Arc::default).clone())
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Called when a write would block: arms the timer once, fails when it has run out.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.armed {
            self.sleep.as_mut().reset(Instant::now() + self.timeout);
            self.armed = true;
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                stall_message(self.timeout, self.key),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(
        &mut self,
        r: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => self.stalled(cx),
        }
    }
}

/// The error text for a client cut off after `timeout`, naming the setting when there is one.
pub fn stall_message(timeout: Duration, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("client accepted no bytes for {timeout:?} ({key})"),
        None => format!("client accepted no bytes for {timeout:?}"),
    }
}

/// Whether an error came from [`Progress`] (for counting dropped clients).
pub fn is_stall(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

impl<S: AsyncRead + Unpin> AsyncRead for Progress<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Progress<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        if let (Poll::Ready(Ok(())), Some(f)) = (&r, &this.flushes) {
            f.count.fetch_add(1, Ordering::Release);
            f.waiter.wake();
        }
        this.progressed(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progressed(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reader_that_stops_is_cut_off() {
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        let mut w = Progress::new(a, Duration::from_millis(200), None);
        let chunk = vec![7u8; 64 * 1024];
        // Nobody reads: the socket buffers fill, then the write stalls and fails.
        let err = loop {
            if let Err(e) = w.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(is_stall(&err));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not() {
        let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let mut w = Progress::new(a, Duration::from_secs(5), None);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut total = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                match b.read(&mut buf).await.unwrap() {
                    0 => return total,
                    n => total += n,
                }
            }
        });
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..16 {
            w.write_all(&chunk).await.unwrap();
        }
        drop(w);
        assert_eq!(reader.await.unwrap(), 16 * 64 * 1024);
    }

    #[test]
    fn the_stall_message_names_the_setting() {
        for (timeout, key, want) in [
            (
                Duration::from_secs(10),
                Some("stream.client-timeout"),
                "client accepted no bytes for 10s (stream.client-timeout)",
            ),
            (
                Duration::from_secs(10),
                None,
                "client accepted no bytes for 10s",
            ),
            (
                Duration::from_millis(200),
                None,
                "client accepted no bytes for 200ms",
            ),
        ] {
            assert_eq!(stall_message(timeout, key), want);
        }
    }

    #[tokio::test]
    async fn flushes_are_counted_only_when_asked() {
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        let mut w = Progress::new(a, Duration::from_secs(5), None);
        w.flush().await.unwrap();
        let count = w.count_flushes();
        assert_eq!(count.get(), 0);
        w.write_all(b"part").await.unwrap();
        w.flush().await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(count.get(), 2);
        assert!(count.beyond(1).await);
    }

    #[tokio::test]
    async fn a_flush_wakes_its_waiter_and_a_closed_connection_ends_the_wait() {
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        let mut w = Progress::new(a, Duration::from_secs(5), None);
        let count = w.count_flushes();
        let waiting = tokio::spawn({
            let count = count.clone();
            async move { count.beyond(0).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        w.flush().await.unwrap();
        assert!(waiting.await.unwrap(), "woken by the flush");
        let gone = tokio::spawn({
            let count = count.clone();
            async move { count.beyond(5).await }
        });
        tokio::task::yield_now().await;
        drop(w);
        assert!(!gone.await.unwrap(), "the connection went first");
        assert_eq!(count.get(), 1);
    }
}
