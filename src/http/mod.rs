//! HTTP on both sockets: the accept loops, and the routes of each (`stream` on TCP, decided
//! by the pure parser in `route` and guarded by the optional Basic auth in `auth`; `still` on
//! the Unix socket). `http09` makes a request line without a version HTTP/1.0 for hyper.
//!
//! We run our own accept loop over hyper instead of `warp::serve` so that we can set
//! TCP_NODELAY on every connection, cap the number of connections (on the still socket
//! through [`door`], where idle connections give way to new ones), bound request heads
//! and limit hyper's write buffer to about one frame (see [`serve`]), and back off on accept
//! errors; the routes themselves are warp filters, behind a front service that answers the
//! request targets warp cannot route ([`target`]) itself.

pub mod auth;
pub mod controls;
pub mod deadline;
pub mod door;
pub mod drain;
pub mod http09;
pub mod preview;
pub mod route;
pub mod still;
pub mod stream;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use hyper::body::{Body as _, Incoming};
use hyper::service::Service as _;
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
/// How long a client of the stream port may take to send its request head, counted from
/// `accept` (and from the end of the answer before, on a keep-alive connection), however
/// slowly the bytes come: a connection that sends nothing, or a head a byte at a time, is
/// closed then (hyper's header read timeout, as on the still socket). A real client sends its
/// head at once; 5 s leaves room for two lost segments on a bad link (TCP retransmits after
/// 1 s, then 2 s) and turns an idle flood's connections over twice as fast as the 10 s before.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The same on the still socket, whose clients are local programs that send their request
/// at once: a connection that has not sent its head in this time is closed.
pub const STILL_HEAD_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a still-socket client may leave a response unread before it is cut off.
pub const STILL_PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Either kind of listener.
pub enum Listener {
    /// The stream port, how long a client may accept no bytes (`stream.client-timeout`, in
    /// seconds; a reload changes it for the connections accepted after), the open
    /// connections per client address (see [`crate::peers::connections_per_address`]), and
    /// the connection cap (`Limits::connections` permits). The last two are shared by every
    /// listener a port change opens: connections on the old one stay open, and must go on
    /// counting, or each move would add a whole cap of descriptors (see [`crate::budget`]).
    Tcp(
        TcpListener,
        Arc<std::sync::atomic::AtomicU64>,
        Arc<crate::peers::PerAddress>,
        Arc<Semaphore>,
    ),
    Unix(UnixListener),
}

/// What one listener may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once (from [`crate::budget`]); on the stream port, the size of
    /// the cap its [`Listener::Tcp`] shares with the listeners before and after it.
    pub connections: usize,
    /// Cut off a client that accepts no bytes of a response for this long.
    pub write_progress: Option<Duration>,
    /// Answer a request whose client then closed its sending side (a FIN after the request:
    /// `printf 'GET ...' | nc`, socat, mjpg-streamer-era scripts), as HTTP allows. hyper can
    /// do this or notice a client gone mid-request, not both: with it, nothing is read while
    /// an answer is being made, so a client that left is noticed only when its answer is
    /// written. That costs nothing on the still socket; on the stream port with logins it
    /// would run the queued password checks of a flood of clients that have hung up, which
    /// are skipped today (`picker_auth_abandoned_total`), so it is off there.
    pub half_close: bool,
}

/// How long open connections may take to finish once shutdown begins. A stream body sends
/// its ending at once (see `stream::Ready::Ending`), but a viewer that is behind (a busy
/// machine, a slow link) must still take the bytes in its way: 300 ms cut ffmpeg and mpv off
/// mid-part ("Invalid data found") in about one run in ten of `tests/ending.rs` on a loaded
/// machine. A client that reads nothing holds the exit up to this long, no more.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Serves `filter` on `listener` until `shutdown` becomes true, then lets open connections
/// finish for [`SHUTDOWN_GRACE`] (stream bodies end on shutdown themselves).
///
/// TCP connections beyond `limits.connections`, or beyond their address's share (see
/// [`crate::peers::connections_per_address`]: one address must not hold every slot), are
/// accepted and closed at once (a flood must not fill the listen backlog for real viewers);
/// a connection that sends no complete request head within [`HEAD_TIMEOUT`] is closed, and
/// counted unless it had sent a request before (a browser keeps its connections open
/// between requests). On the still socket a new client takes the
/// slot of the connection that has waited longest on its client (see [`door`]); when every
/// slot is answering a request, new clients wait in the backlog (they are local programs,
/// which would rather wait than fail).
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
    // The stream port's cap comes with its listener; the still socket's is its door's.
    let (slots, door) = match &listener {
        Listener::Tcp(.., slots) => (Some(slots.clone()), None),
        Listener::Unix(_) => (None, Some(door::Door::new(limits.connections))),
    };
    let mut backoff = Duration::from_millis(5);
    loop {
        // The still socket accepts only when a slot is free or can be made free.
        if let Some(door) = &door {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                () = door.until_admissible() => {}
            }
        }
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            a = accept(&listener) => a,
        };
        let io = match accepted {
            // Its address holds its share of connections: closed at once (dropped here).
            Ok(Some(Io::Refused { peer, cap })) => {
                backoff = Duration::from_millis(5);
                events.refused_per_address(peer, cap);
                continue;
            }
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
        let (permit, ticket) = match &door {
            Some(door) => {
                let spoke = matches!(&io, Io::Unix(s) if has_sent_bytes(s));
                let ticket = tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => break,
                    t = door.admit(spoke) => t,
                };
                (None, Some(Arc::new(ticket)))
            }
            None => match slots.clone().map(Semaphore::try_acquire_owned) {
                Some(Ok(p)) => (Some(p), None),
                _ => {
                    events.refused(limits.connections);
                    continue;
                }
            },
        };
        // The service of this connection: answers the request targets warp cannot route
        // (see [`target`]) itself and hands the rest to the routes; on the still socket it
        // also tells the connection's ticket when a request is complete and when its answer
        // is sent.
        let routes = hyper_util::service::TowerToHyperService::new(warp::service(filter.clone()));
        let service_ticket = ticket.clone();
        // Whether a request came at all: a keep-alive connection closed at the head deadline
        // after its answers is a client that simply kept it open, not one to count.
        let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let service_asked = asked.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let (routes, ticket) = (routes.clone(), service_ticket.clone());
            service_asked.store(true, std::sync::atomic::Ordering::Relaxed);
            async move {
                let refused = target::refuse(req.method(), req.uri());
                if let Some(t) = &ticket {
                    if req.body().is_end_stream() {
                        t.serving();
                    }
                }
                let resp = match refused {
                    Some((status, why)) => text(status, why),
                    None => {
                        let req = req.map(|b| door::Tracked::request(b, ticket.clone()));
                        let Ok(resp) = routes.call(req).await;
                        resp
                    }
                };
                // Answered, whether or not the route read the body.
                if let Some(t) = &ticket {
                    t.serving();
                }
                Ok::<_, Infallible>(resp.map(|b| door::Tracked::response(b, ticket)))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(if door.is_some() {
                STILL_HEAD_TIMEOUT
            } else {
                HEAD_TIMEOUT
            })
            .max_buf_size(CONNECTION_BUFFER)
            // Without it hyper takes a FIN after a complete request for an aborted one and
            // drops the answer in flight (see `Limits::half_close`). A client that went away
            // is still noticed when written to, and the deadlines bound one that stops reading.
            .half_close(limits.half_close);
        let watcher = graceful.watcher();
        let events = events.clone();
        tokio::spawn(async move {
            let tcp = matches!(io, Io::Tcp(..));
            let result = match io {
                Io::Refused { .. } => return,
                // `_held`: the address's share, given back when the connection ends.
                Io::Tcp(s, timeout, _held) => {
                    let mut s = deadline::Progress::new(s, timeout, Some("stream.client-timeout"));
                    let flushes = stream::Flushes::of(&mut s);
                    // `GET /?action=stream` without a version: made HTTP/1.0 (see `http09`).
                    let s = http09::Http09::new(s);
                    let connection = builder.serve_connection(TokioIo::new(s), service);
                    stream::on_connection(flushes, watcher.watch(connection)).await
                }
                Io::Unix(s) => {
                    let timeout = limits.write_progress.unwrap_or(STILL_PROGRESS_TIMEOUT);
                    let s = deadline::Progress::new(s, timeout, None);
                    match &ticket {
                        Some(t) => {
                            let s = door::Flushing::new(s, t.clone());
                            let connection =
                                watcher.watch(builder.serve_connection(TokioIo::new(s), service));
                            // Closed to make room for a new client: dropping the connection
                            // closes it. `evicted` resolves only while no request is complete
                            // (one voids the eviction, see `door`), and requests are taken and
                            // answered in this task, so no answer can begin between its look
                            // and the drop.
                            tokio::select! {
                                r = connection => r,
                                () = t.evicted() => Ok(()),
                            }
                        }
                        None => {
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(s), service))
                                .await
                        }
                    }
                }
            };
            if let Err(e) = result {
                if deadline::is_stall(&e) {
                    if tcp {
                        events.stream_dropped(&e);
                    } else {
                        events.still_dropped(&e);
                    }
                } else if tcp && e.is_timeout() && !asked.load(std::sync::atomic::Ordering::Relaxed)
                {
                    events.head_timeout(HEAD_TIMEOUT);
                } else {
                    tracing::debug!("connection ended: {e}");
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after the grace period; closing them");
    }
}

enum Io {
    /// A stream-port connection, its write deadline, and its address's share.
    Tcp(tokio::net::TcpStream, Duration, Option<crate::peers::Slot>),
    Unix(tokio::net::UnixStream),
    /// A stream-port connection whose address holds `cap` connections already.
    Refused {
        peer: std::net::IpAddr,
        cap: usize,
    },
}

/// Accepts one connection. An error is the listener's (EMFILE...: the loop backs off);
/// `None` is a connection that could not be tuned (typically reset by its client before the
/// setsockopt calls): only that connection is dropped, nobody else waits for it.
async fn accept(listener: &Listener) -> std::io::Result<Option<Io>> {
    match listener {
        Listener::Tcp(l, timeout, per_address, _) => {
            let (s, peer) = l.accept().await?;
            // Before anything is spent on it.
            let held = match per_address.cap() {
                0 => None,
                cap => match per_address.take(peer.ip()) {
                    Some(slot) => Some(slot),
                    None => {
                        return Ok(Some(Io::Refused {
                            peer: peer.ip(),
                            cap,
                        }));
                    }
                },
            };
            if let Err(e) = stream::tune_socket(&s) {
                // debug: a client can cause this at will.
                tracing::debug!("dropping connection from {peer}: cannot set socket options: {e}");
                return Ok(None);
            }
            let timeout = timeout.load(std::sync::atomic::Ordering::Relaxed);
            Ok(Some(Io::Tcp(s, Duration::from_secs(timeout), held)))
        }
        Listener::Unix(l) => Ok(Some(Io::Unix(l.accept().await?.0))),
    }
}

/// Whether a client has sent anything yet (without taking it from the socket): one that has
/// is likely a real request about to be read, and keeps its slot for a moment (see
/// [`door::GRACE`]).
fn has_sent_bytes(s: &tokio::net::UnixStream) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    matches!(
        recv(s.as_raw_fd(), &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT),
        Ok(n) if n > 0
    )
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
