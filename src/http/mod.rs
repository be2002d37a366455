//! HTTP on both sockets: the accept loops, and the routes of each (`stream` on TCP, decided
//! by the pure parser in `route` and guarded by the optional Basic auth in `auth`; `still` on
//! the Unix socket).
//!
//! We run our own accept loop over hyper instead of `warp::serve` so that we can set
//! TCP_NODELAY on every connection, cap the number of connections, bound request heads
//! and limit hyper's write buffer to about one frame (see [`serve`]), and back off on accept
//! errors; the routes themselves are warp filters.

pub mod auth;
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

/// Most connections one listener serves at once; more are closed right after accept.
const MAX_CONNECTIONS: usize = 1024;
/// hyper's per-connection buffer: request heads larger than this are refused with 431, and
/// a slow stream client has at most about one frame queued in user space.
const CONNECTION_BUFFER: usize = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Either kind of listener.
pub enum Listener {
    /// The stream port, and how long a client may accept no bytes (`stream.client-timeout`).
    Tcp(TcpListener, Duration),
    Unix(UnixListener),
}

/// Serves `filter` on `listener` until `shutdown` becomes true, then lets open connections
/// finish for a short grace period (stream bodies end on shutdown themselves).
pub async fn serve<F>(listener: Listener, filter: F, mut shutdown: watch::Receiver<bool>)
where
    F: Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            a = accept(&listener) => a,
        };
        let io = match accepted {
            Ok(io) => {
                backoff = Duration::from_millis(5);
                io
            }
            Err(e) => {
                // EMFILE and friends: wait instead of spinning, then try again.
                tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!("too many connections ({MAX_CONNECTIONS}); closing a new one");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(warp::service(filter.clone()));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .max_buf_size(CONNECTION_BUFFER);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let result = match io {
                Io::Tcp(s, timeout) => {
                    let s = stream::ProgressDeadline::new(s, timeout);
                    let flushes = s.flushes();
                    let connection = builder.serve_connection(TokioIo::new(s), service);
                    stream::on_connection(flushes, watcher.watch(connection)).await
                }
                Io::Unix(s) => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(s), service))
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
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

async fn accept(listener: &Listener) -> std::io::Result<Io> {
    match listener {
        Listener::Tcp(l, timeout) => {
            let (s, _) = l.accept().await?;
            stream::tune_socket(&s)?;
            Ok(Io::Tcp(s, *timeout))
        }
        Listener::Unix(l) => Ok(Io::Unix(l.accept().await?.0)),
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
