//! Routes on the still socket: `/still.{rgb,bgr,ppm,png,jpg}`, each the latest still frame
//! at once (no camera reconfiguration, the stream never pauses), or with `?fresh=1` the
//! first frame captured after the request arrived. Also `/controls` (see [`super::controls`]),
//! which only this local socket serves.
//!
//! Every answer says which picker process gave it (`X-Picker-Instance`): controls set over the
//! socket last until picker restarts, and a client that set some can tell that they are gone
//! (the Python client raises `PickerRestarted`) even when the restart fell between two of its
//! requests and it saw no error.
//!
//! While the camera is offline (no frame for [`Shared::stall_limit`], as for `/snapshot.jpg`)
//! the latest frame is not news: a robot acting on it would act on the past, so a still is
//! 503 with `Retry-After` (and `?fresh=1` times out with 504 as before).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use warp::Filter;
use warp::http::{HeaderValue, Method, StatusCode, header};

use super::text;
use crate::encode_pool::Kind;
use crate::frames::{Frame, PixelFormat};
use crate::state::{Shared, StillError};

/// The formats a still can be asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StillFormat {
    Rgb,
    Bgr,
    Ppm,
    Png,
    Jpg,
}

impl StillFormat {
    pub fn from_extension(ext: &str) -> Option<Self> {
        Some(match ext {
            "rgb" => StillFormat::Rgb,
            "bgr" => StillFormat::Bgr,
            "ppm" => StillFormat::Ppm,
            "png" => StillFormat::Png,
            "jpg" | "jpeg" => StillFormat::Jpg,
            _ => return None,
        })
    }

    fn content_type(self) -> &'static str {
        match self {
            StillFormat::Rgb | StillFormat::Bgr => "application/octet-stream",
            StillFormat::Ppm => "image/x-portable-pixmap",
            StillFormat::Png => "image/png",
            StillFormat::Jpg => "image/jpeg",
        }
    }
}

pub fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static
{
    let controls = super::controls::routes(shared.clone());
    let shared = warp::any().map(move || shared.clone());
    // The path first, then the method: a known path with another method is 405 with
    // `Allow`, an unknown one 404 whatever the method.
    let still = warp::path::param::<String>()
        .and(warp::path::end())
        .and(warp::method())
        .and(warp::query::<HashMap<String, String>>())
        .and(shared)
        .and_then(still);
    controls
        .or(still)
        .unify()
        .recover(super::plain_rejection)
        .unify()
        .map(|mut resp: warp::reply::Response| {
            resp.headers_mut()
                .insert("x-picker-instance", instance().clone());
            resp
        })
}

/// This process: its id and when it first answered (milliseconds since 1970), which a
/// restarted picker cannot share even when it gets the same process id. The same for the
/// life of the process (a reload builds no new one).
fn instance() -> &'static HeaderValue {
    static INSTANCE: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        // Digits and '-' only: always a valid header value.
        HeaderValue::from_str(&format!("{}-{ms}", std::process::id()))
            .unwrap_or(HeaderValue::from_static("0"))
    })
}

/// The methods every still path answers.
const ALLOW: &str = "GET, HEAD";

async fn still(
    name: String,
    method: Method,
    query: HashMap<String, String>,
    shared: Arc<Shared>,
) -> Result<warp::reply::Response, warp::Rejection> {
    let format = name
        .strip_prefix("still.")
        .and_then(StillFormat::from_extension)
        .ok_or_else(warp::reject::not_found)?;
    if method != Method::GET && method != Method::HEAD {
        return Ok(super::method_not_allowed(ALLOW));
    }
    let resp = still_get(format, query, shared).await;
    // HEAD does the GET's work (shared with other requests for the frame), so that its
    // status and length are the ones a GET would get now.
    Ok(if method == Method::HEAD {
        super::head_of(resp)
    } else {
        resp
    })
}

async fn still_get(
    format: StillFormat,
    query: HashMap<String, String>,
    shared: Arc<Shared>,
) -> warp::reply::Response {
    let fresh = match query.get("fresh").map(String::as_str) {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") | Some("") => true,
        Some(other) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("fresh={other:?}: use fresh=1\n"),
            );
        }
    };
    if !fresh && !shared.online() {
        let mut resp = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "camera offline: no frame for a while; try again later\n",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    let frame = match shared.still_frame(fresh).await {
        Ok(f) => f,
        Err(e) => return super::still_error(&e),
    };
    let quality = shared.quality();
    let body = if is_native(&frame, format) {
        // Zero copy: the response owns a reference to the frame.
        Bytes::from_owner(StillBytes(frame.clone()))
    } else {
        // Once per frame and format, on the encode pool, shared by every request for it.
        let job = frame.clone();
        let kind = Kind::Still(format as u8);
        let encoded = shared
            .encode_pool
            .encode(kind, frame.sequence, move || encode(&job, format, quality))
            .await;
        match encoded {
            Ok(b) => b,
            Err(e) => return super::still_error(&StillError::from(e)),
        }
    };
    let mut resp = warp::reply::Response::new(body.into());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-width", frame.still.width.into());
    h.insert("x-height", frame.still.height.into());
    h.insert("x-sequence", frame.sequence.into());
    h.insert("x-timestamp-ns", frame.timestamp_ns.into());
    for (name, value) in frame.settings.headers() {
        // Digits, '.', ',' and '-' only: always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

/// Whether the still's own bytes are the answer: `/still.rgb` of an RGB still, `/still.bgr`
/// of a B,G,R one (what a Raspberry Pi camera delivers: libcamera's `RGB888`), rows packed.
fn is_native(frame: &Frame, format: StillFormat) -> bool {
    let s = &frame.still;
    let order = match format {
        StillFormat::Rgb => PixelFormat::Rgb24,
        StillFormat::Bgr => PixelFormat::Bgr24,
        _ => return false,
    };
    s.format == order && s.strides[0] == s.width as usize * 3 && s.offsets[0] == 0
}

/// The still image's bytes, kept alive by the frame they belong to.
struct StillBytes(Arc<Frame>);

impl AsRef<[u8]> for StillBytes {
    fn as_ref(&self) -> &[u8] {
        let s = &self.0.still;
        &s.data[..s.width as usize * s.height as usize * 3]
    }
}

fn encode(frame: &Frame, format: StillFormat, quality: u8) -> Result<Bytes, String> {
    let still = &frame.still;
    let (w, h) = (still.width, still.height);
    match format {
        StillFormat::Rgb | StillFormat::Bgr => {
            let mut out = Vec::new();
            crate::convert::to_rgb(still, format == StillFormat::Bgr, &mut out);
            Ok(out.into())
        }
        StillFormat::Ppm => {
            let mut out = format!("P6\n{w} {h}\n255\n").into_bytes();
            let header = out.len();
            let mut rgb = Vec::new();
            crate::convert::to_rgb(still, false, &mut rgb);
            out.reserve_exact(rgb.len());
            out.extend_from_slice(&rgb);
            debug_assert_eq!(out.len(), header + (w * h * 3) as usize);
            Ok(out.into())
        }
        StillFormat::Png => {
            let mut rgb = Vec::new();
            crate::convert::to_rgb(still, false, &mut rgb);
            let mut out = Vec::with_capacity(rgb.len() / 2);
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            // Stills are taken by a robot in a control loop: favour latency over size.
            enc.set_compression(png::Compression::Fast);
            let mut writer = enc.write_header().map_err(|e| format!("png: {e}"))?;
            writer
                .write_image_data(&rgb)
                .map_err(|e| format!("png: {e}"))?;
            writer.finish().map_err(|e| format!("png: {e}"))?;
            Ok(out.into())
        }
        StillFormat::Jpg => {
            // This thread's compressor: encode threads live as long as the service.
            crate::encode_pool::jpeg(still, quality)
        }
    }
}
