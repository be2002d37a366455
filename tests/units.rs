//! The systemd units as shipped: the template `picker@.service` must be `picker.service` with
//! only the config path, the runtime directory and the description made per instance (its
//! header says so), so a hardening or limit added to one cannot be missing from the other.

use std::collections::BTreeSet;

/// The directives of a unit file (no comments, no blank lines).
fn directives(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn the_template_unit_is_the_plain_unit_but_for_its_instance_paths() {
    let plain = directives("systemd/picker.service");
    let template = directives("systemd/picker@.service");
    let per_instance = |l: &str| {
        l.starts_with("Description=")
            || l.starts_with("ExecStartPre=")
            || l.starts_with("ExecStart=")
            || l.starts_with("ExecReload=/usr/bin/picker")
            || l.starts_with("RuntimeDirectory=")
    };
    let only_plain: Vec<_> = plain
        .difference(&template)
        .filter(|l| !per_instance(l))
        .collect();
    let only_template: Vec<_> = template
        .difference(&plain)
        .filter(|l| !per_instance(l))
        .collect();
    assert!(
        only_plain.is_empty() && only_template.is_empty(),
        "only in picker.service: {only_plain:?}\nonly in picker@.service: {only_template:?}"
    );
    // The per-instance lines use the instance name.
    for l in template.iter().filter(|l| per_instance(l)) {
        assert!(l.contains("%i"), "{l}");
    }
}

/// `systemctl reload` must fail on a broken file: each unit checks its own config file before
/// it sends SIGHUP (systemd runs `ExecReload=` lines in order and stops at the first failure).
#[test]
fn reload_checks_the_unit_s_own_config_before_the_hangup() {
    for (unit, check) in [
        (
            "systemd/picker.service",
            "ExecReload=/usr/bin/picker check-config",
        ),
        (
            "systemd/picker@.service",
            "ExecReload=/usr/bin/picker --config /etc/picker/%i.toml check-config",
        ),
    ] {
        let text =
            std::fs::read_to_string(format!("{}/{unit}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let reloads: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("ExecReload="))
            .collect();
        assert_eq!(
            reloads,
            [check, "ExecReload=/bin/kill -HUP $MAINPID"],
            "{unit}"
        );
        // The same config file as the service itself.
        let start = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap();
        let check_args = check.strip_prefix("ExecReload=").unwrap();
        assert_eq!(format!("{start} check-config"), check_args, "{unit}");
    }
}
