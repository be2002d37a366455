//! The URLs a person can open: one per non-loopback local address when bound to all
//! addresses, else the bound address itself; and [`watch_addresses`], which logs them again
//! whenever the machine's addresses change (Wi-Fi that comes up after picker started).

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

/// Multicast groups of rtnetlink address events (linux/rtnetlink.h).
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// Logs a `stream at URL` line for every address that appears and a `no longer at URL` line
/// for every one that goes, for as long as `shutdown` is false; `urls` always holds the
/// current list (the first one is what `STATUS=` shows). Listens to the kernel's netlink
/// address events rather than polling; the events only say "something changed", the list is
/// read again with getifaddrs. Does nothing when bound to one address.
pub async fn watch_addresses(
    bound: SocketAddr,
    urls: watch::Sender<Vec<String>>,
    mut shutdown: watch::Receiver<bool>,
) {
    if !bound.ip().is_unspecified() {
        return;
    }
    let socket = match address_events() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "cannot watch address changes (netlink): {e}; stream URLs are logged at start only"
            );
            return;
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = socket.readable() => match r {
                Ok(mut guard) => {
                    // Drain: the content does not matter, only that something changed.
                    while let Ok(Ok(n)) = guard.try_io(|fd| {
                        nix::sys::socket::recv(std::os::fd::AsRawFd::as_raw_fd(fd.get_ref()), &mut buf, nix::sys::socket::MsgFlags::empty())
                            .map_err(std::io::Error::from)
                    }) {
                        if n == 0 { break; }
                    }
                }
                Err(e) => {
                    tracing::warn!("netlink address events failed: {e}");
                    return;
                }
            },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // Addresses often come in bursts (IPv4, then IPv6 a moment later): settle first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = stream_urls(bound);
        let (appeared, gone) = url_changes(&urls.borrow(), &now);
        for url in &appeared {
            tracing::info!("stream at {url}");
        }
        for url in &gone {
            tracing::info!("no longer at {url}: address gone");
        }
        if !appeared.is_empty() || !gone.is_empty() {
            urls.send_replace(now);
        }
    }
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
