//! `benches/vm/client.rs` is built with a bare `rustc` for the test VM (see its header); its
//! unit tests (the per-thread CPU split on recorded `/proc/PID/task/*/stat` samples) run here
//! with the project's other tests.

#[allow(dead_code)]
#[path = "../benches/vm/client.rs"]
mod client;
