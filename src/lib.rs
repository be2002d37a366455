//! picker turns a Raspberry Pi camera into a live MJPEG stream over HTTP plus instant still
//! captures over a local Unix socket, for the robot software beside it.
//!
//! # Layout
//! (`ARCHITECTURE.md` at the repository's root draws the data and control paths, the threads,
//! and where to add a control, a route, a config key or a camera.)
//! - [`config`]: the TOML file, parsed strictly and validated into typed settings.
//! - [`camera`]: the camera seam ([`camera::Camera`]); the built-in test pattern and, with
//!   the `libcamera` feature, the real libcamera pipeline (`camera::libcamera`: start-up,
//!   negotiation, buffers, the running pipeline); [`camera::controls`] plans the
//!   `[controls]` table (focus, exposure...) against what the camera advertises;
//!   [`camera::pi_guard`] says which package to install when a Raspberry Pi's libcamera
//!   cannot drive its camera.
//! - [`frames`]: frame buffers, their pool, and the latest-frame broadcast.
//! - [`jpeg`] and [`convert`]: libjpeg-turbo encoding from YUV planes; pixel conversions.
//! - [`encoder`]: encodes stream frames while (and only while) somebody watches.
//! - [`encode_pool`]: snapshots and stills, encoded once per frame on a fixed thread pool.
//! - [`http`]: accept loops and the routes of the stream port (the preview page in
//!   [`http::preview`]) and the still socket (stills, and `/controls` for runtime control
//!   changes); [`http::target`] answers the request targets warp cannot route, [`http::door`]
//!   shares the still socket's slots, [`http::drain`] decides when a stream client may be
//!   handed its next part.
//! - [`state`]: what every handler shares ([`state::Shared`]), below both `app` and the
//!   handlers so that imports only run downward.
//! - [`budget`]: the connection budget (connection caps from `RLIMIT_NOFILE` and, for TCP,
//!   from the memory: `MemTotal` or the cgroup's limit).
//! - [`peers`]: what one client is (its address, an IPv6 /64) for the per-client limits:
//!   stream slots, open TCP connections and login attempts per address.
//! - [`throttle`]: counted, rate-limited warnings for events a client can repeat at will
//!   ([`throttle::Events`]: refused connections, accept errors, dropped clients).
//! - [`offline`]: the "camera offline" frame stream clients get while the camera is away.
//! - [`notify`]: sd-notify readiness, status and the frame-fed watchdog.
//! - [`app`]: wires it all together and decides shutdown; [`app::sockets`] binds the stream
//!   port and the still socket and shares out the connection budget, [`app::reload`] applies
//!   a SIGHUP's config, [`app::signal`] installs the signal handlers.
//! - [`cli`], [`still_client`], [`logging`], [`net`]: the binary's edges.

pub mod app;
pub mod budget;
pub mod camera;
pub mod cli;
pub mod config;
pub mod convert;
pub mod dmabuf;
pub mod encode_pool;
pub mod encoder;
pub mod frames;
pub mod http;
pub mod jpeg;
pub mod logging;
pub mod net;
pub mod notify;
pub mod offline;
pub mod peers;
pub mod state;
pub mod still_client;
pub mod throttle;

/// Runs the service with `config` until SIGTERM/SIGINT: opens the camera, binds the
/// sockets, serves. Blocks; builds its own runtime.
pub fn run(config: config::Config) -> anyhow::Result<()> {
    limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Leave the Pi's cores to the robot: two workers are plenty for I/O fan-out.
        .worker_threads(2)
        // Nothing per request runs on blocking threads (encoding has its own fixed pool);
        // only start-up and shutdown use one or two. A low cap keeps the thread count
        // bounded even if that ever changes.
        .max_blocking_threads(4)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Install signal handlers before anything slow, so an early SIGTERM is handled.
        let shutdown = app::signals()?;
        // SIGHUP too: its default action would kill picker; it reloads the config instead.
        // It has been blocked since the binary was loaded: a SIGHUP sent since is delivered
        // now, to the handler.
        let reload = app::hangups()?;
        app::signal::release_hangups();
        // Through AppError, so main sees a camera config error (exit 78, no restart loop).
        let camera = tokio::task::block_in_place(|| app::open_camera(&config))
            .map_err(app::AppError::Camera)?;
        let listeners = app::bind(&config).await?;
        app::run(config, camera, listeners, shutdown, Some(reload)).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    tracing::debug!("runtime done");
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    tracing::debug!("runtime shut down");
    Ok(())
}

/// Caps glibc's malloc arenas at two.
///
/// Why: glibc gives each thread that contends for the heap its own arena (up to 8 per core)
/// and rarely returns an arena's freed pages to the system, so a burst of work spread over
/// many threads leaves hundreds of MB resident long after it ended. picker's threads are few
/// and fixed (runtime workers, camera, stream encoder, encode pool), so two arenas cost no
/// measurable contention and keep resident memory near its baseline after a burst. Bounding
/// the work (the encode pool) is the real fix; this removes the allocator's amplification.
/// (`MALLOC_ARENA_MAX` in the environment would do the same, but only where it is set.)
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // Allocations of 16 MiB and more (the login check's 19-64 MiB block array) are each
        // their own mapping, unmapped when freed. glibc's default would raise this threshold
        // to the size of the first such block freed, and the next one would then stay in a
        // heap for good. Frames are pooled, and what is made per frame or per request (a
        // JPEG, a 512x512 still's 768 KiB) is far below it.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 * 1024 * 1024);
    }
}
