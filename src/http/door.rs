//! Who may hold the still socket's connection slots. The socket serves a fixed number of
//! connections at once (its share of the descriptor budget). It used to take a slot before
//! `accept` and hold it until the connection ended, so local programs that connected and
//! sent nothing held every slot until their head timeout, and a robot's well-formed request
//! waited in the listen backlog behind all of them: 1200 idle connects left 12 stills
//! unanswered for a minute.
//!
//! Now a connection that is waiting on its client (no complete request yet, a request body
//! still arriving, or idle between keep-alive requests) holds its slot only until a new
//! connection needs it: at the cap, the connection that has waited longest is closed to make
//! room. A connection whose request is complete keeps its slot until its response is sent
//! (the write deadline of [`super::deadline`] bounds that); when every slot is busy serving,
//! new clients wait in the backlog as before.
//!
//! An eviction and a keep-alive client's next request can cross: the connection is told to
//! close while that request is arriving. If the request is complete before the connection
//! has closed, the request wins: it is answered in full and the eviction is void
//! ([`Admission::serving`]); if not, the connection closes before any byte of an answer,
//! which a keep-alive client takes for an idle connection closed and sends its request again.
//! The new connection takes a slot only once one is free (never one more than the cap), so
//! after a voided eviction it looks for another connection to close, or waits. It used to
//! take the victim's slot at once, and the victim, woken later (a [`Notify`] keeps its
//! permit), was closed however far it had got: 80 robots fetching raw stills (786 KB)
//! through 64 slots had one or two answers a second cut off after their first socket
//! buffer. Always closing the victim before its request instead cannot be had: hyper may
//! have read the request in the very poll that would see the eviction. Newcomers are no
//! worse off: a voided victim is busy serving, so the next look closes another idle
//! connection, and idle connections still cannot keep a newcomer out.
//!
//! [`Admission`] is the pure bookkeeping and decision; [`Door`] adds the lock, the wake-ups
//! and the eviction signals; [`Ticket`] is one connection's part, [`Tracked`] the body
//! wrapper that says when a request body has fully arrived or a response body is done, and
//! [`Flushing`] the socket wrapper that says when that answer has left.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// How long a connection that has sent part of a request keeps its slot against newcomers.
/// A client that sent its request at once is read within milliseconds; this only protects it
/// from being closed between `accept` and the reading of its head, while the accept loop
/// makes room for a flood.
pub const GRACE: Duration = Duration::from_secs(1);
/// How long a connection that has sent nothing keeps its slot: long enough for a client that
/// was descheduled between `connect` and `write` to send its request, short enough that 64
/// slots turn over 1280 times a second under an idle flood (a request behind a full listen
/// backlog of 1024 idle connects waits under a second).
pub const SILENT_GRACE: Duration = Duration::from_millis(50);

/// How often a blocked accept loop looks again whether a grace has run out (that is no event).
const RECHECK: Duration = Duration::from_millis(10);

/// The state of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting on its client since `tick` (and `since`); `spoke`: it had sent bytes when it
    /// was accepted (its request is likely being read).
    Waiting {
        tick: u64,
        since: Instant,
        spoke: bool,
    },
    /// A complete request is being answered.
    Serving,
    /// Its answer is handed over but not yet all written to the socket: still busy (a client
    /// that never reads is cut off by its write deadline, not evicted).
    Draining,
    /// Told to close; its slot is free once it has.
    Evicted,
}

impl State {
    fn evictable(self, now: Instant) -> Option<u64> {
        match self {
            State::Waiting { tick, since, spoke } => {
                let grace = if spoke { GRACE } else { SILENT_GRACE };
                (now.saturating_duration_since(since) >= grace).then_some(tick)
            }
            _ => None,
        }
    }
}

/// What the accept loop may do about the next connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// A slot is free.
    Free,
    /// Every slot is taken: tell this connection (it was waiting longest) to close, then ask
    /// again. Its slot is free once it has closed; if a request reached it first, it answers
    /// that and the next look chooses another connection (or waits).
    Evict(u64),
    /// Every slot is serving, or protected by [`GRACE`], or a connection is already on its
    /// way out: wait.
    Full,
}

/// The still socket's connections and their states (pure: no lock; the time is passed in).
#[derive(Debug)]
pub struct Admission {
    cap: usize,
    next_id: u64,
    /// Orders the moments connections started waiting.
    tick: u64,
    conns: Vec<(u64, State)>,
}

impl Admission {
    pub fn new(cap: usize) -> Self {
        Admission {
            cap: cap.max(1),
            next_id: 0,
            tick: 0,
            conns: Vec::new(),
        }
    }

    /// Whether [`room`](Self::room) could give a slot at `now` (without evicting anybody yet).
    pub fn can_admit(&self, now: Instant) -> bool {
        self.conns.len() < self.cap
            || (!self.evicting() && self.conns.iter().any(|(_, s)| s.evictable(now).is_some()))
    }

    fn evicting(&self) -> bool {
        self.conns.iter().any(|(_, s)| *s == State::Evicted)
    }

    /// Decides the next connection's slot at `now`; an eviction is recorded at once.
    pub fn room(&mut self, now: Instant) -> Room {
        if self.conns.len() < self.cap {
            return Room::Free;
        }
        if self.evicting() {
            return Room::Full;
        }
        let oldest = self
            .conns
            .iter_mut()
            .filter_map(|(id, s)| s.evictable(now).map(|tick| (tick, *id, s)))
            .min_by_key(|(tick, _, _)| *tick);
        match oldest {
            Some((_, id, state)) => {
                *state = State::Evicted;
                Room::Evict(id)
            }
            None => Room::Full,
        }
    }

    /// A new connection, waiting for its first request; `spoke`: it has sent bytes already.
    pub fn open(&mut self, spoke: bool, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.tick += 1;
        let state = State::Waiting {
            tick: self.tick,
            since: now,
            spoke,
        };
        self.conns.push((id, state));
        id
    }

    /// `id` has a complete request to answer. If it was told to close and has not yet, the
    /// eviction is void (its client's request crossed it): the request is answered, and
    /// `true` says that the connection waiting for its slot must look again.
    pub fn serving(&mut self, id: u64) -> bool {
        let Some((_, s)) = self.conns.iter_mut().find(|(i, _)| *i == id) else {
            return false;
        };
        let voided = *s == State::Evicted;
        *s = State::Serving;
        voided
    }

    /// Whether `id` is to close now. A connection woken by its eviction asks first: the
    /// eviction may have been voided by a request since (see [`serving`](Self::serving)).
    pub fn evicted(&self, id: u64) -> bool {
        self.conns
            .iter()
            .any(|(i, s)| *i == id && *s == State::Evicted)
    }

    /// `id` has handed its whole answer over; it waits on its client again once the answer
    /// has left (see [`flushed`](Self::flushed)).
    pub fn answered(&mut self, id: u64) {
        if let Some((_, s)) = self.conns.iter_mut().find(|(i, _)| *i == id) {
            if *s == State::Serving {
                *s = State::Draining;
            }
        }
    }

    /// `id` has written out everything it had to send: after an answer, it waits on its client
    /// again (idle, evictable at once).
    pub fn flushed(&mut self, id: u64, now: Instant) {
        if self
            .conns
            .iter()
            .any(|(i, s)| *i == id && *s == State::Draining)
        {
            self.waiting(id, now);
        }
    }

    /// `id` has sent bytes (of a request not yet complete): protected for [`GRACE`] from now.
    pub fn heard(&mut self, id: u64, now: Instant) {
        if let Some((_, s)) = self.conns.iter_mut().find(|(i, _)| *i == id) {
            if let State::Waiting {
                tick, spoke: false, ..
            } = *s
            {
                *s = State::Waiting {
                    tick,
                    since: now,
                    spoke: true,
                };
            }
        }
    }

    /// `id` waits on its client again: idle, evictable after [`SILENT_GRACE`].
    fn waiting(&mut self, id: u64, now: Instant) {
        self.tick += 1;
        let state = State::Waiting {
            tick: self.tick,
            since: now,
            spoke: false,
        };
        if let Some((_, s)) = self.conns.iter_mut().find(|(i, _)| *i == id) {
            *s = state;
        }
    }

    pub fn closed(&mut self, id: u64) {
        self.conns.retain(|(i, _)| *i != id);
    }

    pub fn open_count(&self) -> usize {
        self.conns.len()
    }
}

/// [`Admission`] shared by the accept loop and the connections.
pub struct Door {
    admission: Mutex<Admission>,
    /// Bumped whenever a slot may have come free.
    changed: watch::Sender<u64>,
    /// The eviction signal of each open connection.
    signals: Mutex<Vec<(u64, Arc<Notify>)>>,
}

impl Door {
    pub fn new(cap: usize) -> Arc<Door> {
        Arc::new(Door {
            admission: Mutex::new(Admission::new(cap)),
            changed: watch::channel(0).0,
            signals: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.admission.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until a slot is free or can be made free (a connection's grace running out
    /// is no event: looked at again every 10 ms).
    pub async fn until_admissible(&self) {
        let mut rx = self.changed.subscribe();
        while !self.lock().can_admit(Instant::now()) {
            let _ = tokio::time::timeout(RECHECK, rx.changed()).await;
        }
    }

    /// Takes a slot for a connection just accepted, once one is free: at the cap, the
    /// connection that has waited longest is closed to make room (or, when none may be, it
    /// waits until a slot frees up).
    pub async fn admit(self: &Arc<Door>, spoke: bool) -> Ticket {
        let mut rx = self.changed.subscribe();
        loop {
            let room = self.lock().room(Instant::now());
            match room {
                Room::Free => break,
                Room::Evict(victim) => {
                    let signal = self
                        .signals
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .find(|(id, _)| *id == victim)
                        .map(|(_, n)| n.clone());
                    if let Some(n) = signal {
                        n.notify_one();
                    }
                    tracing::debug!("still socket: closing an idle connection to make room");
                    // Its slot is taken once it has closed (its ticket's drop bumps
                    // `changed`); a request that reached it first voids the eviction (which
                    // bumps too), and the next look chooses again.
                    let _ = tokio::time::timeout(RECHECK, rx.changed()).await;
                }
                Room::Full => {
                    let _ = tokio::time::timeout(RECHECK, rx.changed()).await;
                }
            }
        }
        let id = self.lock().open(spoke, Instant::now());
        let evict = Arc::new(Notify::new());
        self.signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, evict.clone()));
        Ticket {
            door: self.clone(),
            id,
            evict,
            draining: std::sync::atomic::AtomicBool::new(false),
            heard: std::sync::atomic::AtomicBool::new(spoke),
        }
    }
}

/// One connection's slot; dropping it frees the slot.
pub struct Ticket {
    door: Arc<Door>,
    id: u64,
    evict: Arc<Notify>,
    /// An answer was handed over and not yet seen flushed (saves a lock per flush).
    draining: std::sync::atomic::AtomicBool,
    /// Bytes were read since the connection last started waiting (saves a lock per read).
    heard: std::sync::atomic::AtomicBool,
}

impl Ticket {
    /// Resolves when the door wants this connection closed. A wake-up is not enough: the
    /// eviction it was sent for may have been voided by a request since (and a [`Notify`]
    /// keeps a permit sent while nobody waited, so a stale one can come much later).
    pub async fn evicted(&self) {
        loop {
            self.evict.notified().await;
            if self.door.lock().evicted(self.id) {
                return;
            }
        }
    }

    /// The connection has a complete request to answer.
    pub fn serving(&self) {
        let voided = self.door.lock().serving(self.id);
        if voided {
            tracing::debug!("still socket: a request came before the eviction; answering it");
            self.door.bump();
        }
    }

    /// The whole answer is handed over (its body is done).
    pub fn answered(&self) {
        self.door.lock().answered(self.id);
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The connection's socket has nothing left to send.
    fn flushed(&self) {
        if self
            .draining
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            self.door.lock().flushed(self.id, Instant::now());
            self.heard
                .store(false, std::sync::atomic::Ordering::Release);
            self.door.bump();
        }
    }

    /// The connection's socket gave bytes to read.
    fn read_some(&self) {
        if !self.heard.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.door.lock().heard(self.id, Instant::now());
        }
    }
}

/// A connection's socket that tells its [`Ticket`] when bytes came in (a request has begun)
/// and when a flush succeeded: hyper flushes only once its write buffer is empty, so after an
/// answer that means the answer has left.
pub struct Flushing<S> {
    inner: S,
    ticket: Arc<Ticket>,
}

impl<S> Flushing<S> {
    pub fn new(inner: S, ticket: Arc<Ticket>) -> Self {
        Flushing { inner, ticket }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Flushing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.ticket.read_some();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Flushing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.ticket.flushed();
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.door.lock().closed(self.id);
        self.door
            .signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _)| *id != self.id);
        self.door.bump();
    }
}

/// A body that tells its connection's [`Ticket`] when it is done: a request body once it has
/// fully arrived (the request is complete: serving), a response body once it is dropped
/// (handed over or abandoned: the connection waits on its client again once the socket has
/// sent it, see [`Flushing`]).
pub struct Tracked<B> {
    inner: B,
    ticket: Option<Arc<Ticket>>,
    /// A response body (else a request body).
    response: bool,
}

impl<B> Tracked<B> {
    /// A request body: the connection is serving once it has all arrived.
    pub fn request(inner: B, ticket: Option<Arc<Ticket>>) -> Self {
        Tracked {
            inner,
            ticket,
            response: false,
        }
    }

    /// A response body: the connection waits on its client again once it is gone.
    pub fn response(inner: B, ticket: Option<Arc<Ticket>>) -> Self {
        Tracked {
            inner,
            ticket,
            response: true,
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        // A request body dropped unread says nothing about the request; a response body
        // dropped has been sent or given up.
        if self.response {
            if let Some(t) = self.ticket.take() {
                t.answered();
            }
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = matches!(r, Poll::Ready(None)) || self.inner.is_end_stream();
        if ended && !self.response {
            if let Some(t) = self.ticket.take() {
                t.serving();
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_longest_waiting_connection_makes_room() {
        let t0 = Instant::now();
        // Silent connections are evictable once SILENT_GRACE old.
        let t = t0 + SILENT_GRACE;
        let mut a = Admission::new(3);
        let (c0, c1, c2) = (a.open(false, t0), a.open(false, t0), a.open(false, t0));
        assert!(!a.can_admit(t0), "nobody is old enough yet");
        assert_eq!(a.room(t0), Room::Full);
        // c0 is answering a request; c1 waits since before c2.
        a.serving(c0);
        assert!(a.can_admit(t));
        assert_eq!(a.room(t), Room::Evict(c1));
        // Until c1 has closed, its slot is not free and nobody else is evicted.
        assert!(a.evicted(c1));
        assert!(!a.can_admit(t));
        assert_eq!(a.room(t), Room::Full);
        a.closed(c1);
        assert_eq!(a.room(t), Room::Free);
        let c3 = a.open(false, t0);
        // c2, c3 wait; c2 longest. Once c2 is served and waits again, c3 is the oldest.
        a.serving(c2);
        a.answered(c2);
        // Handed over but not yet sent: still busy.
        assert_eq!(a.room(t), Room::Evict(c3));
        a.closed(c3);
        let c4 = a.open(false, t0);
        a.flushed(c2, t0);
        // Sent: c2 now waits since after c4.
        assert_eq!(a.room(t), Room::Evict(c4));
        a.closed(c4);
        assert_eq!(a.open_count(), 2);
    }

    #[test]
    fn a_connection_that_spoke_keeps_its_slot_for_the_grace_period() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut a = Admission::new(2);
        let old = a.open(true, t0);
        let quiet = a.open(false, ms(10));
        // The silent one goes first, though it came later, once SILENT_GRACE old.
        assert_eq!(a.room(ms(20)), Room::Full);
        assert_eq!(a.room(ms(70)), Room::Evict(quiet));
        a.closed(quiet);
        let new = a.open(false, ms(80));
        // It speaks (its request begins): protected for GRACE from then.
        a.heard(new, ms(90));
        let soon = ms(500);
        assert!(!a.can_admit(soon));
        assert_eq!(a.room(soon), Room::Full);
        // A partial request older than the grace gives way, the oldest first.
        let later = t0 + GRACE + Duration::from_millis(20);
        assert!(a.can_admit(later));
        assert_eq!(a.room(later), Room::Evict(old));
        a.closed(old);
        a.closed(new);
        assert_eq!(a.open_count(), 0);
    }

    #[test]
    fn when_every_slot_is_serving_new_clients_wait() {
        let t0 = Instant::now();
        let t = t0 + SILENT_GRACE;
        let mut a = Admission::new(2);
        let (c0, c1) = (a.open(true, t0), a.open(true, t0));
        a.serving(c0);
        a.serving(c1);
        assert!(!a.can_admit(t));
        assert_eq!(a.room(t), Room::Full);
        // Answered, but a client that does not read keeps its answer in the socket: busy.
        a.answered(c1);
        assert!(!a.can_admit(t));
        // Sent, and idle again: evictable once SILENT_GRACE has passed.
        a.flushed(c1, t0);
        assert!(a.can_admit(t));
        assert_eq!(a.room(t), Room::Evict(c1));
        a.closed(c0);
        a.closed(c1);
        assert_eq!(a.room(t), Room::Free);
        // Unknown connections change nothing.
        a.serving(99);
        a.heard(99, t);
        a.closed(99);
        assert_eq!(a.open_count(), 0);
    }

    #[test]
    fn each_grace_ends_exactly_on_time() {
        let t0 = Instant::now();
        let ns = Duration::from_nanos(1);
        // (spoke, age): evictable only once the age reaches its grace.
        for (spoke, age, evictable) in [
            (false, SILENT_GRACE - ns, false),
            (false, SILENT_GRACE, true),
            (true, GRACE - ns, false),
            (true, GRACE, true),
        ] {
            let mut a = Admission::new(1);
            let c = a.open(spoke, t0);
            let now = t0 + age;
            assert_eq!(a.can_admit(now), evictable, "spoke {spoke}, {age:?}");
            let want = if evictable {
                Room::Evict(c)
            } else {
                Room::Full
            };
            assert_eq!(a.room(now), want, "spoke {spoke}, {age:?}");
        }
    }

    #[test]
    fn only_the_step_a_connection_is_at_moves_it_on() {
        let t0 = Instant::now();
        let late = t0 + GRACE * 2;
        type Step = fn(&mut Admission, u64, Instant);
        // `serving` as a step (what it returns, whether it voided an eviction, is tested in
        // `a_request_that_crosses_its_eviction_is_answered_and_another_makes_room`).
        fn serve(a: &mut Admission, c: u64, _: Instant) {
            a.serving(c);
        }
        // (steps on one connection in a door of one slot, whether it gives way later).
        let table: [(&str, &[Step], bool); 6] = [
            ("waiting", &[], true),
            ("serving", &[serve], false),
            // Flushed while serving (no answer handed over yet): still serving.
            (
                "serving, flushed",
                &[serve, |a, c, t| a.flushed(c, t)],
                false,
            ),
            ("answered", &[serve, |a, c, _| a.answered(c)], false),
            (
                "answered, flushed",
                &[serve, |a, c, _| a.answered(c), |a, c, t| a.flushed(c, t)],
                true,
            ),
            // Answered without serving (a waiting connection): still waiting, evictable.
            ("waiting, answered", &[|a, c, _| a.answered(c)], true),
        ];
        for (name, steps, gives_way) in table {
            let mut a = Admission::new(1);
            let c = a.open(false, t0);
            for step in steps {
                step(&mut a, c, t0);
            }
            let want = if gives_way {
                Room::Evict(c)
            } else {
                Room::Full
            };
            assert_eq!(a.room(late), want, "{name}");
        }
        // A connection that spoke and is heard again keeps the time it first spoke: its
        // grace is not renewed by each read.
        let mut a = Admission::new(1);
        let c = a.open(true, t0);
        a.heard(c, t0 + GRACE / 2);
        assert_eq!(a.room(t0 + GRACE), Room::Evict(c));
    }

    #[test]
    fn a_request_that_crosses_its_eviction_is_answered_and_another_makes_room() {
        let t0 = Instant::now();
        let t = t0 + SILENT_GRACE;
        let mut a = Admission::new(2);
        let (c0, c1) = (a.open(false, t0), a.open(false, t0));
        // c0 has waited longest: told to close. The newcomer waits until it has.
        assert_eq!(a.room(t), Room::Evict(c0));
        assert!(a.evicted(c0));
        assert_eq!(a.room(t), Room::Full);
        // Before it closes, its client's next request arrives: the request is answered, and
        // the newcomer is told to look again (a wake-up still on its way closes nothing).
        assert!(a.serving(c0));
        assert!(!a.evicted(c0));
        // c1 is idle: it makes room instead.
        assert!(a.can_admit(t));
        assert_eq!(a.room(t), Room::Evict(c1));
        a.closed(c1);
        assert_eq!(a.room(t), Room::Free);
        let c2 = a.open(false, t);
        // A request that crosses no eviction voids nothing.
        assert!(!a.serving(c2));
        // c0 keeps its slot while its answer is written, then waits like any other, and
        // this time gives way.
        a.answered(c0);
        assert_eq!(a.room(t + GRACE), Room::Full);
        a.flushed(c0, t);
        assert_eq!(a.room(t + GRACE), Room::Evict(c0));
        assert!(a.evicted(c0));
        a.closed(c0);
        assert_eq!(a.room(t + GRACE), Room::Free);

        // In a door of one slot, the voided eviction leaves nobody to close: the newcomer
        // waits for the answer, and is not let in beside it.
        let mut a = Admission::new(1);
        let c = a.open(false, t0);
        assert_eq!(a.room(t), Room::Evict(c));
        assert!(a.serving(c));
        assert!(!a.can_admit(t));
        assert_eq!(a.room(t), Room::Full);
        assert_eq!(a.open_count(), 1);
    }

    /// The same race through the door's wake-ups: the newcomer is not let in beside the
    /// connection whose eviction a request voided, and the wake-up that connection was sent
    /// (kept by its `Notify`) closes nothing.
    #[tokio::test]
    async fn a_voided_eviction_keeps_the_newcomer_out_and_its_wake_up_closes_nothing() {
        let bound = Duration::from_secs(5);
        let door = Door::new(1);
        // Every wait bounded: a mutant of `Admission` that never frees a slot fails the test
        // instead of hanging it.
        let old = tokio::time::timeout(bound, door.admit(false))
            .await
            .expect("a free slot");
        tokio::time::sleep(SILENT_GRACE).await;
        let newcomer = tokio::spawn({
            let door = door.clone();
            async move { door.admit(false).await }
        });
        let told = async {
            while !door.lock().evicted(old.id) {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(bound, told)
            .await
            .expect("told to close");
        old.serving();
        // Looked at for 50 ms: a wake-up that closed it would come at once.
        let woken = tokio::time::timeout(Duration::from_millis(50), old.evicted()).await;
        assert!(woken.is_err(), "closed while answering");
        assert!(!newcomer.is_finished(), "let in beside it");
        assert_eq!(door.lock().open_count(), 1);
        // Answered and sent, it waits on its client again, and now gives way.
        old.answered();
        old.flushed();
        tokio::time::timeout(bound, old.evicted())
            .await
            .expect("evicted once idle");
        drop(old);
        let new = tokio::time::timeout(bound, newcomer).await.expect("let in");
        assert!(new.is_ok());
        assert_eq!(door.lock().open_count(), 1);
    }

    proptest::proptest! {
        /// Whatever happens, at most `cap` connections are open (a newcomer takes a slot only
        /// once it is free), at most one is being evicted, only an evictable connection is
        /// chosen, and only an evicted one is told to close.
        #[test]
        fn never_more_than_the_cap_and_never_a_serving_one(ops in proptest::collection::vec((0u8..6, 0u64..8, 0u64..3000), 0..200)) {
            let t0 = Instant::now();
            let mut a = Admission::new(4);
            let mut ms = 0;
            for (op, id, dt) in ops {
                ms += dt / 10;
                let now = t0 + Duration::from_millis(ms);
                let was = a.conns.iter().find(|(i, _)| *i == id).map(|(_, s)| *s);
                match op {
                    0 => {
                        let before = a.conns.clone();
                        match a.room(now) {
                            Room::Free => { a.open(id % 2 == 0, now); }
                            Room::Evict(v) => {
                                let was = before.iter().find(|(i, _)| *i == v).map(|(_, s)| *s);
                                proptest::prop_assert!(was.is_some_and(|s| s.evictable(now).is_some()), "{was:?}");
                                proptest::prop_assert!(a.evicted(v));
                            }
                            Room::Full => {}
                        }
                    }
                    1 => {
                        let voided = a.serving(id);
                        proptest::prop_assert_eq!(voided, was == Some(State::Evicted));
                        proptest::prop_assert!(!a.evicted(id));
                    }
                    2 => { a.answered(id); a.flushed(id, now); a.heard(id, now); }
                    3 => a.closed(id),
                    // A connection woken by an eviction looks, and closes if it still stands.
                    4 => {
                        let close = a.evicted(id);
                        proptest::prop_assert_eq!(close, was == Some(State::Evicted));
                        if close {
                            a.closed(id);
                        }
                    }
                    _ => proptest::prop_assert_eq!(a.can_admit(now), a.conns.len() < 4 || (!a.evicting() && a.conns.iter().any(|(_, s)| s.evictable(now).is_some()))),
                }
                let evicting = a.conns.iter().filter(|(_, s)| *s == State::Evicted).count();
                proptest::prop_assert!(evicting <= 1);
                proptest::prop_assert!(a.open_count() <= 4);
            }
        }
    }
}
