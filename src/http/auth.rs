//! Optional HTTP Basic auth on the stream port (`stream.auth-users`): what mjpg-streamer,
//! ustreamer and motion offer, and what Home Assistant, OctoPrint and motionEye speak. The
//! still socket keeps its file-permission model and is never asked for a password.
//!
//! Passwords are stored as Argon2id PHC strings (`picker hash-password` makes one). A check
//! costs tens of milliseconds and 19 MiB on purpose, so it is also what an attacker aims at,
//! and everything around it is bounded by what a Pi Zero 2 W can afford:
//!
//! - Checks run one at a time on one thread (`auth`), which owns the check's memory: one
//!   block array, allocated at the first check and reused, never one per attempt, and given
//!   back once no check has run for [`BLOCKS_IDLE`] (19-64 MiB is a tenth of a Pi Zero 2 W's
//!   memory: it is not kept for the process's life for one login a day). A request
//!   only queues a job and awaits the answer; a client that hangs up cancels nothing that
//!   holds memory, and a queued job whose client has gone is skipped. The queue is short;
//!   requests beyond it wait for a place in arrival order (a bounded number of them, for a
//!   bounded time), beyond that an attempt is shed (503).
//! - A credential that passed is remembered until it has gone unused for [`REMEMBER_FOR`],
//!   under a keyed hash of the header (the key is random per process; the password itself is
//!   never kept), so a viewer that already logged in never queues behind an attacker, nor
//!   needs its address's allowance again while it keeps coming.
//! - Each client address (see [`crate::peers`]) has a small allowance of attempts, refilled
//!   slowly, in a bounded table (oldest evicted): one address cannot fill the queue, so a
//!   few attacking hosts cannot lock out first-time logins from others (429 beyond it).
//!   An address that has not failed lately queues in a lane of its own, served first: an
//!   attacker with many addresses fills the other lane after one try from each, and a
//!   first-time viewer still gets the next check.
//! - An unknown user is checked against a dummy hash of the same cost as the users' (all
//!   users must share one cost, see [`check_users`]), so users cannot be told apart by time.
//! - Every attempt is counted for `/metrics`, and summarised in the log at most once per
//!   [`crate::throttle::PERIOD`].
//!
//! Basic auth sends the password readable by anyone on the path: on an untrusted network put
//! a TLS proxy in front.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore as _};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
use blake2::digest::Mac as _;
use subtle::ConstantTimeEq as _;

/// The `WWW-Authenticate` header of a 401.
pub const CHALLENGE: &str = "Basic realm=\"picker\", charset=\"UTF-8\"";

/// The cheapest Argon2id cost accepted: OWASP's recommended minimum (m = 19 MiB, t = 2,
/// p = 1), which is also what `picker hash-password` makes. Anything cheaper makes an
/// offline guess of a leaked config cheap.
pub const MIN_COST: Cost = Cost {
    m: 19 * 1024,
    t: 2,
    p: 1,
};
/// The costliest accepted: on a Pi Zero 2 W (512 MB, Cortex-A53 at 1 GHz) m = 64 MiB keeps
/// the one check thread's memory at an eighth of the RAM, t = 10 keeps one check near 4 s
/// (each pass over 64 MiB takes ~0.4 s there), and p = 4 is the Pi's core count (lanes
/// beyond it only add memory bookkeeping; the check runs them on one thread anyway).
pub const MAX_COST: Cost = Cost {
    m: 64 * 1024,
    t: 10,
    p: 4,
};

/// How long a credential that passed is remembered after its last use.
pub const REMEMBER_FOR: Duration = Duration::from_secs(10 * 60);
/// Credentials remembered at most (oldest forgotten first).
const REMEMBERED: usize = 64;
/// Checks that may wait for the one running, per lane (see [`Lanes`]); further requests wait
/// for a place (at most [`WAITERS`] of them), beyond that an attempt is shed (503).
const QUEUE: usize = 8;
/// The longest a request waits for a place and its check's answer (the queue full of the
/// costliest checks on a Pi Zero 2 W would take longer) before it is answered 503.
const REPLY_WAIT: Duration = Duration::from_secs(10);
/// Attempts an address may make in a burst ...
const BURST: u32 = 5;
/// ... and how often it gets one more (a successful login gives its attempt back).
const REFILL: Duration = Duration::from_secs(12);
/// Addresses whose attempts are tracked; beyond it the longest-idle entry is evicted (an
/// entry whose allowance is full again is no different from none and goes first).
const ADDRESSES: usize = 4096;

/// An Argon2id cost: memory in KiB, passes, lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    pub m: u32,
    pub t: u32,
    pub p: u32,
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m={} t={} p={}", self.m, self.t, self.p)
    }
}

/// What [`Auth::check`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// This address used its attempts: answer 429, `Retry-After` this long.
    Throttled(Duration),
    /// The check queue is full: answer 503 with `Retry-After`.
    Busy,
}

/// A hash from the config, decoded once so that a check parses nothing.
#[derive(Clone)]
struct Stored {
    version: Version,
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// Decodes a PHC string into what a check needs, or says why it is unusable.
fn decode(hash: &str) -> Result<Stored, String> {
    let h = PasswordHash::new(hash)
        .map_err(|e| format!("not a password hash from `picker hash-password` ({e})"))?;
    if h.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "{} hash: only argon2id (from `picker hash-password`) is accepted",
            h.algorithm
        ));
    }
    let params = Params::try_from(&h).map_err(|e| format!("bad argon2id parameters ({e})"))?;
    let version = Version::try_from(h.version.unwrap_or(0x13))
        .map_err(|e| format!("bad argon2 version ({e})"))?;
    let salt = h.salt.ok_or("no salt")?;
    let mut buf = [0u8; 64];
    let salt = salt
        .decode_b64(&mut buf)
        .map_err(|e| format!("bad salt ({e})"))?
        .to_vec();
    let hash = h.hash.ok_or("no hash")?.as_bytes().to_vec();
    Ok(Stored {
        version,
        params,
        salt,
        hash,
    })
}

/// The cost of a usable hash, or why it is unusable or outside [`MIN_COST`]..[`MAX_COST`].
pub fn check_hash(hash: &str) -> Result<Cost, String> {
    let s = decode(hash)?;
    let cost = Cost {
        m: s.params.m_cost(),
        t: s.params.t_cost(),
        p: s.params.p_cost(),
    };
    if cost.m < MIN_COST.m || cost.t < MIN_COST.t || cost.p < MIN_COST.p {
        return Err(format!(
            "argon2id cost {cost} too cheap: at least {MIN_COST} (OWASP's minimum; \
             `picker hash-password` makes such a hash)"
        ));
    }
    if cost.m > MAX_COST.m || cost.t > MAX_COST.t || cost.p > MAX_COST.p {
        return Err(format!(
            "argon2id cost {cost} too costly: at most {MAX_COST} (what one check may take \
             on a Pi Zero 2 W)"
        ));
    }
    Ok(cost)
}

/// Checks every user's hash, and that all share one cost: an unknown user is checked against
/// a dummy of that cost, so a user whose hash cost differently could be told apart by time.
/// Each error names its key (`stream.auth-users.NAME`).
pub fn check_users(users: &[(String, String)]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut first: Option<(&str, Cost)> = None;
    for (user, hash) in users {
        if user.is_empty() || user.contains(':') {
            errors.push(format!(
                "stream.auth-users: user {user:?}: must be non-empty without ':'"
            ));
            continue;
        }
        match check_hash(hash) {
            Err(e) => errors.push(format!("stream.auth-users.{user}: {e}")),
            Ok(cost) => match first {
                None => first = Some((user, cost)),
                Some((name, want)) if want != cost => errors.push(format!(
                    "stream.auth-users.{user}: argon2id cost {cost} differs from \
                     stream.auth-users.{name}'s {want}: all users need one cost (make each \
                     hash with `picker hash-password`), or users could be told apart by how \
                     long a login takes"
                )),
                Some(_) => {}
            },
        }
    }
    errors
}

/// Hashes `password` with Argon2id (OWASP's minimum cost, [`MIN_COST`]) and a random salt,
/// as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The user and password of an `Authorization: Basic ...` header value.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Every login attempt, by outcome (`/metrics`, and the log's summary).
#[derive(Debug, Default)]
pub struct Counts {
    /// Checks that passed (not counting remembered credentials).
    pub passed: AtomicU64,
    /// Wrong user or password, or a malformed header.
    pub failed: AtomicU64,
    /// Refused unchecked: the address had used its attempts (429).
    pub throttled: AtomicU64,
    /// Refused unchecked: the check queue was full, or the answer too slow (503).
    pub shed: AtomicU64,
    /// Queued checks skipped because their client had gone.
    pub abandoned: AtomicU64,
}

impl Counts {
    fn snapshot(&self) -> [u64; 4] {
        [
            self.failed.load(Ordering::Relaxed),
            self.throttled.load(Ordering::Relaxed),
            self.shed.load(Ordering::Relaxed),
            self.abandoned.load(Ordering::Relaxed),
        ]
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One check for the `auth` thread.
struct Job {
    /// Index into the users; `None` = unknown user, checked against the dummy.
    user: Option<usize>,
    password: String,
    reply: tokio::sync::oneshot::Sender<bool>,
    /// Its place in its lane, held until the check has ended (or was skipped): whatever the
    /// client does, no more than [`QUEUE`] jobs per lane exist.
    _place: tokio::sync::OwnedSemaphorePermit,
}

/// Credentials that passed, by keyed hash, each until it expires: [`REMEMBER_FOR`] after it
/// was last used, not after its check (a dashboard polling with the right password must not
/// need a fresh check every [`REMEMBER_FOR`], which an attacker sharing its address, as
/// every client behind a reverse proxy does, could keep refusing with 429).
#[derive(Clone, Debug, Default)]
struct Remembered {
    entries: HashMap<[u8; 32], Instant>,
}

impl Remembered {
    /// Whether `id` is remembered at `now`; if so, it is remembered [`REMEMBER_FOR`] from
    /// `now` (its entry only moves later, so the table's bound holds as it is).
    fn knows(&mut self, id: &[u8; 32], now: Instant) -> bool {
        match self.entries.get_mut(id) {
            Some(until) if now < *until => {
                *until = now + REMEMBER_FOR;
                true
            }
            _ => false,
        }
    }

    fn remember(&mut self, id: [u8; 32], now: Instant) {
        if self.entries.len() >= REMEMBERED && !self.entries.contains_key(&id) {
            self.entries.retain(|_, until| now < *until);
            if self.entries.len() >= REMEMBERED {
                if let Some(oldest) = self.entries.iter().min_by_key(|(_, u)| **u).map(|e| *e.0) {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(id, now + REMEMBER_FOR);
    }
}

/// Each address's allowance of attempts (a token bucket: [`BURST`], one more per
/// [`REFILL`]), in a table of at most [`ADDRESSES`].
#[derive(Debug, Default)]
struct Allowance {
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    /// When the tokens were last counted up.
    at: Instant,
}

impl Bucket {
    fn refilled(mut self, now: Instant) -> Bucket {
        let gained = now.saturating_duration_since(self.at).as_secs() / REFILL.as_secs();
        if gained > 0 {
            self.tokens = (u64::from(self.tokens) + gained).min(u64::from(BURST)) as u32;
            self.at = if self.tokens == BURST {
                now
            } else {
                self.at + REFILL * gained as u32
            };
        }
        self
    }
}

impl Allowance {
    /// Takes one attempt for `addr`: `Ok(true)` if its allowance was whole (it has not
    /// failed lately), `Err` is how long until it has one.
    fn take(&mut self, addr: IpAddr, now: Instant) -> Result<bool, Duration> {
        if !self.buckets.contains_key(&addr) && self.buckets.len() >= ADDRESSES {
            self.evict(now);
        }
        let b = self.buckets.entry(addr).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        *b = b.refilled(now);
        if b.tokens == 0 {
            return Err((b.at + REFILL).saturating_duration_since(now));
        }
        let clean = b.tokens == BURST;
        b.tokens -= 1;
        Ok(clean)
    }

    /// Gives an attempt back (it passed).
    fn give_back(&mut self, addr: IpAddr, now: Instant) {
        if let Some(b) = self.buckets.get_mut(&addr) {
            *b = b.refilled(now);
            b.tokens = (b.tokens + 1).min(BURST);
        }
    }

    fn evict(&mut self, now: Instant) {
        self.buckets.retain(|_, b| b.refilled(now).tokens < BURST);
        if self.buckets.len() >= ADDRESSES {
            if let Some(idle) = self.buckets.iter().min_by_key(|(_, b)| b.at).map(|e| *e.0) {
                self.buckets.remove(&idle);
            }
        }
    }
}

/// The check queue: two lanes of at most [`QUEUE`] jobs each, the lane of addresses that
/// have not failed lately ("clean") served first.
struct Lanes<T> {
    clean: VecDeque<T>,
    suspect: VecDeque<T>,
}

impl<T> Lanes<T> {
    fn new() -> Self {
        Lanes {
            clean: VecDeque::with_capacity(QUEUE),
            suspect: VecDeque::with_capacity(QUEUE),
        }
    }

    /// Queues `job`, or gives it back when its lane is full.
    fn push(&mut self, job: T, clean: bool) -> Result<(), T> {
        let lane = if clean {
            &mut self.clean
        } else {
            &mut self.suspect
        };
        if lane.len() >= QUEUE {
            return Err(job);
        }
        lane.push_back(job);
        Ok(())
    }

    fn pop(&mut self) -> Option<T> {
        self.clean.pop_front().or_else(|| self.suspect.pop_front())
    }
}

/// [`Lanes`] shared with the `auth` thread, which waits on `ready`.
struct Queue {
    lanes: Mutex<(Lanes<Job>, bool)>,
    ready: Condvar,
    /// The places of each lane (suspect, clean: indexed by `clean`): a request waits for one
    /// in FIFO order, so a viewer queues behind the attempts already waiting instead of racing
    /// attackers that retry at once.
    places: [Arc<tokio::sync::Semaphore>; 2],
    /// Requests waiting for a place, per lane; beyond [`WAITERS`] an attempt is shed.
    waiting: [std::sync::atomic::AtomicUsize; 2],
}

/// Requests that may wait for a place in one lane.
const WAITERS: usize = 64;

/// One request counted in [`Queue::waiting`] until dropped (also when its client hangs up).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The users allowed on the stream port, and the thread that checks their passwords.
pub struct Auth {
    names: Vec<String>,
    /// The check queue; the `bool` beside the lanes is set when the `auth` thread must end.
    jobs: Arc<Queue>,
    /// The key of the keyed hash credentials are remembered under.
    key: [u8; 32],
    remembered: Mutex<Remembered>,
    allowance: Mutex<Allowance>,
    pub counts: Arc<Counts>,
}

impl Auth {
    /// `users` must have passed [`check_users`]. Starts the `auth` thread, which ends when
    /// the returned value is dropped (should the thread not start, every login is shed).
    pub fn new(users: Vec<(String, String)>) -> Auth {
        let mut names = Vec::new();
        let mut stored = Vec::new();
        for (name, hash) in users {
            match decode(&hash) {
                Ok(s) => {
                    names.push(name);
                    stored.push(s);
                }
                Err(e) => tracing::error!("stream.auth-users.{name}: {e}; user ignored"),
            }
        }
        // The unknown user's stand-in: the users' cost, a hash nobody's password makes.
        let mut dummy = stored.first().cloned().unwrap_or(Stored {
            version: Version::V0x13,
            params: Params::default(),
            salt: Vec::new(),
            hash: vec![0; 32],
        });
        dummy.salt = random::<16>().to_vec();
        dummy.hash = random::<32>()[..dummy.hash.len().min(32)].to_vec();
        let counts = Arc::new(Counts::default());
        let jobs = Arc::new(Queue {
            lanes: Mutex::new((Lanes::new(), false)),
            ready: Condvar::new(),
            places: [(); 2].map(|()| Arc::new(tokio::sync::Semaphore::new(QUEUE))),
            waiting: Default::default(),
        });
        let (c, q) = (counts.clone(), jobs.clone());
        if let Err(e) = std::thread::Builder::new()
            .name("auth".into())
            .spawn(move || check_thread(&q, stored, dummy, c))
        {
            tracing::error!("cannot start the password check thread: {e}; logins answer 503");
            // Nobody would take the jobs: every attempt is shed.
            lock(&jobs.lanes).1 = true;
        }
        Auth {
            names,
            jobs,
            key: random(),
            remembered: Mutex::new(Remembered::default()),
            allowance: Mutex::new(Allowance::default()),
            counts,
        }
    }

    /// Whether the `Authorization` header value names a user with the right password; `peer`
    /// is the client's address (`None`: all such clients share one allowance).
    pub async fn check(&self, header: Option<&[u8]>, peer: Option<IpAddr>) -> Verdict {
        let Some(header) = header else {
            return Verdict::Denied;
        };
        let id = self.id(header);
        let now = Instant::now();
        if lock(&self.remembered).knows(&id, now) {
            return Verdict::Allowed;
        }
        let addr = crate::peers::key(peer.unwrap_or(IpAddr::from([0, 0, 0, 0])));
        let clean = match lock(&self.allowance).take(addr, now) {
            Ok(clean) => clean,
            Err(wait) => {
                bump(&self.counts.throttled);
                return Verdict::Throttled(wait);
            }
        };
        let Some((user, password)) = std::str::from_utf8(header).ok().and_then(parse_basic) else {
            bump(&self.counts.failed);
            return Verdict::Denied;
        };
        // Every name compared, in constant time each: no early exit to time.
        let user = self
            .names
            .iter()
            .enumerate()
            .fold(None, |found, (i, name)| {
                if bool::from(name.as_bytes().ct_eq(user.as_bytes())) {
                    Some(i)
                } else {
                    found
                }
            });
        let deadline = tokio::time::Instant::now() + REPLY_WAIT;
        let lane = usize::from(clean);
        let place = {
            let waiting = &self.jobs.waiting[lane];
            let _counted = Waiting(waiting);
            if waiting.fetch_add(1, Ordering::Relaxed) >= WAITERS {
                None
            } else {
                let acquire = self.jobs.places[lane].clone().acquire_owned();
                tokio::time::timeout_at(deadline, acquire)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queued = place.is_some_and(|place| {
            let mut lanes = lock(&self.jobs.lanes);
            let job = Job {
                user,
                password,
                reply,
                _place: place,
            };
            !lanes.1 && lanes.0.push(job, clean).is_ok()
        });
        if !queued {
            // The attempt is not given back: an attacker retrying at once on 503 would
            // otherwise keep a whole allowance, and with it a place in the clean lane.
            bump(&self.counts.shed);
            return Verdict::Busy;
        }
        self.jobs.ready.notify_one();
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(true)) => {
                let now = Instant::now();
                lock(&self.allowance).give_back(addr, now);
                lock(&self.remembered).remember(id, now);
                bump(&self.counts.passed);
                Verdict::Allowed
            }
            Ok(Ok(false)) => {
                bump(&self.counts.failed);
                Verdict::Denied
            }
            // Too slow (or the thread gone): the job is skipped if it has not started.
            _ => {
                bump(&self.counts.shed);
                Verdict::Busy
            }
        }
    }

    /// The keyed hash a credential is remembered under.
    fn id(&self, header: &[u8]) -> [u8; 32] {
        let mut mac = blake2::Blake2bMac512::new_from_slice(&self.key).expect("32-byte key");
        mac.update(header);
        let full = mac.finalize().into_bytes();
        let mut id = [0; 32];
        id.copy_from_slice(&full[..32]);
        id
    }

    /// The login counters in Prometheus text format.
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let c = &self.counts;
        for (name, help, v) in [
            (
                "picker_auth_passed_total",
                "Logins whose password check passed (remembered credentials not counted).",
                &c.passed,
            ),
            (
                "picker_auth_failed_total",
                "Logins with a wrong user or password or a malformed header (missing credentials not counted).",
                &c.failed,
            ),
            (
                "picker_auth_throttled_total",
                "Logins refused unchecked (429): their address had used its attempts.",
                &c.throttled,
            ),
            (
                "picker_auth_shed_total",
                "Logins refused unchecked (503): the password check queue was full or too slow.",
                &c.shed,
            ),
            (
                "picker_auth_abandoned_total",
                "Queued password checks skipped because their client had gone.",
                &c.abandoned,
            ),
        ] {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

impl Drop for Auth {
    fn drop(&mut self) {
        for places in &self.jobs.places {
            places.close();
        }
        lock(&self.jobs.lanes).1 = true;
        self.jobs.ready.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// The check's block array is freed once no check has run for this long; the next check
/// allocates it again (a few milliseconds against the check's own tens to hundreds).
pub const BLOCKS_IDLE: Duration = Duration::from_secs(10);

/// The `auth` thread: runs the checks one at a time in one reused block array, and logs a
/// summary of the attempts that did not pass at most once per [`crate::throttle::PERIOD`].
fn check_thread(jobs: &Queue, users: Vec<Stored>, dummy: Stored, counts: Arc<Counts>) {
    let blocks_needed = users
        .iter()
        .chain([&dummy])
        .map(|s| s.params.block_count())
        .max()
        .unwrap_or(0);
    // Allocated at the first check, then reused: idle, picker holds none of it.
    let mut blocks: Vec<Block> = Vec::new();
    let mut last_check = Instant::now();
    let mut logged = counts.snapshot();
    let mut last_line = Instant::now();
    loop {
        let job = {
            let mut lanes = lock(&jobs.lanes);
            if lanes.1 {
                break;
            }
            match lanes.0.pop() {
                Some(j) => Some(j),
                None => {
                    let (mut lanes, _) = jobs
                        .ready
                        .wait_timeout(lanes, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner());
                    lanes.0.pop()
                }
            }
        };
        if let Some(job) = job {
            if job.reply.is_closed() {
                bump(&counts.abandoned);
            } else {
                if blocks.is_empty() {
                    blocks = vec![Block::default(); blocks_needed];
                }
                let target = job.user.map_or(&dummy, |i| &users[i]);
                let ok = verify(target, job.password.as_bytes(), &mut blocks) && job.user.is_some();
                let _ = job.reply.send(ok);
                last_check = Instant::now();
            }
        } else if give_back_blocks(&blocks, last_check.elapsed()) {
            // Freed, not cleared: an allocation this large is its own mapping (see
            // `limit_malloc_arenas`), so the memory goes back to the system now.
            blocks = Vec::new();
        }
        let now = counts.snapshot();
        if let Some(d) = summary(last_line.elapsed(), now, logged) {
            tracing::warn!(
                "logins on the stream port in the last {} s: {} failed (wrong user or \
                     password), {} throttled (address out of attempts), {} shed (check queue \
                     full), {} abandoned (client gone)",
                last_line.elapsed().as_secs(),
                d[0],
                d[1],
                d[2],
                d[3]
            );
            logged = now;
            last_line = Instant::now();
        }
    }
}

/// Whether the `auth` thread gives its block array back: it holds one, and no check has run
/// for [`BLOCKS_IDLE`].
fn give_back_blocks(blocks: &[Block], idle: Duration) -> bool {
    !blocks.is_empty() && idle >= BLOCKS_IDLE
}

/// What the log's summary line reports: the attempts that did not pass ([`Counts::snapshot`])
/// since the last line, once [`crate::throttle::PERIOD`] has passed since it, and only if
/// there were any.
fn summary(since_line: Duration, now: [u64; 4], logged: [u64; 4]) -> Option<[u64; 4]> {
    if since_line < crate::throttle::PERIOD || now == logged {
        return None;
    }
    Some(std::array::from_fn(|i| now[i] - logged[i]))
}

/// Whether `password` hashes to `stored`, in `blocks` (at least the hash's block count).
fn verify(stored: &Stored, password: &[u8], blocks: &mut [Block]) -> bool {
    let argon = Argon2::new(Algorithm::Argon2id, stored.version, stored.params.clone());
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..stored.hash.len()) else {
        return false;
    };
    argon
        .hash_password_into_with_memory(password, &stored.salt, out, &mut *blocks)
        .is_ok()
        && bool::from(out.ct_eq(&stored.hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &str = "c29tZXNhbHRzb21lc2FsdA";
    const HASH: &str = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY";

    fn phc(alg: &str, m: u32, t: u32, p: u32) -> String {
        format!("${alg}$v=19$m={m},t={t},p={p}${SALT}${HASH}")
    }

    #[test]
    fn only_argon2id_hashes_within_the_cost_bounds_are_accepted() {
        let table: &[(String, bool)] = &[
            (hash_password("x").unwrap(), true),
            (phc("argon2id", 19456, 2, 1), true),
            (phc("argon2id", 65536, 10, 4), true),
            // Below OWASP's minimum, one parameter at a time.
            (phc("argon2id", 19455, 2, 1), false),
            (phc("argon2id", 19456, 1, 1), false),
            (phc("argon2id", 4096, 3, 1), false),
            // Above what a Pi Zero 2 W affords.
            (phc("argon2id", 65537, 2, 1), false),
            (phc("argon2id", 19456, 11, 1), false),
            (phc("argon2id", 19456, 2, 5), false),
            (phc("argon2i", 19456, 2, 1), false),
            ("not a hash".to_string(), false),
        ];
        for (h, ok) in table {
            assert_eq!(check_hash(h).is_ok(), *ok, "{h}: {:?}", check_hash(h));
        }
    }

    #[test]
    fn users_must_share_one_cost_and_errors_name_the_user() {
        let a = ("a".to_string(), phc("argon2id", 19456, 2, 1));
        let b = ("b".to_string(), phc("argon2id", 19456, 2, 1));
        let c = ("c".to_string(), phc("argon2id", 32768, 2, 1));
        let cheap = ("d".to_string(), phc("argon2id", 1024, 1, 1));
        assert!(check_users(&[a.clone(), b.clone()]).is_empty());
        let e = check_users(&[a.clone(), b, c]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("stream.auth-users.c:"), "{e:?}");
        assert!(e[0].contains("stream.auth-users.a's m=19456"), "{e:?}");
        let e = check_users(&[a, cheap]);
        assert!(e[0].starts_with("stream.auth-users.d:") && e[0].contains("too cheap"));
        let e = check_users(&[("x:y".into(), hash_password("p").unwrap())]);
        assert!(e[0].contains("without ':'"), "{e:?}");
    }

    #[test]
    fn an_address_gets_a_burst_then_one_attempt_per_refill() {
        let t0 = Instant::now();
        let mut a = Allowance::default();
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let y: IpAddr = "10.0.0.2".parse().unwrap();
        // The first attempt is from a clean address, the next ones are not.
        assert_eq!(a.take(x, t0), Ok(true));
        for _ in 1..BURST {
            assert_eq!(a.take(x, t0), Ok(false));
        }
        assert_eq!(a.take(x, t0), Err(REFILL));
        // Another address is not affected.
        assert_eq!(a.take(y, t0), Ok(true));
        // A passed login gives its attempt back.
        a.give_back(x, t0);
        assert_eq!(a.take(x, t0), Ok(false));
        assert!(a.take(x, t0 + REFILL / 2).is_err());
        assert_eq!(a.take(x, t0 + REFILL), Ok(false));
        assert!(a.take(x, t0 + REFILL).is_err());
        // A long pause fills the bucket up to the burst, no more: clean again.
        let later = t0 + REFILL * 100;
        assert_eq!(a.take(x, later), Ok(true));
        for _ in 1..BURST {
            assert_eq!(a.take(x, later), Ok(false));
        }
        assert!(a.take(x, later).is_err());
    }

    #[test]
    fn the_address_table_stays_bounded_and_evicts_the_idle_first() {
        let t0 = Instant::now();
        let mut a = Allowance::default();
        for i in 0..ADDRESSES as u32 {
            let addr = IpAddr::from((i + 1).to_be_bytes());
            for _ in 0..BURST {
                a.take(addr, t0 + Duration::from_millis(u64::from(i)))
                    .unwrap();
            }
        }
        assert_eq!(a.buckets.len(), ADDRESSES);
        let first = IpAddr::from(1u32.to_be_bytes());
        let newcomer: IpAddr = "10.9.9.9".parse().unwrap();
        a.take(newcomer, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(a.buckets.len(), ADDRESSES);
        assert!(!a.buckets.contains_key(&first), "the longest idle went");
        // Addresses whose allowance is full again are dropped before any other.
        let much_later = t0 + REFILL * (BURST + 1);
        a.take("10.8.8.8".parse().unwrap(), much_later).unwrap();
        assert!(a.buckets.len() <= 2, "{}", a.buckets.len());
    }

    #[test]
    fn the_clean_lane_is_served_first_and_each_lane_is_bounded() {
        let mut q = Lanes::new();
        for i in 0..QUEUE {
            assert_eq!(q.push(100 + i, false), Ok(()));
        }
        assert_eq!(q.push(999, false), Err(999), "suspect lane full");
        assert_eq!(q.push(1, true), Ok(()), "the clean lane still takes a job");
        assert_eq!(q.push(2, true), Ok(()));
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), Some(100));
        let rest: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest, (101..100 + QUEUE).collect::<Vec<_>>());
    }

    #[test]
    fn remembered_credentials_expire_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let mut r = Remembered::default();
        for i in 0..(REMEMBERED as u8 + 10) {
            r.remember([i; 32], t0 + Duration::from_secs(u64::from(i)));
        }
        assert_eq!(r.entries.len(), REMEMBERED);
        assert!(
            !r.knows(&[0; 32], t0 + Duration::from_secs(80)),
            "oldest evicted"
        );
        let last = [REMEMBERED as u8 + 9; 32];
        assert!(r.knows(&last, t0 + Duration::from_secs(80)));
        assert!(!r.knows(&last, t0 + REMEMBER_FOR + Duration::from_secs(80)));
    }

    #[tokio::test]
    async fn checks_pass_fail_shed_and_throttle_and_every_one_is_counted() {
        let auth = Auth::new(vec![("robot".into(), hash_password("right").unwrap())]);
        let b64 = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let (wrong, right) = (b64("robot:wrong"), b64("robot:right"));
        let me: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            auth.check(Some(wrong.as_bytes()), Some(me)).await,
            Verdict::Denied
        );
        assert_eq!(
            auth.check(Some(b64("nobody:right").as_bytes()), Some(me))
                .await,
            Verdict::Denied
        );
        assert_eq!(
            auth.check(Some(b"Basic !!"), Some(me)).await,
            Verdict::Denied
        );
        assert_eq!(auth.counts.failed.load(Ordering::Relaxed), 3);
        // Two attempts left for `me`, then throttled; another address still checks.
        assert_eq!(
            auth.check(Some(wrong.as_bytes()), Some(me)).await,
            Verdict::Denied
        );
        assert_eq!(
            auth.check(Some(wrong.as_bytes()), Some(me)).await,
            Verdict::Denied
        );
        assert!(matches!(
            auth.check(Some(right.as_bytes()), Some(me)).await,
            Verdict::Throttled(_)
        ));
        assert_eq!(auth.counts.throttled.load(Ordering::Relaxed), 1);
        assert_eq!(
            auth.check(Some(right.as_bytes()), Some(other)).await,
            Verdict::Allowed
        );
        // Remembered now: passes for anyone, throttled address or not, without a check.
        assert_eq!(
            auth.check(Some(right.as_bytes()), Some(me)).await,
            Verdict::Allowed
        );
        assert_eq!(auth.counts.passed.load(Ordering::Relaxed), 1);
        assert_eq!(auth.check(None, Some(me)).await, Verdict::Denied);
        assert_eq!(auth.counts.failed.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn basic_header_parsing() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let table: &[(String, Option<(&str, &str)>)] = &[
            (
                format!("Basic {}", b64("robot:s3cret")),
                Some(("robot", "s3cret")),
            ),
            (format!("basic {}", b64("a:b:c")), Some(("a", "b:c"))),
            (format!("Basic {}", b64("a:")), Some(("a", ""))),
            (format!("Basic {}", b64("nocolon")), None),
            (format!("Bearer {}", b64("a:b")), None),
            ("Basic !!!".to_string(), None),
            ("Basic".to_string(), None),
            (String::new(), None),
        ];
        for (header, want) in table {
            let got = parse_basic(header);
            assert_eq!(
                got.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                *want,
                "{header}"
            );
        }
    }

    #[test]
    fn verify_reuses_one_block_array_for_right_and_wrong_passwords() {
        let s = decode(&hash_password("s3cret").unwrap()).unwrap();
        let mut blocks = vec![Block::default(); s.params.block_count()];
        assert!(verify(&s, b"s3cret", &mut blocks));
        assert!(!verify(&s, b"wrong", &mut blocks));
        assert!(verify(&s, b"s3cret", &mut blocks));
        // Too little memory is a refusal, not a panic.
        assert!(!verify(&s, b"s3cret", &mut blocks[..8]));
    }

    #[test]
    fn a_credential_is_remembered_for_ten_minutes_to_the_second() {
        let t0 = Instant::now();
        let mut r = Remembered::default();
        r.remember([7; 32], t0);
        let table = [(0, true), (599, true), (600, false), (601, false)];
        for (secs, known) in table {
            // Each asked of the table as the check left it (asking is a use, which refreshes).
            assert_eq!(
                r.clone().knows(&[7; 32], t0 + Duration::from_secs(secs)),
                known,
                "{secs} s"
            );
        }
        assert!(!r.knows(&[8; 32], t0), "never remembered");
    }

    #[test]
    fn a_credential_used_every_nine_minutes_stays_remembered_and_one_unused_for_ten_is_forgotten() {
        let t0 = Instant::now();
        let minutes = |m: u64| t0 + Duration::from_secs(60 * m);
        let (used, unused) = ([1; 32], [2; 32]);
        let mut r = Remembered::default();
        r.remember(used, t0);
        r.remember(unused, t0);
        // A dashboard polling every 9 minutes, for an hour and more.
        for m in (9..=72).step_by(9) {
            assert!(r.knows(&used, minutes(m)), "used at {m} min");
        }
        assert!(!r.knows(&unused, minutes(10)), "unused for 10 min");
        // Ten minutes after its last use (at 72), to the second, it is forgotten too.
        let last = minutes(72);
        assert!(
            r.clone()
                .knows(&used, last + REMEMBER_FOR - Duration::from_secs(1))
        );
        assert!(!r.knows(&used, last + REMEMBER_FOR));
        // Once expired, asking again does not bring it back.
        assert!(!r.knows(&used, last + REMEMBER_FOR + Duration::from_secs(1)));
    }

    #[test]
    fn a_full_table_forgets_the_credential_used_longest_ago_not_the_one_checked_first() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = Remembered::default();
        for i in 0..REMEMBERED as u8 {
            r.remember([i; 32], at(u64::from(i)));
        }
        // The first one checked is still in use: the second is now the least recent.
        assert!(r.knows(&[0; 32], at(100)));
        r.remember([200; 32], at(101));
        assert_eq!(r.entries.len(), REMEMBERED);
        assert!(r.entries.contains_key(&[0; 32]));
        assert!(!r.entries.contains_key(&[1; 32]));
    }

    #[test]
    fn a_full_table_of_credentials_forgets_the_expired_then_the_oldest_and_never_on_a_refresh() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let full = || {
            let mut r = Remembered::default();
            for i in 0..REMEMBERED as u8 {
                r.remember([i; 32], at(u64::from(i)));
            }
            r
        };
        // Refreshing one already remembered forgets no other.
        let mut r = full();
        r.remember([5; 32], at(100));
        assert_eq!(r.entries.len(), REMEMBERED);
        assert!((0..REMEMBERED as u8).all(|i| r.knows(&[i; 32], at(100))));
        // A new one: the oldest goes, only it.
        let mut r = full();
        r.remember([200; 32], at(100));
        assert_eq!(r.entries.len(), REMEMBERED);
        assert!(!r.knows(&[0; 32], at(100)));
        assert!((1..REMEMBERED as u8).all(|i| r.knows(&[i; 32], at(100))));
        // Once the first two have expired (exactly at their end), both go, no other.
        let mut r = full();
        r.remember([200; 32], at(1) + REMEMBER_FOR);
        assert_eq!(r.entries.len(), REMEMBERED - 1);
        assert!(r.entries.contains_key(&[2; 32]));
        assert!(r.knows(&[200; 32], at(1) + REMEMBER_FOR));
    }

    #[test]
    fn an_allowance_refills_one_attempt_per_refill_from_when_it_was_last_counted() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        // (tokens, counted at, now) -> (tokens, counted at)
        let table = [
            // Less than a refill: nothing gained, the clock kept.
            ((0, 0, 11), (0, 0)),
            ((0, 0, 12), (1, 12)),
            // Two refills and a part of one: the part is kept for the next.
            ((0, 0, 30), (2, 24)),
            ((1, 0, 24), (3, 24)),
            ((4, 0, 13), (5, 13)),
            // Full: the clock restarts when the burst is reached ...
            ((3, 0, 100), (BURST, 100)),
            // ... and a full allowance counted within a refill keeps it.
            ((BURST, 0, 6), (BURST, 0)),
        ];
        for ((tokens, at, now), (want_tokens, want_at)) in table {
            let b = Bucket { tokens, at: s(at) }.refilled(s(now));
            assert_eq!(
                (b.tokens, b.at),
                (want_tokens, s(want_at)),
                "{tokens} tokens at {at} s, now {now} s"
            );
        }
    }

    #[test]
    fn an_address_already_in_a_full_table_evicts_no_other() {
        let t0 = Instant::now();
        let mut a = Allowance::default();
        for i in 0..ADDRESSES as u32 {
            let addr = IpAddr::from((i + 1).to_be_bytes());
            a.take(addr, t0 + Duration::from_millis(u64::from(i)))
                .unwrap();
        }
        let last = IpAddr::from((ADDRESSES as u32).to_be_bytes());
        assert_eq!(a.take(last, t0 + Duration::from_secs(5)), Ok(false));
        assert_eq!(a.buckets.len(), ADDRESSES);
        assert!(a.buckets.contains_key(&IpAddr::from(1u32.to_be_bytes())));
    }

    #[test]
    fn a_waiting_request_is_uncounted_when_dropped() {
        let waiting = std::sync::atomic::AtomicUsize::new(2);
        drop(Waiting(&waiting));
        assert_eq!(waiting.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_log_summary_gives_the_attempts_since_the_last_line_once_a_period_has_passed() {
        let p = crate::throttle::PERIOD;
        let second = Duration::from_secs(1);
        let logged = [3, 2, 1, 0];
        let table = [
            (p, [5, 2, 4, 1], Some([2, 0, 3, 1])),
            (p + second, [4, 2, 1, 0], Some([1, 0, 0, 0])),
            // Nothing new: no line.
            (p, logged, None),
            // Too soon after the last line.
            (p - second, [5, 2, 4, 1], None),
        ];
        for (since, now, want) in table {
            assert_eq!(summary(since, now, logged), want, "{since:?} {now:?}");
        }
    }

    #[test]
    fn the_block_array_is_given_back_after_exactly_blocks_idle_without_a_check() {
        let ms = Duration::from_millis;
        let table = [
            (true, BLOCKS_IDLE, true),
            (true, BLOCKS_IDLE + ms(1), true),
            (true, BLOCKS_IDLE - ms(1), false),
            (true, Duration::ZERO, false),
            (false, BLOCKS_IDLE, false),
        ];
        let one = [Block::default()];
        for (held, idle, want) in table {
            let blocks: &[Block] = if held { &one } else { &[] };
            assert_eq!(
                give_back_blocks(blocks, idle),
                want,
                "held {held}, idle {idle:?}"
            );
        }
    }

    #[test]
    fn metrics_show_each_count_under_its_own_name() {
        let auth = Auth::new(Vec::new());
        let c = &auth.counts;
        for (i, n) in [&c.passed, &c.failed, &c.throttled, &c.shed, &c.abandoned]
            .into_iter()
            .enumerate()
        {
            n.store(i as u64 + 10, Ordering::Relaxed);
        }
        // The log's summary reads the ones that did not pass, in its line's order.
        assert_eq!(c.snapshot(), [11, 12, 13, 14]);
        let mut out = String::new();
        auth.write_metrics(&mut out);
        for (name, v) in [
            ("passed", 10),
            ("failed", 11),
            ("throttled", 12),
            ("shed", 13),
            ("abandoned", 14),
        ] {
            let name = format!("picker_auth_{name}_total");
            assert!(
                out.contains(&format!("# TYPE {name} counter\n{name} {v}\n")),
                "{out}"
            );
        }
    }

    #[test]
    fn credentials_are_remembered_under_a_keyed_hash_of_the_whole_header() {
        let a = Auth::new(Vec::new());
        let b = Auth::new(Vec::new());
        assert_eq!(
            a.id(b"Basic cm9ib3Q6cmlnaHQ="),
            a.id(b"Basic cm9ib3Q6cmlnaHQ=")
        );
        assert_ne!(
            a.id(b"Basic cm9ib3Q6cmlnaHQ="),
            a.id(b"Basic cm9ib3Q6d3Jvbmc=")
        );
        // A random key per process: another's id for the same header is another.
        assert_ne!(
            a.id(b"Basic cm9ib3Q6cmlnaHQ="),
            b.id(b"Basic cm9ib3Q6cmlnaHQ=")
        );
        assert_ne!(random::<16>(), random::<16>());
    }

    #[test]
    fn dropping_auth_tells_the_thread_to_end_and_closes_the_places() {
        let auth = Auth::new(Vec::new());
        let jobs = auth.jobs.clone();
        assert!(!lock(&jobs.lanes).1);
        drop(auth);
        assert!(lock(&jobs.lanes).1);
        assert!(jobs.places.iter().all(|p| p.is_closed()));
    }
}
