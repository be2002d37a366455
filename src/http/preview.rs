//! The preview page: the live stream, the snippet that embeds it in another page, the
//! commands that fetch a snapshot or a still on this machine, and the camera's status.
//!
//! The page must work on a Pi with no internet, behind a reverse proxy that strips a prefix,
//! with Basic auth on, and with JavaScript off. So it is three small files compiled into the
//! binary (`preview/page.html`, `preview.js`, `preview.css`; no framework, nothing
//! external), every link in it is relative, and the server fills in what it can know from the
//! request: the snippet's address comes from the `Host` header the browser sent (checked, and
//! escaped like every value put into the page), so the page is right without a script; the
//! script then corrects it from `location` (a proxy's scheme and prefix) and polls `/state`.
//! The script and style live on their own routes so that the `Content-Security-Policy` can
//! forbid any inline script or style: a value that slipped through the escaping still could
//! not run.

use std::path::Path;

use warp::Reply as _;
use warp::http::{HeaderMap, HeaderValue, header};

use super::route::Asset;
use crate::state::Shared;

const PAGE: &str = include_str!("preview/page.html");
const SCRIPT: &str = include_str!("preview/preview.js");
const STYLE: &str = include_str!("preview/preview.css");

/// What the page may load and do: only its own files, `/state` and the stream; nothing
/// inline, no plug-ins, no forms, no `<base>`. `frame-ancestors` is left open on purpose:
/// dashboards (Home Assistant's iframe card, OctoPrint's tabs) frame camera pages, and this
/// page offers nothing a click could abuse.
pub const CSP: &str = "default-src 'none'; img-src 'self'; script-src 'self'; \
                       style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'";

/// Stands in for an address the request did not give (or gave unusable): the seed's own
/// placeholder, as in `config/stream_preview.html`.
pub const ADDRESS_PLACEHOLDER: &str = "<IP_ADDRESS>";

/// What the page shows, gathered from the config and the request.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts<'a> {
    /// The `Host` the browser sent, if it is a plain host name or address with an optional
    /// port ([`usable_host`]).
    pub host: Option<&'a str>,
    /// `stream.port`, for the address when the request gave none.
    pub port: u16,
    pub width: u32,
    pub height: u32,
    /// `still.socket`.
    pub socket: &'a Path,
    /// With auth on and `/snapshot.jpg` not exempt: the user for `curl -u` (the browser's, or
    /// `USER` when the page itself is exempt and the browser sent none).
    pub curl_user: Option<&'a str>,
}

/// The preview page for this request.
pub fn page(s: &Shared, headers: &HeaderMap) -> warp::reply::Response {
    let stream = &s.config.stream;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| usable_host(h));
    let auth_on = !stream.auth_users.is_empty();
    let snapshot_exempt = stream.auth_exempt.iter().any(|r| r == "/snapshot.jpg");
    let user = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(super::auth::parse_basic)
        .map(|(user, _)| user);
    let curl_user = (auth_on && !snapshot_exempt).then(|| user.as_deref().unwrap_or("USER"));
    let facts = Facts {
        host,
        port: stream.port,
        width: stream.width,
        height: stream.height,
        socket: &s.config.still.socket,
        curl_user,
    };
    let mut resp = warp::reply::html(render(&facts)).into_response();
    secure(resp.headers_mut());
    resp
}

/// `/preview.js` or `/preview.css`.
pub fn asset(asset: Asset) -> warp::reply::Response {
    let (body, kind) = match asset {
        Asset::Script => (SCRIPT, "text/javascript; charset=utf-8"),
        Asset::Style => (STYLE, "text/css; charset=utf-8"),
    };
    let mut resp = warp::reply::Response::new(body.into());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    secure(h);
    resp
}

/// The headers every part of the page carries.
fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The page changes with the request (its Host) and between versions of picker: fetched
    // anew each time, which costs a few kilobytes.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// The heading of the page and of the snippet: the seed's "Live Stream (512x512 Square)",
/// with the configured size, and "Square" only when the picture is one.
pub fn heading(width: u32, height: u32) -> String {
    let shape = if width == height { " Square" } else { "" };
    format!("Live Stream ({width}x{height}{shape})")
}

/// The address part of the stream's URL: the request's host, or the placeholder with the
/// configured port.
pub fn address(facts: &Facts) -> String {
    match facts.host {
        Some(h) => h.to_string(),
        None => format!("{ADDRESS_PLACEHOLDER}:{}", facts.port),
    }
}

/// The snippet that embeds the stream in another page, in the seed's shape.
pub fn snippet(facts: &Facts) -> String {
    format!(
        "<div class=\"camera-preview\">\n    <h3>{}</h3>\n    <img src=\"http://{}/stream.mjpg\" \
         width=\"{}\" height=\"{}\">\n</div>",
        heading(facts.width, facts.height),
        address(facts),
        facts.width,
        facts.height
    )
}

/// The page, every value HTML-escaped. The snippet's and the commands' addresses sit in their
/// own elements so that the script can correct them from `location`.
pub fn render(facts: &Facts) -> String {
    let address = address(facts);
    let snippet = snippet(facts);
    let url = format!("http://{address}/stream.mjpg");
    // The address inside the escaped snippet, wrapped so that the script finds it.
    let escaped_snippet = escape(&snippet).replacen(
        &escape(&url),
        &format!("<span class=\"stream-url\">{}</span>", escape(&url)),
        1,
    );
    let user = match facts.curl_user {
        Some(u) => format!("-u {} ", shell_quote(u)),
        None => String::new(),
    };
    let fill = [
        ("{{heading}}", escape(&heading(facts.width, facts.height))),
        ("{{width}}", facts.width.to_string()),
        ("{{height}}", facts.height.to_string()),
        ("{{snippet}}", escaped_snippet),
        ("{{curl_user}}", escape(&user)),
        ("{{origin}}", escape(&format!("http://{address}"))),
        (
            "{{socket}}",
            escape(&shell_quote(&facts.socket.to_string_lossy())),
        ),
    ];
    // One pass over the template, so that a value containing `{{...}}` is never filled again.
    let mut out = String::with_capacity(PAGE.len() + 1024);
    let mut rest = PAGE;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match fill.iter().find(|(k, _)| rest.starts_with(k)) {
            Some((k, v)) => {
                out.push_str(v);
                rest = &rest[k.len()..];
            }
            None => {
                out.push_str("{{");
                rest = &rest[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether a `Host` header is a host name, an IPv4 address or a bracketed IPv6 address, with
/// an optional port: what a browser sends. Anything else (a hostile client's quotes, angle
/// brackets, user info, spaces) is not shown; the page then says `<IP_ADDRESS>`. Hand-written:
/// `http::uri::Authority` also accepts user info and sub-delimiters (`'`, `(`, `;`...),
/// which do not belong in a shell command the page offers for copying.
pub fn usable_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("v6", port),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, port),
            None => (host, ""),
        }
    };
    let name_ok = !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let port_ok =
        (port.is_empty() && !host.ends_with(':')) || port.parse::<u16>().is_ok_and(|p| p > 0);
    name_ok && port_ok
}

/// `text` with HTML's special characters escaped, for element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `word` as one word for a POSIX shell: as is when it holds only safe characters, else in
/// single quotes. (A socket path may hold spaces; a user name anything but `:`.)
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,@%=".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(host: Option<&str>) -> Facts<'_> {
        Facts {
            host,
            port: 8000,
            width: 512,
            height: 512,
            socket: Path::new("/run/picker/still.sock"),
            curl_user: None,
        }
    }

    #[test]
    fn the_snippet_is_the_seeds_shape_and_the_shipped_file_holds_it() {
        let shipped = include_str!("../../config/stream_preview.html");
        let seed = snippet(&facts(None));
        assert_eq!(
            seed,
            "<div class=\"camera-preview\">\n    <h3>Live Stream (512x512 Square)</h3>\n    \
             <img src=\"http://<IP_ADDRESS>:8000/stream.mjpg\" width=\"512\" height=\"512\">\n</div>"
        );
        assert!(shipped.contains(&seed), "{shipped}");
        let filled = snippet(&facts(Some("192.168.1.20:8000")));
        assert!(filled.contains("src=\"http://192.168.1.20:8000/stream.mjpg\""));
    }

    #[test]
    fn heading_says_square_only_for_a_square() {
        for (w, h, want) in [
            (512, 512, "Live Stream (512x512 Square)"),
            (1024, 1024, "Live Stream (1024x1024 Square)"),
            (640, 480, "Live Stream (640x480)"),
        ] {
            assert_eq!(heading(w, h), want);
        }
    }

    #[test]
    fn hosts_a_browser_sends_pass_and_nothing_else() {
        for good in [
            "192.168.1.20:8000",
            "192.168.1.20",
            "picker.local:8080",
            "camera.example.com",
            "localhost:1",
            "[::1]:8000",
            "[fe80::1]",
            "[::ffff:192.0.2.1]:80",
        ] {
            assert!(usable_host(good), "{good}");
        }
        for bad in [
            "",
            "\"><script>alert(1)</script>",
            "a b",
            "user@host",
            "host:",
            "host:0",
            "host:65536",
            "host:80:80",
            "host:8x",
            "-host",
            ".host",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[]",
            "[x<y]",
            "host'",
            "$(reboot)",
            "h;rm",
            &"a".repeat(256),
        ] {
            assert!(!usable_host(bad), "{bad}");
        }
    }

    #[test]
    fn escape_and_quote() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        for (word, want) in [
            ("/run/picker/still.sock", "/run/picker/still.sock"),
            ("/tmp/my cam/s.sock", "'/tmp/my cam/s.sock'"),
            ("it's", "'it'\\''s'"),
            ("$(x)", "'$(x)'"),
            ("", "''"),
            ("robot", "robot"),
        ] {
            assert_eq!(shell_quote(word), want, "{word}");
        }
    }

    #[test]
    fn render_fills_every_placeholder_and_escapes_every_value() {
        let socket = Path::new("/tmp/a <b>/s'.sock");
        let f = Facts {
            socket,
            curl_user: Some("r<o>b'ot"),
            ..facts(Some("cam.local:8000"))
        };
        let page = render(&f);
        assert!(!page.contains("{{"), "{page}");
        assert!(page.contains("<title>Live Stream (512x512 Square)</title>"));
        assert!(
            page.contains("<span class=\"stream-url\">http://cam.local:8000/stream.mjpg</span>")
        );
        assert!(page.contains("width=&quot;512&quot; height=&quot;512&quot;"));
        assert!(page.contains("&#39;/tmp/a &lt;b&gt;/s&#39;\\&#39;&#39;.sock&#39;"));
        assert!(page.contains("-u &#39;r&lt;o&gt;b&#39;\\&#39;&#39;ot&#39;"));
        assert!(!page.contains("<b>") && !page.contains("r<o>"));
        // Without a usable host, the seed's placeholder, escaped.
        let page = render(&facts(None));
        assert!(page.contains("http://&lt;IP_ADDRESS&gt;:8000/stream.mjpg"));
        // No inline script or style: the CSP forbids them.
        assert!(!page.contains("<script>") && !page.contains("<style") && !page.contains("style="));
    }
}
