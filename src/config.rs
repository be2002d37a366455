//! Configuration in two steps: serde structs that mirror the TOML file exactly
//! (`deny_unknown_fields`, every key optional), then [`RawConfig::validate`] into the typed
//! [`Config`] the service runs with. Every error names the file, and the key or the line and
//! column at fault.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The config file used when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/picker/picker.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub camera: RawCamera,
    #[serde(default)]
    pub stream: RawStream,
    #[serde(default)]
    pub still: RawStill,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    pub source: Option<String>,
    pub id: Option<String>,
    pub framerate: Option<u32>,
    pub crop: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStream {
    pub enabled: Option<bool>,
    pub bind: Option<String>,
    pub port: Option<u16>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub quality: Option<u8>,
    pub max_clients: Option<usize>,
    pub client_timeout: Option<u64>,
    pub allow_origin: Option<String>,
    pub auth_users: Option<std::collections::BTreeMap<String, String>>,
    pub auth_exempt: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStill {
    pub socket: Option<PathBuf>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Which frame source to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceChoice {
    /// libcamera when built in, else the test pattern.
    Auto,
    Libcamera,
    TestPattern,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crop {
    /// The largest centred square of the sensor, cropped by the ISP (`ScalerCrop`).
    CenterSquare,
    None,
}

#[derive(Clone, Debug)]
pub struct CameraConfig {
    pub source: SourceChoice,
    /// libcamera camera id; `None` = the first camera.
    pub id: Option<String>,
    pub framerate: u32,
    pub crop: Crop,
}

#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub enabled: bool,
    pub bind: IpAddr,
    pub port: u16,
    pub width: u32,
    pub height: u32,
    pub quality: u8,
    pub max_clients: usize,
    /// A stream client that accepts no bytes for this long is dropped (`stream.client-timeout`).
    pub client_timeout: std::time::Duration,
    /// `stream.allow-origin`: the CORS `Access-Control-Allow-Origin` of every answer, `None`
    /// for no CORS headers.
    pub allow_origin: Option<String>,
    /// `stream.auth-users`: (user, Argon2 PHC hash); empty = no auth.
    pub auth_users: Vec<(String, String)>,
    /// `stream.auth-exempt`: routes (by their canonical path) open without auth.
    pub auth_exempt: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct StillConfig {
    pub socket: PathBuf,
    pub width: u32,
    pub height: u32,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from, `None` for built-in defaults.
    pub path: Option<PathBuf>,
    pub camera: CameraConfig,
    pub stream: StreamConfig,
    pub still: StillConfig,
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {}", .errors.join("; "))]
    Invalid { path: PathBuf, errors: Vec<String> },
}

impl Config {
    /// Loads `path`. When `explicit` is false and the file does not exist, the built-in
    /// defaults are used (the caller logs that).
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return RawConfig::default().validate(None);
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let start = e.span().map(|s| s.start).unwrap_or(0);
            let (line, column) = line_column(text, start);
            let mut message = e.message().trim().to_string();
            // serde names the field alone; say which table it is in, as a user writes it.
            if let Some(rest) = message.strip_prefix("unknown field `") {
                if let Some(table) = table_at(text, start) {
                    message = format!("unknown key `{table}.{rest}");
                }
            }
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        })?;
        raw.validate(Some(path))
    }

    pub fn defaults() -> Config {
        RawConfig::default()
            .validate(None)
            .expect("the built-in defaults are valid")
    }

    /// The file name for messages: the path, or "built-in defaults".
    pub fn origin(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "built-in defaults".to_string(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// The `[table]` header in force at a byte offset.
fn table_at(text: &str, offset: usize) -> Option<&str> {
    text[..offset.min(text.len())].lines().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix('[')?.strip_suffix(']').map(str::trim)
    })
}

/// Largest frame side we accept: bigger than any Pi sensor mode we would stream.
const MAX_SIDE: u32 = 8192;

impl RawConfig {
    pub fn validate(self, path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let mut check_size = |key: &str, value: u32| {
            if value == 0 || value > MAX_SIDE || value % 2 != 0 {
                errors.push(format!(
                    "{key} = {value}: must be an even number of pixels from 2 to {MAX_SIDE}"
                ));
            }
        };
        let stream_width = self.stream.width.unwrap_or(512);
        let stream_height = self.stream.height.unwrap_or(512);
        let still_width = self.still.width.unwrap_or(512);
        let still_height = self.still.height.unwrap_or(512);
        check_size("stream.width", stream_width);
        check_size("stream.height", stream_height);
        check_size("still.width", still_width);
        check_size("still.height", still_height);

        let source = match self.camera.source.as_deref().unwrap_or("auto") {
            "auto" => SourceChoice::Auto,
            "libcamera" => SourceChoice::Libcamera,
            "test-pattern" => SourceChoice::TestPattern,
            other => {
                errors.push(format!(
                    "camera.source = {other:?}: expected \"auto\", \"libcamera\" or \"test-pattern\""
                ));
                SourceChoice::Auto
            }
        };
        let crop = match self.camera.crop.as_deref().unwrap_or("center-square") {
            "center-square" => Crop::CenterSquare,
            "none" => Crop::None,
            other => {
                errors.push(format!(
                    "camera.crop = {other:?}: expected \"center-square\" or \"none\""
                ));
                Crop::None
            }
        };
        let framerate = self.camera.framerate.unwrap_or(30);
        if !(1..=120).contains(&framerate) {
            errors.push(format!(
                "camera.framerate = {framerate}: must be from 1 to 120"
            ));
        }
        let quality = self.stream.quality.unwrap_or(80);
        if !(1..=100).contains(&quality) {
            errors.push(format!("stream.quality = {quality}: must be from 1 to 100"));
        }
        let max_clients = self.stream.max_clients.unwrap_or(64);
        if !(1..=10_000).contains(&max_clients) {
            errors.push(format!(
                "stream.max-clients = {max_clients}: must be from 1 to 10000"
            ));
        }
        let client_timeout = self.stream.client_timeout.unwrap_or(10);
        if !(1..=3600).contains(&client_timeout) {
            errors.push(format!(
                "stream.client-timeout = {client_timeout}: must be from 1 to 3600 seconds"
            ));
        }
        let allow_origin = self.stream.allow_origin.filter(|o| !o.is_empty());
        if let Some(origin) = &allow_origin {
            if !valid_origin(origin) {
                errors.push(format!(
                    "stream.allow-origin = {origin:?}: expected \"*\" or an origin such as \
                     \"http://octopi.local\" or \"https://example.com:8443\" (scheme, host, \
                     optional port; no path)"
                ));
            }
        }
        let mut auth_users = Vec::new();
        for (user, hash) in self.stream.auth_users.unwrap_or_default() {
            if user.is_empty() || user.contains(':') {
                errors.push(format!(
                    "stream.auth-users: user {user:?}: must be non-empty without ':'"
                ));
            } else if let Err(e) = argon2::password_hash::PasswordHash::new(&hash) {
                errors.push(format!(
                    "stream.auth-users.{user}: not a hash from `picker hash-password` ({e})"
                ));
            } else {
                auth_users.push((user, hash));
            }
        }
        let auth_exempt = self.stream.auth_exempt.unwrap_or_default();
        for route in &auth_exempt {
            if !AUTH_ROUTES.contains(&route.as_str()) {
                errors.push(format!(
                    "stream.auth-exempt: {route:?}: expected some of {}",
                    AUTH_ROUTES.join(", ")
                ));
            }
        }
        let bind_text = self.stream.bind.unwrap_or_else(|| "0.0.0.0".to_string());
        let bind = bind_text.parse::<IpAddr>().unwrap_or_else(|_| {
            errors.push(format!(
                "stream.bind = {bind_text:?}: not an IP address (use \"0.0.0.0\" for all)"
            ));
            IpAddr::from([0, 0, 0, 0])
        });
        // The Pi ISP produces the second output by downscaling the first, so the video
        // stream may not be larger than the still stream.
        if stream_width > still_width || stream_height > still_height {
            errors.push(format!(
                "stream size {stream_width}x{stream_height} is larger than still size \
                 {still_width}x{still_height}: the video stream may not be larger than the still stream"
            ));
        }
        let socket = self
            .still
            .socket
            .unwrap_or_else(|| PathBuf::from("/run/picker/still.sock"));
        if socket.as_os_str().is_empty() {
            errors.push("still.socket: must not be empty".to_string());
        } else if socket.as_os_str().len() > 107 {
            errors.push(format!(
                "still.socket = {:?}: longer than the 107 bytes a Unix socket path may have",
                socket
            ));
        }
        let id = self.camera.id.filter(|s| !s.is_empty());

        if !errors.is_empty() {
            return Err(ConfigError::Invalid {
                path: path
                    .map(Path::to_owned)
                    .unwrap_or_else(|| PathBuf::from("built-in defaults")),
                errors,
            });
        }
        Ok(Config {
            path: path.map(Path::to_owned),
            camera: CameraConfig {
                source,
                id,
                framerate,
                crop,
            },
            stream: StreamConfig {
                enabled: self.stream.enabled.unwrap_or(true),
                bind,
                port: self.stream.port.unwrap_or(8000),
                width: stream_width,
                height: stream_height,
                quality,
                max_clients,
                client_timeout: std::time::Duration::from_secs(client_timeout),
                allow_origin,
                auth_users,
                auth_exempt,
            },
            still: StillConfig {
                socket,
                width: still_width,
                height: still_height,
            },
        })
    }
}

/// The routes `stream.auth-exempt` may name (each stands for its aliases too).
pub const AUTH_ROUTES: &[&str] = &["/", "/stream.mjpg", "/snapshot.jpg", "/state", "/metrics"];

/// `*`, or an origin as browsers send it: `http` or `https`, a host, an optional port.
fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 literal's colons are inside brackets.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/picker/picker.toml"))
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.camera.source, SourceChoice::Auto);
        assert_eq!(c.camera.id, None);
        assert_eq!(c.camera.framerate, 30);
        assert_eq!(c.camera.crop, Crop::CenterSquare);
        assert!(c.stream.enabled);
        assert_eq!(c.stream.bind.to_string(), "0.0.0.0");
        assert_eq!(c.stream.port, 8000);
        assert_eq!((c.stream.width, c.stream.height), (512, 512));
        assert_eq!(c.stream.quality, 80);
        assert_eq!(c.stream.max_clients, 64);
        assert_eq!(c.stream.client_timeout, std::time::Duration::from_secs(10));
        assert_eq!(c.still.socket, PathBuf::from("/run/picker/still.sock"));
        assert_eq!((c.still.width, c.still.height), (512, 512));
    }

    #[test]
    fn shipped_config_is_valid_and_matches_defaults() {
        let text = include_str!("../config/picker.toml");
        let c = parse(text).unwrap();
        assert_eq!(c.stream.port, 8000);
        assert_eq!(c.still.socket, PathBuf::from("/run/picker/still.sock"));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("[stream]\nport = 8000\nprot = 9\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown key `stream.prot`"), "{msg}");
        assert!(msg.starts_with("/etc/picker/picker.toml:3:"), "{msg}");
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = parse("[stream]\nport = 80 00\n").unwrap_err();
        match err {
            ConfigError::Parse { line, column, .. } => {
                assert_eq!(line, 2);
                assert!(column > 1);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn wrong_type_names_the_line() {
        let err = parse("[stream]\nport = \"eighty\"\n").unwrap_err();
        assert!(err.to_string().contains(":2:"), "{err}");
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let err = parse(
            "[camera]\nsource = \"usb\"\ncrop = \"circle\"\nframerate = 0\n\
             [stream]\nquality = 0\nwidth = 511\nbind = \"nowhere\"\nmax-clients = 0\n\
             client-timeout = 0\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        for key in [
            "camera.source",
            "camera.crop",
            "camera.framerate",
            "stream.quality",
            "stream.width",
            "stream.bind",
            "stream.max-clients",
            "stream.client-timeout",
        ] {
            assert!(msg.contains(key), "{key} missing from {msg}");
        }
    }

    #[test]
    fn allow_origin_is_star_or_an_origin() {
        for good in [
            "*",
            "http://octopi.local",
            "https://example.com:8443",
            "http://192.168.1.5:5000",
            "http://[fe80::1]:80",
        ] {
            let c = parse(&format!("[stream]\nallow-origin = {good:?}\n")).unwrap();
            assert_eq!(c.stream.allow_origin.as_deref(), Some(good));
        }
        for bad in [
            "example.com",
            "http://",
            "http://a.b/path",
            "ftp://a",
            "http://a:0",
            "http://a:99999",
            "http://a b",
            "*.example.com",
        ] {
            let err = parse(&format!("[stream]\nallow-origin = {bad:?}\n")).unwrap_err();
            assert!(
                err.to_string().contains("stream.allow-origin"),
                "{bad}: {err}"
            );
        }
        assert_eq!(parse("").unwrap().stream.allow_origin, None);
    }

    #[test]
    fn video_larger_than_still_is_rejected() {
        let err = parse("[stream]\nwidth = 1024\nheight = 1024\n").unwrap_err();
        assert!(err.to_string().contains("larger than still size"), "{err}");
    }

    #[test]
    fn missing_default_file_means_defaults_but_explicit_file_must_exist() {
        let missing = Path::new("/nonexistent/picker.toml");
        assert!(Config::load(missing, false).unwrap().path.is_none());
        let err = Config::load(missing, true).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/picker.toml"),
            "{err}"
        );
    }
}
