//! Routes on the stream port: the preview page, `/stream.mjpg`, `/snapshot.jpg`, `/state`
//! and `/metrics`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::{Filter, Reply};

use super::auth::{Auth, Verdict};
use super::deadline::Progress;
use super::drain::{Decision, Drain, Sample};
use super::route::{self, Fps, Route, RouteError};
use super::text;
use crate::encoder::{BOUNDARY, DemandGuard, EncodedFrame};
use crate::state::Shared;

pub fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static
{
    // Every request goes through the pure parser in `route`; warp only hands it the parts.
    let auth = (!shared.config.stream.auth_users.is_empty())
        .then(|| Arc::new(Auth::new(shared.config.stream.auth_users.clone())));
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(warp::any().map(move || (shared.clone(), auth.clone())))
        .and_then(
            |method: Method,
             path: warp::path::FullPath,
             query: String,
             headers: warp::http::HeaderMap,
             (s, auth): (Arc<Shared>, Option<Arc<Auth>>)| async move {
                let request = (&method, path.as_str(), query.as_str(), &headers);
                let peer = FLUSHES.try_with(|f| f.peer).ok().flatten();
                let resp = respond(&s, auth.as_deref(), request, peer).await;
                Ok::<_, Infallible>(with_cors(&s, resp))
            },
        )
}

async fn respond(
    s: &Arc<Shared>,
    auth: Option<&Auth>,
    (method, path, query, headers): (&Method, &str, &str, &warp::http::HeaderMap),
    peer: Option<std::net::IpAddr>,
) -> warp::reply::Response {
    let cors = s.config.stream.allow_origin.is_some();
    let allow = HeaderValue::from_static(if cors {
        route::ALLOW_WITH_OPTIONS
    } else {
        route::ALLOW
    });
    let request = match route::parse(method, path, query, cors) {
        Ok(r) => r,
        Err(RouteError::NotFound) => return text(StatusCode::NOT_FOUND, "not found\n"),
        Err(RouteError::MethodNotAllowed) => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut().insert(header::ALLOW, allow);
            return r;
        }
        Err(RouteError::BadQuery(why)) => {
            return text(StatusCode::BAD_REQUEST, format!("{why}\n"));
        }
    };
    if request.preflight {
        let mut r = warp::reply::Response::new(Bytes::new().into());
        *r.status_mut() = StatusCode::NO_CONTENT;
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow);
        // A fixed list, never an echo of what the page asks: the one request header picker
        // reads. (An echo answered 12 KB of whatever a page sent.)
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return r;
    }
    // Preflights carry no credentials, so they come before the check.
    if let Some(auth) = auth {
        let exempt = s
            .config
            .stream
            .auth_exempt
            .iter()
            .any(|r| r == request.route.canonical_path());
        let credentials = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !exempt {
            match auth.check(credentials, peer).await {
                Verdict::Allowed => {}
                Verdict::Busy => {
                    return retry_later("too many password checks at once; try again\n");
                }
                Verdict::Throttled(wait) => {
                    let mut r = text(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many login attempts from this address; try again later\n",
                    );
                    r.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(wait.as_secs().max(1)),
                    );
                    return r;
                }
                Verdict::Denied => {
                    // The scheme named for people too: a client set to Digest (Home Assistant
                    // offers it) gets no challenge it can answer and sends nothing.
                    let mut r = text(
                        StatusCode::UNAUTHORIZED,
                        "authentication required: HTTP Basic (user and password); \
                         picker offers no Digest\n",
                    );
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(super::auth::CHALLENGE),
                    );
                    return r;
                }
            }
        }
    }
    let resp = match request.route {
        Route::Index => super::preview::page(s, headers),
        Route::PreviewAsset(asset) => super::preview::asset(asset),
        Route::Stream { fps } => stream(s.clone(), fps, request.head_only),
        Route::Snapshot => snapshot(s.clone()).await,
        Route::State => json(&s.state()),
        Route::Metrics => metrics(s, auth),
    };
    if request.head_only && !matches!(request.route, Route::Stream { .. }) {
        super::head_of(resp)
    } else {
        resp
    }
}

/// Adds the CORS headers `stream.allow-origin` asks for to any answer.
fn with_cors(s: &Shared, mut resp: warp::reply::Response) -> warp::reply::Response {
    let Some(origin) = &s.config.stream.allow_origin else {
        return resp;
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    if origin != "*" {
        // The answer depends on the asking origin for caches, too.
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

fn no_store(mut resp: warp::reply::Response) -> warp::reply::Response {
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn json<T: serde::Serialize>(value: &T) -> warp::reply::Response {
    no_store(warp::reply::json(value).into_response())
}

/// What one stream client holds: its slot among `max-clients`, and its share of the demand
/// that keeps the encoder running.
struct Client {
    _slot: OwnedSemaphorePermit,
    /// Its address's share (`stream.max-clients-per-address`); `None` without an address.
    _per_address: Option<crate::peers::Slot>,
    _demand: DemandGuard,
    shared: Arc<Shared>,
    /// The connection's flush count, and its value when the last part was handed to hyper.
    flushes: Option<(Flushes, u64)>,
    /// When the next part may go (see [`super::drain`]).
    drain: Drain,
    arrived: tokio::time::Instant,
}

/// Whether a client may be handed the next part.
enum Ready {
    /// At once: the frame that woke it goes.
    Now,
    /// After a wait (for hyper's flush, or for the network or the reader).
    AfterWait,
    /// The connection is gone.
    Gone,
    /// It read nothing for `client-timeout`: cut it off.
    Stalled,
    /// Shutdown came while it waited: the stream's ending goes now, not after the wait (the
    /// server gives connections a short grace to finish, and a reader paced by the drain
    /// would otherwise be cut off mid-part: "Invalid data found" in ffmpeg and mpv).
    Ending,
}

impl Client {
    /// Asked once a new frame is there: waits until the part handed over last has left user
    /// space (see [`Flushes`]), then until [`Drain`] says the next one can reach the viewer
    /// fresh.
    ///
    /// Asked after the frame wait, not before it: hyper asks the body for its next part
    /// before it flushes the last one, so a look taken then would always wait for that flush
    /// and wake the connection's task a second time per part (with the flush count's old
    /// locks, about 12% of the fan-out's CPU at 200 clients: BENCHMARKS.md). A frame period
    /// later, a client that keeps up has long flushed.
    async fn ready(&mut self) -> Ready {
        let Some((flushes, handed)) = &mut self.flushes else {
            return Ready::Now;
        };
        let handed = *handed;
        let mut waited = false;
        // Only a client that waits looks at shutdown: one more waiter per client and frame
        // on the hot path costs the fan-out (see `next_frame`).
        let shutdown = || {
            let mut rx = self.shared.shutdown.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        if flushes.count.get() <= handed {
            waited = true;
            tokio::select! {
                flushed = flushes.count.beyond(handed) => if !flushed {
                    return Ready::Gone;
                },
                () = shutdown() => return Ready::Ending,
            }
        }
        let go = |waited| if waited { Ready::AfterWait } else { Ready::Now };
        // Among many clients, a reader that keeps up is looked at every few parts only
        // (`Drain::skip_look`): one `TCP_INFO` per client and part was a tenth of the
        // fan-out's CPU at 200 clients.
        let clients = self.shared.stats.stream_clients.load(Ordering::Relaxed);
        let clients = usize::try_from(clients).unwrap_or(usize::MAX);
        if !waited && self.drain.skip_look(clients) {
            return Ready::Now;
        }
        // hyper's buffer is empty; now the kernel's, the network's and the reader's turn.
        // Polled on a short timer: the kernel signals none of these. A client that reads
        // nothing is cut off here, and one whose writes stall by the connection's deadline.
        loop {
            let Ok(sample) = tcp_sample(flushes.fd, self.arrived.elapsed()) else {
                return go(waited);
            };
            let decision = self.drain.decide(sample);
            // The reading and the decision only, not the decision's memory (48 history
            // points): at trace level this is one line per look, up to 200 a second per client.
            tracing::trace!(?sample, ?decision, "drain");
            match decision {
                Decision::Send => return go(waited),
                Decision::Wait(d) => {
                    waited = true;
                    tokio::select! {
                        () = tokio::time::sleep(d) => {}
                        () = shutdown() => return Ready::Ending,
                    }
                }
                Decision::Drop => return Ready::Stalled,
            }
        }
    }

    /// Notes that a part of `len` bytes is being handed over now.
    fn handing_over(&mut self, len: usize) {
        if let Some((flushes, handed)) = &mut self.flushes {
            *handed = flushes.count.get();
        }
        self.drain.sent(len);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared
            .stats
            .stream_clients
            .fetch_sub(1, Ordering::Relaxed);
        tracing::debug!("stream client left");
    }
}

/// `?fps=N`: the least time between two frames sent to this client.
struct Pacing {
    min: Duration,
    last: Option<tokio::time::Instant>,
    /// Only a pacing sleep waits on shutdown itself; the frame wait ends when the channel closes.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

fn stream(shared: Arc<Shared>, fps: Option<Fps>, head_only: bool) -> warp::reply::Response {
    let min_interval = fps.map(Fps::interval);
    if head_only {
        // Headers only: no slot taken, no encoder woken.
        return stream_response(warp::reply::Response::new(Bytes::new().into()));
    }
    let peer = FLUSHES.try_with(|f| f.peer).ok().flatten();
    let per_address = match peer {
        Some(addr) => match shared.per_address.take(addr) {
            Some(s) => Some(s),
            None => {
                return retry_later(format!(
                    "too many stream clients from this address: \
                     max-clients-per-address = {} reached; try again later\n",
                    shared.per_address.cap()
                ));
            }
        },
        None => None,
    };
    let Ok(slot) = shared.stream_slots.clone().try_acquire_owned() else {
        let cap = shared.max_clients();
        shared.events.stream_full(cap);
        // With `Retry-After`, as the per-address refusal above: a dashboard retries.
        return retry_later(format!(
            "too many stream clients: max-clients = {cap} reached; try again later\n"
        ));
    };
    shared.stats.stream_clients.fetch_add(1, Ordering::Relaxed);
    let timeout = shared.client_timeout();
    let client = Client {
        _slot: slot,
        _per_address: per_address,
        _demand: shared.demand.hold(),
        shared: shared.clone(),
        flushes: FLUSHES.try_with(|f| (f.clone(), 0)).ok(),
        drain: Drain::new(timeout),
        arrived: tokio::time::Instant::now(),
    };
    let mut rx = shared.encoded.clone();
    // Only frames encoded after this client arrived (a stale one would show a jump back),
    // but the offline picture while the camera is away at once: it is never stale, and a
    // client taking one frame must not wait for the next second's, nor take a live-looking
    // frame instead (see `encoder::run`). Read and marked seen in one step, so a picture
    // published just after is not missed.
    // A first viewer (nobody else watching) is not sent the latest picture, made when the
    // last viewer watched, perhaps hours ago: the offline task makes it a new one at once
    // (`offline::run`), and the old one would come a moment before it.
    let watched_by_others = shared.demand.count() > 1;
    let first = rx
        .borrow_and_update()
        .clone()
        .filter(|f| f.is_offline_picture() && !shared.online() && watched_by_others);
    let pacing = min_interval.map(|min| Pacing {
        min,
        last: None,
        shutdown: shared.shutdown.clone(),
    });
    let state = (client, rx, Step::Opening(first), pacing);
    let body = futures_util::stream::unfold(
        state,
        move |(mut client, mut rx, step, mut pacing)| async move {
            let first = match step {
                Step::Opening(first) => {
                    let opening = Bytes::from(format!("--{BOUNDARY}\r\n"));
                    return Some((
                        Ok::<_, std::io::Error>(opening),
                        (client, rx, Step::Frames(first), pacing),
                    ));
                }
                Step::Closed => return None,
                Step::Frames(first) => first,
            };
            let mut frame = match first {
                Some(f) => Some(f),
                None => next_frame(&mut rx, &mut pacing).await,
            };
            if frame.is_some() {
                let ready = client.ready().await;
                let newer = matches!(rx.has_changed(), Ok(true));
                match ready {
                    // Without a newer frame, the frame that woke it goes (after a wait, a
                    // few milliseconds old at most: an acknowledgement came late).
                    Ready::Now | Ready::AfterWait if !newer => {}
                    // Polled late (a busy machine): the newest frame.
                    Ready::Now => frame = rx.borrow_and_update().clone().or(frame),
                    // Frames came while it waited, so it is a frame or more behind: as if
                    // it had been asked as soon as its last part left, the next frame
                    // published goes, the freshest it can get (`?fps` had its pause).
                    Ready::AfterWait => {
                        frame = next_frame(&mut rx, &mut None).await;
                    }
                    Ready::Gone => return None,
                    // The ending now, as when the frame channel closes (below).
                    Ready::Ending => frame = None,
                    // An error ends the connection at once: a closing chunk would only wait
                    // in the full buffers of a client that reads nothing.
                    Ready::Stalled => {
                        let e = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            super::deadline::stall_message(timeout, Some("stream.client-timeout")),
                        );
                        return Some((Err(e), (client, rx, Step::Closed, pacing)));
                    }
                }
            }
            match frame {
                Some(frame) => {
                    // When it goes, not when it came: the readiness wait between the two
                    // would otherwise shorten the next `?fps` pause.
                    if let Some(p) = &mut pacing {
                        p.last = Some(tokio::time::Instant::now());
                    }
                    client.handing_over(frame.part.len());
                    Some((
                        Ok(frame.part.clone()),
                        (client, rx, Step::Frames(None), pacing),
                    ))
                }
                // Shutdown: see `encoder::closing` for why it repeats the latest part.
                None => {
                    let end = crate::encoder::closing(rx.borrow().as_deref());
                    Some((Ok(end), (client, rx, Step::Closed, pacing)))
                }
            }
        },
    );
    stream_response(warp::reply::stream(body).into_response())
}

/// Where a stream body is.
enum Step {
    /// With the part to send first, if any, instead of waiting for the next.
    Opening(Option<Arc<EncodedFrame>>),
    Frames(Option<Arc<EncodedFrame>>),
    Closed,
}

/// The next frame for a client, after its `?fps` pause; `None` at shutdown.
async fn next_frame(
    rx: &mut tokio::sync::watch::Receiver<Option<Arc<EncodedFrame>>>,
    pacing: &mut Option<Pacing>,
) -> Option<Arc<EncodedFrame>> {
    if let Some(Pacing {
        min,
        last: Some(last),
        shutdown,
    }) = pacing
    {
        tokio::select! {
            _ = tokio::time::sleep_until(*last + *min) => {}
            _ = shutdown.wait_for(|s| *s) => return None,
        }
    }
    // The hot path of the fan-out, run once per frame by every client: it waits on the
    // frame channel alone. Shutdown reaches it as that channel closing (see
    // `encoder::publish`), so no second waiter is registered per client and frame.
    let frame: Arc<EncodedFrame> = loop {
        rx.changed().await.ok()?;
        if let Some(f) = rx.borrow_and_update().clone() {
            break f;
        }
    };
    Some(frame)
}

/// The head of a `/stream.mjpg` response around `resp`'s body.
fn stream_response(mut resp: warp::reply::Response) -> warp::reply::Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!("multipart/x-mixed-replace; boundary={BOUNDARY}"))
            .expect("static boundary is a valid header"),
    );
    no_store(resp)
}

async fn snapshot(shared: Arc<Shared>) -> warp::reply::Response {
    if !shared.online() {
        return retry_later("camera offline: no frame for a while; try again later\n");
    }
    match shared.latest_jpeg().await {
        Ok((jpeg, frame)) => {
            let mut r = warp::reply::Response::new(jpeg.into());
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
            // What a stream part of the same frame says (mjpg-streamer's and ustreamer's
            // snapshots carry `X-Timestamp` too).
            let stamp = crate::encoder::PartStamp::of(&frame);
            if let Ok(v) = HeaderValue::from_str(&stamp.unix_time()) {
                h.insert("x-timestamp", v);
            }
            h.insert("x-timestamp-ns", stamp.timestamp_ns.into());
            h.insert("x-sequence", stamp.sequence.into());
            no_store(r)
        }
        Err(e) => super::still_error(&e),
    }
}

/// 503 with `Retry-After: 1`: what a dashboard polling snapshots should do while the camera
/// is away.
fn retry_later(why: impl Into<String>) -> warp::reply::Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Prometheus text exposition format. Written by hand: six gauges and counters don't
/// justify a metrics registry crate.
fn metrics(s: &Shared, auth: Option<&Auth>) -> warp::reply::Response {
    let st = s.state();
    // One reading of the counters that add up (captured = lent + copied whole), taken after
    // `state()` read the frames encoded, so that no reading shows more encoded than captured.
    let tally = s.stats.tally();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    metric(
        "picker_frames_captured_total",
        "counter",
        "Frames delivered by the camera.",
        tally.captured.to_string(),
    );
    metric(
        "picker_frames_encoded_total",
        "counter",
        "Video frames encoded to JPEG for stream clients.",
        st.frames.encoded.to_string(),
    );
    metric(
        "picker_frames_dropped_total",
        "counter",
        "Frames skipped by the encoder while clients were watching.",
        st.frames.dropped.to_string(),
    );
    metric(
        "picker_stream_clients",
        "gauge",
        "Connected /stream.mjpg clients.",
        st.clients.to_string(),
    );
    metric(
        "picker_stream_refused_per_address_total",
        "counter",
        "Stream clients refused (503) because their address held stream.max-clients-per-address.",
        s.per_address.refused.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "picker_camera_online",
        "gauge",
        "1 while frames arrive.",
        u8::from(st.online).to_string(),
    );
    metric(
        "picker_camera_buffers_fallback",
        "gauge",
        "1 when the camera refused picker's DMA-heap buffers and runs on libcamera's own (see /state \"buffers\").",
        u8::from(
            crate::camera::BufferSource::from_u8(
                s.stats
                    .buffer_source
                    .load(std::sync::atomic::Ordering::Relaxed),
            ) == crate::camera::BufferSource::DriverFallback,
        )
        .to_string(),
    );
    metric(
        "picker_fps",
        "gauge",
        "Frames per second delivered by the camera.",
        format!("{:.2}", st.fps),
    );
    for (name, help, v) in [
        (
            "picker_frames_startup_total",
            "Frames the camera flagged as startup (not settled), never published.",
            &s.stats.frames_startup,
        ),
        (
            "picker_frames_error_total",
            "Frames the camera flagged as errors, never published.",
            &s.stats.frames_error,
        ),
        (
            "picker_sequence_gaps_total",
            "Frames missing from the camera's frame sequence.",
            &s.stats.sequence_gaps,
        ),
        (
            "picker_frames_lost_total",
            "Good frames skipped because no empty buffer was free.",
            &s.stats.frames_lost,
        ),
        (
            "picker_camera_restarts_total",
            "Camera restarts after it stopped delivering.",
            &s.stats.camera_restarts,
        ),
        (
            "picker_frames_paced_total",
            "Good frames beyond camera.framerate, given back to the camera untouched.",
            &s.stats.frames_paced,
        ),
        (
            "picker_frames_unconsumed_total",
            "Published frames replaced before the encoder or a still read them (frames paced out or lost are counted apart).",
            &s.stats.frames_unconsumed,
        ),
    ] {
        metric(
            name,
            "counter",
            help,
            v.load(std::sync::atomic::Ordering::Relaxed).to_string(),
        );
    }
    metric(
        "picker_frames_lent_total",
        "counter",
        "Frames whose camera buffers were lent to readers instead of copied.",
        tally.lent.to_string(),
    );
    metric(
        "picker_camera_bytes_copied_total",
        "counter",
        "Bytes the CPU copied out of camera buffers (frames that could not be lent, stills).",
        tally.bytes_copied.to_string(),
    );
    s.stats.camera_us.write(
        &mut out,
        "picker_camera_frame_seconds",
        "Time the camera thread spent per published frame (lend or copy, hand-over).",
    );
    s.stats.encode_us.write(
        &mut out,
        "picker_encode_frame_seconds",
        "Time the stream encoder spent per frame (JPEG from the video image).",
    );
    if let Some(auth) = auth {
        auth.write_metrics(&mut out);
    }
    s.write_reliability_metrics(&mut out);
    let mut resp = warp::reply::Response::new(out.into());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    no_store(resp)
}

/// Most bytes the kernel may hold unsent for one TCP client (`TCP_NOTSENT_LOWAT`). The
/// kernel's autotuned send buffer would otherwise hold megabytes, dozens of frames, and a
/// slow reader would be shown ever older ones: with this bound a write waits until the
/// previous frame has nearly left, so the frame handed to the client next is the newest.
pub const NOTSENT_LOWAT: u32 = 16 * 1024;
/// Send buffer per TCP client (the kernel doubles it). Unsent bytes are bounded by
/// [`NOTSENT_LOWAT`]; this bounds the bytes in flight, still enough to keep a 30 fps stream
/// moving over a link with 100+ ms round trips.
pub const SEND_BUFFER: usize = 256 * 1024;

/// Sets what the stream port needs on an accepted TCP connection: no Nagle delay, and bounded
/// kernel buffering (see [`NOTSENT_LOWAT`]).
pub fn tune_socket(s: &tokio::net::TcpStream) -> std::io::Result<()> {
    // Frames must leave as soon as they are written, not wait for an ACK.
    s.set_nodelay(true)?;
    let sock = socket2::SockRef::from(s);
    sock.set_send_buffer_size(SEND_BUFFER)?;
    sock.set_tcp_notsent_lowat(NOTSENT_LOWAT)?;
    Ok(())
}

/// Tells a stream body when everything it handed to hyper has been taken by the kernel.
///
/// hyper flushes its connection (`poll_flush` on the socket) only once its write buffer is
/// empty, so a flush counted after a part was handed over means the part has left user
/// space; with [`NOTSENT_LOWAT`] the kernel then holds little of it unsent. Only then does
/// the body pick the next frame, the newest one. Without this, hyper asks for the next part
/// while the last is still buffered and a slow reader is always a frame or two behind.
#[derive(Clone)]
pub struct Flushes {
    count: super::deadline::Flushed,
    /// The connection's socket, to ask how much the kernel still holds unsent. A stream body
    /// lives inside its connection, so the descriptor is open while the body is polled.
    fd: std::os::fd::RawFd,
    /// The client's address, for the limits kept per address ([`crate::peers`]).
    peer: Option<std::net::IpAddr>,
}

tokio::task_local! {
    /// The [`Flushes`] of the connection whose task is running: the stream handler and its
    /// body are polled inside that connection's task.
    static FLUSHES: Flushes;
}

impl Flushes {
    /// Counts the flushes of a stream-port connection; pass the result to [`on_connection`].
    pub fn of(conn: &mut Progress<tokio::net::TcpStream>) -> Flushes {
        use std::os::fd::AsRawFd as _;
        Flushes {
            count: conn.count_flushes(),
            fd: conn.get_ref().as_raw_fd(),
            peer: conn.get_ref().peer_addr().ok().map(|a| a.ip()),
        }
    }
}

/// Runs a connection's future with its [`Flushes`] reachable by the stream route.
pub async fn on_connection<F: std::future::Future>(flushes: Flushes, connection: F) -> F::Output {
    FLUSHES.scope(flushes, connection).await
}

/// Reads what [`Drain`] decides on from the TCP socket `fd` (`TCP_INFO`); `at` is the time
/// since the client arrived.
fn tcp_sample(fd: std::os::fd::RawFd, at: Duration) -> std::io::Result<Sample> {
    use nix::libc;
    // SAFETY: tcp_info is plain integers, for which all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which has that size; a bad
    // fd is an error return. socket2 and nix do not expose the fields read here.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Kernels before 5.4 fill less of the struct: no peer window then.
    let window_end = std::mem::offset_of!(libc::tcp_info, tcpi_snd_wnd) + 4;
    let window = (len as usize >= window_end).then_some(info.tcpi_snd_wnd);
    let bdp = info
        .tcpi_delivery_rate
        .saturating_mul(u64::from(info.tcpi_min_rtt))
        / 1_000_000;
    Ok(Sample {
        at,
        unsent: info.tcpi_notsent_bytes,
        unacked: info.tcpi_unacked.saturating_mul(info.tcpi_snd_mss),
        acked: info.tcpi_bytes_acked,
        window,
        since_ack: Duration::from_millis(u64::from(info.tcpi_last_ack_recv)),
        bdp: u32::try_from(bdp.min(SEND_BUFFER as u64)).unwrap_or(u32::MAX),
    })
}
