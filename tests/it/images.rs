//! Image pulls against a real registry (Debian's docker-registry on 127.0.0.1, see
//! `scripts/registry`) holding the images `scripts/build-test-images` makes, and from those
//! images' OCI layouts directly (`oci:PATH[:TAG]`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lamina::image::pull::PullContext;
use lamina::image::{Cache, Freshness, ImageError, ImageRef, Mirrors, QuietReporter, ensure};
use lamina::runtimes::Architecture;

use crate::util::{Project, Run, registry, test_images};

/// A `lamina image ...` run with its own cache, production names mirrored to the test registry.
fn image_cmd(project: &Project, registry: &str, args: &[&str]) -> Run {
    Run::new(project.path()).arg("image").args(args).env(
        "LAMINA_REGISTRY_MIRROR",
        &format!("public.ecr.aws=http://{registry}"),
    )
}

fn rootfs_of(cache: &Path, digest: &str) -> PathBuf {
    cache
        .join("rootfs-v2")
        .join(digest.trim_start_matches("sha256:"))
        .join("rootfs")
}

/// Pulls `lamina-test/NAME:TAG` from the test registry; returns the manifest digest the pull
/// printed (its third field).
fn pull_test_image(project: &Project, registry: &str, name: &str) -> String {
    let reference = format!("{registry}/lamina-test/{name}");
    let out = image_cmd(project, registry, &["pull", &reference]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout.split_whitespace().nth(2).unwrap().to_string()
}

fn cache_dir(project: &Project) -> PathBuf {
    project.path().join(".test-home/cache")
}

#[test]
fn test_images_pull_python_through_a_mirror() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    let out = image_cmd(&project, &registry, &["pull", "python3.12"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(
        fields[0], "public.ecr.aws/lambda/python:3.12",
        "cached under the production name"
    );
    assert_eq!(fields[1], "linux/amd64");
    let rootfs = rootfs_of(&cache_dir(&project), fields[2]);
    for path in [
        "lambda-entrypoint.sh",
        "var/runtime/bootstrap",
        "usr/local/bin/aws-lambda-rie",
        "var/task",
    ] {
        assert!(
            rootfs.join(path).exists(),
            "{path} missing in {}",
            rootfs.display()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rootfs.parent().unwrap().join("meta.json")).unwrap())
            .unwrap();
    assert_eq!(
        meta["run_config"]["entrypoint"],
        serde_json::json!(["/lambda-entrypoint.sh"])
    );
    assert_eq!(meta["run_config"]["working_dir"], "/var/task");
    assert!(
        meta["run_config"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "LAMBDA_TASK_ROOT=/var/task")
    );

    let ls = image_cmd(&project, &registry, &["ls"]).output();
    assert_eq!(ls.code, 0);
    assert!(
        ls.stdout.contains("public.ecr.aws/lambda/python:3.12")
            && ls.stdout.contains("linux/amd64"),
        "{}",
        ls.stdout
    );
    let json = image_cmd(&project, &registry, &["ls", "--json"]).output();
    let row: serde_json::Value = serde_json::from_str(json.stdout.lines().next().unwrap()).unwrap();
    assert!(row["size"].as_u64().unwrap() > 10_000_000, "{row}");

    // The same image by its full name is the same cache entry; nothing is unpacked twice.
    let again = image_cmd(
        &project,
        &registry,
        &["pull", "public.ecr.aws/lambda/python:3.12"],
    )
    .output();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        std::fs::read_dir(cache_dir(&project).join("rootfs-v2"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_dir(cache_dir(&project).join("tmp"))
            .unwrap()
            .count(),
        0,
        "no staging left"
    );

    // `inspect` is what an invoke does: the cached image, without asking the registry.
    let inspect = Run::new(project.path())
        .args(["image", "inspect", "python3.12", "--skip-pull-image"])
        .success_json();
    assert_eq!(inspect["rootfs"], rootfs.to_str().unwrap());
    assert_eq!(
        inspect["meta"]["unpacked_as"],
        if unsafe { libc::geteuid() } == 0 {
            "root"
        } else {
            "unprivileged"
        }
    );

    let rm = image_cmd(&project, &registry, &["rm", "python3.12"]).output();
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    assert_eq!(
        std::fs::read_dir(cache_dir(&project).join("rootfs-v2"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(cache_dir(&project).join("blobs-v1/sha256"))
            .unwrap()
            .count(),
        0
    );
    image_cmd(&project, &registry, &["rm", "python3.12"]).fails(1, &["not in the cache"]);
    Run::new(project.path())
        .args(["image", "inspect", "python3.12", "--skip-pull-image"])
        .fails(
            1,
            &[
                "public.ecr.aws/lambda/python:3.12",
                "not in the image cache",
                "--skip-pull-image",
            ],
        );
}

#[test]
fn test_images_traps_unpack_like_a_container_runtime() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    let digest = pull_test_image(&project, &registry, "traps:1");
    let root = rootfs_of(&cache_dir(&project), &digest);
    let mode = |p: &str| {
        std::fs::symlink_metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    let inode = |p: &str| std::fs::metadata(root.join(p)).unwrap().ino();
    let link = |p: &str| std::fs::read_link(root.join(p)).unwrap();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let exists = |p: &str| std::fs::symlink_metadata(root.join(p)).is_ok();

    // The sandbox runs with no_new_privs, so setuid bits would only ever work on the host.
    assert_eq!(mode("bin/suid"), 0o755, "setuid is not kept in the cache");
    assert_eq!(mode("bin/sgid"), 0o755, "nor setgid");
    assert_eq!(mode("ro-dir"), 0o555, "read-only dir mode applied last");
    assert_eq!(mode("ro-dir/file"), 0o444);
    assert_eq!(mode("sticky"), 0o1777);
    assert_eq!(
        xattr::get(root.join("xattr-file"), "user.test")
            .unwrap()
            .as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        link("abs-link"),
        Path::new("/etc/passwd"),
        "absolute symlinks are kept, not followed"
    );
    assert_eq!(link("rel-link"), Path::new("bin/suid"));
    assert_eq!(link("dangling-link"), Path::new("/nonexistent/target"));
    assert_eq!(inode("hl-src"), inode("hl-dst"), "hardlink");
    assert_eq!(
        inode("hl-layer2"),
        inode("only-in-layer1"),
        "hardlink to a lower layer"
    );
    assert_eq!(read("hl-layer2").trim_end(), "layer 1 data");
    assert!(exists("whiteout-dir/kept"));
    assert!(!exists("gone-dir"), ".wh.gone-dir removed it");
    for dir in ["opaque-dir", "opaque-late"] {
        let names: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["new"],
            "{dir}: lower contents gone, this layer's kept"
        );
    }
    assert_eq!(read("replaced").trim_end(), "v2");
    assert!(
        root.join("file-then-dir/inner").exists(),
        "a file replaced by a directory"
    );
    let whiteouts = walk(&root)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".wh."))
        .count();
    assert_eq!(whiteouts, 0, "no whiteout files in the rootfs");
    // Running as root, owners are kept.
    if unsafe { libc::geteuid() } == 0 {
        let meta = std::fs::metadata(root.join("owned")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (1000, 1000, 0o640)
        );
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
            out.push(entry.path());
        }
    }
    out
}

#[test]
fn test_images_escapes_are_rejected_and_leave_nothing() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    for (name, path) in [
        ("escape-dotdot", "../../evil"),
        ("escape-absolute", "/evil"),
        ("escape-symlink", "dir/evil"),
        ("escape-hardlink", "link"),
    ] {
        let reference = format!("{registry}/lamina-test/{name}:1");
        let out = image_cmd(&project, &registry, &["pull", &reference]).fails(
            1,
            &[&reference, "layer sha256:", path, "outside the image root"],
        );
        assert!(out.stderr.contains(path));
        let cache = cache_dir(&project);
        assert_eq!(
            std::fs::read_dir(cache.join("rootfs-v2")).unwrap().count(),
            0,
            "{name}: no image entry"
        );
        assert_eq!(
            std::fs::read_dir(cache.join("tmp")).unwrap().count(),
            0,
            "{name}: no staging left"
        );
        assert!(!Path::new("/evil").exists() && !Path::new("/tmp/evil").exists());
    }
}

#[test]
fn test_images_platforms() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    let reference = format!("{registry}/lamina-test/multiarch:1");
    for arch in ["x86_64", "arm64"] {
        let out = image_cmd(&project, &registry, &["pull", &reference, "--arch", arch]).output();
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_unpacked_arch(&project, &out.stdout, arch);
    }
    // A single-platform image asked for another platform names what it has.
    image_cmd(
        &project,
        &registry,
        &["pull", "python3.12", "--arch", "arm64"],
    )
    .fails(
        1,
        &[
            "public.ecr.aws/lambda/python:3.12",
            "has no image for linux/arm64",
            "linux/amd64",
        ],
    );
}

#[test]
fn test_images_registry_errors() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    image_cmd(
        &project,
        &registry,
        &["pull", &format!("{registry}/lamina-test/no-such-repo:1")],
    )
    .fails(
        1,
        &["lamina-test/no-such-repo:1", "no such repository or tag"],
    );
    image_cmd(
        &project,
        &registry,
        &["pull", &format!("{registry}/lambda/python:0.0")],
    )
    .fails(1, &["lambda/python:0.0", "no such repository or tag"]);
    // Nothing listens on port 9 of loopback.
    Run::new(project.path())
        .args(["image", "pull", "python3.12"])
        .env(
            "LAMINA_REGISTRY_MIRROR",
            "public.ecr.aws=http://127.0.0.1:9",
        )
        .fails(1, &["http://127.0.0.1:9", "unreachable"]);
    Run::new(project.path())
        .args(["image", "pull", "python3.12"])
        .env("LAMINA_REGISTRY_MIRROR", "public.ecr.aws")
        .fails(1, &["LAMINA_REGISTRY_MIRROR", "REGISTRY=URL"]);
    image_cmd(&project, &registry, &["pull", "Not A Reference"])
        .fails(1, &["invalid image reference"]);
}

/// A TCP listener on loopback that counts connections: proof that a warm path asks nobody.
struct CountingListener {
    address: String,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingListener {
    fn start() -> CountingListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        CountingListener { address, count }
    }

    fn connections(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn pull_with(
    cache: &Cache,
    mirror: &str,
    freshness: Freshness,
    refresh_hours: f64,
) -> Result<lamina::image::CachedImage, ImageError> {
    let mirrors = Mirrors::parse(&format!("public.ecr.aws=http://{mirror}")).unwrap();
    let env = |_: &str| None;
    let ctx = PullContext {
        cache,
        mirrors: &mirrors,
        refresh: std::time::Duration::from_secs_f64(refresh_hours * 3600.0),
        env: &env,
        reporter: &QuietReporter,
    };
    ensure(
        &ctx,
        &ImageRef::parse("public.ecr.aws/lambda/python:3.12").unwrap(),
        Architecture::X86_64,
        freshness,
    )
}

#[test]
fn test_images_freshness_policy() {
    let Some(registry) = registry() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let silent = CountingListener::start();

    // --skip-pull-image with nothing cached: a clear error, and no request.
    let err = pull_with(&cache, &silent.address, Freshness::Offline, 24.0).unwrap_err();
    assert!(matches!(err, ImageError::NotCached { .. }), "{err}");
    assert!(err.to_string().contains("--skip-pull-image"));

    let first = pull_with(&cache, &registry, Freshness::Default, 24.0).unwrap();

    // Warm: within the refresh interval nobody is asked, and it is fast.
    let started = std::time::Instant::now();
    let warm = pull_with(&cache, &silent.address, Freshness::Default, 24.0).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(warm.meta.manifest_digest, first.meta.manifest_digest);
    assert_eq!(
        silent.connections(),
        0,
        "a warm resolve made a network request"
    );
    eprintln!("warm resolve took {elapsed:?}");
    let offline = pull_with(&cache, &silent.address, Freshness::Offline, 0.0).unwrap();
    assert_eq!(offline.meta.manifest_digest, first.meta.manifest_digest);
    assert_eq!(
        silent.connections(),
        0,
        "--skip-pull-image made a network request"
    );

    // Stale: the registry is asked (HEAD) and the same digest keeps the image.
    let checked = pull_with(&cache, &registry, Freshness::Default, 0.0).unwrap();
    assert_eq!(checked.meta.manifest_digest, first.meta.manifest_digest);
    // Stale but the registry is down: the cached image is used.
    let dead = "127.0.0.1:9";
    assert!(pull_with(&cache, dead, Freshness::Default, 0.0).is_ok());
    assert!(pull_with(&cache, dead, Freshness::CheckNow { strict: false }, 24.0).is_ok());
    // `lamina image pull` insists on asking.
    let err = pull_with(&cache, dead, Freshness::CheckNow { strict: true }, 24.0).unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[test]
fn test_images_corrupted_cache_is_repaired() {
    let Some(registry) = registry() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let image = pull_with(&cache, &registry, Freshness::Default, 24.0).unwrap();
    // A blob rots on disk and the unpacked image is lost: the next pull notices and fetches again.
    let blob = cache.blob_path(&image.meta.layers[0]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    lamina::image::layer::remove_tree(&image.dir).unwrap();
    let repaired = pull_with(&cache, &registry, Freshness::Default, 24.0).unwrap();
    assert_eq!(repaired.meta.manifest_digest, image.meta.manifest_digest);
    assert!(repaired.rootfs.join("lambda-entrypoint.sh").exists());
}

#[test]
fn test_images_concurrent_pulls_share_the_work() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    let children: Vec<_> = (0..3)
        .map(|_| {
            let registry = registry.clone();
            let path = project.path().to_path_buf();
            std::thread::spawn(move || {
                Run::new(&path)
                    .args(["image", "pull", "python3.12"])
                    .env(
                        "LAMINA_REGISTRY_MIRROR",
                        &format!("public.ecr.aws=http://{registry}"),
                    )
                    .output()
            })
        })
        .collect();
    for child in children {
        let out = child.join().unwrap();
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(
        std::fs::read_dir(cache_dir(&project).join("rootfs-v2"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_dir(cache_dir(&project).join("tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn test_images_prune() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    for reference in ["python3.12", "provided.al2023"] {
        let out = image_cmd(&project, &registry, &["pull", reference]).output();
        assert_eq!(out.code, 0, "{}", out.stderr);
        // Last use is kept in whole seconds: make the order unambiguous.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    // Nothing is older than a day.
    let out = image_cmd(&project, &registry, &["prune", "--older-than", "1"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    // A budget below the python image but above provided keeps the most recently used one.
    let out = image_cmd(&project, &registry, &["prune", "--max-size", "20M"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ls = image_cmd(&project, &registry, &["ls"]).output().stdout;
    assert!(
        ls.contains("provided:al2023") && !ls.contains("python:3.12"),
        "{ls}"
    );
    image_cmd(&project, &registry, &["prune", "--max-size", "lots"]).fails(2, &["lots"]);
}

#[test]
fn test_images_docker_v2_manifest_digest_reference_and_config_mirror() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    // Docker v2 schema 2 manifest with Docker layer media types.
    let digest = pull_test_image(&project, &registry, "provided-v2s2:1");
    assert!(
        rootfs_of(&cache_dir(&project), &digest)
            .join("bin/busybox")
            .exists()
    );
    // The same image pinned by digest.
    let pinned = format!("{registry}/lamina-test/provided-v2s2@{digest}");
    let out = image_cmd(&project, &registry, &["pull", &pinned]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.split_whitespace().nth(2), Some(digest.as_str()));
    // The mirror from the config file instead of the variable.
    let config_home = project.path().join("config");
    std::fs::create_dir_all(config_home.join("lamina")).unwrap();
    std::fs::write(
        config_home.join("lamina/config.toml"),
        format!("[images]\nrefresh_interval_hours = 1\n[images.mirrors]\n\"public.ecr.aws\" = \"http://{registry}\"\n"),
    )
    .unwrap();
    let out = Run::new(project.path())
        .args(["image", "pull", "provided.al2023"])
        .env("XDG_CONFIG_HOME", config_home.to_str().unwrap())
        .output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("public.ecr.aws/lambda/provided:al2023 "),
        "{}",
        out.stdout
    );
}

#[test]
fn test_images_unusable_cache_dir() {
    let project = Project::empty().file("a-file", "x");
    let out = Run::new(project.path())
        .args(["image", "ls"])
        .env(
            "LAMINA_CACHE_DIR",
            project.path().join("a-file/cache").to_str().unwrap(),
        )
        .fails(1, &["image cache", "a-file/cache"]);
    assert!(out.stderr.contains("Not a directory"), "{}", out.stderr);
}

/// The layer digests of a test image's OCI layout, in order.
fn layout_layers(image: &str) -> Vec<String> {
    let images = std::env::var("LAMINA_TEST_IMAGES")
        .unwrap_or_else(|_| "/var/cache/lamina-test-images".into());
    let blob = |digest: &str| {
        let path = Path::new(&images)
            .join(image)
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(path).unwrap()).unwrap()
    };
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(&images).join(image).join("index.json")).unwrap(),
    )
    .unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn test_images_tampered_and_truncated_blobs_are_refused() {
    let Some(registry) = crate::util::TestRegistry::start(None) else {
        return;
    };
    registry.push("provided", "al2023", "tamper/provided:1", None);
    let layers = layout_layers("provided");
    // One layer flipped, another cut in half, in the registry's own storage.
    let flipped = registry.blob_file(&layers[0]);
    let mut bytes = std::fs::read(&flipped).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&flipped, bytes).unwrap();
    let cut = registry.blob_file(&layers[1]);
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();

    let project = Project::empty();
    let reference = format!("{}/tamper/provided:1", registry.address);
    let out = Run::new(project.path())
        .args(["image", "pull", &reference])
        .fails(1, &[&reference]);
    assert!(
        out.stderr.contains("does not match its digest")
            || out.stderr.contains("Invalid digest")
            || out.stderr.contains("digest")
            || out.stderr.contains("bytes, but its descriptor declares"),
        "{}",
        out.stderr
    );
    let cache = cache_dir(&project);
    assert_eq!(
        std::fs::read_dir(cache.join("rootfs-v2")).unwrap().count(),
        0,
        "no image entry"
    );
    for layer in &layers[..2] {
        assert!(
            !cache
                .join("blobs-v1/sha256")
                .join(layer.trim_start_matches("sha256:"))
                .exists(),
            "bad blob kept: {layer}"
        );
    }
    assert_eq!(
        std::fs::read_dir(cache.join("tmp")).unwrap().count(),
        0,
        "no staging or partial download left"
    );
}

#[test]
fn test_images_registry_credentials() {
    let hash = std::process::Command::new("python3")
        .args([
            "-c",
            "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH)))",
        ])
        .output()
        .unwrap();
    let hash = String::from_utf8(hash.stdout).unwrap();
    let Some(registry) =
        crate::util::TestRegistry::start(Some(&format!("tester:{}\n", hash.trim())))
    else {
        return;
    };
    registry.push("traps", "1", "private/traps:1", Some("tester:s3cret"));
    let project = Project::empty();
    let reference = format!("{}/private/traps:1", registry.address);
    Run::new(project.path())
        .args(["image", "pull", &reference])
        .fails(1, &[&reference, "access denied", "docker/config.json"]);

    let docker = project.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64_encode("tester:s3cret");
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.address
        ),
    )
    .unwrap();
    let out = Run::new(project.path())
        .args(["image", "pull", &reference])
        .env("DOCKER_CONFIG", docker.to_str().unwrap())
        .output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"username": "tester", "password": "wrong"}}}}}}"#,
            registry.address
        ),
    )
    .unwrap();
    Run::new(project.path())
        .args(["image", "pull", &reference])
        .env("DOCKER_CONFIG", docker.to_str().unwrap())
        .fails(1, &["access denied"]);
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn test_images_gzip_zstd_and_plain_tar_layers() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    let digest = pull_test_image(&project, &registry, "compressions:1");
    let root = rootfs_of(&cache_dir(&project), &digest);
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("from-gzip"), "gzip\n");
    assert_eq!(read("from-zstd"), "zstd\n");
    assert_eq!(read("from-tar"), "tar\n");
    assert_eq!(read("overwritten"), "zstd\n", "layers apply in order");
}

/// `lamina image ...` with the project's own cache and no registry at all.
fn local_image_cmd(project: &Project, args: &[&str]) -> Run {
    Run::new(project.path()).arg("image").args(args)
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

#[test]
fn test_images_oci_layout_pull_inspect_ls_rm() {
    let Some(images) = test_images() else { return };
    let project = Project::empty();
    let reference = format!("oci:{}/provided", images.display());
    let out = local_image_cmd(&project, &["pull", &reference]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fields[..2], [reference.as_str(), "linux/amd64"]);
    let cache = cache_dir(&project);
    let rootfs = rootfs_of(&cache, fields[2]);
    assert!(rootfs.join("bin/busybox").is_file(), "{}", rootfs.display());
    assert!(rootfs.join("lambda-entrypoint.sh").is_file());

    let ls = local_image_cmd(&project, &["ls"]).output();
    assert!(
        ls.stdout.contains(&reference) && ls.stdout.contains("linux/amd64"),
        "{}",
        ls.stdout
    );
    let inspect = local_image_cmd(&project, &["inspect", &reference]).success_json();
    assert_eq!(inspect["reference"], reference.as_str());
    assert_eq!(inspect["rootfs"], rootfs.to_str().unwrap());
    assert_eq!(
        inspect["meta"]["run_config"]["entrypoint"],
        serde_json::json!(["/lambda-entrypoint.sh"])
    );

    // Once unpacked, nothing is copied again: the same image by its tag needs no blob.
    for blob in std::fs::read_dir(cache.join("blobs-v1/sha256")).unwrap() {
        std::fs::remove_file(blob.unwrap().path()).unwrap();
    }
    let tagged = format!("{reference}:al2023");
    let out = local_image_cmd(&project, &["pull", &tagged]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.split_whitespace().nth(2), Some(fields[2]));
    assert_eq!(entries(&cache.join("blobs-v1/sha256")), 0, "blobs copied");
    assert_eq!(entries(&cache.join("rootfs-v2")), 1);
    assert_eq!(entries(&cache.join("tmp")), 0, "no staging left");

    let rm = local_image_cmd(&project, &["rm", &reference]).output();
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    assert_eq!(rm.stdout.trim(), format!("removed {reference} linux/amd64"));
    let ls = local_image_cmd(&project, &["ls"]).output();
    assert!(
        !ls.stdout.contains(&format!("{reference} ")) && ls.stdout.contains(&tagged),
        "{}",
        ls.stdout
    );
}

#[test]
fn test_images_oci_layout_errors() {
    let Some(images) = test_images() else { return };
    let project = Project::empty().dir("not-a-layout");
    let provided = images.join("provided");
    local_image_cmd(
        &project,
        &["pull", &format!("oci:{}:nope", provided.display())],
    )
    .fails(
        1,
        &[
            &format!("`oci:{}:nope`", provided.display()),
            "no image tagged `nope`",
            &format!("{}/index.json", provided.display()),
            "it has: al2023",
        ],
    );
    let missing = project.path().join("missing");
    local_image_cmd(&project, &["pull", "oci:missing"]).fails(
        1,
        &[
            &format!("`oci:{}`", missing.display()),
            "cannot open",
            "No such file or directory",
        ],
    );
    local_image_cmd(&project, &["pull", "oci:not-a-layout:1"]).fails(
        1,
        &["not-a-layout", "is not an OCI image layout", "oci-layout"],
    );
    local_image_cmd(&project, &["pull", "oci:"]).fails(1, &["invalid image reference `oci:`"]);
}

#[test]
fn test_images_oci_layout_corrupt_blob_is_refused() {
    let Some(images) = test_images() else { return };
    let project = Project::empty();
    let layout = project.path().join("layout");
    crate::util::copy_dir(&images.join("provided"), &layout);
    let layer = layout_layers("provided").remove(0);
    let file = layout
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();

    local_image_cmd(&project, &["pull", "oci:layout:al2023"]).fails(
        1,
        &[
            &format!("{} is corrupt", file.display()),
            &format!("does not match digest {layer}"),
        ],
    );
    let cache = cache_dir(&project);
    assert_eq!(entries(&cache.join("rootfs-v2")), 0, "no image entry");
    assert_eq!(entries(&cache.join("tmp")), 0, "no staging or partial copy");
    assert_eq!(entries(&cache.join("refs-v1")), 0);
    assert!(
        !cache
            .join("blobs-v1/sha256")
            .join(layer.trim_start_matches("sha256:"))
            .exists()
    );
    // A missing blob names the digest and the file.
    std::fs::remove_file(&file).unwrap();
    local_image_cmd(&project, &["pull", "oci:layout"]).fails(
        1,
        &[&format!("blob {layer} is missing ({})", file.display())],
    );
}

#[test]
fn test_images_oci_layout_platforms() {
    let Some(images) = test_images() else { return };
    let project = Project::empty();
    // `index.json` -> a nested image index -> the platform's manifest.
    let multiarch = format!("oci:{}/multiarch:1", images.display());
    for arch in ["x86_64", "arm64"] {
        let out = local_image_cmd(&project, &["pull", &multiarch, "--arch", arch]).output();
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_unpacked_arch(&project, &out.stdout, arch);
    }
    // The registry path's message for a single-platform image.
    let provided = format!("oci:{}/provided", images.display());
    local_image_cmd(&project, &["pull", &provided, "--arch", "arm64"]).fails(
        1,
        &[&format!(
            "`{provided}` has no image for linux/arm64; it has: linux/amd64"
        )],
    );
}

#[test]
fn test_images_oci_layout_paths() {
    // `ImageUri` is taken from the template's directory, `--invoke-image` from the current one.
    let project = Project::empty()
        .file(
            "stack/template.yaml",
            "Resources:\n  FromLayout:\n    Type: AWS::Serverless::Function\n    Properties:\n      PackageType: Image\n      ImageUri: oci:../layouts/app:1\n  Zip:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.handler\n      CodeUri: .\n",
        );
    let root = project.path().canonicalize().unwrap();
    let plan = project.dry_run(&["FromLayout", "-t", "stack/template.yaml"]);
    assert_eq!(
        plan["image"],
        format!("oci:{}/layouts/app:1", root.display())
    );
    let plan = project.dry_run(&[
        "Zip",
        "-t",
        "stack/template.yaml",
        "--invoke-image",
        "oci:./emulation",
    ]);
    assert_eq!(plan["image"], format!("oci:{}/emulation", root.display()));
}

/// The multiarch test image records its platform in `/arch`: the pull (whose stdout names the
/// manifest digest third) unpacked the one for `arch`.
fn assert_unpacked_arch(project: &Project, pull_stdout: &str, arch: &str) {
    let digest = pull_stdout.split_whitespace().nth(2).unwrap();
    let marker =
        std::fs::read_to_string(rootfs_of(&cache_dir(project), digest).join("arch")).unwrap();
    assert_eq!(
        marker.trim(),
        if arch == "x86_64" { "amd64" } else { "arm64" }
    );
}

#[test]
fn test_images_ctrl_c_during_a_pull_keeps_nothing_half_done() {
    let Some(registry) = registry() else { return };
    let project = Project::empty();
    let child = image_cmd(&project, &registry, &["pull", "python3.12"]).spawn_piped();
    // Interrupt it once the download has begun (something is in the cache's staging area): a
    // fixed delay could land before lamina handles signals on a loaded machine.
    let staging = cache_dir(&project).join("tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while entries(&staging) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("Interrupted: the image pull was stopped"),
        "{stderr}"
    );
    let cache = cache_dir(&project);
    assert_eq!(entries(&cache.join("tmp")), 0, "no staging stays");
    assert_eq!(
        entries(&cache.join("rootfs-v2")),
        0,
        "no image half-published"
    );
    assert_eq!(entries(&cache.join("refs-v1")), 0);
    // Whatever blobs arrived whole are verified cache content; the next pull finishes the job.
    let out = image_cmd(&project, &registry, &["pull", "python3.12"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
}
