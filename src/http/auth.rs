//! Optional HTTP Basic auth on the stream port (`stream.auth-users`): what mjpg-streamer,
//! ustreamer and motion offer, and what Home Assistant, OctoPrint and motionEye speak. The
//! still socket keeps its file-permission model and is never asked for a password.
//!
//! Passwords are stored as Argon2id PHC strings (`picker hash-password` makes one). Checking
//! one costs tens of milliseconds and about 19 MiB, on purpose: so at most one check runs at a
//! time, and a credential that passed is remembered (a viewer's browser sends it with every
//! request, a dashboard polls snapshots), compared in constant time. Basic auth sends the
//! password readable by anyone on the path: on an untrusted network put a TLS proxy in front.

use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

/// Credentials that passed, remembered so that they are not hashed again per request.
const REMEMBERED: usize = 16;

/// The `WWW-Authenticate` header of a 401.
pub const CHALLENGE: &str = "Basic realm=\"picker\", charset=\"UTF-8\"";

/// The users allowed on the stream port.
pub struct Auth {
    /// (user, PHC hash string), checked when the config was loaded.
    users: Vec<(String, String)>,
    /// A hash checked when the user is unknown, so that an unknown user takes as long as a
    /// wrong password and user names cannot be probed by timing.
    dummy: String,
    remembered: Mutex<Vec<Vec<u8>>>,
    checking: Semaphore,
    /// Places in the queue for `checking`: beyond them a check is refused at once (busy),
    /// so a flood of wrong passwords cannot make every login wait behind it.
    waiting: Semaphore,
    /// Failed logins (wrong user or password): counted, logged at most once per 10 s.
    pub failed: crate::throttle::Counted,
}

/// Checks that may wait for the one running (each costs tens of ms, more on a Pi).
const QUEUE: usize = 4;
/// The longest a check waits for its turn before it is answered busy.
const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`Auth::check`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Too many checks at once: answer 503 with `Retry-After`.
    Busy,
}

/// Why a hash in the config is unusable (the message names the user).
pub fn check_hash(hash: &str) -> Result<(), String> {
    let h = PasswordHash::new(hash)
        .map_err(|e| format!("not a password hash from `picker hash-password` ({e})"))?;
    if h.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "{} hash: only argon2id (from `picker hash-password`) is accepted",
            h.algorithm
        ));
    }
    let p = argon2::Params::try_from(&h).map_err(|e| format!("bad argon2id parameters ({e})"))?;
    // Every check costs this much memory and time, on a Pi: bound what a config may ask.
    if p.m_cost() > 64 * 1024 || p.t_cost() > 10 || p.p_cost() > 4 {
        return Err(format!(
            "argon2id parameters m={} t={} p={} too costly (at most m=65536, t=10, p=4)",
            p.m_cost(),
            p.t_cost(),
            p.p_cost()
        ));
    }
    Ok(())
}

/// Hashes `password` with Argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
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

impl Auth {
    /// `users` must have passed [`check_hash`].
    pub fn new(users: Vec<(String, String)>) -> Auth {
        Auth {
            users,
            dummy: hash_password("picker-dummy").unwrap_or_default(),
            remembered: Mutex::new(Vec::new()),
            checking: Semaphore::new(1),
            waiting: Semaphore::new(QUEUE),
            failed: crate::throttle::Counted::default(),
        }
    }

    /// True if the `Authorization` header value names a user with the right password (a
    /// busy check counts as no).
    pub async fn allows(&self, header: Option<&[u8]>) -> bool {
        self.check(header).await == Verdict::Allowed
    }

    /// Whether the `Authorization` header value names a user with the right password, or
    /// [`Verdict::Busy`] when too many checks are already waiting.
    pub async fn check(&self, header: Option<&[u8]>) -> Verdict {
        let Some(header) = header else {
            return Verdict::Denied;
        };
        if self.is_remembered(header) {
            return Verdict::Allowed;
        }
        let Some((user, password)) = std::str::from_utf8(header).ok().and_then(parse_basic) else {
            self.failed_login();
            return Verdict::Denied;
        };
        let hash = self
            .users
            .iter()
            .find(|(name, _)| bool::from(name.as_bytes().ct_eq(user.as_bytes())))
            .map(|(_, hash)| hash.clone());
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let Ok(_place) = self.waiting.try_acquire() else {
            return Verdict::Busy;
        };
        let _permit = match tokio::time::timeout(QUEUE_WAIT, self.checking.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Verdict::Denied,
            Err(_) => return Verdict::Busy,
        };
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false)
            && known;
        if ok {
            let mut r = self.remembered.lock().unwrap();
            if r.len() >= REMEMBERED {
                r.remove(0);
            }
            r.push(header.to_vec());
            Verdict::Allowed
        } else {
            self.failed_login();
            Verdict::Denied
        }
    }

    fn failed_login(&self) {
        if let Some(n) = self.failed.hit() {
            tracing::warn!("{n} failed login(s) on the stream port (wrong user or password)");
        }
    }

    fn is_remembered(&self, header: &[u8]) -> bool {
        let r = self.remembered.lock().unwrap();
        // Every entry compared, in constant time each: no early exit to time.
        r.iter().fold(false, |found, h| {
            found | bool::from(h.as_slice().ct_eq(header))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_argon2id_hashes_with_bounded_costs_are_accepted() {
        let salt = "c29tZXNhbHRzb21lc2FsdA";
        let hash = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY";
        let table: &[(String, bool)] = &[
            (hash_password("x").unwrap(), true),
            (
                format!("$argon2id$v=19$m=65536,t=10,p=4${salt}${hash}"),
                true,
            ),
            (
                format!("$argon2id$v=19$m=65537,t=2,p=1${salt}${hash}"),
                false,
            ),
            (
                format!("$argon2id$v=19$m=19456,t=11,p=1${salt}${hash}"),
                false,
            ),
            (
                format!("$argon2id$v=19$m=19456,t=2,p=5${salt}${hash}"),
                false,
            ),
            (
                format!("$argon2i$v=19$m=19456,t=2,p=1${salt}${hash}"),
                false,
            ),
            ("not a hash".to_string(), false),
        ];
        for (h, ok) in table {
            assert_eq!(check_hash(h).is_ok(), *ok, "{h}: {:?}", check_hash(h));
        }
    }

    #[tokio::test]
    async fn checks_beyond_the_queue_are_busy_and_wrong_passwords_counted() {
        let auth = Auth::new(vec![("robot".into(), hash_password("right").unwrap())]);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let wrong = format!("Basic {}", b64("robot:wrong"));
        let right = format!("Basic {}", b64("robot:right"));
        assert_eq!(auth.check(Some(wrong.as_bytes())).await, Verdict::Denied);
        assert_eq!(auth.failed.total(), 1);
        // Every queue place taken (a flood in progress): answered at once, not queued.
        let places = auth.waiting.try_acquire_many(QUEUE as u32).unwrap();
        assert_eq!(auth.check(Some(right.as_bytes())).await, Verdict::Busy);
        drop(places);
        assert_eq!(auth.check(Some(right.as_bytes())).await, Verdict::Allowed);
        assert_eq!(auth.failed.total(), 1);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn right_password_passes_wrong_and_unknown_do_not() {
        let hash = hash_password("s3cret").unwrap();
        check_hash(&hash).unwrap();
        assert!(check_hash("plain-text").is_err());
        let auth = Auth::new(vec![("robot".into(), hash)]);
        let b64 = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
            .into_bytes()
        };
        assert!(auth.allows(Some(&b64("robot:s3cret"))).await);
        // Remembered now: passes again without hashing.
        assert!(auth.is_remembered(&b64("robot:s3cret")));
        assert!(auth.allows(Some(&b64("robot:s3cret"))).await);
        assert!(!auth.allows(Some(&b64("robot:wrong"))).await);
        assert!(!auth.allows(Some(&b64("nobody:s3cret"))).await);
        assert!(!auth.allows(None).await);
    }
}
