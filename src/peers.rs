//! Who a client is, for the limits that are kept per client: stream slots per address
//! (`stream.max-clients-per-address`), open TCP connections per address (the accept loop in
//! `http`, see [`connections_per_address`]) and failed logins per address (`http::auth`).
//! Kept apart from all three because they must agree on what "one client" is, and below
//! `state` and `http` so that both can use it.
//!
//! An address is all we know of a client, and it is a rough stand-in: every client behind
//! one NAT, or behind a reverse proxy on the same host, shares one. An IPv6 client from
//! elsewhere gets a whole /64 from its provider and can pick any address in it, so a global
//! IPv6 client is its /64; but on the Pi's own LAN every machine shares the LAN's /64 (and
//! every link-local address the same `fe80::/64`), so link-local, unique-local and loopback
//! addresses are each their own client (a /64 key there would let one machine use up every
//! neighbour's allowance). An IPv4-mapped IPv6 address is its IPv4 address. These limits are
//! fairness between clients, not a defence against a host on the LAN, which can take more
//! addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The key a client's address is counted under (see the module docs).
pub fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if local_v6(&v6) => addr,
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Loopback, link-local (`fe80::/10`) and unique-local (`fc00::/7`): the Pi's own LAN, where
/// one /64 is every neighbour.
fn local_v6(v6: &Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    v6.is_loopback() || first & 0xffc0 == 0xfe80 || first & 0xfe00 == 0xfc00
}

/// Connections one address may hold beyond its stream clients: a few browsers behind one
/// NAT each keep up to six connections to a host (the preview page, snapshots, keep-alive),
/// and a dashboard polls besides. 32 idle connections cost well under 1 MB on a Pi Zero 2 W
/// (a task, hyper's 8 KB read buffer, the socket), so an address at its cap holds about 1/100
/// of its RAM, and it takes dozens of addresses, not one, to fill the TCP connections of the
/// connection budget (~1700 there, 4096 at most).
pub const CONNECTIONS_BEYOND_STREAMS: usize = 32;

/// The open TCP connections one address may hold on the stream port, for a given
/// `stream.max-clients-per-address`: its stream clients plus [`CONNECTIONS_BEYOND_STREAMS`];
/// 0 (no stream cap, as behind a reverse proxy on this host, where every client is
/// 127.0.0.1) is no connection cap either.
pub fn connections_per_address(streams_per_address: usize) -> usize {
    match streams_per_address {
        0 => 0,
        n => n.saturating_add(CONNECTIONS_BEYOND_STREAMS),
    }
}

/// Things held per address, capped (reloadable): stream slots
/// (`stream.max-clients-per-address`), and open TCP connections
/// ([`connections_per_address`]).
///
/// The table holds only addresses that hold something, so it never has more entries than
/// the things it counts (`stream.max-clients`, or the TCP connection cap).
#[derive(Debug, Default)]
pub struct PerAddress {
    /// The cap; 0 = none.
    cap: AtomicUsize,
    held: Mutex<HashMap<IpAddr, usize>>,
    /// Clients (or connections) refused because their address held its cap.
    pub refused: AtomicU64,
}

/// One slot taken by [`PerAddress::take`]; given back on drop.
pub struct Slot {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    pub fn new(cap: usize) -> PerAddress {
        PerAddress {
            cap: AtomicUsize::new(cap),
            ..PerAddress::default()
        }
    }

    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// A new cap: applies to clients from then on; nobody connected is cut off.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// A slot for a client from `addr`, or `None` when its address holds the cap already.
    pub fn take(self: &Arc<Self>, addr: IpAddr) -> Option<Slot> {
        let key = key(addr);
        let cap = self.cap();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(key).or_insert(0);
        // A refused address holds its cap (at least 1), so its entry is never left empty.
        if cap != 0 && *n >= cap {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        Some(Slot {
            table: self.clone(),
            key,
        })
    }

    /// Slots `addr` holds now.
    pub fn held(&self, addr: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(&key(addr)).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.table.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_keyed_by_ipv4_or_ipv6_slash_64() {
        let table: &[(&str, &str)] = &[
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
            // The LAN's own addresses: each machine its own client.
            ("::1", "::1"),
            ("fe80::1:2:3:4", "fe80::1:2:3:4"),
            ("febf::1", "febf::1"),
            ("fd12:3456:789a:1::5", "fd12:3456:789a:1::5"),
            ("fc00::9", "fc00::9"),
            // Just outside those ranges: global, keyed by /64.
            ("fec0::1:2", "fec0::"),
            ("fbff:1:2:3:4::", "fbff:1:2:3::"),
        ];
        for (addr, want) in table {
            let got = key(addr.parse().unwrap());
            assert_eq!(got, want.parse::<IpAddr>().unwrap(), "{addr}");
        }
    }

    #[test]
    fn each_address_holds_at_most_its_cap_and_gets_slots_back() {
        let t = Arc::new(PerAddress::new(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = t.take(a).unwrap();
        let a2 = t.take(a).unwrap();
        assert_eq!(t.held(a), 2);
        assert!(t.take(a).is_none());
        // A refusal takes nothing: the cap still holds, the slots held stay counted.
        assert!(t.take(a).is_none());
        assert_eq!(t.held(a), 2);
        assert!(t.take(b).is_some());
        assert_eq!(t.refused.load(Ordering::Relaxed), 2);
        drop(a1);
        assert_eq!(t.held(a), 1);
        let a3 = t.take(a).unwrap();
        drop((a2, a3));
        assert_eq!(t.held(a), 0);
        assert!(t.held.lock().unwrap().is_empty(), "no entry left behind");
        // 0 = no cap; a reload changes the cap for the clients after.
        t.set_cap(0);
        let many: Vec<_> = (0..10).map(|_| t.take(a).unwrap()).collect();
        t.set_cap(1);
        assert!(t.take(a).is_none());
        drop(many);
        assert!(t.take(a).is_some());
    }

    #[test]
    fn connections_per_address_follow_the_stream_cap() {
        for (streams, want) in [(0, 0), (1, 33), (16, 48), (usize::MAX, usize::MAX)] {
            assert_eq!(connections_per_address(streams), want, "{streams}");
        }
    }
}
