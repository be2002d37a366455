//! The URLs a person can open: one per non-loopback local address when bound to all
//! addresses, else the bound address itself.

use std::net::{IpAddr, SocketAddr};

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
