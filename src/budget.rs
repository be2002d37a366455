//! The connection budget: how many connections each listener may hold, derived from the
//! process's `RLIMIT_NOFILE` and from the memory it may count on, so that a TCP flood can
//! never take the descriptors the still socket, the camera, the journal and sd-notify need,
//! nor more than a stated share of the memory.
//!
//! Every accepted connection is a descriptor. With systemd's default soft limit of 1024 and a
//! fixed cap of 1024 TCP connections, an idle-connection flood from the LAN made `accept` on
//! the still socket fail with EMFILE: the robot lost its camera because of a stranger. Now the
//! TCP cap is what is left after a fixed reserve and the still socket's own cap.
//!
//! Every connection is memory too: about 26 KB of picker's for one holding a nearly full
//! request head (a client sending header bytes slowly up to the head limit), so the 4096
//! connections that `LimitNOFILE=8192` allowed were ~106 MB, a quarter of a Pi Zero 2 W's,
//! for any LAN client to take. The TCP cap is therefore also at most what
//! [`MEMORY_SHARE`] of the memory holds at [`CONNECTION_COST`] each; the memory is the
//! smaller of `MemTotal` and the cgroup's memory limit (systemd's `MemoryMax=`, a container's).
//!
//! [`plan`] and the parsers ([`mem_total`], [`memory_cgroup`], [`cgroup_limit`]) are pure;
//! [`raise_nofile`] and [`read_memory`] are the effects (the limit raised, the files read).

use std::path::{Path, PathBuf};

/// Descriptors kept for everything that is not a client connection: stdio, the two
/// listeners, the runtime's epoll and eventfds, journald and sd-notify sockets, the config
/// file on reload, and the camera (V4L2 and media nodes, and one dmabuf descriptor per
/// plane of every frame buffer: a few dozen on a Pi).
pub const RESERVE: u64 = 128;
/// Connections the still socket serves at once. Its clients are local programs; more wait
/// in the listen backlog (they are not refused), and each is held at most until its
/// progress deadline.
pub const STILL_CONNECTIONS: usize = 64;
/// Most TCP connections, however many descriptors and however much memory: the bound the
/// descriptor budget always had, kept so that a flood on a big machine costs no more than
/// the 4096 connections measured (~106 MB at ~26 KB each).
pub const TCP_CEILING: usize = 4096;
/// Fewest TCP connections we run with; below this the limit is too low to be useful and we
/// say so.
pub const TCP_FLOOR: usize = 16;
const TCP_FLOOR_U64: u64 = TCP_FLOOR as u64;
/// The memory TCP connections may take at most, as a divisor of the memory picker may count
/// on: an eighth. A judgment, not a measurement: on a Pi Zero 2 W (~430 MB) a flood's worst
/// is then ~54 MB, about three times picker's own 16-21 MB, and the rest stays with the
/// camera stack and the robot's own programs, which a stranger on the LAN must not push
/// towards the OOM killer; yet ~1700 connections remain there, 36 addresses at the default
/// 48 each. The 4096 connections before were a quarter of it.
pub const MEMORY_SHARE: u64 = 8;
/// What one TCP connection is counted to cost: the ~26 KB of picker's memory measured for
/// one holding a nearly full request head (the most a client can make one cost before it
/// is answered or closed), rounded up for allocator slack and what that measurement missed. 1/8 of 430 MB at this cost is ~1700
/// connections; of a 256 MiB cgroup, 1024.
pub const CONNECTION_COST: u64 = 32 * 1024;
/// A cgroup v1 limit at or above this is "no limit": v1 writes its unlimited as the largest
/// page count in bytes (9223372036854771712 with 4 KiB pages), not as a word.
const NO_LIMIT_FROM: u64 = 1 << 62;

/// Which limit set the TCP cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// What the open-file limit leaves after the reserve and the still socket.
    Descriptors,
    /// [`MEMORY_SHARE`] of the memory at [`CONNECTION_COST`] each.
    Memory,
    /// [`TCP_CEILING`]: both of the others allow more.
    Ceiling,
}

/// How the descriptors and the memory are shared out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The soft `RLIMIT_NOFILE` in force.
    pub nofile: u64,
    /// The memory picker may count on, in bytes, when it could be read.
    pub memory: Option<u64>,
    pub tcp: usize,
    /// The TCP connections the descriptors alone allow (after the reserve and the still
    /// socket).
    pub tcp_by_descriptors: u64,
    /// The TCP connections the memory alone allows; `None` when the memory is unknown.
    pub tcp_by_memory: Option<u64>,
    /// Which limit set `tcp`.
    pub bound: Bound,
    pub still: usize,
    pub reserve: u64,
    /// `bound` allows fewer than [`TCP_FLOOR`] connections: `tcp` is the floor anyway, so a
    /// flood may still exhaust descriptors (or take more than the memory share).
    pub starved: bool,
}

/// Shares `nofile` descriptors (the reserve first, then the still socket, then TCP) and caps
/// TCP by `memory` bytes too, when known.
pub fn plan(nofile: u64, memory: Option<u64>) -> Budget {
    let by_descriptors = nofile.saturating_sub(RESERVE + STILL_CONNECTIONS as u64);
    let by_memory = memory.map(|m| m / MEMORY_SHARE / CONNECTION_COST);
    let ceiling = TCP_CEILING as u64;
    // On a tie the descriptors (then the ceiling) are named: the memory cap is only news
    // when it is what holds TCP lower than before.
    let (allowed, bound) = match by_memory {
        Some(m) if m < by_descriptors.min(ceiling) => (m, Bound::Memory),
        _ if by_descriptors <= ceiling => (by_descriptors, Bound::Descriptors),
        _ => (ceiling, Bound::Ceiling),
    };
    // `allowed` is at most TCP_CEILING here, so it fits a usize.
    let allowed = allowed as usize;
    Budget {
        nofile,
        memory,
        tcp: allowed.max(TCP_FLOOR),
        tcp_by_descriptors: by_descriptors,
        tcp_by_memory: by_memory,
        bound,
        still: STILL_CONNECTIONS,
        reserve: RESERVE,
        starved: allowed < TCP_FLOOR,
    }
}

impl Budget {
    /// The start log's line: both caps, which limit set TCP's, and each limit's figures, so
    /// that `journalctl -u picker` explains the cap. `cgroup`: the memory is a cgroup's
    /// limit (else `MemTotal`).
    pub fn summary(&self, cgroup: bool) -> String {
        let set_by = match self.bound {
            Bound::Descriptors => "set by descriptors".to_string(),
            Bound::Memory => "set by memory".to_string(),
            Bound::Ceiling => format!(
                "set by the ceiling of {TCP_CEILING}: descriptors{} allow more",
                if self.tcp_by_memory.is_some() {
                    " and memory"
                } else {
                    ""
                }
            ),
        };
        let memory = match (self.memory, self.tcp_by_memory) {
            (Some(bytes), Some(by_memory)) => format!(
                "memory: {} ({}), room for {by_memory} TCP at 1/{MEMORY_SHARE} of it, {} KiB each",
                mib(bytes),
                if cgroup {
                    "the cgroup's memory limit"
                } else {
                    "MemTotal"
                },
                CONNECTION_COST / 1024
            ),
            _ => "memory: unknown, not counted".to_string(),
        };
        format!(
            "connection caps: up to {} TCP connections ({set_by}), {} on the still socket; \
             descriptors: limit {}, {} reserved for the camera, journal and sd-notify, room for \
             {} TCP; {memory}",
            self.tcp, self.still, self.nofile, self.reserve, self.tcp_by_descriptors,
        )
    }

    /// A warning for each limit that allows fewer than [`TCP_FLOOR`] connections (TCP gets
    /// the floor anyway).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.tcp_by_descriptors < TCP_FLOOR as u64 {
            out.push(format!(
                "the open-file limit {} is too low for {} reserved descriptors and both \
                 connection caps: raise LimitNOFILE",
                self.nofile, self.reserve
            ));
        }
        // Not a let chain: the MSRV (Debian trixie's rustc 1.85) has none.
        if let (Some(bytes), Some(n @ 0..TCP_FLOOR_U64)) = (self.memory, self.tcp_by_memory) {
            out.push(format!(
                "{} of memory holds only {n} TCP connections at 1/{MEMORY_SHARE} of it: the \
                 {TCP_FLOOR} picker keeps may take more than that share",
                mib(bytes)
            ));
        }
        out
    }
}

/// `bytes` in MiB, one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `MemTotal` of `/proc/meminfo`'s text, in bytes.
pub fn mem_total(meminfo: &str) -> Result<u64, String> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .ok_or("no MemTotal line")?;
    let mut words = line.split_whitespace();
    let (Some(n), Some("kB"), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "MemTotal is not \"<number> kB\": {:?}",
            line.trim()
        ));
    };
    n.parse::<u64>()
        .ok()
        .and_then(|kb| kb.checked_mul(1024))
        .ok_or_else(|| format!("MemTotal is not a number of kB: {n:?}"))
}

/// The process's memory cgroup, as `/proc/self/cgroup` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cgroup {
    /// The cgroup v1 `memory` controller's hierarchy (`N:memory:/path`; a hybrid system
    /// has a `0::` line too, but its unified hierarchy has no memory controller).
    V1(String),
    /// The cgroup v2 unified hierarchy (`0::/path`).
    V2(String),
}

/// The memory cgroup in `/proc/self/cgroup`'s text: the v1 `memory` line when there is
/// one, else the v2 `0::` line; `None` when neither is there (no cgroups, or lines that do
/// not parse).
pub fn memory_cgroup(proc_self_cgroup: &str) -> Option<Cgroup> {
    let mut v2 = None;
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        if controllers.split(',').any(|c| c == "memory") {
            return Some(Cgroup::V1(path.to_string()));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(Cgroup::V2(path.to_string()));
        }
    }
    v2
}

impl Cgroup {
    /// The files holding the memory limits that bind the process: its cgroup's and every
    /// ancestor's up to the mount's root (a slice's `MemoryMax=` binds the services in it),
    /// its own first. The root counts too: in a container with its own cgroup namespace the
    /// path is `/` and the mount's root is the container's cgroup, whose limit it is (the
    /// host's v2 root has no `memory.max`; the v1 root's is unlimited).
    pub fn limit_files(&self) -> Vec<PathBuf> {
        let (root, file, path) = match self {
            Cgroup::V1(p) => ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", p),
            Cgroup::V2(p) => ("/sys/fs/cgroup", "memory.max", p),
        };
        let root = Path::new(root);
        let mut dir = root.join(path.trim_start_matches('/'));
        let mut files = vec![dir.join(file)];
        while dir != root && dir.pop() {
            files.push(dir.join(file));
        }
        files
    }
}

/// One cgroup limit file's text (`memory.max` or `memory.limit_in_bytes`): the limit in
/// bytes, or `None` for none ("max", or v1's huge unlimited).
pub fn cgroup_limit(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    match t.parse::<u64>() {
        Ok(n) if n >= NO_LIMIT_FROM => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(format!("not a number of bytes or \"max\": {t:?}")),
    }
}

/// The memory picker may count on, as read: `MemTotal`, and the tightest cgroup limit
/// (`Ok(None)`: none), each with why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memory {
    pub total: Result<u64, String>,
    pub cgroup: Result<Option<u64>, String>,
}

impl Memory {
    /// The smaller of what could be read; `None` when neither could.
    pub fn usable(&self) -> Option<u64> {
        let total = self.total.as_ref().ok().copied();
        let cgroup = self.cgroup.as_ref().ok().copied().flatten();
        match (total, cgroup) {
            (Some(t), Some(c)) => Some(t.min(c)),
            (t, c) => t.or(c),
        }
    }

    /// Whether the cgroup limit is what [`usable`](Self::usable) is.
    pub fn cgroup_binds(&self) -> bool {
        match (&self.total, &self.cgroup) {
            (Ok(t), Ok(Some(c))) => c < t,
            (Err(_), Ok(Some(_))) => true,
            _ => false,
        }
    }

    /// What could not be read, each naming the file and the error.
    pub fn problems(&self) -> Vec<&str> {
        [self.total.as_ref().err(), self.cgroup.as_ref().err()]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// The one warning for the start log when something could not be read: what, and what
    /// the TCP cap counts instead.
    pub fn warning(&self) -> Option<String> {
        let problems = self.problems();
        if problems.is_empty() {
            return None;
        }
        let counted = match (&self.total, &self.cgroup) {
            (Ok(_), _) => "MemTotal only",
            (Err(_), Ok(Some(_))) => "the cgroup's memory limit only",
            (Err(_), _) => "descriptors only",
        };
        Some(format!(
            "{}; the TCP connection cap counts {counted}",
            problems.join("; ")
        ))
    }
}

/// Reads `/proc/meminfo` and the process's cgroup memory limits.
pub fn read_memory() -> Memory {
    memory_from(|path| std::fs::read_to_string(path))
}

/// [`read_memory`] over `read`, which reads a file (a recorded machine in the tests).
fn memory_from(read: impl Fn(&Path) -> std::io::Result<String>) -> Memory {
    let text = |path: &str| read(Path::new(path)).map_err(|e| format!("cannot read {path}: {e}"));
    let total = text("/proc/meminfo")
        .and_then(|t| mem_total(&t).map_err(|e| format!("/proc/meminfo: {e}")));
    let cgroup = text("/proc/self/cgroup").and_then(|t| {
        let Some(cgroup) = memory_cgroup(&t) else {
            return Ok(None);
        };
        let mut tightest: Option<u64> = None;
        for file in cgroup.limit_files() {
            let text = match read(&file) {
                Ok(text) => text,
                // A cgroup without the memory controller (v2: not enabled for it, or the
                // host's root) limits nothing itself; so does a path this mount does not
                // show (a container without its own cgroup namespace: its root is read).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
            };
            let limit = cgroup_limit(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            tightest = match (tightest, limit) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(tightest)
    });
    Memory { total, cgroup }
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

    const MIB: u64 = 1024 * 1024;
    /// A Pi Zero 2 W's `MemTotal` (512 MB, less the GPU's and the kernel's share), in bytes.
    const PI_ZERO_2_W: u64 = 440_320 * 1024;

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
            let b = plan(nofile, None);
            assert_eq!((b.tcp, b.starved), (tcp, starved), "nofile {nofile}");
            assert_eq!(b.still, STILL_CONNECTIONS);
        }
    }

    #[test]
    fn a_full_tcp_cap_leaves_the_reserve_and_the_still_socket_free() {
        for nofile in [256u64, 1024, 2048, 8192, 65536] {
            for memory in [None, Some(64 * MIB), Some(PI_ZERO_2_W), Some(u64::MAX)] {
                let b = plan(nofile, memory);
                assert!(
                    b.tcp as u64 + b.still as u64 + b.reserve <= nofile,
                    "nofile {nofile}: {b:?}"
                );
            }
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
            let b = plan(nofile, None);
            assert_eq!((b.tcp, b.starved), (tcp, starved), "nofile {nofile}");
            assert_eq!((b.nofile, b.reserve), (nofile, RESERVE), "nofile {nofile}");
            assert_eq!(b.bound, Bound::Descriptors, "nofile {nofile}");
        }
    }

    #[test]
    fn memory_caps_tcp_at_an_eighth_at_32_kib_a_connection() {
        use Bound::*;
        // (RLIMIT_NOFILE, memory, TCP cap, which limit, starved)
        let table = [
            // The unit's 8192 descriptors on a Pi Zero 2 W: memory, not descriptors (4096
            // connections were a quarter of its memory).
            (8192, Some(PI_ZERO_2_W), 1720, Memory, false),
            (8192, Some(256 * MIB), 1024, Memory, false),
            (8192, Some(64 * MIB), 256, Memory, false),
            // Plenty of memory (this 24 GB machine): the ceiling, as before.
            (8192, Some(24_683_772 * 1024), TCP_CEILING, Ceiling, false),
            (8192, Some(u64::MAX), TCP_CEILING, Ceiling, false),
            (8192, None, TCP_CEILING, Ceiling, false),
            // Fewer descriptors than the memory allows: descriptors, as before.
            (1024, Some(256 * MIB), 832, Descriptors, false),
            (1024, None, 832, Descriptors, false),
            // A tie names the descriptors.
            (192 + 1024, Some(256 * MIB), 1024, Descriptors, false),
            (192 + 1025, Some(256 * MIB), 1024, Memory, false),
            // The floor: 4 MiB holds exactly 16; one byte less, 15, and memory is starved.
            (8192, Some(4 * MIB), TCP_FLOOR, Memory, false),
            (8192, Some(4 * MIB - 1), TCP_FLOOR, Memory, true),
            (8192, Some(0), TCP_FLOOR, Memory, true),
            (0, Some(0), TCP_FLOOR, Descriptors, true),
        ];
        for (nofile, memory, tcp, bound, starved) in table {
            let b = plan(nofile, memory);
            assert_eq!(
                (b.tcp, b.bound, b.starved),
                (tcp, bound, starved),
                "nofile {nofile}, memory {memory:?}"
            );
            assert_eq!(b.memory, memory);
            assert_eq!(b.tcp_by_descriptors, nofile.saturating_sub(192));
            assert_eq!(b.tcp_by_memory, memory.map(|m| m / 8 / 32768));
        }
    }

    #[test]
    fn mem_total_reads_kb_as_bytes() {
        // Recorded on a Pi Zero 2 W (first lines) and on this machine.
        let pi = "MemTotal:         440320 kB\nMemFree:          301216 kB\n\
                  MemAvailable:     356748 kB\n";
        assert_eq!(mem_total(pi), Ok(PI_ZERO_2_W));
        let here = "MemTotal:       24683772 kB\nMemFree:        21000000 kB\n";
        assert_eq!(mem_total(here), Ok(24_683_772 * 1024));
        for bad in [
            "",
            "MemFree: 1 kB\n",
            "MemTotal: lots kB\n",
            "MemTotal: 440320 MB\n",
            "MemTotal: 440320\n",
            "MemTotal: -1 kB\n",
            "MemTotal: 99999999999999999999 kB\n",
        ] {
            assert!(mem_total(bad).is_err(), "{bad:?}: {:?}", mem_total(bad));
        }
    }

    #[test]
    fn memory_cgroup_prefers_the_v1_memory_line() {
        // Recorded on this machine (cgroup v1, hybrid: a `0::` line too).
        let hybrid = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n\
                      4:memory:/process_api/9a1c67b392894f30923bfa3b12816d12\n3:cpuset:/\n\
                      2:cpuacct:/\n1:cpu:/\n0::/\n";
        assert_eq!(
            memory_cgroup(hybrid),
            Some(Cgroup::V1(
                "/process_api/9a1c67b392894f30923bfa3b12816d12".into()
            ))
        );
        // Raspberry Pi OS (cgroup v2 only), a service and a login shell.
        assert_eq!(
            memory_cgroup("0::/system.slice/picker.service\n"),
            Some(Cgroup::V2("/system.slice/picker.service".into()))
        );
        assert_eq!(memory_cgroup("0::/\n"), Some(Cgroup::V2("/".into())));
        // Controllers mounted together.
        assert_eq!(
            memory_cgroup("3:cpu,memory:/a\n0::/b\n"),
            Some(Cgroup::V1("/a".into()))
        );
        // None: no cgroups, garbage, or a path that is not one.
        for text in [
            "",
            "garbage\n",
            "4:memory\n",
            "4:memoryless:/a\n",
            "0::relative\n",
            // Only hierarchy 0 with no controllers is v2's.
            "5::/odd\n",
            "0:cpu:/odd\n",
        ] {
            assert_eq!(memory_cgroup(text), None, "{text:?}");
        }
    }

    #[test]
    fn limit_files_are_the_cgroups_own_then_its_ancestors() {
        let v2 = Cgroup::V2("/system.slice/picker.service".into()).limit_files();
        assert_eq!(
            v2,
            [
                "/sys/fs/cgroup/system.slice/picker.service/memory.max",
                "/sys/fs/cgroup/system.slice/memory.max",
                "/sys/fs/cgroup/memory.max",
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            Cgroup::V2("/".into()).limit_files(),
            [PathBuf::from("/sys/fs/cgroup/memory.max")]
        );
        let v1 = Cgroup::V1("/process_api/9a1c".into()).limit_files();
        assert_eq!(
            v1,
            [
                "/sys/fs/cgroup/memory/process_api/9a1c/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            Cgroup::V1("/".into()).limit_files(),
            [PathBuf::from("/sys/fs/cgroup/memory/memory.limit_in_bytes")]
        );
    }

    #[test]
    fn cgroup_limit_reads_bytes_and_knows_no_limit() {
        // v2's memory.max, v1's memory.limit_in_bytes (this machine's unlimited root).
        assert_eq!(cgroup_limit("max\n"), Ok(None));
        assert_eq!(cgroup_limit("268435456\n"), Ok(Some(256 * MIB)));
        assert_eq!(cgroup_limit("9223372036854771712\n"), Ok(None));
        assert_eq!(
            cgroup_limit("4611686018427387903\n"),
            Ok(Some((1 << 62) - 1))
        );
        for bad in [
            "",
            "\n",
            "lots\n",
            "-1\n",
            "256M\n",
            "18446744073709551616\n",
        ] {
            assert!(cgroup_limit(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usable_memory_is_the_smaller_of_what_could_be_read() {
        let m = |total: Result<u64, &str>, cgroup: Result<Option<u64>, &str>| Memory {
            total: total.map_err(String::from),
            cgroup: cgroup.map_err(String::from),
        };
        // (memory, usable, the cgroup binds, problems)
        let table = [
            (m(Ok(PI_ZERO_2_W), Ok(None)), Some(PI_ZERO_2_W), false, 0),
            (
                m(Ok(PI_ZERO_2_W), Ok(Some(256 * MIB))),
                Some(256 * MIB),
                true,
                0,
            ),
            (
                m(Ok(256 * MIB), Ok(Some(PI_ZERO_2_W))),
                Some(256 * MIB),
                false,
                0,
            ),
            // As large as MemTotal: MemTotal is named.
            (
                m(Ok(PI_ZERO_2_W), Ok(Some(PI_ZERO_2_W))),
                Some(PI_ZERO_2_W),
                false,
                0,
            ),
            (m(Ok(PI_ZERO_2_W), Err("x")), Some(PI_ZERO_2_W), false, 1),
            (m(Err("x"), Ok(Some(256 * MIB))), Some(256 * MIB), true, 1),
            (m(Err("x"), Ok(None)), None, false, 1),
            (m(Err("x"), Err("y")), None, false, 2),
        ];
        for (memory, usable, binds, problems) in table {
            assert_eq!(memory.usable(), usable, "{memory:?}");
            assert_eq!(memory.cgroup_binds(), binds, "{memory:?}");
            assert_eq!(memory.problems().len(), problems, "{memory:?}");
        }
    }

    #[test]
    fn the_summary_names_the_limit_that_set_the_cap() {
        // (budget, the memory is a cgroup's, what the line says)
        let table = [
            (
                plan(8192, Some(256 * MIB)),
                true,
                "connection caps: up to 1024 TCP connections (set by memory), 64 on the still \
                 socket; descriptors: limit 8192, 128 reserved for the camera, journal and \
                 sd-notify, room for 8000 TCP; memory: 256.0 MiB (the cgroup's memory limit), \
                 room for 1024 TCP at 1/8 of it, 32 KiB each",
            ),
            (
                plan(8192, Some(PI_ZERO_2_W)),
                false,
                "connection caps: up to 1720 TCP connections (set by memory), 64 on the still \
                 socket; descriptors: limit 8192, 128 reserved for the camera, journal and \
                 sd-notify, room for 8000 TCP; memory: 430.0 MiB (MemTotal), room for 1720 TCP \
                 at 1/8 of it, 32 KiB each",
            ),
            (
                plan(1024, Some(PI_ZERO_2_W)),
                false,
                "connection caps: up to 832 TCP connections (set by descriptors), 64 on the \
                 still socket; descriptors: limit 1024, 128 reserved for the camera, journal \
                 and sd-notify, room for 832 TCP; memory: 430.0 MiB (MemTotal), room for 1720 \
                 TCP at 1/8 of it, 32 KiB each",
            ),
            (
                plan(8192, None),
                false,
                "connection caps: up to 4096 TCP connections (set by the ceiling of 4096: \
                 descriptors allow more), 64 on the still socket; descriptors: limit 8192, 128 \
                 reserved for the camera, journal and sd-notify, room for 8000 TCP; memory: \
                 unknown, not counted",
            ),
            (
                plan(8192, Some(24_683_772 * 1024)),
                false,
                "connection caps: up to 4096 TCP connections (set by the ceiling of 4096: \
                 descriptors and memory allow more), 64 on the still socket; descriptors: limit \
                 8192, 128 reserved for the camera, journal and sd-notify, room for 8000 TCP; \
                 memory: 24105.2 MiB (MemTotal), room for 96420 TCP at 1/8 of it, 32 KiB each",
            ),
        ];
        for (b, cgroup, want) in table {
            assert_eq!(b.summary(cgroup), want);
            assert!(b.warnings().is_empty(), "{b:?}");
        }
    }

    #[test]
    fn each_limit_below_the_floor_is_warned_of() {
        assert!(plan(208, Some(4 * MIB)).warnings().is_empty());
        let w = plan(8192, Some(MIB)).warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("1.0 MiB of memory holds only 4 TCP connections"),
            "{w:?}"
        );
        let w = plan(200, None).warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("raise LimitNOFILE"), "{w:?}");
        // Both: both are said, whichever set the cap.
        assert_eq!(plan(200, Some(MIB)).warnings().len(), 2);
    }

    #[test]
    fn what_could_not_be_read_is_said_once_with_what_is_counted_instead() {
        let m = |total: Result<u64, &str>, cgroup: Result<Option<u64>, &str>| Memory {
            total: total.map_err(String::from),
            cgroup: cgroup.map_err(String::from),
        };
        assert_eq!(m(Ok(PI_ZERO_2_W), Ok(Some(256 * MIB))).warning(), None);
        assert_eq!(m(Ok(PI_ZERO_2_W), Ok(None)).warning(), None);
        let table = [
            (
                m(
                    Ok(PI_ZERO_2_W),
                    Err("cannot read /proc/self/cgroup: denied"),
                ),
                "cannot read /proc/self/cgroup: denied; the TCP connection cap counts MemTotal \
                 only",
            ),
            (
                m(Err("/proc/meminfo: no MemTotal line"), Ok(Some(256 * MIB))),
                "/proc/meminfo: no MemTotal line; the TCP connection cap counts the cgroup's \
                 memory limit only",
            ),
            (
                m(Err("a"), Ok(None)),
                "a; the TCP connection cap counts descriptors only",
            ),
            (
                m(Err("a"), Err("b")),
                "a; b; the TCP connection cap counts descriptors only",
            ),
        ];
        for (memory, want) in table {
            assert_eq!(memory.warning().as_deref(), Some(want), "{memory:?}");
        }
    }

    /// The effect on this machine: `MemTotal` is read, and whatever the cgroup says, nothing
    /// fails (the tests run in an unlimited cgroup; `tests/memory.rs` sets one).
    /// A machine whose files are `files` (path, text; `Err`: the error reading it gives).
    fn machine(
        files: &[(&str, Result<&str, std::io::ErrorKind>)],
    ) -> impl Fn(&Path) -> std::io::Result<String> {
        let files: Vec<(PathBuf, Result<String, std::io::ErrorKind>)> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.map(String::from)))
            .collect();
        move |path| match files.iter().find(|(p, _)| p == path) {
            Some((_, Ok(t))) => Ok(t.clone()),
            Some((_, Err(kind))) => Err((*kind).into()),
            None => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    #[test]
    fn the_tightest_limit_of_the_cgroup_and_its_ancestors_counts_and_a_missing_one_none() {
        use std::io::ErrorKind::PermissionDenied;
        let meminfo = "MemTotal:         440320 kB\nMemFree: 1 kB\n";
        let v2 = "0::/system.slice/picker.service\n";
        let svc = "/sys/fs/cgroup/system.slice/picker.service/memory.max";
        let slice = "/sys/fs/cgroup/system.slice/memory.max";
        // The service has no memory.max (not enabled for it), its slice 256 MiB: the slice's.
        let m = memory_from(machine(&[
            ("/proc/meminfo", Ok(meminfo)),
            ("/proc/self/cgroup", Ok(v2)),
            (slice, Ok("268435456\n")),
        ]));
        assert_eq!(m.total, Ok(440320 * 1024));
        assert_eq!(m.cgroup, Ok(Some(256 * MIB)));
        // Both limited: the smaller, wherever it is; "max" limits nothing.
        for (own, parent, want) in [
            ("134217728", "268435456", Some(128 * MIB)),
            ("268435456", "134217728", Some(128 * MIB)),
            ("max", "max", None),
        ] {
            let m = memory_from(machine(&[
                ("/proc/meminfo", Ok(meminfo)),
                ("/proc/self/cgroup", Ok(v2)),
                (svc, Ok(own)),
                (slice, Ok(parent)),
            ]));
            assert_eq!(m.cgroup, Ok(want), "{own} {parent}");
        }
        // A file that is there but cannot be read, or says nonsense, is said, naming it.
        let m = memory_from(machine(&[
            ("/proc/meminfo", Ok(meminfo)),
            ("/proc/self/cgroup", Ok(v2)),
            (svc, Err(PermissionDenied)),
        ]));
        let e = m.cgroup.unwrap_err();
        assert!(e.starts_with(&format!("cannot read {svc}: ")), "{e}");
        let m = memory_from(machine(&[
            ("/proc/meminfo", Ok(meminfo)),
            ("/proc/self/cgroup", Ok(v2)),
            (slice, Ok("lots")),
        ]));
        assert!(m.cgroup.unwrap_err().starts_with(slice));
        // No cgroup file, no meminfo: both said, naming the file.
        let m = memory_from(machine(&[]));
        assert!(
            m.total
                .unwrap_err()
                .starts_with("cannot read /proc/meminfo: ")
        );
        assert!(
            m.cgroup
                .unwrap_err()
                .starts_with("cannot read /proc/self/cgroup: ")
        );
    }

    #[test]
    fn read_memory_reads_this_machine() {
        let m = read_memory();
        assert!(m.problems().is_empty(), "{m:?}");
        let total = m.total.unwrap();
        assert!(total > 64 * MIB, "{total}");
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
