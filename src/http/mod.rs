//! HTTP on both sockets: the accept loops, and the routes of each (`stream` on TCP, decided
//! by the pure parser in `route` and guarded by the optional Basic auth in `auth`; `still` on
//! the Unix socket).
//!
//! We run our own accept loop over hyper instead of `warp::serve` so that we can set
//! TCP_NODELAY on every connection, cap the number of connections, bound request heads
//! and limit hyper's write buffer to about one frame (see [`serve`]), and back off on accept
//! errors; the routes themselves are warp filters.

pub mod auth;
pub mod controls;
pub mod deadline;
pub mod drain;
pub mod route;
pub mod still;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use warp::Filter;
use warp::http::StatusCode;

use crate::throttle::Events;

/// hyper's per-connection buffer: request heads larger than this are refused with 431, and
/// a slow stream client has at most about one frame queued in user space.
const CONNECTION_BUFFER: usize = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a still-socket client may leave a response unread before it is cut off.
pub const STILL_PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Either kind of listener.
pub enum Listener {
    /// The stream port, and how long a client may accept no bytes (`stream.client-timeout`,
    /// in seconds; a reload changes it for the connections accepted after).
    Tcp(TcpListener, Arc<std::sync::atomic::AtomicU64>),
    Unix(UnixListener),
}

/// What one listener may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once (from [`crate::budget`]).
    pub connections: usize,
    /// Cut off a client that accepts no bytes of a response for this long.
    pub write_progress: Option<Duration>,
}

/// Serves `filter` on `listener` until `shutdown` becomes true, then lets open connections
/// finish for a short grace period (stream bodies end on shutdown themselves).
///
/// TCP connections beyond `limits.connections` are accepted and closed at once (a flood must
/// not fill the listen backlog for real viewers); still-socket clients beyond the cap wait in
/// the backlog instead (they are local programs, which would rather wait than fail).
pub async fn serve<F>(
    listener: Listener,
    filter: F,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
    events: Arc<Events>,
) where
    F: Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.connections));
    let mut backoff = Duration::from_millis(5);
    loop {
        // The still socket takes a slot before accepting: beyond the cap, clients wait.
        let early = if matches!(listener, Listener::Unix(_)) {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                p = slots.clone().acquire_owned() => Some(p.expect("never closed")),
            }
        } else {
            None
        };
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            a = accept(&listener) => a,
        };
        let io = match accepted {
            Ok(Some(io)) => {
                backoff = Duration::from_millis(5);
                io
            }
            // That one connection could not be set up: the listener itself is fine.
            Ok(None) => {
                backoff = Duration::from_millis(5);
                continue;
            }
            Err(e) => {
                // EMFILE and friends: wait instead of spinning, then try again.
                events.accept_error(&e, backoff);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let permit = match early {
            Some(p) => p,
            None => match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    events.refused(limits.connections);
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(warp::service(filter.clone()));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .max_buf_size(CONNECTION_BUFFER);
        let watcher = graceful.watcher();
        let events = events.clone();
        tokio::spawn(async move {
            let tcp = matches!(io, Io::Tcp(..));
            let result = match io {
                Io::Tcp(s, timeout) => {
                    let mut s = deadline::Progress::new(s, timeout, Some("stream.client-timeout"));
                    let flushes = stream::Flushes::of(&mut s);
                    let connection = builder.serve_connection(TokioIo::new(s), service);
                    stream::on_connection(flushes, watcher.watch(connection)).await
                }
                Io::Unix(s) => match limits.write_progress {
                    Some(t) => {
                        let s = deadline::Progress::new(s, t, None);
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(s), service))
                            .await
                    }
                    None => {
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(s), service))
                            .await
                    }
                },
            };
            if let Err(e) = result {
                if deadline::is_stall(&e) {
                    if tcp {
                        events.stream_dropped(&e);
                    } else {
                        events.still_dropped(&e);
                    }
                } else {
                    tracing::debug!("connection ended: {e}");
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_millis(300), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after the grace period; closing them");
    }
}

enum Io {
    Tcp(tokio::net::TcpStream, Duration),
    Unix(tokio::net::UnixStream),
}

/// Accepts one connection. An error is the listener's (EMFILE...: the loop backs off);
/// `None` is a connection that could not be tuned (typically reset by its client before the
/// setsockopt calls): only that connection is dropped, nobody else waits for it.
async fn accept(listener: &Listener) -> std::io::Result<Option<Io>> {
    match listener {
        Listener::Tcp(l, timeout) => {
            let (s, peer) = l.accept().await?;
            if let Err(e) = stream::tune_socket(&s) {
                // debug: a client can cause this at will.
                tracing::debug!("dropping connection from {peer}: cannot set socket options: {e}");
                return Ok(None);
            }
            let timeout = timeout.load(std::sync::atomic::Ordering::Relaxed);
            Ok(Some(Io::Tcp(s, Duration::from_secs(timeout))))
        }
        Listener::Unix(l) => Ok(Some(Io::Unix(l.accept().await?.0))),
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(body.into().into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The response to `HEAD`: the `GET` response's head, with the length its body would have
/// had when that is known.
pub fn head_of(resp: warp::reply::Response) -> warp::reply::Response {
    use hyper::body::Body as _;
    let (mut parts, body) = resp.into_parts();
    if let Some(len) = body.size_hint().exact() {
        parts.headers.insert(
            warp::http::header::CONTENT_LENGTH,
            warp::http::HeaderValue::from(len),
        );
    }
    warp::reply::Response::from_parts(parts, bytes::Bytes::new().into())
}

/// 405, with the methods the path does answer.
pub fn method_not_allowed(allow: &'static str) -> warp::reply::Response {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(
        warp::http::header::ALLOW,
        warp::http::HeaderValue::from_static(allow),
    );
    r
}

/// The answer for a still or snapshot that could not be served: 504 for a stalled camera,
/// 503 otherwise, with `Retry-After` when the encode queue was full (the client should come
/// back, and will likely find the frame already encoded), 500 when encoding failed.
pub fn still_error(e: &crate::state::StillError) -> warp::reply::Response {
    use crate::state::StillError;
    let status = match e {
        StillError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        StillError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        StillError::NoFrame | StillError::ShuttingDown | StillError::Busy => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    let mut resp = text(status, format!("{e}\n"));
    if matches!(e, StillError::Busy | StillError::NoFrame) {
        resp.headers_mut().insert(
            warp::http::header::RETRY_AFTER,
            warp::http::HeaderValue::from_static("1"),
        );
    }
    resp
}

/// Turns warp's rejections into plain-text errors (404, 405, 400) instead of empty bodies.
pub async fn plain_rejection(
    r: warp::Rejection,
) -> Result<warp::reply::Response, std::convert::Infallible> {
    Ok(if r.is_not_found() {
        text(StatusCode::NOT_FOUND, "not found\n")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
    } else if r.find::<warp::reject::InvalidQuery>().is_some() {
        text(StatusCode::BAD_REQUEST, "bad query string\n")
    } else {
        text(StatusCode::BAD_REQUEST, format!("bad request: {r:?}\n"))
    })
}
