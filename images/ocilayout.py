"""Reproducible OCI image layouts, written with the Python standard library only.

Used by images/build.py (and so by scripts/build-test-images). Everything a layout contains is a
pure function of its inputs: tar entries are sorted, owners are numeric (no user or group names),
every mtime is SOURCE_DATE_EPOCH, and gzip streams carry no name and mtime 0. Build the same
inputs twice and you get the same digests.

Layers are described as lists of Entry values (or made from a directory tree with dir_entries()),
then written with Layout.add_layer(); Layout.add_image() writes a config and a manifest, and
Layout.add_index() a nested image index; Layout.finish() writes oci-layout and index.json.
"""

import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
import time
from typing import Dict, List, Optional

MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


@dataclasses.dataclass
class Entry:
    """One tar member. kind: file, dir, symlink, hardlink. name is written verbatim (a leading
    "/" or "../" is kept, which the escape-* images rely on); a directory's trailing "/" is
    optional. For symlink and hardlink, link is the tar linkname."""

    name: str
    kind: str = "file"
    mode: Optional[int] = None  # default 0644 for files, 0755 for dirs, 0777 for symlinks
    data: bytes = b""
    link: str = ""
    uid: int = 0
    gid: int = 0
    xattrs: Dict[str, bytes] = dataclasses.field(default_factory=dict)
    src: Optional[str] = None  # read file contents from this path (instead of data)

    def tarinfo(self, mtime: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(self.name.rstrip("/") if self.kind == "dir" else self.name)
        ti.mtime = mtime
        ti.uid, ti.gid, ti.uname, ti.gname = self.uid, self.gid, "", ""
        if self.kind == "file":
            ti.type = tarfile.REGTYPE
            ti.mode = 0o644 if self.mode is None else self.mode
            ti.size = os.path.getsize(self.src) if self.src else len(self.data)
        elif self.kind == "dir":
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755 if self.mode is None else self.mode
        elif self.kind == "symlink":
            ti.type = tarfile.SYMTYPE
            ti.mode = 0o777 if self.mode is None else self.mode
            ti.linkname = self.link
        elif self.kind == "hardlink":
            ti.type = tarfile.LNKTYPE
            ti.mode = 0o644 if self.mode is None else self.mode
            ti.linkname = self.link
        else:
            raise ValueError(f"unknown entry kind {self.kind!r}")
        if self.xattrs:
            # GNU tar / libarchive / containerd spelling of an extended attribute in a PAX header.
            ti.pax_headers = {
                "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                for k, v in sorted(self.xattrs.items())
            }
        return ti


def sort_key(e: Entry):
    # Parents sort before children: compare path component lists, not raw strings.
    return [p for p in e.name.strip("/").split("/")]


def dir_entries(root: str, prefix: str = "", exclude=None, force_root_owner: bool = False,
                xattrs: bool = True) -> List[Entry]:
    """Entries for the tree under root (root itself is not an entry), sorted parent-first.
    exclude(relpath) -> True drops a path (and, for a directory, keeps the directory but drops
    its contents). Hard links within the tree become hardlink entries to the first name seen.
    Sockets, fifos and device nodes are skipped."""
    out: List[Entry] = []
    seen: Dict[tuple, str] = {}

    def walk(d: str, rel: str):
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            r = f"{rel}{name}"
            st = os.lstat(path)
            arc = prefix + r
            uid, gid = (0, 0) if force_root_owner else (st.st_uid, st.st_gid)
            mode = stat.S_IMODE(st.st_mode)
            xa = {}
            if xattrs and not stat.S_ISLNK(st.st_mode):
                try:
                    for k in os.listxattr(path, follow_symlinks=False):
                        if k.startswith("security.selinux"):
                            continue
                        xa[k] = os.getxattr(path, k, follow_symlinks=False)
                except OSError:
                    pass
            if stat.S_ISDIR(st.st_mode):
                out.append(Entry(arc + "/", "dir", mode, uid=uid, gid=gid, xattrs=xa))
                if exclude and exclude(r + "/"):
                    continue
                walk(path, r + "/")
            elif exclude and exclude(r):
                continue
            elif stat.S_ISLNK(st.st_mode):
                out.append(Entry(arc, "symlink", 0o777, link=os.readlink(path), uid=uid, gid=gid))
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    out.append(Entry(arc, "hardlink", mode, link=seen[key], uid=uid, gid=gid))
                else:
                    seen[key] = arc
                    out.append(Entry(arc, "file", mode, src=path, uid=uid, gid=gid, xattrs=xa))
            # other types (device nodes, fifos, sockets) are deliberately not packaged

    walk(root, "")
    return out


def parents(path: str, mode: int = 0o755) -> List[Entry]:
    """Dir entries for each ancestor of path ("usr/local/bin/x" -> usr/, usr/local/, usr/local/bin/)."""
    parts = path.strip("/").split("/")[:-1]
    return [Entry("/".join(parts[: i + 1]) + "/", "dir", mode) for i in range(len(parts))]


class _Tee(io.RawIOBase):
    """Write-through file object that hashes and counts the uncompressed tar stream."""

    def __init__(self, sink):
        self.sink, self.h, self.n = sink, hashlib.sha256(), 0

    def writable(self):
        return True

    def tell(self):
        return self.n

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        self.sink.write(b)
        return len(b)


class Layout:
    def __init__(self, path: str, compresslevel: int = 6):
        self.path = path
        self.compresslevel = compresslevel
        self.mtime = source_date_epoch()
        self.manifests: List[dict] = []
        if os.path.exists(path):
            shutil.rmtree(path)
        os.makedirs(os.path.join(path, "blobs", "sha256"))
        self.layer_stats: List[dict] = []

    # -- blobs ---------------------------------------------------------------------------------
    def _store(self, tmp: str) -> (str, int):
        h = hashlib.sha256()
        with open(tmp, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        size = os.path.getsize(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(self.path, "blobs", "sha256", digest))
        return "sha256:" + digest, size

    def add_blob(self, data: bytes, media_type: str, **extra) -> dict:
        fd, tmp = tempfile.mkstemp(dir=self.path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        digest, size = self._store(tmp)
        return dict(mediaType=media_type, digest=digest, size=size, **extra)

    def add_json(self, obj: dict, media_type: str, **extra) -> dict:
        return self.add_blob(canonical_json(obj), media_type, **extra)

    def add_layer(self, entries: List[Entry], comment: str = "", sort: bool = True) -> dict:
        """Writes a tar+gzip layer; returns its descriptor plus "_diff_id" and "_comment".
        Entries are sorted parent-first unless sort=False (then written in the order given)."""
        if sort:
            entries = sorted(entries, key=sort_key)
        fd, tmp = tempfile.mkstemp(dir=self.path)
        with os.fdopen(fd, "wb") as raw:
            # filename="" and mtime=0 keep the gzip header free of build-specific data.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                               compresslevel=self.compresslevel) as gz:
                tee = _Tee(gz)
                with tarfile.open(fileobj=tee, mode="w", format=tarfile.PAX_FORMAT,
                                  encoding="utf-8") as tar:
                    for e in entries:
                        ti = e.tarinfo(self.mtime)
                        if e.kind == "file":
                            if e.src:
                                with open(e.src, "rb") as f:
                                    tar.addfile(ti, f)
                            else:
                                tar.addfile(ti, io.BytesIO(e.data))
                        else:
                            tar.addfile(ti)
        digest, size = self._store(tmp)
        diff_id = "sha256:" + tee.h.hexdigest()
        self.layer_stats.append(dict(comment=comment, digest=digest, size=size, tar_size=tee.n,
                                     entries=len(entries)))
        return dict(mediaType=MT_LAYER_GZ, digest=digest, size=size, _diff_id=diff_id,
                    _comment=comment)

    def add_raw_layer(self, entries: List[Entry], compression: str, comment: str = "") -> dict:
        """A small layer that is a plain tar ("none") or a zstd-compressed tar ("zstd", via the
        zstd command-line tool), for testing the other layer media types."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
            for e in sorted(entries, key=sort_key):
                ti = e.tarinfo(self.mtime)
                tar.addfile(ti, io.BytesIO(e.data) if e.kind == "file" else None)
        data = buf.getvalue()
        diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
        if compression == "zstd":
            import subprocess
            data = subprocess.run(["zstd", "-q", "-c", "--no-progress"], input=data, check=True,
                                  stdout=subprocess.PIPE).stdout
            media_type = MT_LAYER_ZSTD
        elif compression == "none":
            media_type = MT_LAYER_TAR
        else:
            raise ValueError(f"unknown compression {compression!r}")
        desc = self.add_blob(data, media_type)
        self.layer_stats.append(dict(comment=comment, digest=desc["digest"], size=desc["size"],
                                     tar_size=len(buf.getvalue()), entries=len(entries)))
        return dict(desc, _diff_id=diff_id, _comment=comment)

    # -- images --------------------------------------------------------------------------------
    def add_image(self, layers: List[dict], config: dict, architecture: str = "amd64",
                  os_: str = "linux", variant: Optional[str] = None,
                  ref: Optional[str] = None) -> dict:
        """Writes config + manifest. config is the OCI "config" object (Env, Entrypoint, ...).
        ref: tag to record in index.json (org.opencontainers.image.ref.name). Returns the
        manifest descriptor (with platform)."""
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.mtime))
        cfg = {
            "created": created,
            "architecture": architecture,
            "os": os_,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [l["_diff_id"] for l in layers]},
            "history": [
                {"created": created, "created_by": l["_comment"] or "layer"} for l in layers
            ],
        }
        if variant:
            cfg["variant"] = variant
        cfg_desc = self.add_json(cfg, MT_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": cfg_desc,
            "layers": [{k: v for k, v in l.items() if not k.startswith("_")} for l in layers],
        }
        platform = {"architecture": architecture, "os": os_}
        if variant:
            platform["variant"] = variant
        desc = self.add_json(manifest, MT_MANIFEST, platform=platform)
        if ref is not None:
            self.manifests.append(dict(desc, annotations={REF_NAME: ref}))
        return desc

    def add_index(self, manifests: List[dict], ref: str) -> dict:
        """Writes a nested image index (a multi-platform "manifest list") and tags it."""
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
        desc = self.add_json(index, MT_INDEX)
        self.manifests.append(dict(desc, annotations={REF_NAME: ref}))
        return desc

    def finish(self):
        with open(os.path.join(self.path, "oci-layout"), "wb") as f:
            f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
        with open(os.path.join(self.path, "index.json"), "wb") as f:
            f.write(canonical_json(
                {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": self.manifests}))
        for leftover in os.listdir(self.path):
            if leftover.startswith("tmp"):
                os.unlink(os.path.join(self.path, leftover))


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
