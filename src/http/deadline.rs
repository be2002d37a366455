//! A progress deadline for one connection's writes: a client that accepts no byte for the
//! whole deadline while a response waits for it is cut off, so nobody can hold a connection
//! slot for ever by sending a request and never reading the answer.
//!
//! It wraps the socket below hyper: when a write cannot proceed (the client's receive
//! window and our send buffer are full) a timer is armed; any byte that leaves disarms it;
//! if it fires first, the write fails with `TimedOut` and hyper closes the connection. A slow
//! client that keeps reading is never cut off. Reads are not watched here: hyper's header
//! read timeout already bounds how long a request head may take.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A socket whose writes must make progress within `timeout`.
pub struct Progress<S> {
    inner: S,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> Progress<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Progress {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
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
                format!("client accepted no data for {:?}", self.timeout),
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
        let mut w = Progress::new(a, Duration::from_millis(200));
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
        let mut w = Progress::new(a, Duration::from_secs(5));
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
}
