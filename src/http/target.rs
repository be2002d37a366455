//! Which request targets reach warp at all. hyper accepts every form HTTP/1.1 defines: the
//! authority form (`CONNECT host:port`, meant for proxies) and the asterisk form (`OPTIONS *`)
//! as well as paths. warp 0.4 assumes a path: on an authority-form target `path::full()`
//! panics (it builds an empty `PathAndQuery`, which http 1.x rejects), so one request line
//! such as `GET x:80 HTTP/1.1` killed its connection's task and wrote a panic message, as
//! often as a client cared to send it. picker serves paths only, so every other form is
//! answered here, on both sockets and before authentication, and warp never sees it.

use warp::http::{Method, StatusCode, Uri};

/// Why a request target is refused, or `None` for a target warp can route: an origin-form
/// path (`/stream.mjpg?fps=5`) or an absolute URI (`http://host/stream.mjpg`, which a client
/// may send and a server must accept).
pub fn refuse(method: &Method, uri: &Uri) -> Option<(StatusCode, String)> {
    let absolute = uri.scheme().is_some() && uri.path_and_query().is_some();
    let origin = uri
        .path_and_query()
        .is_some_and(|p| p.path().starts_with('/'));
    if absolute || origin {
        return None;
    }
    let form = if uri.path_and_query().is_none() {
        "an authority (host:port)"
    } else if uri.path() == "*" {
        "\"*\""
    } else {
        "not a path"
    };
    let why = if *method == Method::CONNECT {
        format!("{method} {uri}: picker is not a proxy; ask for a path such as /stream.mjpg\n")
    } else {
        format!(
            "{method} {uri}: the request target is {form}; ask for a path such as /stream.mjpg\n"
        )
    };
    Some((StatusCode::BAD_REQUEST, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_and_absolute_uris_reach_the_routes() {
        // (method, target as a client sends it, refused with a body saying this, or not)
        let table = [
            ("GET", "/stream.mjpg", None),
            ("GET", "/?action=stream", None),
            ("HEAD", "/still.rgb?fresh=1", None),
            ("GET", "http://x/stream.mjpg", None),
            ("GET", "http://x:80", None),
            (
                "GET",
                "x:80",
                Some("the request target is an authority (host:port)"),
            ),
            ("CONNECT", "x:1", Some("picker is not a proxy")),
            (
                "HEAD",
                "x:1",
                Some("the request target is an authority (host:port)"),
            ),
            ("OPTIONS", "*", Some("the request target is \"*\"")),
            ("GET", "*", Some("the request target is \"*\"")),
            ("PUT", "example.com:443", Some("an authority (host:port)")),
        ];
        for (method, target, why) in table {
            let method: Method = method.parse().unwrap();
            let uri: Uri = target.parse().unwrap();
            let got = refuse(&method, &uri);
            assert_eq!(got.is_some(), why.is_some(), "{method} {target}: {got:?}");
            if let (Some((status, body)), Some(why)) = (got, why) {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert!(body.contains(target) && body.ends_with('\n'), "{body}");
                assert!(body.contains(why), "{method} {target}: {body}");
            }
        }
    }

    proptest::proptest! {
        /// Whatever target http parses: refused, or a target warp's path filters can read
        /// (it has a path and query, so `path::full()` cannot panic).
        #[test]
        fn any_target_is_refused_or_has_a_path(target in "[ -~]{0,40}") {
            if let Ok(uri) = target.parse::<Uri>() {
                if refuse(&Method::GET, &uri).is_none() {
                    proptest::prop_assert!(uri.path_and_query().is_some(), "{target}");
                }
            }
        }
    }
}
