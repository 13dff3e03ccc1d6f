//! Functions built for another CPU than the host's (`Architectures: [arm64]` on an x86_64 host):
//! they run only through a user-mode emulator registered with the kernel's binfmt_misc (QEMU, as
//! Docker Desktop does it). Without one, the sandbox would fail with "exec format error"; this
//! check says what is missing before anything is pulled.

use std::path::Path;

use crate::runtimes::Architecture;

/// Where the kernel lists binfmt_misc registrations.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The CPU lamina runs on, when it is one Lambda has.
pub fn host() -> Option<Architecture> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Architecture::X86_64),
        "aarch64" => Some(Architecture::Arm64),
        _ => None,
    }
}

/// `Ok` when `function` runs natively, or through a usable emulator (`Ok(true)`: emulated).
pub fn check(
    function: Architecture,
    host: Option<Architecture>,
    binfmt: &Path,
) -> Result<bool, String> {
    if host == Some(function) {
        return Ok(false);
    }
    let host_name = host.map_or(std::env::consts::ARCH, Architecture::as_str);
    let qemu = match function {
        Architecture::X86_64 => "qemu-x86_64",
        Architecture::Arm64 => "qemu-aarch64",
    };
    let fix = format!(
        "install a binfmt_misc emulator (Debian/Ubuntu: apt install qemu-user-static binfmt-support), run on an {function} host, or set Architectures: [{host_name}]"
    );
    let entry = binfmt.join(qemu);
    let Ok(text) = std::fs::read_to_string(&entry) else {
        return Err(format!(
            "built for {function}, but this host is {host_name} and has no {function} emulator registered ({} does not exist); {fix}",
            entry.display()
        ));
    };
    if text.lines().next().map(str::trim) != Some("enabled") {
        return Err(format!(
            "built for {function}, but the {function} emulator {} is disabled; enable it (echo 1 > {}) or {fix}",
            entry.display(),
            entry.display()
        ));
    }
    // Without F ("fix binary") the kernel opens the interpreter by path at each exec, inside the
    // sandbox, where the host's /usr/bin/qemu-* does not exist.
    let fixed = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .is_some_and(|flags| flags.contains('F'));
    if !fixed {
        return Err(format!(
            "the {function} emulator {} is registered without the F flag, so its interpreter cannot be found inside the sandbox; register it with F (the entries of Debian's qemu-user-static have it; update-binfmts --enable {qemu})",
            entry.display()
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_functions_need_nothing() {
        let none = Path::new("/nonexistent");
        assert_eq!(
            check(Architecture::X86_64, Some(Architecture::X86_64), none),
            Ok(false)
        );
    }

    #[test]
    fn foreign_functions_need_an_enabled_fixed_emulator() {
        let dir = tempfile::tempdir().unwrap();
        let host = Some(Architecture::X86_64);
        let err = check(Architecture::Arm64, host, dir.path()).unwrap_err();
        assert!(
            err.contains("built for arm64, but this host is x86_64"),
            "{err}"
        );
        assert!(err.contains("apt install qemu-user-static"), "{err}");
        assert!(err.contains("Architectures: [x86_64]"), "{err}");
        let entry = dir.path().join("qemu-aarch64");
        std::fs::write(
            &entry,
            "disabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\n",
        )
        .unwrap();
        assert!(
            check(Architecture::Arm64, host, dir.path())
                .unwrap_err()
                .contains("is disabled")
        );
        std::fs::write(
            &entry,
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OC\n",
        )
        .unwrap();
        assert!(
            check(Architecture::Arm64, host, dir.path())
                .unwrap_err()
                .contains("without the F flag")
        );
        std::fs::write(
            &entry,
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\n",
        )
        .unwrap();
        assert_eq!(check(Architecture::Arm64, host, dir.path()), Ok(true));
    }
}
