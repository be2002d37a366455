//! picker turns a Raspberry Pi camera into a live MJPEG stream over HTTP plus instant still
//! captures over a local Unix socket, for the robot software beside it.
//!
//! # Layout
//! - [`config`]: the TOML file, parsed strictly and validated into typed settings.
//! - [`camera`]: the camera seam ([`camera::Camera`]); the built-in test pattern and, with
//!   the `libcamera` feature, the real libcamera pipeline; [`camera::pi_guard`] says which
//!   package to install when a Raspberry Pi's libcamera cannot drive its camera.
//! - [`frames`]: frame buffers, their pool, and the latest-frame broadcast.
//! - [`jpeg`] and [`convert`]: libjpeg-turbo encoding from YUV planes; pixel conversions.
//! - [`encoder`]: encodes stream frames while (and only while) somebody watches.
//! - [`http`]: accept loops and the routes of the stream port and the still socket.
//! - [`notify`]: sd-notify readiness, status and the frame-fed watchdog.
//! - [`app`]: wires it all together and decides shutdown.
//! - [`cli`], [`still_client`], [`logging`], [`net`]: the binary's edges.

pub mod app;
pub mod camera;
pub mod cli;
pub mod config;
pub mod convert;
pub mod encoder;
pub mod frames;
pub mod http;
pub mod jpeg;
pub mod logging;
pub mod net;
pub mod notify;
pub mod still_client;

/// Runs the service with `config` until SIGTERM/SIGINT: opens the camera, binds the
/// sockets, serves. Blocks; builds its own runtime.
pub fn run(config: config::Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Leave the Pi's cores to the robot: two workers are plenty for I/O fan-out.
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Install signal handlers before anything slow, so an early SIGTERM is handled.
        let shutdown = app::signals()?;
        let camera = tokio::task::block_in_place(|| app::open_camera(&config))?;
        let listeners = app::bind(&config).await?;
        app::run(config, camera, listeners, shutdown).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    tracing::debug!("runtime done");
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    tracing::debug!("runtime shut down");
    Ok(())
}
