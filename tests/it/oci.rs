//! Images made by hand in the tests, for what `scripts/build-test-images` cannot or should not
//! hold: gzip bombs, invalid whiteouts, FIFOs as Python's `tarfile` writes them. They are written
//! as OCI layouts (`oci:PATH:1`, or copied to a `TestRegistry` with skopeo); `BlobServer` serves
//! the endless blobs no real registry can.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest(bytes), "size": bytes.len()})
}

/// A config for linux/amd64 that runs `/bin/true`.
pub fn config() -> Vec<u8> {
    json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]}, "rootfs": {"type": "layers", "diff_ids": []}})
        .to_string()
        .into_bytes()
}

/// An image manifest naming `config` and `layers` (descriptors).
pub fn manifest(config: Value, layers: &[Value]) -> Vec<u8> {
    json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers})
        .to_string()
        .into_bytes()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A tar header for `path`, owned by root, dated 2024.
pub fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_path(path).unwrap();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_704_067_200);
    header.set_cksum();
    header
}

/// A tar of empty regular files and directories (names ending in `/`).
pub fn tar_of(paths: &[&str]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for path in paths {
        let kind = if path.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        };
        let mode = if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        };
        builder
            .append(&header(path, kind, mode, 0), std::io::empty())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// A gzip layer holding one file of `mib` MiB of zeros, made of gzip members (one for the header,
/// one repeated for each MiB, one for the end of the archive) so the test compresses 1 MiB only.
/// It is about 1 KiB per MiB.
pub fn gzip_bomb(name: &str, mib: u64) -> Vec<u8> {
    let header = header(name, tar::EntryType::Regular, 0o644, mib << 20);
    let mut out = gzip(header.as_bytes());
    let one = gzip(&vec![0u8; 1 << 20]);
    for _ in 0..mib {
        out.extend_from_slice(&one);
    }
    out.extend_from_slice(&gzip(&[0u8; 1024]));
    out
}

/// An OCI image layout in a temporary directory, with one image tagged `1`.
pub struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    /// A layout with an image of `layers` (media type, bytes) and the config of [`config`].
    pub fn image(layers: &[(&str, Vec<u8>)]) -> Layout {
        let layout = Layout {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(layout.path().join("blobs/sha256")).unwrap();
        std::fs::write(
            layout.path().join("oci-layout"),
            r#"{"imageLayoutVersion": "1.0.0"}"#,
        )
        .unwrap();
        let config = config();
        layout.blob(&config);
        let descriptors: Vec<Value> = layers
            .iter()
            .map(|(media_type, bytes)| {
                layout.blob(bytes);
                descriptor(media_type, bytes)
            })
            .collect();
        let manifest = manifest(descriptor(CONFIG, &config), &descriptors);
        layout.blob(&manifest);
        let mut entry = descriptor(MANIFEST, &manifest);
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": "1"});
        std::fs::write(
            layout.path().join("index.json"),
            json!({"schemaVersion": 2, "manifests": [entry]}).to_string(),
        )
        .unwrap();
        layout
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `oci:PATH:1`
    pub fn reference(&self) -> String {
        format!("oci:{}:1", self.path().display())
    }

    pub fn blob(&self, bytes: &[u8]) -> PathBuf {
        let path = self
            .path()
            .join("blobs/sha256")
            .join(digest(bytes).trim_start_matches("sha256:"));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// What `BlobServer` answers for a path.
#[derive(Clone)]
pub enum Body {
    Bytes(Vec<u8>),
    /// Zeros for as long as the client reads, without a length (the connection's end would end it).
    Endless,
}

/// A minimal registry (the few GETs a pull makes) on loopback, for blobs no real registry serves:
/// endless ones, or ones of another size than their descriptor says. It counts the bytes of endless
/// bodies it sent.
pub struct BlobServer {
    pub address: String,
    sent: Arc<AtomicU64>,
}

impl BlobServer {
    /// Serves `routes` (`/v2/<name>/manifests/<tag>`, `/v2/<name>/blobs/<digest>`); `/v2/` is 200.
    pub fn start(routes: HashMap<String, Body>) -> BlobServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let routes = Arc::new(routes);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = routes.clone();
                let counter = counter.clone();
                std::thread::spawn(move || serve(stream, &routes, &counter));
            }
        });
        BlobServer { address, sent }
    }

    /// Bytes of endless bodies sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: TcpStream, routes: &HashMap<String, Body>, sent: &AtomicU64) {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&request);
    let mut words = text.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let body = if path == "/v2/" {
        Some(Body::Bytes(b"{}".to_vec()))
    } else {
        routes.get(path).cloned()
    };
    let _ = match body {
        None => {
            let error = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
            write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                error.len()
            )
            .and_then(|()| stream.write_all(error))
        }
        Some(Body::Bytes(bytes)) => {
            let kind = if path.contains("/manifests/") {
                MANIFEST
            } else {
                "application/octet-stream"
            };
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            )
            .and_then(|()| {
                if method != "HEAD" {
                    stream.write_all(&bytes)?;
                }
                Ok(())
            })
        }
        Some(Body::Endless) => {
            let kind = if path.contains("/manifests/") {
                MANIFEST
            } else {
                "application/octet-stream"
            };
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nConnection: close\r\n\r\n"
            )
            .and_then(|()| {
                // JSON-looking for a manifest (a long string), zeros for a blob.
                let chunk = if path.contains("/manifests/") {
                    stream.write_all(br#"{"schemaVersion": 2, "x": ""#)?;
                    vec![b'a'; 64 * 1024]
                } else {
                    vec![0u8; 64 * 1024]
                };
                loop {
                    stream.write_all(&chunk)?;
                    sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            })
        }
    };
}
