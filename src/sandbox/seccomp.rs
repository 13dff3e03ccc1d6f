//! The sandbox's seccomp profile: Docker's default profile, as it resolves for the capabilities a
//! function gets (Docker's default set without `CAP_MKNOD`, see `spec.rs`), written as data.
//!
//! Why: `sam local invoke` users come from Docker, whose default profile makes `keyctl`,
//! `add_key`, `unshare(CLONE_NEWUSER)`, `perf_event_open`, `userfaultfd`, `mount`, `bpf` and the
//! like fail with EPERM. lamina applies the same list through the spec's `linux.seccomp`, which
//! libcontainer loads with libseccomp just before the function's process runs (as runc does).
//!
//! Where the lists come from: moby's `profiles/seccomp/default.json` (the profile Docker applies
//! when no `--security-opt seccomp=` is given). Its rules are conditional on capabilities,
//! architectures and kernel versions; the groups below are the ones that apply to lamina's
//! capability set on x86_64 and aarch64 hosts with a kernel of 4.8 or later. Groups conditional on
//! capabilities lamina never grants (`CAP_SYS_ADMIN`, `CAP_SYS_PTRACE`, `CAP_SYS_MODULE`, ...) are
//! left out, so those system calls get the default action. `LAMINA_SECCOMP=unconfined` turns the
//! filter off, like Docker's `--security-opt seccomp=unconfined`.

use serde_json::{Value, json};

/// The errno every system call outside the lists gets: EPERM, as Docker's `defaultErrnoRet: 1`.
const DEFAULT_ERRNO: u32 = 1;

/// Docker's unconditional allowlist (the first group of `default.json`): every architecture,
/// every capability set. Names that do not exist on the host's architecture (`chown32` on
/// x86_64, say) are dropped when the profile is built, as libseccomp cannot resolve them.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    // Docker allows these three on kernels >= 4.8, where ptrace can no longer bypass seccomp.
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    // Docker's group for CAP_SYS_CHROOT, which functions have.
    "chroot",
];

/// Docker's architecture-specific groups (`includes.arches`).
const ALLOWED_X86_64: &[&str] = &["arch_prctl", "modify_ldt"];
const ALLOWED_AARCH64: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];

/// `personality(2)` only with the personas Docker allows: `PER_LINUX`, `PER_LINUX32`,
/// `UNAME26`, `PER_LINUX32|UNAME26`, and `0xffffffff` (a query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `clone(2)` flags that make namespaces (`CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|
/// NEWNET`): Docker allows `clone` only with none of them (without `CAP_SYS_ADMIN`).
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// `AF_VSOCK`: the one socket family Docker refuses.
const AF_VSOCK: u64 = 40;

/// What confines the sandbox's system calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Docker's default profile (the default).
    DockerDefault,
    /// No filter: `LAMINA_SECCOMP=unconfined`.
    Unconfined,
}

impl Mode {
    /// `LAMINA_SECCOMP`: unset, empty or `default` for the profile, `unconfined` for none.
    pub fn from_env(value: Option<&str>) -> Result<Mode, String> {
        match value.map(str::trim) {
            None | Some("" | "default") => Ok(Mode::DockerDefault),
            Some("unconfined") => Ok(Mode::Unconfined),
            Some(other) => Err(format!(
                "LAMINA_SECCOMP={other} is not a seccomp mode; use `default` or `unconfined`"
            )),
        }
    }
}

/// The host architecture as the spec names it. Only the native one: Docker also lets 32-bit
/// system calls through the same rules (`SCMP_ARCH_X86`, `SCMP_ARCH_X32` on x86_64), but
/// compiling the filter for three architectures cost about 8 ms more per invoke, and no Lambda
/// runtime makes 32-bit system calls; here they meet libseccomp's bad-architecture action (the
/// process is killed), which is stricter than Docker, never weaker.
fn architectures() -> (&'static [&'static str], &'static [&'static str]) {
    match std::env::consts::ARCH {
        "x86_64" => (&["SCMP_ARCH_X86_64"], ALLOWED_X86_64),
        "aarch64" => (&["SCMP_ARCH_AARCH64"], ALLOWED_AARCH64),
        _ => (&[], &[]),
    }
}

/// Whether libseccomp knows `name` on this host (libcontainer would otherwise log and skip it at
/// every invoke).
fn resolvable(name: &str) -> bool {
    libseccomp::ScmpSyscall::from_name(name).is_ok()
}

/// The spec's `linux.seccomp` for Docker's default profile.
pub fn profile() -> Value {
    let (arches, arch_allowed) = architectures();
    let names: Vec<&str> = ALLOWED
        .iter()
        .chain(arch_allowed)
        .copied()
        .filter(|name| resolvable(name))
        .collect();
    let mut syscalls = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    syscalls.push(json!({
        "names": ["socket"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]
    }));
    for persona in PERSONALITIES {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]
        }));
    }
    // `(flags & CLONE_NAMESPACE_FLAGS) == 0`. libcontainer 0.7 reads a masked comparison as
    // `arg & valueTwo == value` (runc reads `arg & value == valueTwo`), so the mask goes in
    // `valueTwo`; the sandbox tests prove both that fork works and that namespaces are refused.
    // On s390 the flags are clone's second argument; lamina runs on x86_64 and aarch64.
    syscalls.push(json!({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 0, "valueTwo": CLONE_NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}]
    }));
    // clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes glibc and
    // runtimes fall back to clone, where the rule above applies (Docker does the same).
    if resolvable("clone3") {
        syscalls.push(json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::ENOSYS
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": DEFAULT_ERRNO,
        "architectures": arches,
        "syscalls": syscalls
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_seccomp_mode_from_env() {
        assert_eq!(Mode::from_env(None), Ok(Mode::DockerDefault));
        assert_eq!(Mode::from_env(Some("")), Ok(Mode::DockerDefault));
        assert_eq!(Mode::from_env(Some("default")), Ok(Mode::DockerDefault));
        assert_eq!(Mode::from_env(Some("unconfined")), Ok(Mode::Unconfined));
        let err = Mode::from_env(Some("off")).unwrap_err();
        assert!(err.contains("LAMINA_SECCOMP=off"), "{err}");
    }

    #[test]
    fn test_seccomp_profile_is_a_valid_spec_section() {
        let profile = profile();
        let typed: libcontainer::oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(profile.clone()).expect("oci-spec reads the profile");
        assert_eq!(typed.default_errno_ret(), Some(1));
        let allowed = profile["syscalls"][0]["names"].as_array().unwrap();
        let has = |name: &str| allowed.iter().any(|n| n == name);
        // A runtime's everyday calls are allowed ...
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "futex",
            "epoll_wait",
            "wait4",
        ] {
            assert!(has(name), "{name} is allowed");
        }
        // ... what Docker refuses is not in any allow rule.
        let everywhere: Vec<&Value> = profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| rule["action"] == "SCMP_ACT_ALLOW")
            .flat_map(|rule| rule["names"].as_array().unwrap())
            .collect();
        for name in [
            "keyctl",
            "add_key",
            "request_key",
            "unshare",
            "setns",
            "mount",
            "umount2",
            "perf_event_open",
            "userfaultfd",
            "bpf",
            "kexec_load",
            "init_module",
            "reboot",
            "syslog",
            "pivot_root",
        ] {
            assert!(
                !everywhere.iter().any(|n| *n == name),
                "{name} must not be allowed"
            );
        }
        // Every name left in the profile resolves here, so libcontainer logs nothing at run time.
        for name in &everywhere {
            assert!(resolvable(name.as_str().unwrap()), "{name} resolves");
        }
    }
}
