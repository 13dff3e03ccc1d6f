//! The image cache cannot be broken by an image, a killed pull or a damaged entry, gives other
//! users nothing, and is never written at run time.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::oci::{self, GZIP_LAYER, Layout, TAR_LAYER};
use crate::util::{Project, Run, registry, skip, test_images};

fn cache_dir(project: &Project) -> PathBuf {
    project.path().join(".test-home/cache")
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

fn image(project: &Project, registry: &str, args: &[&str]) -> Run {
    Run::new(project.path()).arg("image").args(args).env(
        "LAMINA_REGISTRY_MIRROR",
        &format!("public.ecr.aws=http://{registry}"),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// The rootfs of the image a `pull` printed (its third field is the manifest digest).
fn rootfs_of(project: &Project, pull_stdout: &str) -> PathBuf {
    let digest = pull_stdout.split_whitespace().nth(2).unwrap();
    cache_dir(project)
        .join("rootfs-v2")
        .join(digest.trim_start_matches("sha256:"))
        .join("rootfs")
}

#[test]
fn test_image_cache_whiteouts_that_name_no_file_are_refused() {
    for entry in [".wh..", "etc/.wh..", ".wh.", "etc/.wh..."] {
        let lower = oci::tar_of(&["etc/", "etc/passwd", "bin/", "bin/sh"]);
        let upper = oci::tar_of(&[entry]);
        let layout = Layout::image(&[(TAR_LAYER, lower), (TAR_LAYER, upper.clone())]);
        let project = Project::empty();
        let reference = layout.reference();
        Run::new(project.path())
            .args(["image", "pull", &reference])
            .fails(
                1,
                &[&format!(
                    "`{reference}`: layer {}: entry `{entry}` is not a valid whiteout: `.wh.",
                    oci::digest(&upper)
                )],
            );
        let cache = cache_dir(&project);
        for bucket in ["rootfs-v2", "refs-v1", "tmp"] {
            assert_eq!(entries(&cache.join(bucket)), 0, "{entry}: {bucket}");
        }
        assert!(layout.path().join("index.json").is_file());
    }
}

#[test]
fn test_image_cache_fifos_and_devices_from_python_tarfile() {
    // Python's tarfile writes a FIFO's device-number fields NUL-filled.
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("layer.tar");
    let script = r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    for name, kind in [("pipe", tarfile.FIFOTYPE), ("dev/console", tarfile.CHRTYPE), ("disk", tarfile.BLKTYPE)]:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.devmajor, info.devminor = kind, 0o644, 8, 0
        t.addfile(info)
    data = b"after the fifo\n"
    info = tarfile.TarInfo("after")
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
"#;
    let written = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&tar)
        .status();
    if !written.is_ok_and(|s| s.success()) {
        skip::<()>("python3 cannot write a tar here");
        return;
    }
    let bytes = std::fs::read(&tar).unwrap();
    assert!(
        bytes[512 + 329..512 + 337].iter().all(|b| *b == 0)
            || bytes[329..337].iter().all(|b| *b == 0),
        "this Python writes device numbers for FIFOs; the test proves nothing"
    );
    let layout = Layout::image(&[(GZIP_LAYER, oci::gzip(&bytes))]);
    let project = Project::empty();
    let out = Run::new(project.path())
        .args(["image", "pull", &layout.reference()])
        .output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let root = rootfs_of(&project, &out.stdout);
    assert!(
        std::fs::symlink_metadata(root.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(std::fs::symlink_metadata(root.join("dev/console")).is_err());
    assert!(std::fs::symlink_metadata(root.join("disk")).is_err());
    assert_eq!(
        std::fs::read_to_string(root.join("after")).unwrap(),
        "after the fifo\n"
    );
}

#[test]
fn test_image_cache_is_private_and_warns_when_it_is_not() {
    let Some(images) = test_images() else { return };
    let project = Project::empty();
    let reference = format!("oci:{}/provided", images.display());
    let out = Run::new(project.path())
        .args(["image", "pull", &reference])
        .output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("Warning"), "{}", out.stderr);
    let cache = cache_dir(&project);
    assert_eq!(mode(&cache), 0o700);
    for bucket in [
        "blobs-v1",
        "blobs-v1/sha256",
        "rootfs-v2",
        "refs-v1",
        "tmp",
        "locks",
    ] {
        assert_eq!(mode(&cache.join(bucket)), 0o700, "{bucket}");
    }
    let rootfs = rootfs_of(&project, &out.stdout);
    assert_eq!(
        mode(rootfs.parent().unwrap()),
        0o700,
        "the image's directory"
    );

    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Run::new(project.path()).args(["image", "ls"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("Warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains(&format!(
            "the image cache {} can be entered by other users (mode 755)",
            cache.display()
        )) && warnings[0].ends_with(&format!("chmod 700 {}", cache.display())),
        "{}",
        warnings[0]
    );
}

#[test]
fn test_image_cache_leftovers_of_dead_pulls_are_removed() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    // A pull killed with -9 in the middle of its downloads.
    let mut child = image(&project, &registry, &["pull", "python3.12"]).spawn();
    std::thread::sleep(std::time::Duration::from_millis(400));
    child.kill().unwrap();
    child.wait().unwrap();
    let tmp = cache_dir(&project).join("tmp");
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    eprintln!("left by kill -9: {:?}", names(&tmp));
    // And what other processes left: a dead one (a pid above pid_max), a live one (this test),
    // and nameless ones of older lamina versions, one stale and one fresh.
    let plant = |name: &str| {
        std::fs::write(tmp.join(name), vec![0u8; 4096]).unwrap();
    };
    let live = format!("pull-{}-live", std::process::id());
    for name in ["pull-2147483646-dead", &live, ".tmpOLD123", ".tmpNEW456"] {
        plant(name);
    }
    let two_hours_ago =
        filetime::FileTime::from_unix_time(filetime::FileTime::now().unix_seconds() - 7200, 0);
    filetime::set_file_mtime(tmp.join(".tmpOLD123"), two_hours_ago).unwrap();

    let out = image(&project, &registry, &["pull", "python3.12"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut expected = vec![".tmpNEW456".to_string(), live.clone()];
    expected.sort();
    assert_eq!(
        names(&tmp),
        expected,
        "the pull removed what dead pulls left"
    );

    plant("pull-2147483646-dead");
    let out = image(&project, &registry, &["prune", "--older-than", "1"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(names(&tmp), expected, "prune removed what dead pulls left");
}

#[test]
fn test_image_cache_damaged_entries_are_repaired() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    let run = |args: &[&str]| image(&project, &registry, args).output();
    let out = run(&["pull", "provided.al2023"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rootfs = rootfs_of(&project, &out.stdout);
    let dir = rootfs.parent().unwrap().to_path_buf();
    let name = "public.ecr.aws/lambda/provided:al2023 (linux/amd64)";

    // The rootfs is gone: `image ls` says so and unpacks it again (nothing is downloaded).
    lamina::image::layer::remove_tree(&rootfs).unwrap();
    let out = run(&["ls"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "cached image {name} is damaged: the rootfs is missing"
        )) && out
            .stderr
            .contains("unpacking it again from its cached layers"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("provided:al2023"), "{}", out.stdout);
    assert!(rootfs.join("bin/busybox").is_file());

    // A mount point is missing: an offline run (as an invoke with --skip-pull-image) repairs it.
    std::fs::remove_dir(rootfs.join("proc")).unwrap();
    let out = run(&["inspect", "provided.al2023", "--skip-pull-image"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("is damaged: its mount point /proc is missing"),
        "{}",
        out.stderr
    );
    assert!(rootfs.join("proc").is_dir());

    // meta.json is gone: a pull repairs it.
    std::fs::remove_file(dir.join("meta.json")).unwrap();
    let out = run(&["pull", "provided.al2023"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(dir.join("meta.json").is_file());

    // A cache from before rootfs-v2: the entry is in rootfs-v1 and no manifest was kept. The
    // entry's meta.json is enough to unpack it again, offline.
    let blobs = cache_dir(&project).join("blobs-v1/sha256");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let old = cache_dir(&project)
        .join("rootfs-v1")
        .join(dir.file_name().unwrap());
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::rename(&dir, &old).unwrap();
    for digest in [&meta["manifest_digest"], &meta["config_digest"]] {
        std::fs::remove_file(blobs.join(digest.as_str().unwrap().trim_start_matches("sha256:")))
            .unwrap();
    }
    let out = run(&["inspect", "provided.al2023", "--skip-pull-image"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("cached image {name} is not unpacked")),
        "{}",
        out.stderr
    );
    let inspected: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(inspected["meta"]["run_config"], meta["run_config"]);
    assert!(rootfs.join("bin/busybox").is_file());
    // Prune deletes the old bucket.
    let out = run(&["prune", "--older-than", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!old.parent().unwrap().exists(), "rootfs-v1 is still there");

    // Nothing to unpack it from (a layer is gone too): offline it is not cached, `ls` lists it as
    // damaged, and online it is pulled again.
    lamina::image::layer::remove_tree(&dir).unwrap();
    let layer = meta["layers"][0].as_str().unwrap();
    std::fs::remove_file(blobs.join(layer.trim_start_matches("sha256:"))).unwrap();
    let out = run(&["ls"]);
    assert!(
        out.stdout
            .contains("damaged (it is not unpacked): pulled again on next use"),
        "{}",
        out.stdout
    );
    Run::new(project.path())
        .args(["image", "inspect", "provided.al2023", "--skip-pull-image"])
        .fails(1, &["not in the image cache", "--skip-pull-image"]);
    let out = run(&["inspect", "provided.al2023"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(rootfs.join("bin/busybox").is_file());
}

/// Every entry under `root` with what a write would change.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, i64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        out.insert(
            path.strip_prefix(root).unwrap().to_path_buf(),
            (
                meta.mode(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ino(),
            ),
        );
    }
    out
}

#[test]
fn test_image_cache_invoke_writes_nothing_into_the_cached_rootfs() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip::<()>("the sandbox test runs as root");
        return;
    }
    let Some(registry) = registry() else { return };
    let project = Project::fixture("behaviours");
    let out = image(&project, &registry, &["pull", "provided.al2023"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rootfs = rootfs_of(&project, &out.stdout);
    for target in [
        "proc",
        "dev",
        "sys",
        "tmp",
        "var/task",
        "opt",
        "etc/hosts",
        "etc/resolv.conf",
    ] {
        assert!(rootfs.join(target).exists(), "{target} was not made");
    }
    let before = snapshot(&rootfs);
    let invoke = || {
        Run::new(project.path())
            .args(["local", "invoke", "Shell", "-e", "-"])
            .stdin(r#"{"n": 1}"#)
            .env(
                "LAMINA_REGISTRY_MIRROR",
                &format!("public.ecr.aws=http://{registry}"),
            )
            .env(
                "LAMINA_RUNTIME_DIR",
                project.path().join(".run").to_str().unwrap(),
            )
            .env(
                "LAMINA_CGROUP_PARENT",
                &format!("lamina-test-image-cache-{}", std::process::id()),
            )
            .output()
    };
    let out = invoke();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        r#"{"echo": {"n": 1}, "handler": "echo.handler"}"#
    );
    let after = snapshot(&rootfs);
    let changed: Vec<_> = after
        .iter()
        .filter(|(path, state)| before.get(*path) != Some(state))
        .map(|(path, _)| path)
        .chain(before.keys().filter(|p| !after.contains_key(*p)))
        .collect();
    assert!(
        changed.is_empty(),
        "the invoke changed the rootfs: {changed:?}"
    );

    // A damaged entry is unpacked again, not run into a runtime error.
    std::fs::remove_file(rootfs.join("etc/hosts")).unwrap();
    let out = invoke();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("is damaged: its mount point /etc/hosts is missing"),
        "{}",
        out.stderr
    );
    assert!(rootfs.join("etc/hosts").is_file());
}
