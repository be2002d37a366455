//! Configuration in two steps: serde structs that mirror the TOML file exactly
//! (`deny_unknown_fields`, every key optional), then [`RawConfig::validate`] into the typed
//! [`Config`] the service runs with. Every error names the file, and the key or the line and
//! column at fault.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::camera::controls::ControlsConfig;

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
    #[serde(default)]
    pub controls: ControlsConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    pub source: Option<String>,
    pub id: Option<String>,
    pub model: Option<String>,
    pub index: Option<i64>,
    pub framerate: Option<i64>,
    pub crop: Option<String>,
    pub buffers: Option<String>,
    #[serde(rename = "sensor-mode")]
    pub sensor_mode: Option<String>,
    pub rotation: Option<i64>,
    pub hflip: Option<bool>,
    pub vflip: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStream {
    pub enabled: Option<bool>,
    pub bind: Option<String>,
    pub port: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub quality: Option<i64>,
    pub max_clients: Option<i64>,
    pub max_clients_per_address: Option<i64>,
    pub client_timeout: Option<i64>,
    pub allow_origin: Option<String>,
    pub auth_users: Option<std::collections::BTreeMap<String, String>>,
    pub auth_exempt: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStill {
    pub socket: Option<PathBuf>,
    pub width: Option<i64>,
    pub height: Option<i64>,
}

/// Which frame source to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceChoice {
    /// libcamera when built in, else the test pattern.
    Auto,
    Libcamera,
    TestPattern,
}

/// Where the camera's frame buffers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffers {
    /// A cached DMA heap when the system has one (imported into libcamera), else the driver's.
    Auto,
    /// Always the driver's (libcamera's allocator): a way back should a camera refuse
    /// imported buffers.
    Driver,
}

/// `camera.sensor-mode` other than "auto": the sensor mode to use whatever picker would
/// choose (the way around a sensor-driver bug in the mode it chooses), checked against the
/// camera's modes at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeSpec {
    pub width: u32,
    pub height: u32,
    /// Bit depth; `None`: the deepest the camera offers at that size.
    pub bits: Option<u32>,
}

impl ModeSpec {
    /// "auto" is `None`; "WxH" or "WxH:bits" a mode; anything else an error message.
    pub fn parse(s: &str) -> Result<Option<ModeSpec>, String> {
        if s == "auto" {
            return Ok(None);
        }
        let bad = || {
            format!(
                "camera.sensor-mode = {s:?}: expected \"auto\", \"WxH\" or \"WxH:bits\" (e.g. \"1640x1232\" or \"1640x1232:10\")"
            )
        };
        let (size, bits) = match s.split_once(':') {
            Some((size, bits)) => (size, Some(bits)),
            None => (s, None),
        };
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        let num = |v: &str, max: u32| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n) && !v.starts_with('+'))
        };
        Ok(Some(ModeSpec {
            width: num(w, 65_535).ok_or_else(bad)?,
            height: num(h, 65_535).ok_or_else(bad)?,
            bits: match bits {
                Some(b) => Some(num(b, 32).ok_or_else(bad)?),
                None => None,
            },
        }))
    }
}

impl std::fmt::Display for ModeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)?;
        if let Some(b) = self.bits {
            write!(f, ":{b}")?;
        }
        Ok(())
    }
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
    /// libcamera camera id, sensor model or index; none of them = the first camera.
    pub id: Option<String>,
    pub model: Option<String>,
    pub index: Option<usize>,
    pub framerate: u32,
    pub crop: Crop,
    pub buffers: Buffers,
    /// `camera.sensor-mode`; `None` for "auto" (picker chooses).
    pub sensor_mode: Option<ModeSpec>,
    /// 0 or 180 degrees (the Pi ISP flips; it cannot turn by 90).
    pub rotation: u32,
    pub hflip: bool,
    pub vflip: bool,
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
    /// `stream.max-clients-per-address`: stream clients one address may hold (see
    /// [`crate::peers`]); 0 = no cap. Default: a quarter of `max-clients`, at least 1.
    pub max_clients_per_address: usize,
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
    /// `[controls]`: checked for ranges here, applied as far as the camera allows.
    pub controls: ControlsConfig,
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
        if let Some((line, header)) = array_table(text) {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                line,
                column: 1,
                message: format!(
                    "`[[{header}]]` is an array of tables; picker's tables each appear once: \
                     write `[{}]`",
                    header.trim()
                ),
            });
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let (line, column) = line_column(text, span.start);
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: parse_message(text, span, e.message().trim()),
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

/// The message of a file that does not parse, as a user writing TOML reads it: the key and
/// its table named where the parser or serde did not (found from the span: the key, or the
/// value, at fault), and serde's words for Rust types and shapes replaced by TOML's.
fn parse_message(text: &str, span: std::ops::Range<usize>, message: &str) -> String {
    let start = span.start;
    if message == "duplicate key" {
        return duplicate(text, span);
    }
    let mut message = plain_types(message);
    // serde's derived enums read only strings from TOML, whose deserializer then says no more
    // than this for a number or an array.
    if message == "wanted string or table" {
        let expected = key_at(text, start)
            .and_then(|k| variants(table_at(text, start), k))
            .unwrap_or_else(|| "a string".to_string());
        message = format!(
            "invalid type: {}, expected {expected}",
            found(text, span.clone())
        );
    }
    // A whole table given a value (`camera = 5`): serde names the Rust struct at the end.
    let rust_struct = message
        .rsplit_once("expected struct ")
        .filter(|(_, name)| name.chars().all(|c| c.is_ascii_alphanumeric()));
    if let Some((head, _)) = rust_struct {
        message = match key_at(text, start) {
            Some(key) => {
                format!(
                    "{head}expected a table (`[{key}]` on a line of its own, its keys below it)"
                )
            }
            None => format!("{head}expected a table"),
        };
    }
    for (serde, toml) in [
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        (
            "expected path string",
            "expected a string (an absolute path)",
        ),
    ] {
        if let Some(head) = message.strip_suffix(serde) {
            message = format!("{head}{toml}");
        }
    }
    // A wrong value's message names neither its key nor its table: name both, as a user
    // writes them (the column alone points at the value).
    if message.starts_with("invalid ") || message.starts_with("unknown variant ") {
        if let Some(key) = key_at(text, start) {
            message = format!("{}: {message}", qualified(text, start, key));
        }
    }
    // serde names the field alone; say which table it is in, as a user writes it.
    if let Some(rest) = message.strip_prefix("unknown field `") {
        message = match header_at(text, start) {
            // The unknown name is a table header itself (`[audio]`), not a key in the table
            // before it.
            Some(header) => format!(
                "unknown table `[{header}]`; expected {}",
                rest.split_once(", expected ")
                    .map(|(_, e)| e)
                    .unwrap_or("[camera], [stream] or [still]")
            ),
            None => format!("unknown key `{}", qualified(text, start, rest)),
        };
    }
    message
}

/// TOML's "duplicate key", whose span is the second key (or table header): which key, and in
/// which table.
fn duplicate(text: &str, span: std::ops::Range<usize>) -> String {
    if let Some(header) = header_at(text, span.start) {
        return match made_by(text, span.start, header) {
            Some(MadeBy::Dotted { line, key, rest }) => format!(
                "duplicate table `[{header}]`: line {line} made it already, with the dotted key \
                 `{key}`, and a table made by dotted keys takes no `[{header}]` header after; \
                 move that key under `[{header}]` as `{rest}`"
            ),
            Some(MadeBy::Value { line, key }) => format!(
                "`[{header}]` cannot be a table: line {line} sets `{key}` to a value already, \
                 and a name is either a key with a value or a table; remove this header or \
                 that key"
            ),
            Some(MadeBy::Header) | None => format!(
                "duplicate table `[{header}]`: it is defined above already; each table \
                 appears once, so put these keys under the first `[{header}]`"
            ),
        };
    }
    let Some(name) = text.get(span.clone()).map(unquoted) else {
        return "duplicate key".to_string();
    };
    // What its line holds before the key.
    let before = text
        .get(..span.start)
        .and_then(|t| t.rsplit('\n').next())
        .unwrap_or("");
    // The key starts its line, perhaps after the bare dotted keys it lies below (`a.b = 1`:
    // nothing else but dots can stand between bare keys and the key).
    let dotted: String = before.split_whitespace().collect();
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    if dotted.chars().all(bare) {
        let key = qualified(text, span.start, &format!("{dotted}{name}"));
        return format!("duplicate key `{key}`: each key may be set only once");
    }
    // Inside an inline table: the key of the line holds it.
    match key_at(text, span.start) {
        Some(key) => format!(
            "{}: duplicate key `{name}`",
            qualified(text, span.start, key)
        ),
        None => format!("duplicate key `{name}`"),
    }
}

/// What defined the name of a table header (`[name]`) above it, when TOML refuses the
/// header as a duplicate: the same header, a dotted key under it (`stream.quality = 5` at the
/// top makes `[stream]`), or a key of that very name, whose value is no table (`quality = 5`
/// under `[stream]`, then `[stream.quality]`).
#[derive(Debug, PartialEq)]
enum MadeBy {
    Header,
    /// `key` as a user writes it from the top (`stream.quality`), `rest` as under the header
    /// (`quality`); `line` 1-based.
    Dotted {
        line: usize,
        key: String,
        rest: String,
    },
    Value {
        line: usize,
        key: String,
    },
}

/// The first line above the line of `offset` that defines `name` (a table name as written in
/// its header). The lines above parsed as TOML, so every one with a `=` is a key's, but for
/// those inside a multi-line string or array.
fn made_by(text: &str, offset: usize, name: &str) -> Option<MadeBy> {
    let name = spaced_dots(name);
    let prefix = format!("{name}.");
    // Up to the newline before the header's line: the lines above it, whole.
    let above = text.get(..text.get(..offset)?.rfind('\n')?)?;
    let mut table = None;
    for (i, line) in above.lines().enumerate() {
        if let Some(h) = header(line) {
            let h = spaced_dots(h);
            if h == name {
                return Some(MadeBy::Header);
            }
            table = Some(h);
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        // A key line, or a line of a multi-line array, whose text before `=` is no key this
        // name can start with (`"a=b",`).
        let key = in_table(table.as_deref(), &spaced_dots(key));
        if key == name {
            return Some(MadeBy::Value { line: i + 1, key });
        }
        if let Some(rest) = key.strip_prefix(&prefix) {
            let rest = rest.to_string();
            return Some(MadeBy::Dotted {
                line: i + 1,
                key,
                rest,
            });
        }
    }
    None
}

/// A dotted name as a user writes it bare: without the spaces TOML allows around its dots
/// (`[ stream . quality ]`) and the quotes it allows around each part (`stream."quality"`);
/// one quoted part holding a dot (`"stream.quality"`) keeps its quotes.
fn spaced_dots(name: &str) -> String {
    name.split('.').map(unquoted).collect::<Vec<_>>().join(".")
}

/// `key` with the table in force at `offset` before it (`stream.quality`), as a user writes it.
fn qualified(text: &str, offset: usize, key: &str) -> String {
    in_table(table_at(text, offset), key)
}

/// `key` under `table` (`stream.quality`), or alone at the top.
fn in_table(table: Option<&str>, key: &str) -> String {
    match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    }
}

/// A key as written, without the quotes of a quoted one.
fn unquoted(key: &str) -> &str {
    let key = key.trim();
    ['"', '\'']
        .iter()
        .find_map(|q| key.strip_prefix(*q).and_then(|k| k.strip_suffix(*q)))
        .unwrap_or(key)
}

/// What a value is, in serde's words for a wrong type: "integer `1`", "array".
fn found(text: &str, span: std::ops::Range<usize>) -> String {
    let Some(value) = text.get(span) else {
        return "a value".to_string();
    };
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"));
    match parsed.ok().as_ref().and_then(|t| t.get("v")) {
        Some(v @ (toml::Value::Array(_) | toml::Value::Table(_))) => v.type_str().to_string(),
        Some(v) => format!("{} `{value}`", v.type_str()),
        None => format!("`{value}`"),
    }
}

/// The names an enum key takes ("one of `manual`, `auto`, `continuous`"): what the loader
/// says of an empty name for `key` in `table`.
fn variants(table: Option<&str>, key: &str) -> Option<String> {
    let probe = match table {
        Some(table) => format!("[{table}]\n{key} = \"\"\n"),
        None => format!("{key} = \"\"\n"),
    };
    let e = toml::from_str::<RawConfig>(&probe).err()?;
    e.message()
        .strip_prefix("unknown variant ``, expected ")
        .map(str::to_string)
}

/// 1-based line and column (in characters) of a byte offset. A byte order mark before the
/// first line is no character an editor shows, so not counted.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let before = before.strip_prefix(BOM).unwrap_or(before);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// The table header (`[name]`, without brackets) on the line of a byte offset, if that line
/// is one.
fn header_at(text: &str, offset: usize) -> Option<&str> {
    let offset = offset.min(text.len());
    // From the newline before the line (or the start): `trim` below drops that newline.
    let start = text.get(..offset)?.rfind('\n').unwrap_or(0);
    let end = text
        .get(offset..)?
        .find('\n')
        .map(|i| offset + i)
        .unwrap_or(text.len());
    header(text.get(start..end)?)
}

/// The byte order mark some Windows editors write before a file's first line; TOML allows
/// it there, and `str::trim` keeps it (it is no white space).
const BOM: char = '\u{feff}';

/// A line without the white space around it, nor the first line's byte order mark.
fn bare(line: &str) -> &str {
    line.trim_start_matches(BOM).trim()
}

/// The table name (without brackets) of a `[name]` header line, if the line is one: a
/// comment after it allowed, as TOML allows it (`[stream]  # the MJPEG stream`), and the
/// first line's byte order mark.
fn header(line: &str) -> Option<&str> {
    let line = bare(line);
    let line = line.split_once('#').map(|(l, _)| l.trim()).unwrap_or(line);
    line.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

/// The key of a `key = value` line at a byte offset inside its value, if the line has one
/// (a bare key: picker's keys are all bare).
fn key_at(text: &str, offset: usize) -> Option<&str> {
    let offset = offset.min(text.len());
    // From the newline before the line (or the start): `trim` below drops that newline.
    let start = text.get(..offset)?.rfind('\n').unwrap_or(0);
    let (key, _) = text.get(start..offset)?.split_once('=')?;
    let key = key.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (!key.is_empty() && key.chars().all(bare)).then_some(key)
}

/// serde's messages name Rust types ("expected u16"), which a user writing TOML or JSON
/// does not; rewritten to what to write. Only a message's ending is rewritten, where serde
/// puts what it expected.
pub fn plain_types(message: &str) -> String {
    const PLAIN: [(&str, &str); 8] = [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected i64", "expected a whole number"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
    ];
    // A whole number beyond any integer type ("integer `1e20` as i128"): Rust's word for it
    // adds nothing.
    let message = message.replacen("` as i128,", "`,", 1);
    let message = message.as_str();
    for (rust, plain) in PLAIN {
        if let Some(head) = message.strip_suffix(rust) {
            return format!("{head}{plain}");
        }
    }
    message.to_string()
}

/// The first `[[array]]` table header and its line: picker's config has none, and TOML's
/// own message for one ("invalid type: sequence") does not say what to write instead.
fn array_table(text: &str) -> Option<(usize, &str)> {
    text.lines().enumerate().find_map(|(i, l)| {
        let l = bare(l).strip_prefix("[[")?;
        let end = l.find("]]")?;
        Some((i + 1, &l[..end]))
    })
}

/// The `[table]` header in force at a byte offset.
fn table_at(text: &str, offset: usize) -> Option<&str> {
    text.get(..offset.min(text.len()))?
        .lines()
        .rev()
        .find_map(header)
}

/// Largest frame side we accept: bigger than any Pi sensor mode we would stream.
const MAX_SIDE: u32 = 8192;

impl RawConfig {
    pub fn validate(self, path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let mut sizes_ok = true;
        let mut check_size = |key: &str, value: i64| {
            if value <= 0 || value > i64::from(MAX_SIDE) || value % 2 != 0 {
                errors.push(format!(
                    "{key} = {value}: must be an even number of pixels from 2 to {MAX_SIDE}"
                ));
                sizes_ok = false;
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
        let buffers = match self.camera.buffers.as_deref().unwrap_or("auto") {
            "auto" => Buffers::Auto,
            "driver" => Buffers::Driver,
            other => {
                errors.push(format!(
                    "camera.buffers = {other:?}: expected \"auto\" or \"driver\""
                ));
                Buffers::Auto
            }
        };
        let sensor_mode =
            match ModeSpec::parse(self.camera.sensor_mode.as_deref().unwrap_or("auto")) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(e);
                    None
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
        let auth_users: Vec<(String, String)> = self
            .stream
            .auth_users
            .unwrap_or_default()
            .into_iter()
            .collect();
        let auth_errors = crate::http::auth::check_users(&auth_users);
        let with_auth = !auth_users.is_empty();
        let auth_users = if auth_errors.is_empty() {
            auth_users
        } else {
            errors.extend(auth_errors);
            Vec::new()
        };
        if allow_origin.as_deref() == Some("*") && with_auth {
            errors.push(
                "stream.allow-origin = \"*\" with stream.auth-users: any web page could then make \
                 its visitors' browsers guess passwords here and use up the password checks; \
                 name the origin that needs access (e.g. \"http://octopi.local\")"
                    .to_string(),
            );
        }
        let max_clients_per_address = self
            .stream
            .max_clients_per_address
            .unwrap_or((max_clients / 4).max(1));
        // Only a value the file gave: the derived one (at least 1) exceeds max-clients only
        // when that is 0, which is reported above, not as a second error about a key the
        // user never wrote.
        if self.stream.max_clients_per_address.is_some()
            && !(0..=max_clients).contains(&max_clients_per_address)
        {
            errors.push(format!(
                "stream.max-clients-per-address = {max_clients_per_address}: must be from 0 \
                 (no cap) to stream.max-clients ({max_clients})"
            ));
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
        // Only sizes that are themselves right: a wrong one is reported above, once.
        if sizes_ok && (stream_width > still_width || stream_height > still_height) {
            errors.push(format!(
                "stream size {stream_width}x{stream_height} is larger than still size \
                 {still_width}x{still_height}: the video stream may not be larger than the still stream"
            ));
        }
        let port = self.stream.port.unwrap_or(8000);
        if port == 0 {
            errors.push(
                "stream.port = 0: must be from 1 to 65535 (0 would pick a random port, \
                 which no viewer could find)"
                    .to_string(),
            );
        } else if !(1..=65535).contains(&port) {
            errors.push(format!("stream.port = {port}: must be from 1 to 65535"));
        }
        let socket = self
            .still
            .socket
            .unwrap_or_else(|| PathBuf::from("/run/picker/still.sock"));
        if let Err(why) = socket_path_shape(&socket) {
            errors.push(format!("still.socket = {socket:?}: {why}"));
        }
        let id = self.camera.id.filter(|s| !s.is_empty());
        let model = self.camera.model.filter(|s| !s.is_empty());
        let index = self.camera.index;
        if let Some(i) = index.filter(|i| !(0..=255).contains(i)) {
            errors.push(format!(
                "camera.index = {i}: must be from 0 (the first camera) to 255"
            ));
        }
        let chosen_by = [
            id.as_ref().map(|_| "camera.id"),
            model.as_ref().map(|_| "camera.model"),
            index.map(|_| "camera.index"),
        ];
        let chosen_by: Vec<&str> = chosen_by.into_iter().flatten().collect();
        if chosen_by.len() > 1 {
            errors.push(format!(
                "{}: give only one way to choose the camera",
                chosen_by.join(", ")
            ));
        }
        let rotation = self.camera.rotation.unwrap_or(0);
        if rotation != 0 && rotation != 180 {
            errors.push(format!(
                "camera.rotation = {rotation}: must be 0 or 180 (the ISP can flip, not turn by 90)"
            ));
        }
        errors.extend(self.controls.check("controls."));

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
                model,
                index: index.map(narrow),
                framerate: narrow(framerate),
                crop,
                buffers,
                sensor_mode,
                rotation: narrow(rotation),
                hflip: self.camera.hflip.unwrap_or(false),
                vflip: self.camera.vflip.unwrap_or(false),
            },
            stream: StreamConfig {
                enabled: self.stream.enabled.unwrap_or(true),
                bind,
                port: narrow(port),
                width: narrow(stream_width),
                height: narrow(stream_height),
                quality: narrow(quality),
                max_clients: narrow(max_clients),
                max_clients_per_address: narrow(max_clients_per_address),
                client_timeout: std::time::Duration::from_secs(narrow(client_timeout)),
                allow_origin,
                auth_users,
                auth_exempt,
            },
            still: StillConfig {
                socket,
                width: narrow(still_width),
                height: narrow(still_height),
            },
            controls: self.controls,
        })
    }
}

/// A whole number from the file, checked above to be in its key's range, as the type the
/// service keeps it in. The file's numbers are read as `i64` so that one out of that type's
/// range gets its key's own range in the error (`stream.port = 70000: must be from 1 to
/// 65535`), not serde's for the type (which would say 0 to 65535); the fallback is never
/// reached with a value the checks let through.
fn narrow<T: TryFrom<i64> + Default>(v: i64) -> T {
    T::try_from(v).unwrap_or_default()
}

/// Directories the packaged units give picker a private copy of (`PrivateTmp=yes`).
const PRIVATE_TMP: [&str; 2] = ["/tmp", "/var/tmp"];

/// File systems where a socket file cannot or must not be made.
const NO_SOCKET_UNDER: [&str; 3] = ["/proc", "/sys", "/dev"];

/// What can be said of a still socket path without looking at the disk.
pub fn socket_path_shape(path: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err("must not be empty".into());
    }
    if bytes.contains(&0) {
        return Err("contains a NUL byte".into());
    }
    if bytes.len() > 107 {
        return Err("longer than the 107 bytes a Unix socket path may have".into());
    }
    if !path.is_absolute() {
        return Err("must be an absolute path".into());
    }
    if bytes.ends_with(b"/") || path.file_name().is_none() {
        return Err("names a directory, not a socket file".into());
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err("must not contain `..`".into());
    }
    if let Some(fs) = NO_SOCKET_UNDER.iter().find(|fs| path.starts_with(fs)) {
        return Err(format!("lies under {fs}, a kernel file system"));
    }
    Ok(())
}

/// What the service will find on disk at the still socket path: the path must be absent or a
/// socket (a stale one is replaced), its nearest existing ancestor a directory we may write
/// to (picker creates missing directories below it).
pub fn socket_path_on_disk(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {}
        Ok(m) if m.is_dir() => return Err("is a directory".into()),
        Ok(m) if m.is_file() => return Err("is a regular file".into()),
        Ok(m) if m.file_type().is_symlink() => return Err("is a symbolic link".into()),
        Ok(_) => return Err("exists and is not a socket".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
        Err(e) => return Err(format!("cannot be examined: {e}")),
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        match std::fs::metadata(d) {
            Ok(m) if m.is_dir() => {
                return nix::unistd::access(
                    d,
                    nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
                )
                .map_err(|e| {
                    format!(
                        "directory {} is not writable by this user (uid {}): {e}",
                        d.display(),
                        nix::unistd::geteuid()
                    )
                });
            }
            Ok(_) => return Err(format!("{} is not a directory", d.display())),
            // Missing, or below a file: the path's own lookup above met any other error
            // of an ancestor first (the same walk), so this goes up in all but a race.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                dir = d.parent()
            }
            Err(e) => return Err(format!("cannot examine {}: {e}", d.display())),
        }
    }
    Ok(())
}

impl Config {
    /// What `check-config` warns of without refusing: settings that only the camera can judge,
    /// which some cameras take and others refuse at start. One today: a still and a stream of
    /// different shapes. Raspberry Pi cameras (one ISP crop, `ScalerCrop`, for both outputs)
    /// refuse them at start (see [`crate::camera::plan::check_aspects`]); the test pattern and
    /// cameras without a crop take them, so `source = "test-pattern"` is not warned of.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.camera.source != SourceChoice::TestPattern {
            let still = (self.still.width, self.still.height);
            let video = (self.stream.width, self.stream.height);
            if let Err(e) = crate::camera::plan::check_aspects(still, video, true) {
                warnings.push(format!(
                    "{}: {e}; a camera with a ScalerCrop (any Raspberry Pi camera) refuses this at start",
                    self.origin()
                ));
            }
        }
        // The packaged units run picker with PrivateTmp=yes: a socket under /tmp is made in
        // the service's own /tmp, where no other program looks. Fine by hand, so a warning.
        if let Some(tmp) = PRIVATE_TMP
            .iter()
            .find(|t| self.still.socket.starts_with(t))
        {
            warnings.push(format!(
                "{}: still.socket = {:?} lies under {tmp}, which the packaged service sees \
                 privately (PrivateTmp=yes in picker.service): other programs will not find \
                 the socket there; use a path under /run/picker (the default is \
                 /run/picker/still.sock)",
                self.origin(),
                self.still.socket
            ));
        }
        warnings
    }

    /// `stream.bind` when it is not (yet) an address of this machine, for `check-config` to
    /// warn of: at start picker then exits with status 1 ([`crate::app::AppError::AddressAbsent`]),
    /// which systemd restarts, since the address may come later (Wi-Fi, DHCP): so a warning,
    /// not an error. Found as the service meets it, by binding the address, on a port the
    /// kernel picks (the stream port may be the running picker's own).
    pub fn absent_bind_warning(&self) -> Option<String> {
        if !self.stream.enabled {
            return None;
        }
        let ip = self.stream.bind;
        let absent = std::net::TcpListener::bind((ip, 0))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrNotAvailable);
        absent.then(|| {
            format!(
                "{}: stream.bind = {ip} is not an address of this machine (not yet, perhaps: \
                 Wi-Fi or DHCP may bring it after picker starts); until it is, picker exits \
                 with status 1 at start, and systemd starts it again",
                self.origin()
            )
        })
    }

    /// The checks that look at the machine, for `check-config`, start-up and reload: the
    /// still socket path (see [`socket_path_on_disk`]) and whether this process may bind the
    /// stream port (see [`port_refusal`]): `systemctl reload` runs `check-config` as the
    /// service user, so a port it could not take fails the reload command itself.
    pub fn check_on_disk(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        if let Err(why) = socket_path_on_disk(&self.still.socket) {
            errors.push(format!("still.socket = {:?}: {why}", self.still.socket));
        }
        if self.stream.enabled {
            let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .ok()
                .and_then(|t| t.trim().parse().ok());
            let caps = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|t| effective_capabilities(&t));
            if let Some(why) = port_refusal(self.stream.port, start, caps) {
                errors.push(format!("stream.port = {}: {why}", self.stream.port));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: PathBuf::from(self.origin()),
                errors,
            })
        }
    }
}

/// Linux's capability that lets a process bind ports below `ip_unprivileged_port_start`.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// The effective capability set (`CapEff`) in the text of `/proc/self/status`.
fn effective_capabilities(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Why this process could not bind TCP `port`, if it could not: ports below
/// `unprivileged_start` (`net.ipv4.ip_unprivileged_port_start`, 1024 when unknown) need
/// `CAP_NET_BIND_SERVICE`, which root has and the packaged service's user has not. With its
/// capabilities unknown (`caps` `None`), nothing is claimed.
fn port_refusal(port: u16, unprivileged_start: Option<u16>, caps: Option<u64>) -> Option<String> {
    let start = unprivileged_start.unwrap_or(1024);
    let caps = caps?;
    (port < start && caps & (1 << CAP_NET_BIND_SERVICE) == 0).then(|| {
        format!(
            "ports below {start} need CAP_NET_BIND_SERVICE, which this process (uid {}) \
             has not: use a port from {start} up, or give the service the capability \
             (`systemctl edit picker`: [Service] AmbientCapabilities=CAP_NET_BIND_SERVICE \
             and CapabilityBoundingSet=CAP_NET_BIND_SERVICE)",
            nix::unistd::geteuid()
        )
    })
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
        assert_eq!(c.camera.buffers, Buffers::Auto);
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

    /// Line and column exactly, 1-based, the column counted in characters (not bytes) from
    /// the start of the line.
    #[test]
    fn errors_name_the_exact_line_and_column() {
        let table: &[(&str, (usize, usize))] = &[
            ("port = \"x\"\n", (1, 1)),
            ("[stream]\nport = \"eighty\"\n", (2, 8)),
            (
                "# caf\u{e9} \u{e9}t\u{e9}\n[stream]\n  port = \"x\"\n",
                (3, 10),
            ),
            // Two 2-byte characters before the fault on its line: column 23, not byte 25.
            ("[stream]\nauth-users = { \"\u{e9}\u{e9}\" = 1 }\n", (2, 23)),
        ];
        for (text, want) in table {
            match parse(text).unwrap_err() {
                ConfigError::Parse { line, column, .. } => {
                    assert_eq!((line, column), *want, "{text:?}")
                }
                other => panic!("{text:?}: {other}"),
            }
        }
    }

    /// An on-disk check names the file the config came from, or the built-in defaults.
    #[test]
    fn on_disk_errors_name_the_config_s_origin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let socket = dir.path().join("file/x.sock");
        let mut defaults = Config::defaults();
        defaults.still.socket = socket.clone();
        let msg = defaults.check_on_disk().unwrap_err().to_string();
        assert!(msg.starts_with("built-in defaults: "), "{msg}");
        let mut parsed = parse("").unwrap();
        parsed.still.socket = socket;
        let msg = parsed.check_on_disk().unwrap_err().to_string();
        assert!(msg.starts_with("/etc/picker/picker.toml: "), "{msg}");
    }

    /// Below the unprivileged start a port needs CAP_NET_BIND_SERVICE (bit 10 of CapEff);
    /// from it up, or with the capability, or with capabilities unknown, nothing is said.
    #[test]
    fn a_privileged_port_needs_the_capability() {
        let cap = 1u64 << 10;
        // (port, ip_unprivileged_port_start, CapEff, refused?)
        let table = [
            (80, Some(1024), Some(0), true),
            (80, Some(1024), Some(cap), false),
            (80, Some(1024), Some(!cap), true),
            (80, Some(1024), Some(u64::MAX), false),
            (1023, None, Some(0), true),
            (1024, None, Some(0), false),
            (1024, Some(1024), Some(0), false),
            (8000, Some(1024), Some(0), false),
            (80, Some(80), Some(0), false),
            (80, Some(81), Some(0), true),
            (80, Some(0), Some(0), false),
            (80, Some(1024), None, false),
        ];
        for (port, start, caps, refused) in table {
            let why = port_refusal(port, start, caps);
            assert_eq!(why.is_some(), refused, "{port} {start:?} {caps:?}: {why:?}");
            if let Some(why) = why {
                let from = start.unwrap_or(1024);
                assert!(
                    why.starts_with(&format!("ports below {from} need CAP_NET_BIND_SERVICE")),
                    "{why}"
                );
            }
        }
        let status = "Name:\tpicker\nCapInh:\t0000000000000000\nCapEff:\t0000000000000400\n";
        assert_eq!(effective_capabilities(status), Some(cap));
        assert_eq!(
            effective_capabilities("CapEff:\t000001ffffffffff\n"),
            Some(0x1ff_ffff_ffff)
        );
        assert_eq!(effective_capabilities("CapPrm:\t0000000000000400\n"), None);
        assert_eq!(effective_capabilities("CapEff:\tzz\n"), None);
    }

    #[test]
    fn wrong_type_names_the_line() {
        let err = parse("[stream]\nport = \"eighty\"\n").unwrap_err();
        assert!(err.to_string().contains(":2:"), "{err}");
    }

    #[test]
    fn camera_choice_and_orientation() {
        let c = parse("[camera]\nmodel = \"imx708\"\nrotation = 180\nhflip = true\n").unwrap();
        assert_eq!(c.camera.model.as_deref(), Some("imx708"));
        assert_eq!(
            (c.camera.rotation, c.camera.hflip, c.camera.vflip),
            (180, true, false)
        );
        let err = parse("[camera]\nid = \"x\"\nindex = 1\nrotation = 90\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("camera.id, camera.index: give only one way"),
            "{msg}"
        );
        assert!(
            msg.contains("camera.rotation = 90: must be 0 or 180"),
            "{msg}"
        );
    }

    #[test]
    fn sensor_mode_is_auto_or_a_size_with_an_optional_bit_depth() {
        let spec = |w, h, bits| {
            Some(ModeSpec {
                width: w,
                height: h,
                bits,
            })
        };
        let table: &[(&str, Option<Option<ModeSpec>>)] = &[
            ("auto", Some(None)),
            ("1640x1232", Some(spec(1640, 1232, None))),
            ("1640x1232:10", Some(spec(1640, 1232, Some(10)))),
            ("2304x1296:8", Some(spec(2304, 1296, Some(8)))),
            ("1640X1232", None),
            ("1640x", None),
            ("x1232", None),
            ("0x1232", None),
            ("1640x1232:", None),
            ("1640x1232:0", None),
            ("1640x1232:64", None),
            ("+1640x1232", None),
            ("1640x1232x2", None),
            ("99999x1232", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(ModeSpec::parse(text).ok(), *want, "{text:?}");
        }
        let c = parse("[camera]\nsensor-mode = \"1640x1232:10\"\n").unwrap();
        assert_eq!(c.camera.sensor_mode, spec(1640, 1232, Some(10)));
        assert_eq!(parse("").unwrap().camera.sensor_mode, None);
        let err = parse("[camera]\nsensor-mode = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("camera.sensor-mode = \"big\""), "{err}");
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let err = parse(
            "[camera]\nsource = \"usb\"\ncrop = \"circle\"\nframerate = 0\nbuffers = \"gpu\"\n\
             [stream]\nquality = 0\nwidth = 511\nbind = \"nowhere\"\nmax-clients = 0\n\
             client-timeout = 0\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        for key in [
            "camera.source",
            "camera.crop",
            "camera.buffers",
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
            "http://[fe80::1]",
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
    fn allow_origin_star_with_auth_users_is_refused_naming_both_keys() {
        let hash = crate::http::auth::hash_password("pw").unwrap();
        let users = format!("auth-users = {{ robot = {hash:?} }}\n");
        let err = parse(&format!("[stream]\nallow-origin = \"*\"\n{users}")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/etc/picker/picker.toml: ")
                && msg.contains("stream.allow-origin = \"*\" with stream.auth-users"),
            "{msg}"
        );
        // A named origin with auth, or `*` without auth, is fine.
        parse(&format!(
            "[stream]\nallow-origin = \"http://octopi.local\"\n{users}"
        ))
        .unwrap();
        parse("[stream]\nallow-origin = \"*\"\n").unwrap();
    }

    #[test]
    fn max_clients_per_address_defaults_to_a_quarter_and_is_range_checked() {
        // (max-clients, per-address given, per-address wanted or None for an error)
        let table: &[(usize, Option<usize>, Option<usize>)] = &[
            (64, None, Some(16)),
            (3, None, Some(1)),
            (1, None, Some(1)),
            (10, Some(0), Some(0)),
            (10, Some(10), Some(10)),
            (10, Some(11), None),
        ];
        // max-clients = 0 is its own error, and the default share is not blamed for it.
        let e = parse("[stream]\nmax-clients = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("stream.max-clients = 0"), "{e}");
        assert!(!e.contains("max-clients-per-address"), "{e}");
        for (max, per, want) in table {
            let mut text = format!("[stream]\nmax-clients = {max}\n");
            if let Some(per) = per {
                text += &format!("max-clients-per-address = {per}\n");
            }
            match (parse(&text), want) {
                (Ok(c), Some(w)) => assert_eq!(c.stream.max_clients_per_address, *w, "{text}"),
                (Err(e), None) => assert!(
                    e.to_string().contains("stream.max-clients-per-address"),
                    "{e}"
                ),
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
    }

    /// An address the machine does not have (TEST-NET-1's 192.0.2.86, which no test adds) is
    /// warned of, naming the key, the address and the file; loopback, every address and a
    /// disabled stream are not.
    #[test]
    fn an_absent_bind_address_is_warned_of() {
        let at = |text: &str| {
            Config::parse(text, Path::new("/etc/picker/picker.toml"))
                .unwrap()
                .absent_bind_warning()
        };
        assert_eq!(
            at("[stream]\nbind = \"192.0.2.86\"\n").as_deref(),
            Some(
                "/etc/picker/picker.toml: stream.bind = 192.0.2.86 is not an address of this \
                 machine (not yet, perhaps: Wi-Fi or DHCP may bring it after picker starts); \
                 until it is, picker exits with status 1 at start, and systemd starts it again"
            )
        );
        assert_eq!(at("[stream]\nbind = \"127.0.0.1\"\n"), None);
        assert_eq!(at("[stream]\nbind = \"0.0.0.0\"\n"), None);
        assert_eq!(
            at("[stream]\nbind = \"192.0.2.86\"\nenabled = false\n"),
            None
        );
    }

    #[test]
    fn a_still_and_a_stream_of_different_shapes_are_warned_of_unless_the_test_pattern() {
        let text = "[still]\nwidth = 1024\nheight = 768\n";
        let warnings = parse(text).unwrap().warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = &warnings[0];
        assert!(
            w.starts_with("/etc/picker/picker.toml: still 1024x768 and stream 512x512"),
            "{w}"
        );
        assert!(w.contains("refuses this at start"), "{w}");
        let libcamera = format!("[camera]\nsource = \"libcamera\"\n{text}");
        assert_eq!(parse(&libcamera).unwrap().warnings().len(), 1);
        let pattern = format!("[camera]\nsource = \"test-pattern\"\n{text}");
        assert_eq!(parse(&pattern).unwrap().warnings(), Vec::<String>::new());
        // A still socket under /tmp, which the packaged service's PrivateTmp hides.
        let tmp = "[camera]\nsource = \"test-pattern\"\n[still]\nsocket = \"/tmp/p/still.sock\"\n";
        let w = parse(tmp).unwrap().warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("still.socket = \"/tmp/p/still.sock\" lies under /tmp"),
            "{w:?}"
        );
        assert!(w[0].contains("PrivateTmp=yes"), "{w:?}");
        let var_tmp = tmp.replace("/tmp/p", "/var/tmp/p");
        assert_eq!(parse(&var_tmp).unwrap().warnings().len(), 1);
        for elsewhere in ["/run/picker/s.sock", "/tmpx/s.sock", "/home/pi/tmp/s.sock"] {
            let text = tmp.replace("/tmp/p/still.sock", elsewhere);
            assert_eq!(
                parse(&text).unwrap().warnings(),
                Vec::<String>::new(),
                "{elsewhere}"
            );
        }
        // The same shape at another size is no mismatch.
        let same = "[still]\nwidth = 1024\nheight = 1024\n";
        assert_eq!(parse(same).unwrap().warnings(), Vec::<String>::new());
        assert_eq!(parse("").unwrap().warnings(), Vec::<String>::new());
    }

    #[test]
    fn a_wrong_value_names_its_key_and_what_to_write_not_a_rust_type() {
        let cases = [
            (
                "[stream]\nport = \"8000\"\n",
                "2:8: stream.port: invalid type: string \"8000\", expected a whole number",
            ),
            (
                "[stream]\nquality = 2.5\n",
                "stream.quality: invalid type: floating point `2.5`, expected a whole number",
            ),
            (
                "[camera]\nframerate = 30.5\n",
                "camera.framerate: invalid type: floating point `30.5`, expected a whole number",
            ),
            (
                "[controls]\nev = \"x\"\n",
                "controls.ev: invalid type: string \"x\", expected a number",
            ),
            (
                "[stream]\nenabled = \"yes\"\n",
                "stream.enabled: invalid type: string \"yes\", expected a boolean",
            ),
        ];
        for (text, want) in cases {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.ends_with(want), "{text:?}: {msg}");
        }
        // A whole number out of its type's range gets its key's own range, the one the
        // service checks, not the type's (serde said "from 0 to 65535" for a port, of which
        // 0 is refused, and "0 to 255" for a quality of 1 to 100).
        let ranges = [
            (
                "[stream]\nport = 70000\n",
                "stream.port = 70000: must be from 1 to 65535",
            ),
            (
                "[stream]\nport = -1\n",
                "stream.port = -1: must be from 1 to 65535",
            ),
            (
                "[stream]\nquality = 500\n",
                "stream.quality = 500: must be from 1 to 100",
            ),
            (
                "[stream]\nmax-clients = -1\n",
                "stream.max-clients = -1: must be from 1 to 10000",
            ),
            (
                "[stream]\nmax-clients-per-address = -1\n",
                "stream.max-clients-per-address = -1: must be from 0 (no cap)",
            ),
            (
                "[stream]\nclient-timeout = 99999999999\n",
                "stream.client-timeout = 99999999999: must be from 1 to 3600 seconds",
            ),
            (
                "[camera]\nframerate = 4294967296\n",
                "camera.framerate = 4294967296: must be from 1 to 120",
            ),
            (
                "[camera]\nrotation = -180\n",
                "camera.rotation = -180: must be 0 or 180",
            ),
            (
                "[camera]\nindex = -1\n",
                "camera.index = -1: must be from 0 (the first camera) to 255",
            ),
            (
                "[camera]\nindex = 256\n",
                "camera.index = 256: must be from 0 (the first camera) to 255",
            ),
            (
                "[stream]\nwidth = -512\n",
                "stream.width = -512: must be an even number of pixels from 2 to 8192",
            ),
            (
                "[still]\nwidth = -4\n",
                "still.width = -4: must be an even number of pixels from 2 to 8192",
            ),
            (
                "[still]\nheight = 4294967298\n",
                "still.height = 4294967298: must be an even number of pixels from 2 to 8192",
            ),
        ];
        for (text, want) in ranges {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.contains(want), "{text:?}: {msg}");
            // One error: a wrong size is not also compared with the other stream's.
            assert!(!msg.contains("larger than still size"), "{text:?}: {msg}");
        }
        // Beyond any integer: TOML's reader refuses it, in words without Rust's type.
        let msg = parse("[stream]\nport = 99999999999999999999\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.ends_with(
                "stream.port: invalid type: integer `99999999999999999999`, expected a whole number"
            ),
            "{msg}"
        );
        for ok in ["[camera]\nindex = 255\n", "[camera]\nindex = 0\n"] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
    }

    /// The parser's and serde's messages that named no key (or named a Rust type) name the
    /// key and its table, and say what to write; line and column stay those of the fault.
    #[test]
    fn messages_without_a_key_get_one_from_the_span() {
        let af = "expected one of `manual`, `auto`, `continuous`";
        // (TOML, line and column, message)
        let table: [(&str, (usize, usize), String); 23] = [
            (
                "[stream]\nquality = 80\nquality = 90\n",
                (3, 1),
                "duplicate key `stream.quality`: each key may be set only once".into(),
            ),
            (
                "[stream]\nquality = 80\n\"quality\" = 90\n",
                (3, 1),
                "duplicate key `stream.quality`: each key may be set only once".into(),
            ),
            (
                "[stream]\nport = 8000\n[still]\nwidth = 512\n[stream] # again\nquality = 50\n",
                (5, 2),
                "duplicate table `[stream]`: it is defined above already; each table appears \
                 once, so put these keys under the first `[stream]`"
                    .into(),
            ),
            (
                "[stream]\nauth-users = { a = \"x\", a = \"y\" }\n",
                (2, 25),
                "stream.auth-users: duplicate key `a`".into(),
            ),
            (
                "[controls]\naf-mode = \"bogus\"\n",
                (2, 11),
                format!("controls.af-mode: unknown variant `bogus`, {af}"),
            ),
            (
                "[controls]\naf-mode = 1\n",
                (2, 11),
                format!("controls.af-mode: invalid type: integer `1`, {af}"),
            ),
            (
                "[controls]\naf-mode = [1, 2]\n",
                (2, 11),
                format!("controls.af-mode: invalid type: array, {af}"),
            ),
            (
                "[controls]\ndenoise = true\n",
                (2, 11),
                "controls.denoise: invalid type: boolean `true`, expected one of `off`, `fast`, \
                 `high-quality`"
                    .into(),
            ),
            (
                "[controls]\nmetering = 1.5\n",
                (2, 12),
                "controls.metering: invalid type: float `1.5`, expected one of `centre`, \
                 `spot`, `matrix`"
                    .into(),
            ),
            (
                "[controls]\nawb-mode = 1979-05-27\n",
                (2, 12),
                "controls.awb-mode: invalid type: datetime `1979-05-27`, expected one of \
                 `auto`, `incandescent`, `tungsten`, `fluorescent`, `indoor`, `daylight`, \
                 `cloudy`"
                    .into(),
            ),
            (
                "camera = 5\n",
                (1, 10),
                "camera: invalid type: integer `5`, expected a table (`[camera]` on a line of \
                 its own, its keys below it)"
                    .into(),
            ),
            (
                "controls = \"x\"\n",
                (1, 12),
                "controls: invalid type: string \"x\", expected a table (`[controls]` on a line \
                 of its own, its keys below it)"
                    .into(),
            ),
            (
                "[stream]\nauth-exempt = 5\n",
                (2, 15),
                "stream.auth-exempt: invalid type: integer `5`, expected an array".into(),
            ),
            (
                "[stream]\nauth-users = 5\n",
                (2, 14),
                "stream.auth-users: invalid type: integer `5`, expected a table".into(),
            ),
            (
                "[still]\nsocket = 5\n",
                (2, 10),
                "still.socket: invalid type: integer `5`, expected a string (an absolute path)"
                    .into(),
            ),
            // A comment after the header: its own table, not the one before (a review).
            (
                "[camera]\nsource = \"test-pattern\"\n[stream]  # the MJPEG stream\nquality = \"high\"\n",
                (4, 11),
                "stream.quality: invalid type: string \"high\", expected a whole number".into(),
            ),
            // A byte order mark before the first header: still its table, and no column of
            // its own (a review).
            (
                "\u{feff}[stream]\nport = \"x\"\n",
                (2, 8),
                "stream.port: invalid type: string \"x\", expected a whole number".into(),
            ),
            (
                "\u{feff}[audio]\n",
                (1, 2),
                "unknown table `[audio]`; expected one of `camera`, `stream`, `still`, \
                 `controls`"
                    .into(),
            ),
            // A table made by a dotted key, then given its header: the key to move (a review).
            (
                "stream.quality = 5\n[camera]\nsource = \"test-pattern\"\n[stream]\nquality = 6\n",
                (4, 2),
                "duplicate table `[stream]`: line 1 made it already, with the dotted key \
                 `stream.quality`, and a table made by dotted keys takes no `[stream]` header \
                 after; move that key under `[stream]` as `quality`"
                    .into(),
            ),
            // A key's value, then a table of that name (a review).
            (
                "[stream]\nquality = 5\n[stream.quality]\nx = 1\n",
                (3, 9),
                "`[stream.quality]` cannot be a table: line 2 sets `stream.quality` to a value \
                 already, and a name is either a key with a value or a table; remove this \
                 header or that key"
                    .into(),
            ),
            (
                "quality = 5\n[quality]\n",
                (2, 2),
                "`[quality]` cannot be a table: line 1 sets `quality` to a value already, and a \
                 name is either a key with a value or a table; remove this header or that key"
                    .into(),
            ),
            // Unchanged: these named their key already.
            (
                "[stream]\nbind = 5\n",
                (2, 8),
                "stream.bind: invalid type: integer `5`, expected a string".into(),
            ),
            (
                "[controls]\ncolour-gains = [1]\n",
                (2, 16),
                "controls.colour-gains: invalid length 1, expected an array of length 2".into(),
            ),
        ];
        for (text, want_at, want) in table {
            match parse(text).unwrap_err() {
                ConfigError::Parse {
                    line,
                    column,
                    message,
                    ..
                } => {
                    assert_eq!(message, want, "{text:?}");
                    assert_eq!((line, column), want_at, "{text:?}");
                }
                other => panic!("{text:?}: {other}"),
            }
        }
    }

    /// What made a table whose header TOML refuses as a duplicate: the first definition
    /// above the header's line, with the spaces TOML allows around dots, under the table in
    /// force, and nothing for a header on the first line.
    #[test]
    fn made_by_finds_the_first_definition_above_the_header() {
        let at = |text: &str, name: &str| {
            // Inside the last header, where TOML's span for a duplicate starts.
            let offset = text.rfind('[').unwrap() + 1;
            made_by(text, offset, name)
        };
        let dotted = |line, key: &str, rest: &str| {
            Some(MadeBy::Dotted {
                line,
                key: key.into(),
                rest: rest.into(),
            })
        };
        let value = |line, key: &str| {
            Some(MadeBy::Value {
                line,
                key: key.into(),
            })
        };
        assert_eq!(at("[stream]", "stream"), None);
        assert_eq!(
            at("[a]\n[stream]\n[stream]", "stream"),
            Some(MadeBy::Header)
        );
        assert_eq!(
            at("# a = 1\n\nstream . quality = 5\nx\n[stream]", "stream"),
            dotted(3, "stream.quality", "quality")
        );
        assert_eq!(
            at("[camera]\nx.y = 1\n[ camera . x ]", "camera . x"),
            dotted(2, "camera.x.y", "y")
        );
        assert_eq!(
            at("[stream]\nquality = 5\n[stream.quality]", "stream.quality"),
            value(2, "stream.quality")
        );
        // Keys of other tables, a value holding `=`, a quoted key: none of them.
        assert_eq!(
            at(
                "[still]\nstream = 1\n\"stream\" = 2\ns = \"stream.a = 1\"\n[stream]",
                "stream"
            ),
            None
        );
        assert_eq!(at("streamx.a = 1\n[stream]", "stream"), None);
        // Quoted parts are the bare ones; one quoted key holding a dot is no dotted key.
        assert_eq!(
            at("stream.\"max-clients\" = 5\n[ 'stream' ]", "'stream'"),
            dotted(1, "stream.max-clients", "max-clients")
        );
        assert_eq!(at("\"stream.quality\" = 5\n[stream]", "stream"), None);
        assert_eq!(at("a = [\n  \"stream.x=1\",\n]\n[stream]", "stream"), None);
        // A header below a dotted key of the same table: the first one counts.
        assert_eq!(
            at("stream.a = 1\n[stream]\n[stream]", "stream"),
            dotted(1, "stream.a", "a")
        );
    }

    /// A byte order mark is not counted as a column, nor read as part of a header.
    #[test]
    fn a_byte_order_mark_is_neither_a_column_nor_part_of_a_header() {
        assert_eq!(line_column("\u{feff}ab", 4), (1, 2));
        assert_eq!(line_column("\u{feff}a\nb", 5), (2, 1));
        assert_eq!(header("\u{feff}[stream]"), Some("stream"));
        assert_eq!(header("\u{feff} [stream] # x"), Some("stream"));
        assert_eq!(array_table("\u{feff}[[stream]]\n"), Some((1, "stream")));
    }

    /// What is said of a duplicate key, wherever on its line it stands.
    #[test]
    fn a_duplicate_key_is_named_with_its_table_and_dotted_keys() {
        let dup = |text: &str, key: &str| {
            let at = text.rfind(key).unwrap();
            duplicate(text, at..at + key.len())
        };
        assert_eq!(
            dup("a.b = 1\na. b = 2\n", "b"),
            "duplicate key `a.b`: each key may be set only once"
        );
        assert_eq!(
            dup("[t]\nx = { k = 1, k = 2 }\n", "k"),
            "t.x: duplicate key `k`"
        );
        assert_eq!(
            dup("[t]\nm-n.o_p.k = 1\nm-n.o_p . k = 2\n", "k"),
            "duplicate key `t.m-n.o_p.k`: each key may be set only once"
        );
        assert_eq!(dup("x = { k = 1, k = 2 }", "k"), "x: duplicate key `k`");
        assert_eq!(dup("{ k = 1, k = 2 }", "k"), "duplicate key `k`");
        // Below a quoted dotted key: the key alone, not a wrong path.
        assert_eq!(
            dup("[t]\n\"a b\".k = 1\n\"a b\".k = 2\n", "k"),
            "duplicate key `k`"
        );
        assert_eq!(
            dup("'q' = 1\n'q' = 2", "'q'"),
            "duplicate key `q`: each key may be set only once"
        );
        // A span outside the text, or off a character's boundary, is no panic.
        assert_eq!(duplicate("k = 1", 9..12), "duplicate key");
        assert_eq!(duplicate("\u{e9} = 1", 1..2), "duplicate key");
        assert_eq!(unquoted("\""), "\"");
        assert_eq!(found("v = 1", 9..12), "a value");
        assert_eq!(found("v = [1", 4..6), "`[1`");
        assert_eq!(variants(Some("stream"), "port"), None);
    }

    #[test]
    fn plain_types_rewrites_only_a_rust_type_at_the_end() {
        assert_eq!(
            plain_types("expected u64"),
            "expected a whole number, 0 or more"
        );
        assert_eq!(plain_types("x, expected f64"), "x, expected a number");
        assert_eq!(plain_types("expected u16 here"), "expected u16 here");
        assert_eq!(plain_types("expected a boolean"), "expected a boolean");
    }

    #[test]
    fn key_at_finds_a_bare_key_before_the_value_only() {
        let text = "[stream]\nport = \"x\"\n  max-clients=3\nweird key = 1\n[camera]\n";
        let at = |needle: &str| text.find(needle).unwrap();
        assert_eq!(key_at(text, at("\"x\"")), Some("port"));
        assert_eq!(key_at(text, at("3\n")), Some("max-clients"));
        assert_eq!(key_at(text, at("1\n")), None);
        assert_eq!(key_at(text, at("[camera]")), None);
        assert_eq!(key_at(text, 0), None);
        assert_eq!(key_at(text, text.len() + 5), None);
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

    #[test]
    fn an_unknown_table_is_named_as_a_table_not_a_key_of_the_one_before() {
        let err = parse("[still]\nwidth = 512\n[audio]\nrate = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown table `[audio]`"), "{msg}");
        assert!(!msg.contains("still.audio"), "{msg}");
        assert!(msg.starts_with("/etc/picker/picker.toml:3:"), "{msg}");
        // A key in a known table is still named with its table.
        let msg = parse("[still]\nsokcet = \"/x\"\n").unwrap_err().to_string();
        assert!(msg.contains("unknown key `still.sokcet`"), "{msg}");
    }

    #[test]
    fn an_array_of_tables_says_what_to_write() {
        let msg = parse("[camera]\n[[stream]]\nport = 8000\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`[[stream]]` is an array of tables"), "{msg}");
        assert!(msg.contains("write `[stream]`"), "{msg}");
        assert!(msg.starts_with("/etc/picker/picker.toml:2:"), "{msg}");
    }

    #[test]
    fn port_zero_is_refused() {
        let msg = parse("[stream]\nport = 0\n").unwrap_err().to_string();
        assert!(
            msg.contains("stream.port = 0: must be from 1 to 65535"),
            "{msg}"
        );
        assert_eq!(parse("[stream]\nport = 1\n").unwrap().stream.port, 1);
        assert_eq!(
            parse("[stream]\nport = 65535\n").unwrap().stream.port,
            65535
        );
        assert!(parse("[stream]\nport = 65536\n").is_err());
    }

    #[test]
    fn socket_path_shapes() {
        // (path, error fragment or "" for accepted)
        let table = [
            ("/run/picker/still.sock", ""),
            ("/tmp/a/b/c.sock", ""),
            ("", "must not be empty"),
            ("relative.sock", "absolute"),
            ("/run/picker/", "directory"),
            ("/run/picker/..", "directory"),
            ("/run/../etc/x.sock", "`..`"),
            ("/proc/self/x.sock", "/proc"),
            ("/sys/x.sock", "/sys"),
            ("/dev/x.sock", "/dev"),
            ("/run/a\0b.sock", "NUL"),
        ];
        for (path, want) in table {
            let r = socket_path_shape(Path::new(path));
            match (want, r) {
                ("", Ok(())) => {}
                ("", Err(e)) => panic!("{path:?} refused: {e}"),
                (w, Err(e)) => assert!(e.contains(w), "{path:?}: {e}"),
                (w, Ok(())) => panic!("{path:?} accepted, wanted {w}"),
            }
        }
        let long = format!("/tmp/{}.sock", "x".repeat(110));
        assert!(socket_path_shape(Path::new(&long)).is_err());
    }

    #[test]
    fn a_nul_in_the_socket_path_is_a_config_error() {
        let msg = parse("[still]\nsocket = \"/run/a\\u0000b\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("still.socket") && msg.contains("NUL"), "{msg}");
    }

    #[test]
    fn socket_path_on_disk_cases() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("file"), "x").unwrap();
        std::fs::create_dir(d.join("dir")).unwrap();
        let _live = std::os::unix::net::UnixListener::bind(d.join("s.sock")).unwrap();
        std::os::unix::fs::symlink(d.join("file"), d.join("link")).unwrap();
        nix::unistd::mkfifo(&d.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        // A name longer than a file system allows (255 bytes): neither absent nor present.
        let long = format!("{}.sock", "x".repeat(300));
        // (path below the temp dir, error fragment or "" for accepted)
        let table = [
            ("fifo", "exists and is not a socket"),
            (long.as_str(), "cannot be examined"),
            ("new.sock", ""),
            ("new/dirs/below.sock", ""),
            ("s.sock", ""),
            ("file", "is a regular file"),
            ("dir", "is a directory"),
            ("link", "symbolic link"),
            ("file/x.sock", "is not a directory"),
            ("file/deeper/x.sock", "is not a directory"),
        ];
        for (rel, want) in table {
            let r = socket_path_on_disk(&d.join(rel));
            match (want, r) {
                ("", Ok(())) => {}
                ("", Err(e)) => panic!("{rel}: {e}"),
                (w, Err(e)) => assert!(e.contains(w), "{rel}: {e}"),
                (w, Ok(())) => panic!("{rel} accepted, wanted {w}"),
            }
        }
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        /// TOML-looking lines built from picker's own tables, keys and odd values, so the
        /// search reaches validation, not only the TOML parser.
        fn line() -> impl Strategy<Value = String> {
            let table = prop::sample::select(vec![
                "[camera]",
                "[stream]",
                "[still]",
                "[audio]",
                "[[stream]]",
                "[stream.x]",
                "[controls]",
                "[",
            ]);
            let key = prop::sample::select(vec![
                "source",
                "id",
                "framerate",
                "crop",
                "buffers",
                "enabled",
                "bind",
                "port",
                "width",
                "height",
                "quality",
                "max-clients",
                "socket",
                "x",
                "\"q\"",
                "af-mode",
                "colour-gains",
                "camera",
                "a.b",
            ]);
            let value = prop_oneof![
                any::<i64>().prop_map(|v| v.to_string()),
                any::<f64>().prop_map(|v| format!("{v:?}")),
                Just("nan".to_string()),
                Just("inf".to_string()),
                Just("-0".to_string()),
                Just("true".to_string()),
                Just("[1, 2]".to_string()),
                Just("{ a = 1 }".to_string()),
                Just("{ a = 1, a = 2 }".to_string()),
                Just("[1.0, 2.0, \"x\"]".to_string()),
                Just("1979-05-27".to_string()),
                any::<String>().prop_map(|s| format!("{s:?}")),
                "[a-z0-9./\\\\u0000]{0,120}".prop_map(|s| format!("\"{s}\"")),
            ];
            prop_oneof![
                table.prop_map(str::to_string),
                (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
                any::<String>(),
            ]
        }

        proptest! {
            // Bounded for CI: a few hundred cases of each, well under a second.
            #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

            #[test]
            fn the_loader_never_panics_on_any_text(text in any::<String>()) {
                let _ = parse(&text);
            }

            #[test]
            fn the_loader_never_panics_on_toml_like_text(
                lines in prop::collection::vec(line(), 0..12)
            ) {
                let text = lines.join("\n");
                if let Ok(c) = parse(&text) {
                    // Whatever it accepts is in range.
                    prop_assert!(c.stream.port >= 1);
                    prop_assert!((1..=120).contains(&c.camera.framerate));
                    prop_assert!((1..=100).contains(&c.stream.quality));
                    prop_assert!(socket_path_shape(&c.still.socket).is_ok());
                }
            }
        }
    }

    /// Every range and rule of `validate` at its ends and a step past them: an end loads, a
    /// step past is exactly one error, which starts with the key at fault.
    #[test]
    fn each_rule_allows_its_ends_and_refuses_a_step_past_them() {
        let long_socket = |n: usize| format!("/tmp/{}", "s".repeat(n - 5));
        let (ok_socket, long) = (long_socket(107), long_socket(108));
        let socket_ok = format!("[still]\nsocket = \"{ok_socket}\"");
        let socket_long = format!("[still]\nsocket = \"{long}\"");
        // (TOML, the start of the one error, or "" for a config that loads)
        let table: Vec<(&str, &str)> = vec![
            ("[stream]\nwidth = 2\nheight = 2", ""),
            ("[still]\nwidth = 8192\nheight = 8192", ""),
            ("[stream]\nwidth = 0", "stream.width = 0:"),
            ("[stream]\nheight = 3", "stream.height = 3:"),
            ("[still]\nwidth = 8194", "still.width = 8194:"),
            ("[still]\nheight = 8193", "still.height = 8193:"),
            // The video stream may match the still stream, not exceed it on either side.
            ("[stream]\nwidth = 1024\n[still]\nwidth = 1024", ""),
            ("[still]\nwidth = 510", "stream size 512x512 is larger"),
            (
                "[stream]\nheight = 514\n[still]\nwidth = 1024",
                "stream size 512x514",
            ),
            ("[camera]\nframerate = 1", ""),
            ("[camera]\nframerate = 120", ""),
            ("[camera]\nframerate = 121", "camera.framerate = 121:"),
            ("[stream]\nquality = 1", ""),
            ("[stream]\nquality = 100", ""),
            ("[stream]\nquality = 101", "stream.quality = 101:"),
            ("[stream]\nmax-clients = 1", ""),
            ("[stream]\nmax-clients = 10000", ""),
            (
                "[stream]\nmax-clients = 10001",
                "stream.max-clients = 10001:",
            ),
            ("[stream]\nclient-timeout = 1", ""),
            ("[stream]\nclient-timeout = 3600", ""),
            (
                "[stream]\nclient-timeout = 3601",
                "stream.client-timeout = 3601:",
            ),
            ("[camera]\nrotation = 0", ""),
            ("[camera]\nrotation = 180", ""),
            ("[camera]\nrotation = 360", "camera.rotation = 360:"),
            ("[camera]\nid = \"/base/i2c@1\"", ""),
            ("[camera]\nid = \"\"\nmodel = \"imx219\"", ""),
            ("[camera]\nindex = 0", ""),
            (
                "[camera]\nid = \"x\"\nmodel = \"imx219\"",
                "camera.id, camera.model: give",
            ),
            (
                "[camera]\nmodel = \"imx219\"\nindex = 1",
                "camera.model, camera.index: give",
            ),
            ("[camera]\nsource = \"libcamera\"\nbuffers = \"driver\"", ""),
            ("[stream]\nallow-origin = \"\"", ""),
            ("[stream]\nallow-origin = \"http://[::1]:8080\"", ""),
            ("[stream]\nallow-origin = \"https://h:65535\"", ""),
            (
                "[stream]\nallow-origin = \"http://h:0\"",
                "stream.allow-origin",
            ),
            (
                "[stream]\nallow-origin = \"http://\"",
                "stream.allow-origin",
            ),
            (
                "[stream]\nallow-origin = \"ftp://h\"",
                "stream.allow-origin",
            ),
            (
                "[stream]\nallow-origin = \"http://h/path\"",
                "stream.allow-origin",
            ),
            ("[stream]\nauth-exempt = [\"/state\", \"/metrics\"]", ""),
            (
                "[stream]\nauth-exempt = [\"/controls\"]",
                "stream.auth-exempt: \"/controls\"",
            ),
            (
                "[stream]\nauth-users = { \"a:b\" = \"x\" }",
                "stream.auth-users: user \"a:b\"",
            ),
            (
                "[stream]\nauth-users = { \"\" = \"x\" }",
                "stream.auth-users: user \"\"",
            ),
            ("[stream]\nbind = \"::1\"", ""),
            (&socket_ok, ""),
            (&socket_long, "still.socket"),
        ];
        for (text, want) in table {
            match (want, parse(text)) {
                ("", Ok(_)) => {}
                ("", Err(e)) => panic!("{text:?} refused: {e}"),
                (_, Err(ConfigError::Invalid { errors, .. })) => {
                    assert_eq!(errors.len(), 1, "{text:?}: {errors:?}");
                    assert!(errors[0].starts_with(want), "{text:?}: {errors:?}");
                }
                (_, other) => panic!("{text:?}: {other:?}, wanted {want}"),
            }
        }
        // The values at the ends are the values in force.
        let c = parse(
            "[camera]\nframerate = 120\nrotation = 180\nvflip = true\n\
             [stream]\nquality = 100\nmax-clients = 10000\nclient-timeout = 3600\n\
             allow-origin = \"\"\nenabled = false\nbind = \"::1\"\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.camera.framerate,
                c.camera.rotation,
                c.camera.hflip,
                c.camera.vflip
            ),
            (120, 180, false, true)
        );
        assert_eq!(
            (
                c.stream.quality,
                c.stream.max_clients,
                c.stream.client_timeout.as_secs()
            ),
            (100, 10_000, 3_600)
        );
        assert_eq!((c.stream.allow_origin, c.stream.enabled), (None, false));
        assert_eq!(c.stream.bind.to_string(), "::1");
    }
}
