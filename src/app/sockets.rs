//! Binding happens before [`run`](super::run) so that a failure names the config key at
//! fault (a port in use, a still socket another picker answers on) and tests can bind their
//! own; the guard removes the socket file only while it is still ours, and the connection
//! budget (descriptors and memory) is shared out here because the connection caps of both
//! listeners come from it.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use super::AppError;
use crate::config::Config;

/// The listeners the service serves on, bound before `run` so that failures are reported
/// with the config key at fault, and so tests can pass their own.
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub unix: UnixListener,
    /// Removes the socket file when dropped.
    pub socket_guard: SocketGuard,
}

/// Binds the still socket, then the TCP listener (if the stream is enabled). The still
/// socket first: a second instance is refused on the robot's socket, whatever the port.
pub async fn bind(config: &Config) -> Result<Listeners, AppError> {
    let (unix, socket_guard) =
        bind_unix(&config.still.socket).map_err(|(what, busy)| AppError::BindUnix {
            path: config.still.socket.clone(),
            origin: config.origin(),
            what,
            busy,
        })?;
    let tcp = if config.stream.enabled {
        Some(bind_tcp(config).await?)
    } else {
        None
    };
    Ok(Listeners {
        tcp,
        unix,
        socket_guard,
    })
}

/// Binds the stream port of `config`.
pub async fn bind_tcp(config: &Config) -> Result<TcpListener, AppError> {
    let addr = SocketAddr::new(config.stream.bind, config.stream.port);
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrNotAvailable {
            AppError::AddressAbsent {
                addr,
                origin: config.origin(),
                source,
            }
        } else {
            AppError::BindTcp {
                addr,
                port: config.stream.port,
                origin: config.origin(),
                source,
            }
        }
    })
}

/// Removes the still socket file on drop, if it is still ours.
pub struct SocketGuard {
    path: PathBuf,
    inode: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn bind_unix(path: &Path) -> Result<(UnixListener, SocketGuard), (String, bool)> {
    let config = |what: String| (what, false);
    use std::os::unix::fs::MetadataExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs(parent).map_err(config)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A socket file: stale unless somebody still answers on it.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err((
                    "another process is listening on it (is picker already running?)".into(),
                    true,
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| config(format!("cannot remove stale socket: {e}")))?;
        }
        Ok(_) => return Err(config("a file that is not a socket is in the way".into())),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| config(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| config(format!("cannot set mode 0660: {e}")))?;
    let inode = std::fs::symlink_metadata(path)
        .map_err(|e| config(e.to_string()))?
        .ino();
    Ok((
        listener,
        SocketGuard {
            path: path.to_owned(),
            inode,
        },
    ))
}

/// The mode of each directory picker makes on the way to its socket: group `picker` must pass
/// through them to reach the socket (0660), and nobody else needs to.
const DIR_MODE: u32 = 0o750;

/// Creates `dir` and its missing ancestors, each [`DIR_MODE`]. Set after `mkdir`, which the
/// umask masks: under the unit's `UMask=0077` they came out 0700, and group `picker` could not
/// reach a socket such as `/run/picker/robot/still.sock`. Only what this call made is changed:
/// a directory that was there already keeps its owner's choice.
fn create_dirs(dir: &Path) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d);
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => std::fs::set_permissions(d, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| format!("cannot set mode 0750 on directory {}: {e}", d.display()))?,
            // Made meanwhile by somebody else: theirs, left as it is.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(format!("cannot create directory {}: {e}", d.display())),
        }
    }
    Ok(())
}

/// Raises the descriptor limit to its hard maximum, reads the memory picker may count on,
/// shares both out (see [`crate::budget`]), and says the figures once: which limit set the
/// TCP cap, so that `journalctl -u picker` explains it.
pub(super) fn connection_budget() -> crate::budget::Budget {
    let (nofile, err) = crate::budget::raise_nofile();
    if let Some(e) = err {
        tracing::warn!("cannot raise the open-file limit (RLIMIT_NOFILE {nofile}): {e}");
    }
    let memory = crate::budget::read_memory();
    if let Some(w) = memory.warning() {
        tracing::warn!("{w}");
    }
    let b = crate::budget::plan(nofile, memory.usable());
    tracing::info!("{}", b.summary(memory.cgroup_binds()));
    for w in b.warnings() {
        tracing::warn!("{w}");
    }
    b
}
