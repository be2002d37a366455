//! The start-up guard for a Raspberry Pi whose libcamera cannot drive a Pi camera: when the
//! board's device-tree model names a Raspberry Pi, libcamera lists no camera, and the libcamera
//! library this process loaded lacks the Pi pipeline handler the board needs (`rpi/vc4` for
//! the VideoCore ISP of the Pi 4 and earlier, `rpi/pisp` for the PiSP of the Pi 5 family) or its
//! IPA module, one log line says which package to install instead. The typical case is a
//! package built against Debian's libcamera installed where Raspberry Pi's is needed.
//!
//! The facts come from the running system, honestly: the board from `/proc/device-tree/model`,
//! the library from this process's own mappings (`/proc/self/maps`), the handlers from the
//! names the library registers them under (libcamera's `REGISTER_PIPELINE_HANDLER` keeps each
//! name as a C string in the library), the IPA modules from the directories libcamera loads
//! them from. [`judge`] is a pure function of those facts; [`gather`] and [`check`] are the
//! effects at the edge. The guard only speaks when no camera was found, so a wrong guess about
//! a library can never disturb a working camera.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A Raspberry Pi pipeline handler of libcamera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PiHandler {
    /// The VideoCore 4 ISP: Pi 1 to 4, Zero, Zero 2 W, Compute Modules 1 to 4, Pi 400.
    Vc4,
    /// The PiSP back end of BCM2712: Pi 5, Pi 500, Compute Module 5.
    Pisp,
}

impl PiHandler {
    pub const ALL: [PiHandler; 2] = [PiHandler::Vc4, PiHandler::Pisp];

    /// The name libcamera registers the handler under (and logs: "Found registered pipeline
    /// handler 'rpi/vc4'").
    pub fn name(self) -> &'static str {
        match self {
            PiHandler::Vc4 => "rpi/vc4",
            PiHandler::Pisp => "rpi/pisp",
        }
    }

    /// The IPA module the handler cannot work without (libcamera's `src/ipa/rpi/{vc4,pisp}`).
    pub fn ipa_module(self) -> &'static str {
        match self {
            PiHandler::Vc4 => "ipa_rpi_vc4.so",
            PiHandler::Pisp => "ipa_rpi_pisp.so",
        }
    }
}

/// The handler a board needs, from its device-tree model string (NUL-terminated as the kernel
/// gives it, or not); `None` when the board is no Raspberry Pi.
pub fn handler_for_model(model: &str) -> Option<PiHandler> {
    let rest = model
        .trim_end_matches('\0')
        .trim()
        .strip_prefix("Raspberry Pi")?
        .trim_start();
    // "Raspberry Pi 5 Model B", "Raspberry Pi 500", "Raspberry Pi Compute Module 5": BCM2712.
    let bcm2712 = rest.starts_with('5') || rest.starts_with("Compute Module 5");
    Some(if bcm2712 {
        PiHandler::Pisp
    } else {
        PiHandler::Vc4
    })
}

/// What [`gather`] found out about the running system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The device-tree model string; `None` when there is none (no device tree: a PC).
    pub model: Option<String>,
    /// The libcamera library this process mapped, if it could be found.
    pub library: Option<PathBuf>,
    /// The Pi pipeline handlers that library holds.
    pub handlers: Vec<PiHandler>,
    /// The file names in libcamera's IPA module directories.
    pub ipa_modules: Vec<String>,
    /// How many cameras libcamera listed.
    pub cameras: usize,
}

/// The guard's conclusion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to say: no Raspberry Pi, a camera was found, or the library is unknown.
    Quiet,
    /// The library lacks the handler the board needs.
    NoHandler {
        model: String,
        handler: PiHandler,
        library: PathBuf,
    },
    /// The library has the handler but its IPA module is not installed.
    NoIpa { model: String, handler: PiHandler },
}

/// The pure decision.
pub fn judge(facts: &Facts) -> Verdict {
    let Some(model) = facts.model.as_deref() else {
        return Verdict::Quiet;
    };
    let Some(handler) = handler_for_model(model) else {
        return Verdict::Quiet;
    };
    // A camera works: whatever the library looks like, it serves it.
    if facts.cameras > 0 {
        return Verdict::Quiet;
    }
    // Without the library's path there is nothing honest to say about its handlers.
    let Some(library) = facts.library.as_ref() else {
        return Verdict::Quiet;
    };
    let model = model.trim_end_matches('\0').trim().to_string();
    if !facts.handlers.contains(&handler) {
        return Verdict::NoHandler {
            model,
            handler,
            library: library.clone(),
        };
    }
    if !facts.ipa_modules.iter().any(|m| m == handler.ipa_module()) {
        return Verdict::NoIpa { model, handler };
    }
    Verdict::Quiet
}

impl Verdict {
    /// The one log line, or `None` when there is nothing to say.
    pub fn advice(&self) -> Option<String> {
        match self {
            Verdict::Quiet => None,
            Verdict::NoHandler {
                model,
                handler,
                library,
            } => Some(format!(
                "no camera, and this {model} needs libcamera's {} pipeline handler, which {} does \
                 not have: on Raspberry Pi OS install picker's Raspberry Pi OS package \
                 (picker_*+rpios13_arm64.deb), built against Raspberry Pi's libcamera0.7 and \
                 libcamera-ipa, instead of this one",
                handler.name(),
                library.display()
            )),
            Verdict::NoIpa { model, handler } => Some(format!(
                "no camera, and this {model} needs libcamera's IPA module {} for the {} pipeline \
                 handler, which is not installed: install the libcamera-ipa package matching \
                 libcamera (apt install libcamera-ipa)",
                handler.ipa_module(),
                handler.name()
            )),
        }
    }
}

/// The libcamera library (not libcamera-base) among the mappings of `/proc/PID/maps` text.
pub fn library_in_maps(maps: &str) -> Option<PathBuf> {
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libcamera.so"))
        })
        .map(PathBuf::from)
}

/// The Pi handlers whose registered names occur in the library's bytes, each as a whole C
/// string (a NUL before and after: "rpi/vc4" inside a longer string does not count).
pub fn handlers_in_library(bytes: &[u8]) -> Vec<PiHandler> {
    PiHandler::ALL
        .into_iter()
        .filter(|h| {
            let mut needle = vec![0u8];
            needle.extend_from_slice(h.name().as_bytes());
            needle.push(0);
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

/// The directories libcamera loads IPA modules from: `LIBCAMERA_IPA_MODULE_PATH` (colon
/// separated) first, then `libcamera/ipa` beside the library (its build-time `IPA_MODULE_DIR`
/// on Debian and Raspberry Pi OS, e.g. /usr/lib/aarch64-linux-gnu/libcamera/ipa).
pub fn ipa_dirs(library: &Path, env_path: Option<&OsString>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = env_path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    if let Some(dir) = library.parent() {
        dirs.push(dir.join("libcamera").join("ipa"));
    }
    dirs
}

/// Reads the facts from the system: the model file, the maps file, the library and the IPA
/// directories. Unreadable files leave their fact empty (the guard then stays quiet).
pub fn gather(
    model_path: &Path,
    maps_path: &Path,
    ipa_env: Option<&OsString>,
    cameras: usize,
) -> Facts {
    let model = std::fs::read(model_path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let library = std::fs::read_to_string(maps_path)
        .ok()
        .and_then(|m| library_in_maps(&m));
    let handlers = library
        .as_ref()
        .and_then(|l| std::fs::read(l).ok())
        .map(|b| handlers_in_library(&b))
        .unwrap_or_default();
    let mut ipa_modules = Vec::new();
    if let Some(lib) = &library {
        for dir in ipa_dirs(lib, ipa_env) {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            ipa_modules.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok()),
            );
        }
    }
    Facts {
        model,
        library,
        handlers,
        ipa_modules,
        cameras,
    }
}

/// The guard, run once after libcamera has listed its cameras: logs the advice line, if any.
/// Only reads a few small files and the library itself; nothing runs on a board that is no Pi.
pub fn check(cameras: usize) {
    let model_path = Path::new("/proc/device-tree/model");
    // Not a Pi (or no device tree): no further reads.
    let is_pi = std::fs::read(model_path)
        .map(|b| handler_for_model(&String::from_utf8_lossy(&b)).is_some())
        .unwrap_or(false);
    if !is_pi || cameras > 0 {
        return;
    }
    let env = std::env::var_os("LIBCAMERA_IPA_MODULE_PATH");
    let facts = gather(
        model_path,
        Path::new("/proc/self/maps"),
        env.as_ref(),
        cameras,
    );
    if let Some(line) = judge(&facts).advice() {
        tracing::warn!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_for_model_by_board() {
        let table = [
            ("Raspberry Pi 5 Model B Rev 1.0\0", Some(PiHandler::Pisp)),
            ("Raspberry Pi 500 Rev 1.0\0", Some(PiHandler::Pisp)),
            (
                "Raspberry Pi Compute Module 5 Rev 1.0\0",
                Some(PiHandler::Pisp),
            ),
            ("Raspberry Pi 4 Model B Rev 1.5\0", Some(PiHandler::Vc4)),
            ("Raspberry Pi 400 Rev 1.0\0", Some(PiHandler::Vc4)),
            (
                "Raspberry Pi Compute Module 4 Rev 1.0\0",
                Some(PiHandler::Vc4),
            ),
            ("Raspberry Pi Zero 2 W Rev 1.0\0", Some(PiHandler::Vc4)),
            ("Raspberry Pi 3 Model B Plus Rev 1.3", Some(PiHandler::Vc4)),
            ("Raspberry Pi Model B Rev 2\0", Some(PiHandler::Vc4)),
            ("Pine64 RockPro64 v2.1\0", None),
            ("QEMU Virtual Machine", None),
            ("", None),
        ];
        for (model, want) in table {
            assert_eq!(handler_for_model(model), want, "{model:?}");
        }
    }

    fn facts(model: &str, handlers: &[PiHandler], ipa: &[&str], cameras: usize) -> Facts {
        Facts {
            model: Some(model.to_string()),
            library: Some(PathBuf::from("/usr/lib/aarch64-linux-gnu/libcamera.so.0.4")),
            handlers: handlers.to_vec(),
            ipa_modules: ipa.iter().map(|s| s.to_string()).collect(),
            cameras,
        }
    }

    #[test]
    fn judge_table() {
        use PiHandler::*;
        let pi5 = "Raspberry Pi 5 Model B Rev 1.0\0";
        let pi4 = "Raspberry Pi 4 Model B Rev 1.5\0";
        let both = ["ipa_rpi_vc4.so", "ipa_rpi_pisp.so"];
        // (facts, want kind): 0 quiet, 1 no handler, 2 no IPA
        let table: Vec<(Facts, u8)> = vec![
            // Raspberry Pi's libcamera with its IPA modules: quiet.
            (facts(pi5, &[Vc4, Pisp], &both, 0), 0),
            (facts(pi4, &[Vc4, Pisp], &both, 0), 0),
            // A libcamera with rpi/vc4 only (a Debian build without libpisp) on a Pi 5.
            (facts(pi5, &[Vc4], &["ipa_rpi_vc4.so"], 0), 1),
            // ... which still serves a Pi 4.
            (facts(pi4, &[Vc4], &["ipa_rpi_vc4.so"], 0), 0),
            // No Pi handler at all (a PC-style build): both boards told.
            (facts(pi5, &[], &[], 0), 1),
            (facts(pi4, &[], &[], 0), 1),
            // The handler without its IPA module.
            (facts(pi5, &[Vc4, Pisp], &["ipa_rpi_vc4.so"], 0), 2),
            (facts(pi4, &[Vc4, Pisp], &[], 0), 2),
            // A camera was found: never a word.
            (facts(pi5, &[], &[], 1), 0),
            // Not a Pi.
            (facts("Pine64 RockPro64 v2.1\0", &[], &[], 0), 0),
        ];
        for (f, want) in table {
            let got = match judge(&f) {
                Verdict::Quiet => 0,
                Verdict::NoHandler { .. } => 1,
                Verdict::NoIpa { .. } => 2,
            };
            assert_eq!(got, want, "{f:?}");
        }
        // No model file, or no library found: quiet.
        let mut f = facts(pi5, &[], &[], 0);
        f.model = None;
        assert_eq!(judge(&f), Verdict::Quiet);
        let mut f = facts(pi5, &[], &[], 0);
        f.library = None;
        assert_eq!(judge(&f), Verdict::Quiet);
    }

    #[test]
    fn advice_names_handler_library_and_package() {
        let f = facts(
            "Raspberry Pi 5 Model B Rev 1.0\0",
            &[PiHandler::Vc4],
            &[],
            0,
        );
        let line = judge(&f).advice().unwrap();
        assert!(
            line.contains("this Raspberry Pi 5 Model B Rev 1.0 needs"),
            "{line}"
        );
        assert!(!line.contains('\0'));
        assert!(line.contains("rpi/pisp"), "{line}");
        assert!(
            line.contains("/usr/lib/aarch64-linux-gnu/libcamera.so.0.4"),
            "{line}"
        );
        assert!(line.contains("+rpios13_arm64.deb"), "{line}");
        assert!(!line.contains('\n'));
        let f = facts("Raspberry Pi 4 Model B\0", &[PiHandler::Vc4], &[], 0);
        let line = judge(&f).advice().unwrap();
        assert!(
            line.contains("ipa_rpi_vc4.so") && line.contains("libcamera-ipa"),
            "{line}"
        );
        assert_eq!(Verdict::Quiet.advice(), None);
    }

    #[test]
    fn library_in_maps_finds_libcamera_not_base() {
        let maps = "\
7f0000000000-7f0000100000 r--p 00000000 08:01 123 /usr/lib/aarch64-linux-gnu/libcamera-base.so.0.7.0
7f0000200000-7f0000300000 r-xp 00000000 08:01 124 /usr/lib/aarch64-linux-gnu/libcamera.so.0.7.0
7f0000400000-7f0000500000 rw-p 00000000 00:00 0
7f0000600000-7f0000700000 r--p 00000000 08:01 125 /usr/lib/aarch64-linux-gnu/libc.so.6
";
        assert_eq!(
            library_in_maps(maps),
            Some(PathBuf::from(
                "/usr/lib/aarch64-linux-gnu/libcamera.so.0.7.0"
            ))
        );
        assert_eq!(
            library_in_maps("7f00-7f01 r--p 0 08:01 1 /usr/lib/libc.so.6\n"),
            None
        );
        assert_eq!(library_in_maps(""), None);
    }

    #[test]
    fn handlers_in_library_whole_strings_only() {
        let table: [(&[u8], Vec<PiHandler>); 5] = [
            (
                b"xx\0rpi/vc4\0yy\0rpi/pisp\0",
                vec![PiHandler::Vc4, PiHandler::Pisp],
            ),
            (b"\0uvcvideo\0rpi/vc4\0", vec![PiHandler::Vc4]),
            // Inside a longer string (a data path, a log message): not a registered name.
            (b"\0pipeline/rpi/vc4\0rpi/pisp/x\0", vec![]),
            (b"rpi/vc4", vec![]),
            (b"", vec![]),
        ];
        for (bytes, want) in table {
            assert_eq!(handlers_in_library(bytes), want, "{bytes:?}");
        }
    }

    #[test]
    fn gather_reads_model_library_and_ipa_dirs() {
        let dir = std::env::temp_dir().join(format!("picker-pi-guard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ipa = dir.join("lib/libcamera/ipa");
        std::fs::create_dir_all(&ipa).unwrap();
        let lib = dir.join("lib/libcamera.so.0.4.0");
        std::fs::write(&lib, b"\x7fELF\0rpi/vc4\0more").unwrap();
        std::fs::write(ipa.join("ipa_rpi_vc4.so"), b"").unwrap();
        let extra = dir.join("extra");
        std::fs::create_dir_all(&extra).unwrap();
        std::fs::write(extra.join("ipa_rpi_pisp.so"), b"").unwrap();
        let model = dir.join("model");
        std::fs::write(&model, b"Raspberry Pi 5 Model B Rev 1.0\0").unwrap();
        let maps = dir.join("maps");
        std::fs::write(
            &maps,
            format!("7f00-7f01 r-xp 00000000 08:01 9 {}\n", lib.display()),
        )
        .unwrap();
        let env = OsString::from(&extra);
        let f = gather(&model, &maps, Some(&env), 0);
        assert_eq!(f.model.as_deref(), Some("Raspberry Pi 5 Model B Rev 1.0\0"));
        assert_eq!(f.library.as_deref(), Some(lib.as_path()));
        assert_eq!(f.handlers, vec![PiHandler::Vc4]);
        let mut ipa_found = f.ipa_modules.clone();
        ipa_found.sort();
        assert_eq!(ipa_found, vec!["ipa_rpi_pisp.so", "ipa_rpi_vc4.so"]);
        assert!(matches!(
            judge(&f),
            Verdict::NoHandler {
                handler: PiHandler::Pisp,
                ..
            }
        ));
        // Missing files: empty facts, quiet.
        let none = gather(&dir.join("nope"), &dir.join("nope"), None, 0);
        assert_eq!(none, Facts::default());
        assert_eq!(judge(&none), Verdict::Quiet);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
