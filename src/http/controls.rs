//! `/controls` on the still socket only (never on the network port): `GET` shows the config
//! values, the runtime changes and what is in force; `PUT` merges a JSON object of
//! `[controls]` keys (`null` = back to the config value); `DELETE` drops every runtime change; `HEAD` is `GET` without the body.
//! Changes last until restart; the TOML stays the source of truth.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::Filter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Reply;

use super::text;
use crate::state::Shared;

/// The methods `/controls` answers.
const ALLOW: &str = "GET, HEAD, PUT, DELETE";

/// Largest `PUT /controls` body: every key with a long value fits many times over.
pub const MAX_BODY: u64 = 8 * 1024;

/// How long a `PUT /controls` body may take to arrive. hyper times only the request head: a
/// client that announces a body and never sends it would otherwise hold its connection for
/// ever. A local program sends its few bytes at once; a few seconds are plenty (the same as
/// the still socket's head timeout, [`super::STILL_HEAD_TIMEOUT`]).
pub const BODY_TIMEOUT: Duration = super::STILL_HEAD_TIMEOUT;

pub fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
+ Clone
+ Send
+ Sync
+ 'static {
    let shared = warp::any().map(move || shared.clone());
    // The path first, then the method: other paths must stay "not found" (not "method not
    // allowed") for the still routes tried after these.
    let get = warp::get()
        .and(shared.clone())
        .map(|s: Arc<Shared>| json(StatusCode::OK, &s.controls.state()));
    let head = warp::head()
        .and(shared.clone())
        .map(|s: Arc<Shared>| super::head_of(json(StatusCode::OK, &s.controls.state())));
    let delete = warp::delete()
        .and(shared.clone())
        .map(|s: Arc<Shared>| json(StatusCode::OK, &s.controls.reset()));
    let put = warp::put()
        .and(
            warp::body::content_length_limit(MAX_BODY)
                .and(warp::body::stream())
                .then(read_body)
                .recover(body_rejection)
                .unify(),
        )
        .and(shared)
        .map(
            |body: Result<Bytes, warp::reply::Response>, s: Arc<Shared>| match body {
                Ok(body) => put(&body, &s),
                Err(resp) => resp,
            },
        );
    let other = warp::any().map(|| super::method_not_allowed(ALLOW));
    warp::path!("controls").and(
        get.or(head)
            .unify()
            .or(put)
            .unify()
            .or(delete)
            .unify()
            .or(other)
            .unify(),
    )
}

fn put(body: &[u8], s: &Shared) -> warp::reply::Response {
    let patch: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body is not JSON ({e}): send an object such as {{\"lens-position\": 4}}\n"
                ),
            );
        }
    };
    match s.controls.update(&patch) {
        Ok(state) => json(StatusCode::OK, &state),
        Err(errors) => text(StatusCode::BAD_REQUEST, format!("{}\n", errors.join("\n"))),
    }
}

/// Reads the whole body (at most [`MAX_BODY`], checked before) within [`BODY_TIMEOUT`], or
/// answers 408.
async fn read_body<S, B>(body: S) -> Result<Bytes, warp::reply::Response>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let collect = async {
        let mut body = std::pin::pin!(body);
        let mut all = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|_| ())?;
            // Bounded here too, whatever the Content-Length header said.
            if all.len() + chunk.remaining() > MAX_BODY as usize {
                return Err(());
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                all.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok(all.freeze())
    };
    match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(())) => Err(text(StatusCode::BAD_REQUEST, "cannot read the body\n")),
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s\n",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// A body that is too large or of unknown length, answered at once (not a 404 from the
/// routes tried after this one).
async fn body_rejection(
    r: warp::Rejection,
) -> Result<Result<Bytes, warp::reply::Response>, Infallible> {
    Ok(Err(
        if r.find::<warp::reject::PayloadTooLarge>().is_some() {
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes\n"),
            )
        } else if r.find::<warp::reject::LengthRequired>().is_some() {
            text(
                StatusCode::LENGTH_REQUIRED,
                "send the body with a Content-Length\n",
            )
        } else {
            text(StatusCode::BAD_REQUEST, "cannot read the body\n")
        },
    ))
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> warp::reply::Response {
    let mut resp = warp::reply::with_status(warp::reply::json(value), status).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
