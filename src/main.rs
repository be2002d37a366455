//! The `picker` binary: logging, then config, then the service. Errors map to exit codes
//! here and only here (78 = EX_CONFIG for a config that cannot be used).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use picker::cli::{Cli, Command};
use picker::config::{self, Config, ConfigError};

/// sysexits.h EX_CONFIG.
const EX_CONFIG: u8 = 78;

/// A SIGHUP (`systemctl reload`, or a stray one) must not kill the service before its
/// handler exists; it waits, pending, until then (see app::signal). Blocking it on `main`'s
/// first line is too late: Rust's runtime set-up runs before `main` (it installs the
/// SIGPIPE and stack-overflow handlers), and a SIGHUP in that window killed picker (exit
/// 129; seen once in CI out of thousands sent). glibc runs `.init_array` entries before
/// any of that, in the only thread there is, and threads inherit the mask.
/// Hand-written (three lines) rather than the `ctor` crate: one static needs no proc macro.
#[used]
#[unsafe(link_section = ".init_array")]
static HOLD_HANGUPS_FROM_LOAD: extern "C" fn() = hold_hangups_from_load;

extern "C" fn hold_hangups_from_load() {
    picker::app::signal::hold_hangups();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.is_some() {
        // Not the service: SIGHUP keeps its usual meaning.
        picker::app::signal::release_hangups();
    }
    let explicit = cli.config.is_some();
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    match cli.command {
        Some(Command::CheckConfig) => {
            match Config::load(&path, explicit).and_then(|c| c.check_on_disk().map(|()| c)) {
                Ok(c) => {
                    // Warnings go to stderr, and the config is still ok (exit 0): only the
                    // camera can tell (`systemctl reload` shows them from its ExecReload).
                    for w in c.warnings().into_iter().chain(c.absent_bind_warning()) {
                        eprintln!("picker: warning: {w}");
                    }
                    if c.path.is_none() {
                        println!("ok ({} not found: built-in defaults)", path.display());
                    } else {
                        println!("ok");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("picker: {e}");
                    ExitCode::from(EX_CONFIG)
                }
            }
        }
        Some(Command::Probe { json }) => {
            let config = match Config::load(&path, explicit) {
                Ok(c) => c,
                Err(e) => return config_error(&e),
            };
            match picker::camera::fixture::probe(&config) {
                Ok(f) if json => match serde_json::to_string_pretty(&f) {
                    Ok(text) => {
                        println!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("picker: {e}");
                        ExitCode::FAILURE
                    }
                },
                Ok(f) => {
                    print!("{}", picker::camera::fixture::describe(&f));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("picker probe: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::HashPassword) => {
            let line = match read_password() {
                Ok(line) => line,
                Err(e) => {
                    eprintln!("picker: cannot read the password from standard input: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("picker: empty password on standard input");
                return ExitCode::FAILURE;
            }
            match picker::http::auth::hash_password(password) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("picker: cannot hash the password: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Still(args)) => {
            let socket = match &args.socket {
                Some(s) => s.clone(),
                None => match Config::load(&path, explicit) {
                    Ok(c) => c.still.socket,
                    Err(e) => return config_error(&e),
                },
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match rt
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(picker::still_client::fetch(&socket, &args)))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("picker: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            picker::logging::init();
            picker::logging::install_panic_hook();
            let config =
                match Config::load(&path, explicit).and_then(|c| c.check_on_disk().map(|()| c)) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!("{e}");
                        return ExitCode::from(EX_CONFIG);
                    }
                };
            if config.path.is_none() {
                tracing::info!("{} not found: using built-in defaults", path.display());
            } else {
                tracing::info!("config {}", path.display());
            }
            match picker::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let app = e.downcast_ref::<picker::app::AppError>();
                    // The log goes to stderr or the journal: either way the user sees it.
                    match app.and_then(picker::app::AppError::exit_note) {
                        Some(note) => tracing::error!("{e:#}; {note}"),
                        None => tracing::error!("{e:#}"),
                    }
                    // A failure the config caused will not go away by restarting.
                    let config_caused = app.is_some_and(picker::app::AppError::is_config);
                    if config_caused {
                        ExitCode::from(EX_CONFIG)
                    } else {
                        ExitCode::FAILURE
                    }
                }
            }
        }
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("picker: {e}");
    ExitCode::from(EX_CONFIG)
}

/// One line of standard input: the password for `hash-password`. At a terminal it asks for
/// it on standard error and does not echo it (as `passwd` does), so that it is neither shown
/// nor left in the terminal's scrollback; piped in (`echo ... | picker hash-password`) it is
/// read as it comes. Hand-written over nix's termios rather than another crate: nix is
/// already here, and this is four calls.
fn read_password() -> std::io::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    use std::io::IsTerminal as _;
    let stdin = std::io::stdin();
    let mut line = String::new();
    if !stdin.is_terminal() {
        stdin.read_line(&mut line)?;
        return Ok(line);
    }
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    // The Enter key still moves to the next line.
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    eprint!("Password (not shown): ");
    let read = stdin.read_line(&mut line);
    // Echo back on whatever happened; a failure to restore it is worth saying.
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    read?;
    restored?;
    Ok(line)
}
