//! The OCI runtime spec (`config.json`) of one invoke: a pure function of what was planned and
//! pulled, so it is golden-tested without root.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Docker's default capability set (what a function gets under `sam local invoke`) without
/// `CAP_MKNOD`: Lambda gives functions no capability at all and no device but the standard ones,
/// and without it no device node can be made, also where the device rules below are not enforced
/// (a cgroup v2 host, where they need an eBPF program).
const CAPABILITIES: [&str; 13] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Everything the spec depends on.
#[derive(Debug, Clone)]
pub struct SpecInputs {
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// Host directory mounted read-only at `/var/task` (none for Image functions).
    pub code: Option<PathBuf>,
    /// Host directory mounted read-only at `/opt` (merged layers).
    pub opt: Option<PathBuf>,
    /// Size of the `/tmp` tmpfs in MB.
    pub tmp_mb: u64,
    pub hosts_file: PathBuf,
    pub resolv_file: PathBuf,
    /// Share the host's network namespace (`--network host`).
    pub host_network: bool,
    /// `(memory bytes, also limit swap)`; `None` without a limit.
    pub memory_limit: Option<(u64, bool)>,
    /// Absolute, unique, never empty (an empty path makes cleanup kill the caller's cgroup).
    pub cgroups_path: String,
    /// The createContainer hook that serves the Runtime API socket (program, argv).
    pub hook: Option<(PathBuf, Vec<String>)>,
    /// Extra read-only mounts (host path, container path), e.g. a debugger.
    pub extra_mounts: Vec<(PathBuf, String)>,
    /// The spec's `linux.seccomp` (see `seccomp::profile`); `None` runs unconfined.
    pub seccomp: Option<Value>,
    /// The cgroup's `pids.max` (root only: rootless, lamina writes it itself).
    pub pids_limit: Option<u64>,
    /// Deny every device in the cgroup but the standard ones (root only).
    pub device_rules: bool,
    /// Run as this (non-root) host user, mapped to root in a user namespace (with its
    /// subordinate ids, when it has them).
    pub rootless: Option<super::idmap::IdMapping>,
}

/// The devices a function may use, as runc allows them by default (`type`, major, minor; `None`
/// is any minor): null, zero, full, random, urandom, tty, ptmx and the pseudo-terminals.
const ALLOWED_DEVICES: [(&str, i64, Option<i64>); 8] = [
    ("c", 1, Some(3)),
    ("c", 1, Some(5)),
    ("c", 1, Some(7)),
    ("c", 1, Some(8)),
    ("c", 1, Some(9)),
    ("c", 5, Some(0)),
    ("c", 5, Some(2)),
    ("c", 136, None),
];

fn device_rules() -> Value {
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for (kind, major, minor) in ALLOWED_DEVICES {
        let mut rule = json!({"allow": true, "type": kind, "major": major, "access": "rwm"});
        if let Some(minor) = minor {
            rule["minor"] = json!(minor);
        }
        rules.push(rule);
    }
    Value::Array(rules)
}

fn bind(source: &Path, destination: &str) -> Value {
    json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["rbind", "ro", "nosuid", "nodev"]
    })
}

pub fn build(inputs: &SpecInputs) -> Value {
    assert!(
        inputs.cgroups_path.starts_with('/') && inputs.cgroups_path.len() > 1,
        "cgroupsPath must be absolute and not the root"
    );
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        if inputs.rootless.is_some() {
            // gid 5 (tty) does not exist in a one-user namespace.
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]})
        } else {
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]})
        },
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777", format!("size={}m", inputs.tmp_mb)]}),
    ];
    // sysfs can only be mounted in a network namespace of our own; with the host's, bind it.
    if inputs.host_network {
        mounts.push(json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}));
    } else {
        mounts.push(json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}));
    }
    if let Some(code) = &inputs.code {
        mounts.push(bind(code, "/var/task"));
    }
    if let Some(opt) = &inputs.opt {
        mounts.push(bind(opt, "/opt"));
    }
    mounts.push(bind(&inputs.hosts_file, "/etc/hosts"));
    mounts.push(bind(&inputs.resolv_file, "/etc/resolv.conf"));
    for (source, destination) in &inputs.extra_mounts {
        mounts.push(bind(source, destination));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if !inputs.host_network {
        namespaces.push(json!({"type": "network"}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": inputs.cgroups_path,
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
        ],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    });
    if let Some(ids) = inputs.rootless {
        linux["namespaces"]
            .as_array_mut()
            .expect("a list")
            .push(json!({"type": "user"}));
        let mut uids = vec![json!({"containerID": 0, "hostID": ids.uid, "size": 1})];
        let mut gids = vec![json!({"containerID": 0, "hostID": ids.gid, "size": 1})];
        if let Some(range) = ids.range {
            uids.push(json!({"containerID": 1, "hostID": range.uid_start, "size": range.count}));
            gids.push(json!({"containerID": 1, "hostID": range.gid_start, "size": range.count}));
        }
        linux["uidMappings"] = json!(uids);
        linux["gidMappings"] = json!(gids);
    }
    // Resources only when libcontainer may write them: rootless, it cannot touch the `devices`
    // controller, and lamina writes the memory and pids limits itself.
    let mut resources = serde_json::Map::new();
    if let Some((bytes, limit_swap)) = inputs.memory_limit {
        // Swap equal to the limit means no swap at all, as in Lambda.
        let memory = if limit_swap {
            json!({"limit": bytes, "swap": bytes})
        } else {
            json!({"limit": bytes})
        };
        resources.insert("memory".into(), memory);
    }
    if let Some(limit) = inputs.pids_limit {
        resources.insert("pids".into(), json!({"limit": limit}));
    }
    if inputs.device_rules {
        resources.insert("devices".into(), device_rules());
    }
    if !resources.is_empty() {
        linux["resources"] = Value::Object(resources);
    }
    if let Some(profile) = &inputs.seccomp {
        linux["seccomp"] = profile.clone();
    }

    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": inputs.rootfs, "readonly": true},
        "hostname": "lamina",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": inputs.args,
            "env": inputs.env,
            "cwd": inputs.cwd,
            "capabilities": {
                "bounding": CAPABILITIES, "effective": CAPABILITIES, "permitted": CAPABILITIES
            },
            // Lambda's limits: 1,024 file descriptors and 1,024 processes and threads (the rlimit
            // binds an ordinary user; root is bound by the pids cgroup, see `confinement`).
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                {"type": "RLIMIT_NPROC", "hard": 1024, "soft": 1024}
            ],
            "noNewPrivileges": true
        },
        "mounts": mounts,
        "linux": linux
    });
    if let Some((program, args)) = &inputs.hook {
        spec["hooks"] = json!({"createContainer": [{"path": program, "args": args}]});
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> SpecInputs {
        SpecInputs {
            rootfs: "/cache/rootfs-v1/abc/rootfs".into(),
            args: vec!["/lambda-entrypoint.sh".into(), "app.handler".into()],
            env: vec![
                "PATH=/var/lang/bin:/usr/bin".into(),
                "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001".into(),
            ],
            cwd: "/var/task".into(),
            code: Some("/project/hello".into()),
            opt: None,
            tmp_mb: 512,
            hosts_file: "/run/lamina/x/hosts".into(),
            resolv_file: "/run/lamina/x/resolv.conf".into(),
            host_network: false,
            memory_limit: Some((128 * 1024 * 1024, true)),
            cgroups_path: "/lamina/x".into(),
            hook: Some((
                "/usr/bin/lamina".into(),
                vec![
                    "lamina".into(),
                    "__runtime-api-hook".into(),
                    "/run/lamina/x/api.sock".into(),
                ],
            )),
            extra_mounts: vec![],
            seccomp: Some(json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
            })),
            pids_limit: Some(1024),
            device_rules: true,
            rootless: None,
        }
    }

    #[test]
    fn test_spec_golden() {
        let spec = build(&inputs());
        let golden_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/bundles/python-zip.config.json");
        let text = serde_json::to_string_pretty(&spec).unwrap() + "\n";
        if std::env::var("LAMINA_UPDATE_GOLDEN").is_ok() {
            std::fs::write(&golden_path, &text).unwrap();
        }
        let golden = std::fs::read_to_string(&golden_path)
            .expect("golden file (LAMINA_UPDATE_GOLDEN=1 writes it)");
        assert_eq!(
            text, golden,
            "config.json changed; review and regenerate with LAMINA_UPDATE_GOLDEN=1"
        );
        // It is a valid OCI runtime spec for oci-spec (and so for libcontainer).
        let typed: libcontainer::oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
        assert!(typed.root().as_ref().unwrap().readonly().unwrap());
    }

    #[test]
    fn test_spec_rootless_maps_a_subordinate_range() {
        let mut inputs = inputs();
        inputs.rootless = Some(super::super::idmap::IdMapping {
            uid: 1001,
            gid: 1002,
            range: Some(super::super::idmap::SubRange {
                uid_start: 100000,
                gid_start: 200000,
                count: 65536,
            }),
        });
        let spec = build(&inputs);
        assert_eq!(
            spec["linux"]["uidMappings"],
            json!([
                {"containerID": 0, "hostID": 1001, "size": 1},
                {"containerID": 1, "hostID": 100000, "size": 65536}
            ])
        );
        assert_eq!(
            spec["linux"]["gidMappings"][1],
            json!({"containerID": 1, "hostID": 200000, "size": 65536})
        );
    }

    #[test]
    fn test_spec_rootless_maps_the_user() {
        let mut inputs = inputs();
        inputs.rootless = Some(super::super::idmap::IdMapping {
            uid: 1001,
            gid: 1002,
            range: None,
        });
        inputs.memory_limit = None;
        let spec = build(&inputs);
        assert_eq!(
            spec["linux"]["uidMappings"],
            json!([{"containerID": 0, "hostID": 1001, "size": 1}])
        );
        assert_eq!(
            spec["linux"]["gidMappings"],
            json!([{"containerID": 0, "hostID": 1002, "size": 1}])
        );
        assert!(
            spec["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .contains(&json!({"type": "user"}))
        );
        let pts = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/pts")
            .unwrap();
        assert!(!pts["options"].as_array().unwrap().contains(&json!("gid=5")));
        let typed: libcontainer::oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
        assert!(typed.linux().is_some());
    }

    #[test]
    fn test_spec_host_network_and_no_limit() {
        let mut inputs = inputs();
        inputs.host_network = true;
        inputs.memory_limit = None;
        inputs.pids_limit = None;
        inputs.device_rules = false;
        inputs.seccomp = None;
        let spec = build(&inputs);
        let namespaces: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!namespaces.contains(&"network"));
        assert!(spec["linux"].get("resources").is_none());
        assert!(spec["linux"].get("seccomp").is_none());
        let sys = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert_eq!(sys["type"], "bind");
    }

    #[test]
    fn test_spec_devices_are_denied_but_the_standard_ones() {
        let spec = build(&inputs());
        let caps = spec["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert!(!caps.contains(&json!("CAP_MKNOD")), "no device can be made");
        let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules[0], json!({"allow": false, "access": "rwm"}));
        let allowed: Vec<(i64, Option<i64>)> = rules[1..]
            .iter()
            .map(|r| (r["major"].as_i64().unwrap(), r["minor"].as_i64()))
            .collect();
        for device in [(1, Some(3)), (1, Some(9)), (5, Some(0)), (136, None)] {
            assert!(allowed.contains(&device), "{device:?} allowed");
        }
        // KVM (10:232), serial ports (4:64), virtual consoles (7:*), disks (8:*) are not.
        for (major, minor) in [(10, 232), (4, 64), (7, 0), (8, 0)] {
            assert!(
                !allowed
                    .iter()
                    .any(|(a, b)| *a == major && b.is_none_or(|b| b == minor)),
                "{major}:{minor} denied"
            );
        }
        assert_eq!(spec["linux"]["resources"]["pids"], json!({"limit": 1024}));
        let typed: libcontainer::oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
        let resources = typed
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap();
        assert_eq!(resources.devices().as_ref().unwrap().len(), 9);
    }
}
