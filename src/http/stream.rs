//! Routes on the stream port: the preview page, `/stream.mjpg`, `/snapshot.jpg`, `/state`
//! and `/metrics`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use warp::http::{HeaderValue, StatusCode, header};
use warp::{Filter, Reply};

use super::text;
use crate::app::Shared;
use crate::encoder::{BOUNDARY, DemandGuard, EncodedFrame};

pub fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static
{
    let with = move || {
        let shared = shared.clone();
        warp::any().map(move || shared.clone())
    };
    let index = warp::path::end()
        .and(with())
        .map(|s: Arc<Shared>| index(&s));
    let stream = warp::path!("stream.mjpg")
        .and(warp::query::<HashMap<String, String>>())
        .and(with())
        .map(|q: HashMap<String, String>, s: Arc<Shared>| stream(s, q));
    let snapshot = warp::path!("snapshot.jpg").and(with()).and_then(snapshot);
    let state = warp::path!("state")
        .and(with())
        .map(|s: Arc<Shared>| json(&s.state()));
    let metrics = warp::path!("metrics")
        .and(with())
        .map(|s: Arc<Shared>| metrics(&s));
    warp::get()
        .and(
            index
                .or(stream)
                .unify()
                .or(snapshot)
                .unify()
                .or(state)
                .unify()
                .or(metrics)
                .unify(),
        )
        .recover(super::plain_rejection)
        .unify()
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

fn index(s: &Shared) -> warp::reply::Response {
    let (w, h) = (s.config.stream.width, s.config.stream.height);
    let shape = if w == h { " Square" } else { "" };
    let page = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live Stream ({w}x{h}{shape})</title>
<style>
  body {{ margin: 0; background: #111; color: #ddd; font: 14px system-ui, sans-serif;
         display: flex; flex-direction: column; align-items: center; }}
  h1 {{ font-size: 16px; font-weight: 500; }}
  img {{ max-width: 100vw; height: auto; background: #000; }}
  a {{ color: #8cf; margin: 0 .5em; }}
</style>
</head>
<body>
<h1>Live Stream ({w}x{h}{shape})</h1>
<img id="stream" src="/stream.mjpg" width="{w}" height="{h}" alt="live camera stream">
<p><a href="/snapshot.jpg">snapshot</a><a href="/state">state</a><a href="/metrics">metrics</a></p>
</body>
</html>
"#
    );
    no_store(warp::reply::html(page).into_response())
}

fn json<T: serde::Serialize>(value: &T) -> warp::reply::Response {
    no_store(warp::reply::json(value).into_response())
}

/// What one stream client holds: its slot among `max-clients`, and its share of the demand
/// that keeps the encoder running.
struct Client {
    _slot: OwnedSemaphorePermit,
    _demand: DemandGuard,
    shared: Arc<Shared>,
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

fn stream(shared: Arc<Shared>, query: HashMap<String, String>) -> warp::reply::Response {
    let min_interval = match query.get("fps").map(|v| v.parse::<f64>()) {
        None => None,
        Some(Ok(fps)) if fps > 0.0 && fps <= 1000.0 => Some(Duration::from_secs_f64(1.0 / fps)),
        Some(_) => return text(StatusCode::BAD_REQUEST, "fps must be a number above 0\n"),
    };
    let Ok(slot) = shared.stream_slots.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many stream clients: max-clients = {} reached; try again later\n",
                shared.config.stream.max_clients
            ),
        );
    };
    shared.stats.stream_clients.fetch_add(1, Ordering::Relaxed);
    let client = Client {
        _slot: slot,
        _demand: shared.demand.hold(),
        shared: shared.clone(),
    };
    let mut rx = shared.encoded.clone();
    // Only frames encoded after this client arrived (a stale one would show a jump back).
    rx.mark_unchanged();
    let pacing = min_interval.map(|min| Pacing {
        min,
        last: None,
        shutdown: shared.shutdown.clone(),
    });
    let opening = Bytes::from(format!("--{BOUNDARY}\r\n"));
    let state = (client, rx, Some(opening), pacing);
    let body =
        futures_util::stream::unfold(state, |(client, mut rx, opening, mut pacing)| async move {
            if let Some(opening) = opening {
                return Some((Ok::<_, Infallible>(opening), (client, rx, None, pacing)));
            }
            if let Some(Pacing {
                min,
                last: Some(last),
                shutdown,
            }) = &mut pacing
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
            if let Some(p) = &mut pacing {
                p.last = Some(tokio::time::Instant::now());
            }
            Some((Ok(frame.part.clone()), (client, rx, None, pacing)))
        });
    let mut resp = warp::reply::stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!("multipart/x-mixed-replace; boundary={BOUNDARY}"))
            .expect("static boundary is a valid header"),
    );
    no_store(resp)
}

async fn snapshot(shared: Arc<Shared>) -> Result<warp::reply::Response, Infallible> {
    let resp = match shared.latest_jpeg().await {
        Ok((jpeg, _)) => {
            let mut r = warp::reply::Response::new(jpeg.into());
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
            no_store(r)
        }
        Err(e) => super::still_error(&e),
    };
    Ok(resp)
}

/// Prometheus text exposition format. Written by hand: six gauges and counters don't
/// justify a metrics registry crate.
fn metrics(s: &Shared) -> warp::reply::Response {
    let st = s.state();
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
        st.frames.captured.to_string(),
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
        "picker_camera_online",
        "gauge",
        "1 while frames arrive.",
        u8::from(st.online).to_string(),
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
    ] {
        metric(
            name,
            "counter",
            help,
            v.load(std::sync::atomic::Ordering::Relaxed).to_string(),
        );
    }
    s.write_reliability_metrics(&mut out);
    let mut resp = warp::reply::Response::new(out.into());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    no_store(resp)
}
