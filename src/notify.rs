//! systemd integration: `READY=1` once frames flow and sockets are bound, `STATUS=` with the
//! stream URL and client count, `WATCHDOG=1` fed by frame progress (never by a timer
//! alone: a stalled camera must let the watchdog fire), `STOPPING=1` on shutdown. All of it
//! is a no-op outside systemd (no `NOTIFY_SOCKET`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::state::Shared;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

fn status(url: Option<&str>, clients: u64) -> String {
    match url {
        Some(url) => format!("streaming at {url}, {clients} client(s)"),
        None => "stream disabled; stills on the socket".to_string(),
    }
}

pub fn ready(url: Option<&str>) {
    let status = status(url, 0);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Watches frame progress for as long as the service runs: feeds the watchdog while frames
/// arrive, logs stalls and recoveries, and keeps `STATUS=` current. Never returns.
///
/// `urls` are the stream URLs as [`crate::net::watch_addresses`] keeps them (empty when the
/// stream is disabled); `STATUS=` names the first and follows its changes.
pub async fn monitor(shared: Arc<Shared>, mut urls: tokio::sync::watch::Receiver<Vec<String>>) {
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(interval) = watchdog {
        tracing::info!("systemd watchdog every {interval:?}, fed by frame progress");
    }
    // Feed four times per interval while frames arrive. A stall stops the feeding at once,
    // so systemd sees a silent watchdog within one interval of the last frame.
    let feed_every = watchdog.map(|w| w / 4);
    let stall = shared.stall_limit();
    let mut frames = shared.sink.subscribe();
    let mut last_feed = tokio::time::Instant::now() - Duration::from_secs(3600);
    let mut online = true;
    let mut clients = 0;
    loop {
        let progressed = tokio::time::timeout(Duration::from_millis(500), frames.changed()).await;
        match progressed {
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => {
                if !online {
                    tracing::info!("camera back online: frames arrive again");
                    online = true;
                }
                if let Some(every) = feed_every {
                    if last_feed.elapsed() >= every {
                        send(&[NotifyState::Watchdog]);
                        last_feed = tokio::time::Instant::now();
                    }
                }
            }
            Err(_) => {}
        }
        if online && !shared.online() {
            tracing::warn!(
                "camera offline: no frame for more than {stall:?}; watchdog no longer fed"
            );
            online = false;
        }
        let now_clients = shared.stats.stream_clients.load(Ordering::Relaxed);
        let urls_changed = urls.has_changed().unwrap_or(false);
        if now_clients != clients || urls_changed {
            clients = now_clients;
            let url = urls.borrow_and_update().first().cloned();
            send(&[NotifyState::Status(&status(url.as_deref(), clients))]);
        }
    }
}
