//! Tells the code which libcamera it is built against: `ExposureTimeMode` and
//! `AnalogueGainMode` exist from libcamera 0.5 on (Raspberry Pi OS, Debian forky) but not in
//! Debian trixie's 0.4, and the libcamera crate generates its control ids from the headers.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(libcamera_mode_controls)");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");
    if std::env::var_os("CARGO_FEATURE_LIBCAMERA").is_none() {
        return;
    }
    // The pkg-config the libcamera crate uses: debian/rules names the cross one in
    // PKG_CONFIG_<target> (the pkg-config crate's convention).
    let target = std::env::var("TARGET")
        .unwrap_or_default()
        .replace('-', "_");
    let pkg_config = std::env::var(format!("PKG_CONFIG_{target}"))
        .or_else(|_| std::env::var("PKG_CONFIG"))
        .unwrap_or_else(|_| "pkg-config".to_string());
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_{target}");
    let version = std::process::Command::new(pkg_config)
        .args(["--modversion", "libcamera"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (0, 5) {
        println!("cargo::rustc-cfg=libcamera_mode_controls");
    }
}
