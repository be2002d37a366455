//! Request lines without an HTTP version (`GET /?action=stream`), as some mjpg-streamer-era
//! clients send them: rewritten to HTTP/1.0 before hyper, which refuses them, reads the
//! connection.
//!
//! Why at the I/O level: hyper parses the request line itself and offers no hook for a line
//! it cannot parse, and the fix must not touch the layers above it (routes, auth). So the
//! accepted socket is wrapped: its first line is held back until it is complete, and a
//! version-less `METHOD TARGET` line becomes `METHOD TARGET HTTP/1.0`; everything else, and
//! every later byte, passes through untouched. mjpg-streamer itself reads such a request up to
//! its blank line, as hyper then does, and answers with an HTTP/1.0 head, as hyper does for an
//! HTTP/1.0 request. Held back is at most [`FIRST_LINE_MAX`] bytes; the wait for them is
//! bounded by hyper's own timeout for the request head, which runs while this reader waits.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest first line looked at; a longer one passes through unread (hyper then refuses
/// it as too long, or parses it, as without this wrapper).
pub const FIRST_LINE_MAX: usize = 8 * 1024;

/// `line` (one request line with its line end) as an HTTP/1.0 request line when it has no
/// version: `METHOD SP TARGET`, the method a token of letters, the target without spaces.
/// `None` when it is anything else (a request line with a version, or not a request line).
pub fn rewrite(line: &[u8]) -> Option<Vec<u8>> {
    let text = line.strip_suffix(b"\n")?;
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let space = text.iter().position(|&b| b == b' ')?;
    let (method, target) = (&text[..space], &text[space + 1..]);
    let is_method = !method.is_empty() && method.iter().all(u8::is_ascii_uppercase);
    let is_target = !target.is_empty() && target.iter().all(|&b| b.is_ascii_graphic());
    (is_method && is_target).then(|| [text, b" HTTP/1.0\r\n"].concat())
}

/// Where the reader is.
enum State {
    /// Holding back the bytes read so far, the first line not yet complete.
    Sniffing(Vec<u8>),
    /// Handing out the first bytes (rewritten or not) not yet handed out.
    Draining(Vec<u8>),
    /// Passing reads through.
    Through,
}

/// A connection whose first request line is made HTTP/1.0 when it has no version.
pub struct Http09<S> {
    inner: S,
    state: State,
}

impl<S> Http09<S> {
    pub fn new(inner: S) -> Self {
        Http09 {
            inner,
            state: State::Sniffing(Vec::new()),
        }
    }
}

/// The first bytes to hand on, once `held` holds the whole first line (or is too long to be
/// looked at); `None` while more are needed. End of input is not asked about (`poll_read`
/// says why).
fn decide(held: &mut Vec<u8>) -> Option<Vec<u8>> {
    // Empty lines before a request line are allowed (RFC 9112, 2.2): the line after them.
    let start = held
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(held.len());
    match held[start..].iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line_end = start + end + 1;
            let out = match rewrite(&held[start..line_end]) {
                Some(line) => [&held[..start], &line, &held[line_end..]].concat(),
                None => std::mem::take(held),
            };
            Some(out)
        }
        None if held.len() >= FIRST_LINE_MAX => Some(std::mem::take(held)),
        None => None,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Http09<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Through => return Pin::new(&mut this.inner).poll_read(cx, buf),
                State::Draining(bytes) => {
                    // Handed-out bytes are removed rather than counted past with an offset: a
                    // wrong count (`at *= n`, an offset stuck at 0) handed the same bytes out
                    // for ever, filling memory instead of failing a test.
                    let n = bytes.len().min(buf.remaining());
                    buf.put_slice(&bytes[..n]);
                    bytes.drain(..n);
                    if bytes.is_empty() {
                        this.state = State::Through;
                    }
                    return Poll::Ready(Ok(()));
                }
                State::Sniffing(held) => {
                    let mut chunk = [0u8; 1024];
                    let room = chunk.len().min(FIRST_LINE_MAX - held.len());
                    let mut read = ReadBuf::new(&mut chunk[..room]);
                    std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                    let eof = read.filled().is_empty();
                    held.extend_from_slice(read.filled());
                    // At end of input what is held goes on as it is, without asking `decide`:
                    // a line completed before the end was decided on when it arrived, so none
                    // is held here. Were the end left to `decide`, a wrong decision (`None`)
                    // would spin this loop for ever without yielding, each read ending at once
                    // again; this way the loop goes round only after a read that brought bytes,
                    // at most FIRST_LINE_MAX of them.
                    let out = if eof {
                        std::mem::take(held)
                    } else {
                        match decide(held) {
                            Some(out) => out,
                            None => continue,
                        }
                    };
                    this.state = if out.is_empty() {
                        State::Through
                    } else {
                        State::Draining(out)
                    };
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Http09<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn rewrite_table() {
        let table: &[(&[u8], Option<&[u8]>)] = &[
            (
                b"GET /?action=stream\r\n",
                Some(b"GET /?action=stream HTTP/1.0\r\n"),
            ),
            (
                b"GET /?action=snapshot\n",
                Some(b"GET /?action=snapshot HTTP/1.0\r\n"),
            ),
            (
                b"HEAD /stream.mjpg\r\n",
                Some(b"HEAD /stream.mjpg HTTP/1.0\r\n"),
            ),
            // A version already there: untouched.
            (b"GET / HTTP/1.1\r\n", None),
            (b"GET / HTTP/1.0\r\n", None),
            // Not a request line hyper could then take: left for hyper to refuse.
            (b"GET\r\n", None),
            (b"GET \r\n", None),
            (b" /x\r\n", None),
            (b"get /x\r\n", None),
            (b"GET /a b\r\n", None),
            (b"GET /\x01\r\n", None),
            (b"G\xc3\x89T /\r\n", None),
            (b"GET /x", None),
            (b"\r\n", None),
        ];
        for (line, want) in table {
            assert_eq!(
                rewrite(line).as_deref(),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// What the wrapper hands on when the client sends `parts`, one write each, the reader
    /// reading in between (so it sees each piece apart).
    async fn through(parts: &[&[u8]]) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for p in parts {
                client.write_all(&p).await.unwrap();
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut conn = Http09::new(server);
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_versionless_line_becomes_http_1_0_and_the_rest_passes_through() {
        let got = through(&[b"GET /?act", b"ion=stream\r", b"\nHost: x\r\n\r\n"]).await;
        assert_eq!(got, b"GET /?action=stream HTTP/1.0\r\nHost: x\r\n\r\n");
        let got = through(&[b"\r\nGET /snapshot\r\n\r\n"]).await;
        assert_eq!(got, b"\r\nGET /snapshot HTTP/1.0\r\n\r\n");
    }

    #[tokio::test]
    async fn anything_else_is_unchanged() {
        for input in [
            &b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /x",
            b"",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET /a b c\r\n\r\n",
        ] {
            assert_eq!(through(&[input]).await, input);
        }
        // A first line longer than the bound passes through as it is.
        let long = [
            b"GET /".as_slice(),
            &vec![b'a'; FIRST_LINE_MAX + 100],
            b"\r\n",
        ]
        .concat();
        assert_eq!(through(&[&long]).await, long);
    }

    #[tokio::test]
    async fn writes_go_to_the_socket() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut conn = Http09::new(server);
        conn.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await.unwrap();
        conn.shutdown().await.unwrap();
        // Dropped, so that the read below ends whatever shutdown did; `Recorder` below
        // checks the shutdown itself.
        drop(conn);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"HTTP/1.0 200 OK\r\n\r\n");
    }

    proptest::proptest! {
        /// Whatever arrives, in whatever two pieces: no panic, nothing lost or reordered, and
        /// the first line rewritten exactly when [`rewrite`] says so, wherever the cut falls.
        #[test]
        fn never_loses_or_reorders_bytes(
            start in proptest::sample::select(vec![
                &b""[..], b"GET /?action=stream", b"\r\nGET /x", b"GET / HTTP/1.1", b"GET /a b",
            ]),
            tail in proptest::collection::vec(
                proptest::sample::select(b"GET /x\r\n HTP1.0a\x00\xff".to_vec()), 0..60),
            cut in 0usize..80,
        ) {
            let input = [start, &tail].concat();
            let cut = cut.min(input.len());
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt.block_on(through(&[&input[..cut], &input[cut..]]));
            let start = input.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(input.len());
            let want = match input[start..].iter().position(|&b| b == b'\n') {
                Some(end) => match rewrite(&input[start..start + end + 1]) {
                    Some(line) => [&input[..start], &line, &input[start + end + 1..]].concat(),
                    None => input.clone(),
                },
                None => input.clone(),
            };
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// A socket that records what is written to it, and how.
    #[derive(Default)]
    struct Recorder {
        vectored: bool,
        written: Vec<u8>,
        vectored_calls: usize,
        flushes: usize,
        shut: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.vectored_calls += 1;
            let mut n = 0;
            for b in bufs {
                self.written.extend_from_slice(b);
                n += b.len();
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn every_kind_of_write_reaches_the_socket_as_it_is() {
        for vectored in [false, true] {
            let mut conn = Http09::new(Recorder {
                vectored,
                ..Recorder::default()
            });
            assert_eq!(conn.is_write_vectored(), vectored);
            assert_eq!(conn.write(b"HTTP/1.0 ").await.unwrap(), 9);
            let parts = [io::IoSlice::new(b"200 "), io::IoSlice::new(b"OK\r\n")];
            assert_eq!(conn.write_vectored(&parts).await.unwrap(), 8);
            conn.flush().await.unwrap();
            conn.shutdown().await.unwrap();
            let r = &conn.inner;
            assert_eq!(r.written, b"HTTP/1.0 200 OK\r\n");
            assert_eq!(r.vectored_calls, 1);
            assert!(
                r.flushes >= 1 && r.shut,
                "flushed {}, shut {}",
                r.flushes,
                r.shut
            );
        }
    }

    #[tokio::test]
    async fn the_first_line_is_looked_at_up_to_exactly_its_bound() {
        // Version-less lines that end within the bound (8 KiB) are rewritten, whatever the
        // pieces they arrive in; a line that does not end within it passes through, even when
        // its end arrives just after the bound.
        let line = |len: usize| {
            let a = vec![b'a'; len - b"GET /\r\n".len()];
            [b"GET /".as_slice(), &a, b"\r\n"].concat()
        };
        for (len, pieces) in [(2_000, 1), (FIRST_LINE_MAX, 1), (FIRST_LINE_MAX, 2)] {
            let input = line(len);
            let parts: Vec<&[u8]> = if pieces == 1 {
                vec![&input]
            } else {
                vec![&input[..5], &input[5..]]
            };
            let want = [&input[..len - 2], b" HTTP/1.0\r\n"].concat();
            assert_eq!(through(&parts).await, want, "{len} bytes in {pieces}");
        }
        // 5 bytes first: the reads after it are not aligned on the bound, and the line's
        // end (at 8197) would fit in the last read.
        let input = line(FIRST_LINE_MAX + 5);
        assert_eq!(through(&[&input[..5], &input[5..]]).await, input);
    }

    /// A client that has sent its bytes and waits: reads after them are `Pending`, never the
    /// end of input, whatever the room offered, as on a TCP socket with nothing more to read
    /// (tokio's `duplex` answers a read with no room at once, which hides a reader that
    /// would wait).
    struct Waiting(Vec<u8>);

    impl AsyncRead for Waiting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.0.is_empty() {
                return Poll::Pending;
            }
            let n = self.0.len().min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_first_line_that_fills_the_bound_is_handed_on_without_waiting_for_more() {
        // Exactly FIRST_LINE_MAX bytes and no line end, the client then waiting (for an
        // answer, say): they are handed on in the same read, not held until more bytes or
        // the end of input come. Polled once by hand: a reader that waited would return
        // `Pending`.
        let input = vec![b'a'; FIRST_LINE_MAX];
        let mut conn = Http09::new(Waiting(input.clone()));
        let mut space = vec![0u8; 2 * FIRST_LINE_MAX];
        let mut buf = ReadBuf::new(&mut space);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let polled = Pin::new(&mut conn).poll_read(&mut cx, &mut buf);
        assert!(matches!(polled, Poll::Ready(Ok(()))), "{polled:?}");
        assert_eq!(buf.filled(), input);
        // One byte short of the bound, it waits for the rest of the line.
        let mut conn = Http09::new(Waiting(vec![b'a'; FIRST_LINE_MAX - 1]));
        let mut buf = ReadBuf::new(&mut space);
        assert!(
            Pin::new(&mut conn)
                .poll_read(&mut cx, &mut buf)
                .is_pending()
        );
    }
}
