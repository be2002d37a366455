//! The file-descriptor budget: how many connections each listener may hold, derived from the
//! process's `RLIMIT_NOFILE`, so that a TCP flood can never take the descriptors the still
//! socket, the camera, the journal and sd-notify need.
//!
//! Every accepted connection is a descriptor. With systemd's default soft limit of 1024 and a
//! fixed cap of 1024 TCP connections, an idle-connection flood from the LAN made `accept` on
//! the still socket fail with EMFILE: the robot lost its camera because of a stranger. Now the
//! TCP cap is what is left after a fixed reserve and the still socket's own cap.
//!
//! [`plan`] is the pure arithmetic; [`raise_nofile`] the one effect (read the limit, raise the
//! soft limit to the hard one).

/// Descriptors kept for everything that is not a client connection: stdio, the two
/// listeners, the runtime's epoll and eventfds, journald and sd-notify sockets, the config
/// file on reload, and the camera (V4L2 and media nodes, and one dmabuf descriptor per
/// plane of every frame buffer: a few dozen on a Pi).
pub const RESERVE: u64 = 128;
/// Connections the still socket serves at once. Its clients are local programs; more wait
/// in the listen backlog (they are not refused), and each is held at most until its
/// progress deadline.
pub const STILL_CONNECTIONS: usize = 64;
/// Most TCP connections, however high the limit: each costs a task and buffers, and a
/// Pi has little memory.
pub const TCP_CEILING: usize = 4096;
/// Fewest TCP connections we run with; below this the limit is too low to be useful and we
/// say so.
pub const TCP_FLOOR: usize = 16;

/// How the descriptors are shared out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The soft `RLIMIT_NOFILE` in force.
    pub nofile: u64,
    pub tcp: usize,
    pub still: usize,
    pub reserve: u64,
    /// The limit is too low for the reserve and both caps: the figures are floors, and a
    /// flood may still exhaust descriptors.
    pub starved: bool,
}

/// Shares `nofile` descriptors: the reserve first, then the still socket, then TCP.
pub fn plan(nofile: u64) -> Budget {
    let left = nofile.saturating_sub(RESERVE + STILL_CONNECTIONS as u64);
    let tcp = usize::try_from(left).unwrap_or(usize::MAX).min(TCP_CEILING);
    Budget {
        nofile,
        tcp: tcp.max(TCP_FLOOR),
        still: STILL_CONNECTIONS,
        reserve: RESERVE,
        starved: tcp < TCP_FLOOR,
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit if it is lower, and returns the soft
/// limit now in force (or the error and the unchanged limit).
// `rlim_t` is 64 bits here but 32 on armhf: the casts are needed there.
#[allow(clippy::unnecessary_cast)]
pub fn raise_nofile() -> (u64, Option<std::io::Error>) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (1024, Some(std::io::Error::last_os_error()));
    }
    let soft = lim.rlim_cur as u64;
    if lim.rlim_cur >= lim.rlim_max {
        return (soft, None);
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return (soft, Some(std::io::Error::last_os_error()));
    }
    (lim.rlim_max as u64, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_gets_what_the_reserve_and_the_still_socket_leave() {
        // (RLIMIT_NOFILE, TCP cap, starved)
        let table = [
            (8192, TCP_CEILING, false),
            (1024, 1024 - 128 - 64, false),
            (4096, 4096 - 192, false),
            (256, 64, false),
            (200, TCP_FLOOR, true),
            (0, TCP_FLOOR, true),
            (u64::MAX, TCP_CEILING, false),
        ];
        for (nofile, tcp, starved) in table {
            let b = plan(nofile);
            assert_eq!((b.tcp, b.starved), (tcp, starved), "nofile {nofile}");
            assert_eq!(b.still, STILL_CONNECTIONS);
        }
    }

    #[test]
    fn a_full_tcp_cap_leaves_the_reserve_and_the_still_socket_free() {
        for nofile in [256u64, 1024, 2048, 8192, 65536] {
            let b = plan(nofile);
            assert!(
                b.tcp as u64 + b.still as u64 + b.reserve <= nofile,
                "nofile {nofile}: {b:?}"
            );
        }
    }

    #[test]
    fn starved_begins_one_descriptor_below_the_floor() {
        // The reserve and the still socket take 192: 208 leaves exactly the floor.
        // (RLIMIT_NOFILE, TCP cap, starved)
        let table = [
            (208, TCP_FLOOR, false),
            (207, TCP_FLOOR, true),
            (209, TCP_FLOOR + 1, false),
            (192 + 4096, TCP_CEILING, false),
            (192 + 4095, TCP_CEILING - 1, false),
        ];
        for (nofile, tcp, starved) in table {
            let b = plan(nofile);
            assert_eq!((b.tcp, b.starved), (tcp, starved), "nofile {nofile}");
            assert_eq!((b.nofile, b.reserve), (nofile, RESERVE), "nofile {nofile}");
        }
    }

    /// The one effect, on this test process: a soft limit below the hard one is raised to it
    /// and the raised limit is what is returned; at the hard limit already, nothing changes.
    // `rlim_t` is 64 bits here but 32 on armhf: the casts are needed there.
    #[allow(clippy::unnecessary_cast)]
    #[test]
    fn raise_nofile_lifts_the_soft_limit_to_the_hard_one() {
        let get = || {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes the struct we pass.
            assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
            lim
        };
        let before = get();
        // Below the hard limit for certain (by one: this process's other tests keep theirs).
        let lowered = libc::rlimit {
            rlim_cur: before.rlim_max - 1,
            rlim_max: before.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let (soft, err) = raise_nofile();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(soft, before.rlim_max as u64);
        assert_eq!(get().rlim_cur, before.rlim_max);
        // Already at the hard limit: returned as it is.
        let (soft, err) = raise_nofile();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(soft, before.rlim_max as u64);
    }
}
