//! The URLs a person can open: one per non-loopback local address when bound to all
//! addresses, else the bound address itself; and [`watch_addresses`], which logs them again
//! whenever the machine's addresses change (Wi-Fi that comes up after picker started) or a
//! reload moves the listener.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::sync::watch;

/// What changed between two URL lists: (appeared, gone). Pure, for the watcher's log lines.
pub fn url_changes(before: &[String], after: &[String]) -> (Vec<String>, Vec<String>) {
    let appeared = after
        .iter()
        .filter(|u| !before.contains(u))
        .cloned()
        .collect();
    let gone = before
        .iter()
        .filter(|u| !after.contains(u))
        .cloned()
        .collect();
    (appeared, gone)
}

/// URLs remembered as already logged once; beyond this (IPv6 privacy addresses rotate),
/// new URLs are logged through the throttle like repeats.
const MAX_SEEN: usize = 64;

/// Which address lines to log. Router advertisements can make addresses flap: the first
/// appearance of each URL is always logged (it is how a person finds the stream), every
/// other "stream at" and every "no longer at" line at most once per kind per
/// [`crate::throttle::PERIOD`], with how many changes it stands for. Pure, given the time.
pub struct UrlLog {
    seen: std::collections::HashSet<String>,
    appeared: crate::throttle::Throttle,
    gone: crate::throttle::Throttle,
}

impl UrlLog {
    /// `initial`: the URLs already logged at start.
    pub fn new(initial: &[String]) -> Self {
        UrlLog {
            seen: initial.iter().take(MAX_SEEN).cloned().collect(),
            appeared: crate::throttle::Throttle::new(crate::throttle::PERIOD),
            gone: crate::throttle::Throttle::new(crate::throttle::PERIOD),
        }
    }

    /// The lines to log for one change.
    pub fn lines(
        &mut self,
        appeared: &[String],
        gone: &[String],
        now: std::time::Instant,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let summary = |n: u64| {
            if n > 1 {
                format!(" ({n} such changes since the last line)")
            } else {
                String::new()
            }
        };
        for url in appeared {
            if self.seen.len() < MAX_SEEN && self.seen.insert(url.clone()) {
                out.push(format!("stream at {url}"));
            } else if let Some(n) = self.appeared.event(now) {
                out.push(format!("stream at {url}{}", summary(n)));
            }
        }
        for url in gone {
            if let Some(n) = self.gone.event(now) {
                out.push(format!("no longer at {url}: address gone{}", summary(n)));
            }
        }
        out
    }
}

/// Multicast groups of rtnetlink address events (linux/rtnetlink.h).
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// Logs a `stream at URL` line for every address that appears and a `no longer at URL` line
/// for every one that goes, for as long as `shutdown` is false; `urls` always holds the
/// current list (the first one is what `STATUS=` shows). Listens to the kernel's netlink
/// address events rather than polling; the events only say "something changed", the list is
/// read again with getifaddrs. Machine addresses matter only when bound to all addresses.
///
/// `bound` is the address of the listener actually serving: a reload that moves it (a new
/// `stream.port` or `stream.bind`) changes it, and the URLs are recomputed and logged at
/// once, so that neither the log nor `STATUS=` keeps naming a port nobody answers on.
///
/// Subscribes when called, not when the future first runs: the caller says "ready" next, and
/// an address added right after that must not be missed (under load the spawned task may
/// start a long while later). Call it inside the runtime.
pub fn watch_addresses(
    bound: watch::Receiver<SocketAddr>,
    urls: watch::Sender<Vec<String>>,
    shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    let first = *bound.borrow();
    let events = first.ip().is_unspecified().then(subscribe);
    address_changes(bound, events.flatten(), urls, shutdown)
}

/// [`address_events`], or `None` with a warning.
fn subscribe() -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    address_events()
        .inspect_err(|e| {
            tracing::warn!(
                "cannot watch address changes (netlink): {e}; stream URLs are logged at start \
                 and on a reload only"
            )
        })
        .ok()
}

/// What woke the watcher.
enum Wake {
    /// The machine's addresses changed (`Err`: the netlink socket failed).
    Addresses(std::io::Result<()>),
    /// The listener moved (a reload).
    Moved,
    Stop,
}

async fn address_changes(
    mut bound: watch::Receiver<SocketAddr>,
    mut events: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    urls: watch::Sender<Vec<String>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut log = UrlLog::new(&urls.borrow());
    // Once netlink failed, not again on every move.
    let mut subscribed = events.is_some() || bound.borrow().ip().is_unspecified();
    loop {
        let wake = tokio::select! {
            r = drained(events.as_ref(), &mut buf) => Wake::Addresses(r),
            r = bound.changed() => match r {
                Ok(()) => Wake::Moved,
                // The stream's front ended: nothing left to follow.
                Err(_) => Wake::Stop,
            },
            _ = shutdown.wait_for(|s| *s) => Wake::Stop,
        };
        match wake {
            Wake::Stop => return,
            Wake::Addresses(Err(e)) => {
                tracing::warn!("netlink address events failed: {e}");
                events = None;
            }
            Wake::Addresses(Ok(())) => {
                // Addresses often come in bursts (IPv4, then IPv6 a moment later): settle first.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = stream_urls(*bound.borrow());
                let (appeared, gone) = url_changes(&urls.borrow(), &now);
                for line in log.lines(&appeared, &gone, std::time::Instant::now()) {
                    tracing::info!("{line}");
                }
                if !appeared.is_empty() || !gone.is_empty() {
                    urls.send_replace(now);
                }
            }
            Wake::Moved => {
                let addr = *bound.borrow_and_update();
                if addr.ip().is_unspecified() && !subscribed {
                    subscribed = true;
                    events = subscribe();
                }
                // Every URL is new (another port or address): each is said, none throttled.
                let now = stream_urls(addr);
                for url in &now {
                    tracing::info!("stream at {url}");
                }
                log = UrlLog::new(&now);
                urls.send_replace(now);
            }
        }
    }
}

/// Waits for address events and drains them (their content does not matter, only that
/// something changed); never returns without a socket.
async fn drained(
    socket: Option<&tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    buf: &mut [u8],
) -> std::io::Result<()> {
    let Some(socket) = socket else {
        return std::future::pending().await;
    };
    let mut guard = socket.readable().await?;
    while let Ok(Ok(n)) = guard.try_io(|fd| {
        nix::sys::socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(fd.get_ref()),
            buf,
            nix::sys::socket::MsgFlags::empty(),
        )
        .map_err(std::io::Error::from)
    }) {
        if n == 0 {
            break;
        }
    }
    Ok(())
}

/// A non-blocking rtnetlink socket subscribed to IPv4 and IPv6 address events.
fn address_events() -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use nix::sys::socket::{
        AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, socket,
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkRoute,
    )?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR),
    )?;
    // SAFETY: an OwnedFd is a valid open descriptor and stays the same one for as long as
    // the AsyncFd owns it.
    Ok(unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }?)
}

pub fn stream_urls(bound: SocketAddr) -> Vec<String> {
    let port = bound.port();
    let mut ips: Vec<IpAddr> = Vec::new();
    if bound.ip().is_unspecified() {
        let want_v6 = bound.ip().is_ipv6();
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for ifa in addrs {
                let Some(addr) = ifa.address else { continue };
                let ip = if let Some(v4) = addr.as_sockaddr_in() {
                    IpAddr::V4(v4.ip())
                } else if let Some(v6) = addr.as_sockaddr_in6() {
                    IpAddr::V6(v6.ip())
                } else {
                    continue;
                };
                // Link-local IPv6 needs a zone id no browser accepts in a URL.
                let link_local_v6 =
                    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if ip.is_loopback() || link_local_v6 || (ip.is_ipv6() && !want_v6) {
                    continue;
                }
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
    } else {
        ips.push(bound.ip());
    }
    if ips.is_empty() {
        // No network yet (or loopback only): still say where we listen.
        ips.push(if bound.ip().is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            bound.ip()
        });
    }
    ips.into_iter()
        .map(|ip| format!("http://{}/stream.mjpg", SocketAddr::new(ip, port)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lines_first_appearance_always_repeats_throttled() {
        let u = |s: &str| vec![format!("http://{s}:8000/stream.mjpg")];
        let t0 = std::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut log = UrlLog::new(&u("10.0.0.1"));
        // (appeared, gone, at ms, lines expected)
        type Row = (Vec<String>, Vec<String>, u64, &'static [&'static str]);
        let table: &[Row] = &[
            (
                u("10.0.0.2"),
                vec![],
                0,
                &["stream at http://10.0.0.2:8000/stream.mjpg"],
            ),
            (
                vec![],
                u("10.0.0.2"),
                10,
                &["no longer at http://10.0.0.2:8000/stream.mjpg: address gone"],
            ),
            // Back again: a repeat, the first repeat line is due.
            (
                u("10.0.0.2"),
                vec![],
                20,
                &["stream at http://10.0.0.2:8000/stream.mjpg"],
            ),
            // Flapping: quiet within the period...
            (vec![], u("10.0.0.2"), 30, &[]),
            (u("10.0.0.2"), vec![], 40, &[]),
            (vec![], u("10.0.0.2"), 50, &[]),
            // ...but a URL never seen is logged at once.
            (
                u("10.0.0.3"),
                vec![],
                60,
                &["stream at http://10.0.0.3:8000/stream.mjpg"],
            ),
            // After the period, one line each with the count.
            (
                u("10.0.0.2"),
                vec![],
                10_030,
                &[
                    "stream at http://10.0.0.2:8000/stream.mjpg (2 such changes since the last line)",
                ],
            ),
            (
                vec![],
                u("10.0.0.2"),
                10_040,
                &[
                    "no longer at http://10.0.0.2:8000/stream.mjpg: address gone (3 such changes since the last line)",
                ],
            ),
        ];
        for (i, (appeared, gone, ms, want)) in table.iter().enumerate() {
            assert_eq!(log.lines(appeared, gone, at(*ms)), *want, "row {i}");
        }
    }

    #[test]
    fn url_changes_table() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // (before, after, appeared, gone)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (&["a"], &["a"], &[], &[]),
            (
                &["http://127.0.0.1:8000/stream.mjpg"],
                &["b"],
                &["b"],
                &["http://127.0.0.1:8000/stream.mjpg"],
            ),
            (&["a", "b"], &["b", "c"], &["c"], &["a"]),
            (&[], &["a"], &["a"], &[]),
        ];
        for (before, after, appeared, gone) in cases {
            assert_eq!(url_changes(&s(before), &s(after)), (s(appeared), s(gone)));
        }
    }

    #[test]
    fn specific_address_is_used_as_is() {
        let urls = stream_urls("127.0.0.1:8000".parse().unwrap());
        assert_eq!(urls, ["http://127.0.0.1:8000/stream.mjpg"]);
        let urls = stream_urls("[::1]:8000".parse().unwrap());
        assert_eq!(urls, ["http://[::1]:8000/stream.mjpg"]);
    }

    #[test]
    fn unspecified_lists_no_loopback() {
        let urls = stream_urls("0.0.0.0:8123".parse().unwrap());
        assert!(!urls.is_empty());
        assert!(urls.iter().all(|u| u.ends_with(":8123/stream.mjpg")));
        // Loopback only if there is nothing else.
        if urls.len() > 1 {
            assert!(urls.iter().all(|u| !u.contains("127.0.0.1")));
        }
    }
}
