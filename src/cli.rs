//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "picker",
    version,
    about = "Camera service: live MJPEG stream over HTTP, instant stills over a Unix socket"
)]
pub struct Cli {
    /// Config file [default: /etc/picker/picker.toml; built-in defaults if it is missing]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config file; prints `ok` or the errors (exit 0 or 78)
    CheckConfig,
    /// Take a still from the running service
    Still(StillArgs),
    /// Read a password from standard input, print its hash for stream.auth-users
    HashPassword,
    /// What picker sees of the camera: its modes and their limits, what picker would choose,
    /// strides, controls, DMA heap (exit 1 without a camera)
    Probe {
        /// The model tests' fixture format (tests/fixtures/cameras/), to send with an issue
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct StillArgs {
    /// Still socket [default: still.socket from the config]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Image format
    #[arg(long, value_enum, default_value_t = Format::Png)]
    pub format: Format,
    /// Wait for a frame captured after the request instead of taking the latest
    #[arg(long)]
    pub fresh: bool,
    /// Write to FILE instead of standard output ("-": standard output)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Give up when picker has not answered within SECONDS (0.1 to 3600; the default is
    /// longer than picker's own longest wait for a fresh frame, 10 s at 1 fps, after which
    /// it answers 504 saying why)
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = timeout_seconds)]
    pub timeout: f64,
}

/// `--timeout`: checked here, before it becomes a `Duration` (which panics on a negative,
/// NaN or huge number of seconds).
fn timeout_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if (0.1..=3600.0).contains(&t) => Ok(t),
        _ => Err(format!("{s:?}: expected seconds from 0.1 to 3600")),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Rgb,
    Bgr,
    Ppm,
    Png,
    Jpg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Rgb => "rgb",
            Format::Bgr => "bgr",
            Format::Ppm => "ppm",
            Format::Png => "png",
            Format::Jpg => "jpg",
        }
    }
}
