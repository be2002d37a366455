//! Which route a request on the stream port asks for: a pure function of the method, the
//! path and the query string, so that every URL a dashboard, a proxy or an attacker may send
//! is decided in one place and tested without a server.
//!
//! picker answers its own URLs (`/stream.mjpg`, `/snapshot.jpg`, ...) and the ones the
//! webcam world already uses: mjpg-streamer's `/?action=stream` and `/?action=snapshot`
//! (OctoPrint, crowsnest, most guides), ustreamer's and camera-streamer's `/stream` and
//! `/snapshot`. A reverse proxy may or may not strip its prefix (`/webcam/?action=stream`),
//! so only the last path segment counts. Dashboards append cache busters (`?1608856928650`,
//! `&1608856928650`, `cacheBust=1`), so a parameter picker does not define is ignored, and
//! only picker's own parameters are validated. Some append theirs with a second `?`
//! (`/?action=stream?123`), so `?` inside the query separates parameters as `&` does.
//! mjpg-streamer with several inputs names them `stream_0`, `snapshot_0`...; picker is one
//! input, so `_0` is its only one (`stream_1` is not found, as on a one-input mjpg-streamer).

use std::time::Duration;

use warp::http::Method;

/// A route of the stream port.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Route {
    /// The preview page.
    Index,
    /// The preview page's script or style sheet (`preview.js`, `preview.css`).
    PreviewAsset(Asset),
    Stream {
        fps: Option<Fps>,
    },
    Snapshot,
    State,
    Metrics,
}

impl Route {
    /// The route's own path, whatever alias asked for it (`stream.auth-exempt` names these).
    pub fn canonical_path(self) -> &'static str {
        match self {
            // The page's script and style sheet count as the page: exempting `/` exempts them.
            Route::Index | Route::PreviewAsset(_) => "/",
            Route::Stream { .. } => "/stream.mjpg",
            Route::Snapshot => "/snapshot.jpg",
            Route::State => "/state",
            Route::Metrics => "/metrics",
        }
    }
}

/// A file of the preview page, served from its own route so that its `Content-Security-Policy`
/// can forbid inline scripts and styles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asset {
    Script,
    Style,
}

/// The methods every route answers, as the `Allow` header of a 405 says them.
pub const ALLOW: &str = "GET, HEAD";
/// The same with CORS enabled, where preflight `OPTIONS` is answered too.
pub const ALLOW_WITH_OPTIONS: &str = "GET, HEAD, OPTIONS";

/// `?fps=N` on the stream: the most frames per second one client is sent.
///
/// The range is [`Fps::MIN`] to [`Fps::MAX`]: below, the pause between two frames would be
/// longer than a viewer could tell from a frozen stream; above, no camera delivers. Checked
/// before it becomes a `Duration`, so no value can overflow one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fps(f64);

impl Fps {
    pub const MIN: f64 = 0.1;
    pub const MAX: f64 = 1000.0;

    pub fn parse(text: &str) -> Option<Fps> {
        let fps: f64 = text.trim().parse().ok()?;
        // NaN fails both comparisons.
        (Self::MIN..=Self::MAX).contains(&fps).then_some(Fps(fps))
    }

    /// The least time between two frames: from 1 ms to 10 s.
    pub fn interval(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.0)
    }
}

/// Why a request has no route.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteError {
    NotFound,
    /// The path exists, the method is not one it answers.
    MethodNotAllowed,
    /// A parameter picker defines has a value it cannot use.
    BadQuery(String),
}

/// What the request is for: the route and what of its answer is wanted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Request {
    pub route: Route,
    /// `HEAD`: the head of the `GET` answer.
    pub head_only: bool,
    /// A CORS preflight (`OPTIONS`), answered only when CORS is on.
    pub preflight: bool,
}

/// Decides the route of `method path?query`. `path` is the raw path as sent (it always
/// starts with `/` in an origin-form request; anything else is not found). `OPTIONS` is a
/// method of every route when `cors` is on (see [`ALLOW_WITH_OPTIONS`]).
pub fn parse(method: &Method, path: &str, query: &str, cors: bool) -> Result<Request, RouteError> {
    let route = route_of(path, query)?;
    let (head_only, preflight) = match *method {
        Method::GET => (false, false),
        Method::HEAD => (true, false),
        Method::OPTIONS if cors => (false, true),
        _ => return Err(RouteError::MethodNotAllowed),
    };
    Ok(Request {
        route,
        head_only,
        preflight,
    })
}

fn route_of(path: &str, query: &str) -> Result<Route, RouteError> {
    if !path.starts_with('/') {
        return Err(RouteError::NotFound);
    }
    // Only the last segment counts: a proxy may keep its prefix (`/webcam/stream`).
    let last = path.rsplit('/').next().unwrap_or("");
    // A second `?` is a parameter separator too (a cache buster appended with `?`); `%3F`
    // stays a literal question mark.
    let query = query.replace('?', "&");
    let params = Params(&query);
    match last {
        "" => match params.first("action").as_deref() {
            Some("stream" | "stream_0") => stream(&params),
            Some("snapshot" | "snapshot_0") => Ok(Route::Snapshot),
            Some(_) => Err(RouteError::NotFound),
            // At the root only: a path a proxy keeps (`/webcam/`) is mjpg-streamer's, not ours.
            // (The page's links are relative, so a proxy that strips its prefix serves it.)
            None if path == "/" => Ok(Route::Index),
            None => Err(RouteError::NotFound),
        },
        "stream.mjpg" | "stream" => stream(&params),
        "snapshot.jpg" | "snapshot" => Ok(Route::Snapshot),
        "state" => Ok(Route::State),
        "metrics" => Ok(Route::Metrics),
        "preview.js" => Ok(Route::PreviewAsset(Asset::Script)),
        "preview.css" => Ok(Route::PreviewAsset(Asset::Style)),
        _ => Err(RouteError::NotFound),
    }
}

fn stream(params: &Params) -> Result<Route, RouteError> {
    let fps = match params.first("fps") {
        None => None,
        Some(text) => Some(Fps::parse(&text).ok_or_else(|| {
            RouteError::BadQuery(format!(
                "fps={text:?}: must be a number from {} to {}",
                Fps::MIN,
                Fps::MAX
            ))
        })?),
    };
    Ok(Route::Stream { fps })
}

/// A query string, read as `application/x-www-form-urlencoded` (`+` and `%XX` decoded).
struct Params<'a>(&'a str);

impl Params<'_> {
    /// The value of the first `name=...`; later repeats are ignored, as are bare words.
    fn first(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.0.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path_and_query: &str) -> Result<Route, RouteError> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        parse(&Method::GET, path, query, false).map(|r| r.route)
    }

    fn fps(v: f64) -> Route {
        Route::Stream { fps: Some(Fps(v)) }
    }

    const STREAM: Route = Route::Stream { fps: None };

    #[test]
    fn routes_table() {
        use Route::*;
        let table: &[(&str, Result<Route, RouteError>)] = &[
            ("/", Ok(Index)),
            ("/?1608856928650", Ok(Index)),
            ("/stream.mjpg", Ok(STREAM)),
            ("/stream", Ok(STREAM)),
            ("/snapshot.jpg", Ok(Snapshot)),
            ("/snapshot", Ok(Snapshot)),
            ("/state", Ok(State)),
            ("/metrics", Ok(Metrics)),
            ("/preview.js", Ok(PreviewAsset(Asset::Script))),
            ("/preview.css?1", Ok(PreviewAsset(Asset::Style))),
            ("/cam/preview.css", Ok(PreviewAsset(Asset::Style))),
            // mjpg-streamer's URLs, with the cache busters dashboards append.
            ("/?action=stream", Ok(STREAM)),
            ("/?action=snapshot", Ok(Snapshot)),
            ("/?action=stream&1608856928650", Ok(STREAM)),
            ("/?1608856928650&action=stream", Ok(STREAM)),
            ("/?action=snapshot&cacheBust=1", Ok(Snapshot)),
            ("/?action=stream&action=snapshot", Ok(STREAM)),
            ("/?action=stream&fps=5", Ok(fps(5.0))),
            // mjpg-streamer's multi-input names: picker is input 0.
            ("/?action=stream_0", Ok(STREAM)),
            ("/?action=snapshot_0", Ok(Snapshot)),
            ("/?action=stream_0&fps=2", Ok(fps(2.0))),
            ("/webcam/?action=snapshot_0&1608856928650", Ok(Snapshot)),
            ("/?action=stream_1", Err(RouteError::NotFound)),
            ("/?action=snapshot_00", Err(RouteError::NotFound)),
            ("/?action=stream_", Err(RouteError::NotFound)),
            // A cache buster appended with a second `?`.
            ("/?action=stream?123", Ok(STREAM)),
            ("/?action=snapshot?1608856928650", Ok(Snapshot)),
            ("/?action=stream_0?123", Ok(STREAM)),
            ("/?action=stream?fps=5", Ok(fps(5.0))),
            ("/stream.mjpg?fps=5?123", Ok(fps(5.0))),
            ("/??action=snapshot", Ok(Snapshot)),
            ("/?action=stream%3F123", Err(RouteError::NotFound)),
            ("/?123?action=snapshot", Ok(Snapshot)),
            // Behind a proxy that keeps its prefix.
            ("/webcam/?action=stream&cacheBust=1", Ok(STREAM)),
            ("/webcam/?action=snapshot", Ok(Snapshot)),
            ("/webcam/stream", Ok(STREAM)),
            ("/a/b/snapshot.jpg", Ok(Snapshot)),
            // A named path decides; `action` is read only on an empty last segment (`/`).
            ("/stream.mjpg?action=snapshot", Ok(STREAM)),
            // Unknown parameters are ignored, known ones repeated: the first counts.
            ("/stream.mjpg?fps=2&fps=junk", Ok(fps(2.0))),
            ("/stream.mjpg?x=%ZZ&&=&fps=1000", Ok(fps(1000.0))),
            ("/stream.mjpg?fps=0.1", Ok(fps(0.1))),
            ("/stream.mjpg?fps=1e1", Ok(fps(10.0))),
            ("/snapshot.jpg?fps=junk", Ok(Snapshot)),
            ("/state?1608856928650", Ok(State)),
            // Not ours.
            ("/webcam/", Err(RouteError::NotFound)),
            ("/?action=static", Err(RouteError::NotFound)),
            ("/?action=", Err(RouteError::NotFound)),
            ("/index.html", Err(RouteError::NotFound)),
            ("/stream.mjpg/", Err(RouteError::NotFound)),
            ("stream.mjpg", Err(RouteError::NotFound)),
            ("", Err(RouteError::NotFound)),
        ];
        for (url, want) in table {
            assert_eq!(&get(url), want, "{url}");
        }
    }

    /// `stream.auth-exempt` names routes by their own path: every alias of a route, and the
    /// page's assets, answer to the one path of their route.
    #[test]
    fn every_alias_has_its_route_s_own_path() {
        let table: &[(&str, &str)] = &[
            ("/", "/"),
            ("/preview.js", "/"),
            ("/preview.css", "/"),
            ("/stream.mjpg", "/stream.mjpg"),
            ("/webcam/stream", "/stream.mjpg"),
            ("/?action=stream_0&fps=2", "/stream.mjpg"),
            ("/snapshot.jpg", "/snapshot.jpg"),
            ("/?action=snapshot", "/snapshot.jpg"),
            ("/state", "/state"),
            ("/metrics", "/metrics"),
        ];
        for (url, want) in table {
            assert_eq!(get(url).unwrap().canonical_path(), *want, "{url}");
        }
    }

    #[test]
    fn fps_outside_its_range_is_a_bad_query() {
        for bad in [
            "0", "-1", "1e-20", "5e-324", "1e-19", "0.09", "1000.1", "1e308", "1e400", "inf",
            "-inf", "NaN", "nan", "", "five", "0x10", "5fps",
        ] {
            let got = get(&format!("/stream.mjpg?fps={bad}"));
            assert!(
                matches!(got, Err(RouteError::BadQuery(ref m)) if m.contains("from 0.1 to 1000")),
                "fps={bad}: {got:?}"
            );
        }
        for good in ["0.1", "1", "29.97", "1000", " 5 ", "5%20"] {
            assert!(get(&format!("/stream.mjpg?fps={good}")).is_ok(), "{good}");
        }
    }

    #[test]
    fn fps_interval_stays_within_its_documented_bounds() {
        assert_eq!(
            Fps::parse("0.1").unwrap().interval(),
            Duration::from_secs(10)
        );
        assert_eq!(
            Fps::parse("1000").unwrap().interval(),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn head_is_get_without_the_body_and_other_methods_are_not_allowed() {
        let head = parse(&Method::HEAD, "/", "action=stream", false).unwrap();
        assert_eq!(head.route, STREAM);
        assert!(head.head_only && !head.preflight);
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert_eq!(
                parse(&m, "/state", "", false),
                Err(RouteError::MethodNotAllowed),
                "{m}"
            );
        }
        // An unknown path stays not found, whatever the method.
        assert_eq!(
            parse(&Method::POST, "/nope", "", false),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn options_is_a_preflight_only_with_cors_on() {
        let r = parse(&Method::OPTIONS, "/webcam/", "action=stream", true).unwrap();
        assert_eq!(r.route, STREAM);
        assert!(r.preflight && !r.head_only);
        assert_eq!(
            parse(&Method::POST, "/state", "", true),
            Err(RouteError::MethodNotAllowed)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// No input panics, and a stream route always has an fps its interval can take.
        #[test]
        fn parse_never_panics(path in ".{0,64}", query in ".{0,96}", method in 0u8..4) {
            let method = [Method::GET, Method::HEAD, Method::POST, Method::OPTIONS][method as usize].clone();
            if let Ok(Request { route: Route::Stream { fps: Some(f) }, .. }) = parse(&method, &path, &query, true) {
                let i = f.interval();
                proptest::prop_assert!(i >= Duration::from_millis(1) && i <= Duration::from_secs(10));
            }
        }

        /// Any fps text: either in range and a sane interval, or a bad query; never a panic.
        #[test]
        fn any_fps_text_is_checked(text in proptest::prelude::any::<String>(), num in proptest::prelude::any::<f64>()) {
            for t in [text, num.to_string(), format!("{num:e}")] {
                match Fps::parse(&t) {
                    Some(f) => {
                        let i = f.interval();
                        proptest::prop_assert!(i >= Duration::from_millis(1) && i <= Duration::from_secs(10));
                    }
                    None => {
                        let encoded: String = form_urlencoded::byte_serialize(t.as_bytes()).collect();
                        let got = get(&format!("/?action=stream&fps={encoded}"));
                        proptest::prop_assert!(matches!(got, Err(RouteError::BadQuery(_))), "{t:?}: {got:?}");
                    }
                }
            }
        }

        /// Cache busters and unknown parameters anywhere never change the route.
        #[test]
        fn unknown_parameters_are_ignored(junk in "[a-zA-Z0-9_=%.-]{0,24}", before in proptest::prelude::any::<bool>()) {
            // Not if the junk itself is one of ours.
            proptest::prop_assume!(!junk.starts_with("action") && !junk.starts_with("fps"));
            let q = if before { format!("{junk}&action=snapshot") } else { format!("action=snapshot&{junk}") };
            proptest::prop_assert_eq!(get(&format!("/?{q}")), Ok(Route::Snapshot));
            proptest::prop_assert_eq!(get(&format!("/state?{junk}")), Ok(Route::State));
        }
    }
}
