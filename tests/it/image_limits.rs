//! Hostile images end with a one-line error naming the limit and the image or blob, leave nothing
//! half-written in the cache, and keep lamina's memory bounded: gzip bombs, endless layer and
//! config blobs, endless manifests, blobs of another size than declared.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use crate::oci::{self, BlobServer, Body, GZIP_LAYER, Layout};
use crate::util::{Outcome, Project, Run, TestRegistry};

/// lamina's peak RSS must stay under this whatever the image.
const RSS_LIMIT_KIB: u64 = 100 * 1024;

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

/// Nothing of the failed pull in the cache: no image, no reference, no staging or partial blob.
fn assert_nothing_kept(project: &Project, out: &Outcome) {
    let cache = project.path().join(".test-home/cache");
    for bucket in ["rootfs-v2", "refs-v1", "tmp"] {
        assert_eq!(
            entries(&cache.join(bucket)),
            0,
            "{bucket} is not empty after:\n{}",
            out.stderr
        );
    }
    assert!(
        out.peak_rss_kib < RSS_LIMIT_KIB,
        "lamina's peak RSS was {} KiB",
        out.peak_rss_kib
    );
    eprintln!("peak RSS {} KiB", out.peak_rss_kib);
}

fn pull(project: &Project, reference: &str) -> Run {
    Run::new(project.path()).args(["image", "pull", reference])
}

#[test]
fn test_image_limits_gzip_bomb_stops_at_the_image_limit() {
    // 256 MiB of zeros in a 260 KB layer, against a 64 MiB limit.
    let bomb = oci::gzip_bomb("bomb", 256);
    assert!(bomb.len() < 512 * 1024);
    let layout = Layout::image(&[(GZIP_LAYER, bomb.clone())]);
    let layer = oci::digest(&bomb);
    let limit = (64u64 << 20).to_string();
    let project = Project::empty();
    let reference = layout.reference();
    let started = std::time::Instant::now();
    let out = pull(&project, &reference)
        .env("LAMINA_MAX_IMAGE_BYTES", &limit)
        .fails(
            1,
            &[
                &format!(
                    "`{reference}`: layer {layer}: the image unpacks to more than {limit} bytes"
                ),
                "LAMINA_MAX_IMAGE_BYTES",
                "stopped at entry `bomb`",
            ],
        );
    eprintln!("layout bomb refused in {:?}", started.elapsed());
    assert_nothing_kept(&project, &out);

    // The same image from a registry.
    let Some(registry) = TestRegistry::start(None) else {
        return;
    };
    registry.push_layout(layout.path(), "1", "bomb/gzip:1");
    let reference = format!("{}/bomb/gzip:1", registry.address);
    let project = Project::empty();
    let out = pull(&project, &reference)
        .env("LAMINA_MAX_IMAGE_BYTES", &limit)
        .fails(
            1,
            &[
                &format!(
                    "`{reference}`: layer {layer}: the image unpacks to more than {limit} bytes"
                ),
                "stopped at entry `bomb`",
            ],
        );
    assert_nothing_kept(&project, &out);

    // A limit that is not a number is named.
    pull(&project, &reference)
        .env("LAMINA_MAX_IMAGE_BYTES", "10G")
        .fails(
            1,
            &["LAMINA_MAX_IMAGE_BYTES: `10G` is not a number of bytes"],
        );
}

/// A registry serving an image `bomb/app:1` whose config and layer are `config` and `layer`, with
/// the given declared sizes.
fn serve(config: (Body, i64), layer: (Body, i64)) -> (BlobServer, String, String) {
    let config_bytes = oci::config();
    let config_digest = match &config.0 {
        Body::Bytes(bytes) => oci::digest(bytes),
        Body::Endless => oci::digest(&config_bytes),
    };
    let layer_digest = oci::digest(b"a layer that is never whole");
    let manifest = oci::manifest(
        json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.1}),
        &[json!({"mediaType": GZIP_LAYER, "digest": layer_digest, "size": layer.1})],
    );
    let routes = HashMap::from([
        (
            "/v2/bomb/app/manifests/1".to_string(),
            Body::Bytes(manifest),
        ),
        (format!("/v2/bomb/app/blobs/{config_digest}"), config.0),
        (format!("/v2/bomb/app/blobs/{layer_digest}"), layer.0),
    ]);
    let server = BlobServer::start(routes);
    let reference = format!("{}/bomb/app:1", server.address);
    (server, reference, layer_digest)
}

#[test]
fn test_image_limits_endless_and_wrongly_sized_layer_blobs() {
    let config = oci::config();
    let config_size = config.len() as i64;
    let project = Project::empty();

    // An endless layer declared as 1 MiB stops right after 1 MiB.
    let (server, reference, layer) = serve(
        (Body::Bytes(config.clone()), config_size),
        (Body::Endless, 1 << 20),
    );
    let out = pull(&project, &reference).fails(
        1,
        &[&format!(
            "`{reference}`: layer {layer} is larger than the 1048576 bytes its descriptor declares; it was discarded"
        )],
    );
    assert_nothing_kept(&project, &out);
    assert!(
        server.sent() < 32 << 20,
        "the server sent {} bytes",
        server.sent()
    );
    assert!(
        !project
            .path()
            .join(".test-home/cache/blobs-v1/sha256")
            .join(layer.trim_start_matches("sha256:"))
            .exists()
    );

    // One that declares more than an image within the limit can have is not even requested.
    let (server, reference, _) = serve(
        (Body::Bytes(config.clone()), config_size),
        (Body::Endless, 20 << 30),
    );
    let out = pull(&project, &reference).fails(
        1,
        &[
            &format!("`{reference}`: its layers declare 21474836480 bytes"),
            "LAMINA_MAX_IMAGE_BYTES",
        ],
    );
    assert_nothing_kept(&project, &out);
    assert_eq!(server.sent(), 0, "the layer was requested");

    // Shorter than declared.
    let (_server, reference, layer) = serve(
        (Body::Bytes(config.clone()), config_size),
        (Body::Bytes(vec![0; 500_000]), 1 << 20),
    );
    let out = pull(&project, &reference).fails(
        1,
        &[&format!(
            "`{reference}`: layer {layer} has 500000 bytes, but its descriptor declares 1048576"
        )],
    );
    assert_nothing_kept(&project, &out);
}

#[test]
fn test_image_limits_endless_config_and_manifest() {
    let project = Project::empty();
    let config_digest = oci::digest(&oci::config());

    // An endless config that claims to be small ends at its declared size.
    let (server, reference, _) = serve((Body::Endless, 1000), (Body::Endless, 1000));
    let out = pull(&project, &reference).fails(
        1,
        &[&format!(
            "`{reference}`: config blob {config_digest} is larger than the 1000 bytes its descriptor declares"
        )],
    );
    assert_nothing_kept(&project, &out);
    assert!(server.sent() < 32 << 20, "sent {}", server.sent());

    // One that says it is huge is not read at all.
    let (server, reference, _) = serve((Body::Endless, 1 << 30), (Body::Endless, 1000));
    let out = pull(&project, &reference).fails(
        1,
        &[&format!(
            "`{reference}`: config blob {config_digest} declares 1073741824 bytes, more than 4194304 (lamina's limit for manifests and configs)"
        )],
    );
    assert_nothing_kept(&project, &out);
    assert_eq!(server.sent(), 0);

    // An endless manifest ends at 4 MiB.
    let server = BlobServer::start(HashMap::from([(
        "/v2/bomb/app/manifests/1".to_string(),
        Body::Endless,
    )]));
    let reference = format!("{}/bomb/app:1", server.address);
    let out = pull(&project, &reference).fails(
        1,
        &[&format!(
            "`{reference}`: manifest {reference} is larger than 4194304 bytes (lamina's limit for manifests and configs)"
        )],
    );
    assert_nothing_kept(&project, &out);
    assert!(server.sent() < 32 << 20, "sent {}", server.sent());
}

#[test]
fn test_image_limits_oci_layout_metadata_and_sizes() {
    let project = Project::empty();
    // An index.json of 5 MiB.
    let layout = Layout::image(&[(GZIP_LAYER, oci::gzip(&oci::tar_of(&["file"])))]);
    let index = layout.path().join("index.json");
    let mut text = std::fs::read_to_string(&index).unwrap();
    text.push_str(&" ".repeat(5 << 20));
    std::fs::write(&index, text).unwrap();
    let out = pull(&project, &layout.reference()).fails(
        1,
        &[&format!(
            "{} is larger than 4194304 bytes (lamina's limit for manifests and configs)",
            index.display()
        )],
    );
    assert_nothing_kept(&project, &out);

    // A layer blob longer than its descriptor says (appended to after the manifest was written).
    let layer = oci::gzip(&oci::tar_of(&["file"]));
    let layout = Layout::image(&[(GZIP_LAYER, layer.clone())]);
    let file = layout.blob(&layer);
    std::fs::write(&file, [&layer[..], &[0u8; 100][..]].concat()).unwrap();
    let out = pull(&project, &layout.reference()).fails(
        1,
        &[&format!(
            "layer {} ({}) is larger than the {} bytes its descriptor declares",
            oci::digest(&layer),
            file.display(),
            layer.len()
        )],
    );
    assert_nothing_kept(&project, &out);
}
