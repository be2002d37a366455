//! The TCP connection cap from memory, through the real binary: picker started inside a
//! memory cgroup with a limit reads it, says the cap it sets and that memory set it, and
//! refuses the connection beyond it. The cgroup is made for the test (v1's `memory`
//! controller, or v2's), which needs root, as CI has: without it the tests fail and say why.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::*;

const MIB: u64 = 1024 * 1024;
/// The packaged unit's `LimitNOFILE`: with it, descriptors would allow 8000 TCP connections.
const UNIT_NOFILE: u64 = 8192;

/// A memory cgroup with a limit for the length of a test, removed again (once the picker in
/// it has ended: declare it before the [`Picker`]).
struct MemoryCgroup {
    dir: PathBuf,
}

impl MemoryCgroup {
    fn new(name: &str, limit: u64) -> MemoryCgroup {
        let name = format!("picker-test-{}-{name}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let v2 = Path::new("/sys/fs/cgroup");
        let (dir, limit_file) = if v1.join("memory.limit_in_bytes").exists() {
            // Under this test's own memory cgroup, so that picker stays counted where the
            // test is (and within any limit on it).
            let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
            let path = own
                .lines()
                .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
                .unwrap_or_else(|| "/".into());
            let dir = v1.join(path.trim_start_matches('/')).join(name);
            (dir, "memory.limit_in_bytes")
        } else if std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        {
            // v2 lets a cgroup with processes in it hand controllers down only at the root.
            let control = v2.join("cgroup.subtree_control");
            std::fs::write(&control, "+memory").unwrap_or_else(|e| {
                panic!(
                    "cannot enable the memory controller in {} ({e}): these tests need root",
                    control.display()
                )
            });
            (v2.join(name), "memory.max")
        } else {
            panic!(
                "neither a cgroup v1 memory controller (/sys/fs/cgroup/memory) nor a cgroup v2 \
                 one (memory in /sys/fs/cgroup/cgroup.controllers): these tests need one, and \
                 root"
            );
        };
        std::fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the cgroup {} ({e}): these tests need root",
                dir.display()
            )
        });
        let cgroup = MemoryCgroup { dir };
        let file = cgroup.dir.join(limit_file);
        std::fs::write(&file, limit.to_string())
            .unwrap_or_else(|e| panic!("cannot write {limit} to {}: {e}", file.display()));
        cgroup
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // A cgroup goes once its last process has: picker's exit may take a moment to count.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_256_mib_cgroup_caps_tcp_at_1024_connections_and_says_memory_set_it() {
    let cgroup = MemoryCgroup::new("256m", 256 * MIB);
    let mut p = Picker::start_in_cgroup(&cgroup.procs(), &[], UNIT_NOFILE);
    let line = p.wait_log("connection caps:", Duration::from_secs(5));
    // 1/8 of 256 MiB at 32 KiB each; the unit's descriptors would allow 8000.
    assert!(
        line.contains("up to 1024 TCP connections (set by memory)"),
        "{line}"
    );
    assert!(
        line.contains("memory: 256.0 MiB (the cgroup's memory limit)"),
        "{line}"
    );
    assert!(line.contains("descriptors: limit 8192"), "{line}");
    assert!(line.contains("room for 8000 TCP"), "{line}");
    // The limit was read, not guessed: nothing was unreadable.
    assert!(p.find_log("cannot read").is_none(), "{}", p.log_text());
    drop(p);
}

#[test]
fn a_64_mib_cgroup_refuses_the_257th_tcp_connection() {
    let cgroup = MemoryCgroup::new("64m", 64 * MIB);
    let mut p = Picker::start_in_cgroup(&cgroup.procs(), &[], UNIT_NOFILE);
    let line = p.wait_log("connection caps:", Duration::from_secs(5));
    assert!(
        line.contains("up to 256 TCP connections (set by memory)"),
        "{line}"
    );
    // 300 idle connections (no cap per address in the tests' config): 256 held, the rest
    // closed at once. (Each is closed at the 5 s head deadline and made again, so the flood
    // keeps pressing.)
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(FloodCounts::default());
    let to = p.addr();
    let flood = idle_tcp_flood(
        move || connect_from("127.0.0.1", to),
        300,
        stop.clone(),
        counts.clone(),
    );
    let refused = p.wait_log(
        "TCP connection(s) refused since the last such line: 256 open, the cap",
        Duration::from_secs(20),
    );
    let held = counts.alive.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    assert!(held <= 256, "{held} idle connections held: {refused}");
    // Once the flood has gone, a metrics request gets a slot again.
    let t0 = Instant::now();
    let n = loop {
        let n = std::panic::catch_unwind(|| metric(&p, "picker_connections_refused_total"));
        match n {
            Ok(n) => break n,
            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => std::panic::resume_unwind(e),
        }
    };
    assert!(n >= 1.0, "{n}");
    drop(p);
}
