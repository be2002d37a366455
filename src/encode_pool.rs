//! Work per frame, not per request: the single-flight encode pool behind `/snapshot.jpg` and
//! the still formats.
//!
//! A fixed, small set of threads (started once, at service start) takes encode jobs from a
//! bounded queue. Requests for the same output of the same camera frame share one job: the
//! first asks the pool, every later one waits for that job's result (single flight), so a
//! burst of a thousand requests costs one encode per frame and output kind, not a thousand
//! threads and a thousand buffers. When the queue is full the request is refused at once
//! ([`PoolError::Busy`], answered 503 with `Retry-After`) instead of waiting in an unbounded
//! line. No request ever starts a thread.
//!
//! Hand-written rather than a thread-pool crate: what matters here is the pairing of a
//! bounded queue with the per-kind single-flight table, about sixty lines either way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

/// Encode threads. Two keep one core free for capture and the stream encoder on a 4-core
/// Pi; with single flight, more would only help many distinct outputs of the same frame.
pub const THREADS: usize = 2;
/// Jobs waiting for a thread beyond those running. Single flight means at most one job
/// per output kind and frame, so this is only reached when frames outrun the encoders.
pub const QUEUE: usize = 8;

/// What is being encoded; requests for the same kind and frame share one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `/snapshot.jpg`: the video frame as JPEG.
    Snapshot,
    /// `/still.<ext>`: the still frame in one format (an index into the caller's formats).
    Still(u8),
}

/// Why no encoding came back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The queue is full: try again shortly.
    #[error("encoder busy: too many requests, retry shortly")]
    Busy,
    /// The job ran and failed (or panicked).
    #[error("{0}")]
    Failed(Arc<str>),
    /// The pool is shutting down.
    #[error("encoder stopped")]
    Gone,
}

type Outcome = Result<Bytes, PoolError>;
type Job = Box<dyn FnOnce() + Send>;

/// The latest job of one kind.
struct Flight {
    sequence: u64,
    done: watch::Receiver<Option<Outcome>>,
}

/// The pool; see the module docs.
pub struct EncodePool {
    jobs: SyncSender<Job>,
    flights: Mutex<HashMap<Kind, Flight>>,
    /// Jobs run (encodes done), for tests and `/metrics`.
    pub encodes: AtomicU64,
    /// Requests refused because the queue was full.
    pub busy: AtomicU64,
}

impl EncodePool {
    /// Starts `threads` named encode threads with room for `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("encode-{i}"))
                .spawn(move || worker(&rx))?;
        }
        Ok(Arc::new(EncodePool {
            jobs: tx,
            flights: Mutex::new(HashMap::new()),
            encodes: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        }))
    }

    /// The output of `kind` for frame `sequence`: joins the job already running or done for
    /// that frame, or queues `work` (refused with [`PoolError::Busy`] when the queue is
    /// full). Only the newest frame's job per kind is remembered, so memory stays at one
    /// output per kind.
    pub async fn encode<F>(self: &Arc<Self>, kind: Kind, sequence: u64, work: F) -> Outcome
    where
        F: FnOnce() -> Result<Bytes, String> + Send + 'static,
    {
        let mut done = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            let current = flights.get(&kind);
            match current {
                Some(f) if f.sequence == sequence && !failed(&f.done) => f.done.clone(),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    let pool = Arc::downgrade(self);
                    let job: Job = Box::new(move || {
                        let out = work().map_err(|e| PoolError::Failed(e.into()));
                        if let Some(pool) = pool.upgrade() {
                            pool.encodes.fetch_add(1, Ordering::Relaxed);
                        }
                        tx.send_replace(Some(out));
                    });
                    match self.jobs.try_send(job) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            self.busy.fetch_add(1, Ordering::Relaxed);
                            return Err(PoolError::Busy);
                        }
                        Err(TrySendError::Disconnected(_)) => return Err(PoolError::Gone),
                    }
                    // An older frame's request must not replace the newer frame's job.
                    if current.is_none_or(|f| f.sequence <= sequence) {
                        flights.insert(
                            kind,
                            Flight {
                                sequence,
                                done: rx.clone(),
                            },
                        );
                    }
                    rx
                }
            }
        };
        match done.wait_for(Option::is_some).await {
            Ok(out) => out.clone().expect("checked by wait_for"),
            // The job was dropped without an answer: its closure panicked.
            Err(_) => Err(PoolError::Failed("encoder failed (panic)".into())),
        }
    }
}

/// A job that failed (or died without an answer) is not shared with later requests: they
/// try again.
fn failed(done: &watch::Receiver<Option<Outcome>>) -> bool {
    match &*done.borrow() {
        Some(out) => out.is_err(),
        // The sender goes away once the job has run: no answer and no sender means a panic.
        None => done.has_changed().is_err(),
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // A panicking encoder must not take the thread with it: the pool is fixed-size.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("an encode job panicked");
        }
    }
}

thread_local! {
    /// Each encode thread keeps one compressor (and its buffers) for its whole life.
    static COMPRESSOR: std::cell::RefCell<Option<crate::jpeg::Compressor>> =
        const { std::cell::RefCell::new(None) };
}

/// JPEG-compresses `image` with this thread's compressor.
pub fn jpeg(image: &crate::frames::Image, quality: u8) -> Result<Bytes, String> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(crate::jpeg::Compressor::new().map_err(|e| e.to_string())?);
        }
        let compressor = c.as_mut().expect("set above");
        compressor
            .compress(image, quality)
            .map(Bytes::copy_from_slice)
            .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn requests_for_one_frame_share_one_encode() {
        let pool = EncodePool::new(1, 4).unwrap();
        let gate = Arc::new(Barrier::new(2));
        rt().block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..50 {
                let (pool, gate) = (pool.clone(), gate.clone());
                tasks.push(tokio::spawn(async move {
                    pool.encode(Kind::Snapshot, 7, move || {
                        gate.wait();
                        Ok(Bytes::from_static(b"jpeg"))
                    })
                    .await
                }));
            }
            tokio::task::yield_now().await;
            // Release the one job that was queued.
            let g = gate.clone();
            std::thread::spawn(move || g.wait());
            for t in tasks {
                assert_eq!(t.await.unwrap().unwrap(), Bytes::from_static(b"jpeg"));
            }
        });
        assert_eq!(pool.encodes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_new_frame_gets_a_new_encode_and_kinds_are_separate() {
        let pool = EncodePool::new(1, 4).unwrap();
        rt().block_on(async {
            for (kind, seq) in [
                (Kind::Snapshot, 1),
                (Kind::Snapshot, 1),
                (Kind::Snapshot, 2),
                (Kind::Still(0), 2),
                (Kind::Still(1), 2),
                (Kind::Still(1), 2),
            ] {
                pool.encode(kind, seq, move || Ok(Bytes::from(format!("{kind:?}{seq}"))))
                    .await
                    .unwrap();
            }
        });
        assert_eq!(pool.encodes.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_full_queue_is_refused_not_waited_for() {
        let pool = EncodePool::new(1, 1).unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        rt().block_on(async {
            // Distinct frames, so nothing is shared: the first job occupies the one thread...
            let mut tasks = Vec::new();
            for seq in 0..6 {
                let (r, s) = (release_rx.clone(), started_tx.clone());
                let p = pool.clone();
                tasks.push(tokio::spawn(async move {
                    p.encode(Kind::Snapshot, seq, move || {
                        let _ = s.send(());
                        let _ = r.lock().unwrap().recv();
                        Ok(Bytes::new())
                    })
                    .await
                }));
                // Let the task reach `try_send` (current-thread runtime: it runs now).
                tokio::task::yield_now().await;
                if seq == 0 {
                    started_rx.recv().unwrap();
                }
            }
            // ...the second waits in the queue, the other four are refused at once.
            drop(release_tx);
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap());
            }
            let busy = results
                .iter()
                .filter(|r| **r == Err(PoolError::Busy))
                .count();
            assert_eq!(busy, 4, "{results:?}");
            assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        });
        assert_eq!(pool.busy.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_panicking_job_fails_its_requests_and_keeps_the_thread() {
        let pool = EncodePool::new(1, 2).unwrap();
        rt().block_on(async {
            let r = pool
                .encode(Kind::Snapshot, 1, || panic!("boom from a test"))
                .await;
            assert!(matches!(r, Err(PoolError::Failed(_))), "{r:?}");
            // Same frame again: the failure is not shared; the one thread still works.
            let r = pool
                .encode(Kind::Snapshot, 1, || Ok(Bytes::from_static(b"ok")))
                .await;
            assert_eq!(r.unwrap(), Bytes::from_static(b"ok"));
        });
    }
}
