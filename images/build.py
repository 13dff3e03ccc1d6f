#!/usr/bin/env python3
"""Writes one lamina test image as an OCI image layout. Called by scripts/build-test-images,
which prepares the inputs (the mmdebstrap'ed rootfs, the runtime tree, the RIE binary) and passes
them as options. What each image contains is described in images/README.md.

    build.py python    DEST --rootfs DIR --runtime DIR --rie FILE
    build.py provided  DEST --busybox FILE --rie FILE
    build.py multiarch DEST
    build.py traps     DEST
    build.py escape-dotdot|escape-absolute|escape-symlink|escape-hardlink DEST
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ocilayout import Entry, Layout, dir_entries, parents  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# Spec runtime-api.md §6.2: identical for every runtime and architecture.
LAMBDA_ENV = [
    "LANG=en_US.UTF-8",
    "TZ=:/etc/localtime",
    "PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
    "LAMBDA_TASK_ROOT=/var/task",
    "LAMBDA_RUNTIME_DIR=/var/runtime",
]
LAMBDA_CONFIG = {"Env": LAMBDA_ENV, "WorkingDir": "/var/task", "Entrypoint": ["/lambda-entrypoint.sh"]}


def rie_layer(lay: Layout, rie: str):
    return lay.add_layer(
        parents("usr/local/bin/aws-lambda-rie")
        + [Entry("usr/local/bin/aws-lambda-rie", mode=0o755, src=rie)],
        "aws-lambda-rie (samcli/local/rapid/aws-lambda-rie-x86_64)",
    )


def entrypoint_layer(lay: Layout):
    return lay.add_layer(
        [Entry("lambda-entrypoint.sh", mode=0o755,
               src=os.path.join(HERE, "common", "lambda-entrypoint.sh"))],
        "/lambda-entrypoint.sh",
    )


def lambda_dirs():
    # Empty directories every Lambda image has; tmp is world-writable and sticky.
    return [
        Entry("opt/", "dir"),
        Entry("tmp/", "dir", 0o1777),
        Entry("var/", "dir"),
        Entry("var/task/", "dir"),
        Entry("var/runtime/", "dir"),
    ]


# --- python:3.12 ----------------------------------------------------------------------------------
def os_exclude(rel: str) -> bool:
    # Keep the mount-point directories, drop whatever was left inside them.
    return rel in ("dev/", "proc/", "sys/", "run/") or rel.startswith(("dev/", "proc/", "sys/"))


def build_python(dest, a):
    lay = Layout(dest)
    os_l = lay.add_layer(dir_entries(a.rootfs, exclude=os_exclude), "Debian bookworm rootfs (mmdebstrap)")
    rt_l = lay.add_layer(dir_entries(a.runtime, force_root_owner=True),
                         "/var/lang, /var/runtime (awslambdaric), /var/task")
    rie_l = rie_layer(lay, a.rie)
    ep_l = entrypoint_layer(lay)
    lay.add_image([os_l, rt_l, rie_l, ep_l], LAMBDA_CONFIG, "amd64", ref=a.tag or "3.12")
    return lay


# --- python-function:1 ----------------------------------------------------------------------------
FUNCTION_APP = b"""import json
import os


def handler(event, context):
    return {"from": "image", "event": event, "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
            "handler": os.environ.get("_HANDLER")}
"""


def build_python_function(dest, a):
    """A function image the way users build one: FROM the python image, code in /var/task, CMD."""
    import shutil
    base = a.base
    with open(os.path.join(base, "index.json")) as f:
        top = json.load(f)["manifests"][0]

    def blob(digest):
        return os.path.join(base, "blobs", "sha256", digest.split(":", 1)[1])

    with open(blob(top["digest"])) as f:
        manifest = json.load(f)
    with open(blob(manifest["config"]["digest"])) as f:
        base_config = json.load(f)
    lay = Layout(dest)
    for layer in manifest["layers"]:
        shutil.copyfile(blob(layer["digest"]), os.path.join(dest, "blobs", "sha256", layer["digest"].split(":", 1)[1]))
    app = lay.add_layer([Entry("var/", "dir"), Entry("var/task/", "dir"), Entry("var/task/app.py", data=FUNCTION_APP)],
                        "COPY app.py /var/task/")
    layers = [dict(l, _diff_id=d, _comment="base layer")
              for l, d in zip(manifest["layers"], base_config["rootfs"]["diff_ids"])] + [app]
    config = dict(base_config["config"], Cmd=["app.handler"])
    lay.add_image(layers, config, "amd64", ref=a.tag or "1")
    return lay


# --- provided:al2023 ------------------------------------------------------------------------------
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def build_provided(dest, a):
    lay = Layout(dest)
    applets = subprocess.run([a.busybox, "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    ents = {e.name: e for e in lambda_dirs()}
    for d in ("bin/", "sbin/", "usr/", "usr/bin/", "usr/sbin/", "etc/", "dev/", "proc/", "sys/"):
        ents[d] = Entry(d, "dir")
    ents["root/"] = Entry("root/", "dir", 0o700)
    ents["etc/passwd"] = Entry("etc/passwd", data=PASSWD)
    ents["etc/group"] = Entry("etc/group", data=GROUP)
    ents["bin/busybox"] = Entry("bin/busybox", mode=0o755, src=a.busybox)
    for p in applets:
        p = p.strip("/")
        if p not in ("bin/busybox", "linuxrc"):
            ents[p] = Entry(p, "symlink", link="/bin/busybox")
    bb_l = lay.add_layer(list(ents.values()), "busybox-static and Lambda directories")
    rie_l = rie_layer(lay, a.rie)
    ep_l = entrypoint_layer(lay)
    lay.add_image([bb_l, rie_l, ep_l], LAMBDA_CONFIG, "amd64", ref=a.tag or "al2023")
    return lay


# --- multiarch:1 ----------------------------------------------------------------------------------
def build_multiarch(dest, a):
    lay = Layout(dest)
    descs = []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        l = lay.add_layer([Entry("arch", data=arch.encode() + b"\n")], f"/arch = {arch}")
        cfg = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/arch"]}
        descs.append(lay.add_image([l], cfg, arch, variant=variant))
    lay.add_index(descs, a.tag or "1")
    return lay


# --- compressions:1 -------------------------------------------------------------------------------
def build_compressions(dest, a):
    """One layer per media type: gzip, zstd, uncompressed tar; the zstd layer overwrites a file."""
    lay = Layout(dest)
    gz = lay.add_layer([Entry("from-gzip", data=b"gzip\n"), Entry("overwritten", data=b"gzip\n")], "gzip layer")
    zst = lay.add_raw_layer([Entry("from-zstd", data=b"zstd\n"), Entry("overwritten", data=b"zstd\n")],
                            "zstd", "zstd layer")
    tar = lay.add_raw_layer([Entry("from-tar", data=b"tar\n")], "none", "uncompressed layer")
    lay.add_image([gz, zst, tar], {"Env": ["PATH=/bin"]}, "amd64", ref=a.tag or "1")
    return lay


# --- traps:1 --------------------------------------------------------------------------------------
def traps_layers():
    l1 = [
        Entry("bin/", "dir"),
        Entry("bin/suid", mode=0o4755, data=b"#!/bin/sh\necho setuid\n"),
        Entry("bin/sgid", mode=0o2755, data=b"#!/bin/sh\necho setgid\n"),
        Entry("xattr-file", data=b"has an xattr\n", xattrs={"user.test": b"hello"}),
        Entry("abs-link", "symlink", link="/etc/passwd"),
        Entry("rel-link", "symlink", link="bin/suid"),
        Entry("dangling-link", "symlink", link="/nonexistent/target"),
        Entry("hl-src", data=b"hardlinked\n"),
        Entry("hl-dst", "hardlink", link="hl-src"),
        Entry("ro-dir/", "dir", 0o555),
        Entry("ro-dir/file", mode=0o444, data=b"inside a 0555 directory\n"),
        Entry("owned", mode=0o640, uid=1000, gid=1000, data=b"owned by 1000:1000\n"),
        Entry("sticky/", "dir", 0o1777),
        Entry("whiteout-dir/", "dir"),
        Entry("whiteout-dir/gone", data=b"deleted by layer 2\n"),
        Entry("whiteout-dir/kept", data=b"kept\n"),
        Entry("gone-dir/", "dir"),
        Entry("gone-dir/sub/", "dir"),
        Entry("gone-dir/sub/f", data=b"deleted with its directory by layer 2\n"),
        Entry("opaque-dir/", "dir"),
        Entry("opaque-dir/old", data=b"hidden by the opaque marker\n"),
        Entry("opaque-dir/sub/", "dir"),
        Entry("opaque-dir/sub/old2", data=b"hidden by the opaque marker\n"),
        Entry("opaque-late/", "dir"),
        Entry("opaque-late/old", data=b"hidden by the opaque marker\n"),
        Entry("only-in-layer1", data=b"layer 1 data\n"),
        Entry("replaced", data=b"v1\n"),
        Entry("file-then-dir", data=b"a file in layer 1\n"),
        Entry("long/", "dir"),
        Entry("long/" + "x" * 150, data=b"a 155-character path (PAX path header)\n"),
    ]
    l2 = [
        # a whiteout of a file and of a whole directory
        Entry("whiteout-dir/", "dir"),
        Entry("whiteout-dir/.wh.gone"),
        Entry(".wh.gone-dir"),
        # opaque marker written before the directory's new contents (the usual order)
        Entry("opaque-dir/", "dir"),
        Entry("opaque-dir/.wh..wh..opq"),
        Entry("opaque-dir/new", data=b"layer 2\n"),
        # opaque marker written after a sibling from the same layer: it must not hide it
        # (OCI image-spec layer.md: whiteouts apply only to lower layers)
        Entry("opaque-late/", "dir"),
        Entry("opaque-late/new", data=b"layer 2\n"),
        Entry("opaque-late/.wh..wh..opq"),
        # a hard link to a file that exists only in layer 1
        Entry("hl-layer2", "hardlink", link="only-in-layer1"),
        Entry("replaced", data=b"v2\n"),
        # a file replaced by a directory
        Entry("file-then-dir/", "dir"),
        Entry("file-then-dir/inner", data=b"layer 2\n"),
    ]
    return l1, l2


def build_traps(dest, a):
    lay = Layout(dest)
    l1, l2 = traps_layers()
    # Written in the order listed: sorting would move "opaque-late/.wh..wh..opq" before "new".
    layers = [_unsorted_layer(lay, l1, "traps layer 1"), _unsorted_layer(lay, l2, "traps layer 2")]
    lay.add_image(layers, {"Env": ["PATH=/bin"]}, "amd64", ref=a.tag or "1")
    return lay


def _unsorted_layer(lay, entries, comment):
    return lay.add_layer(entries, comment, sort=False)


# --- escape-*:1 -----------------------------------------------------------------------------------
ESCAPES = {
    "escape-dotdot": [[Entry("ok", data=b"ok\n"), Entry("../../evil", data=b"evil\n")]],
    "escape-absolute": [[Entry("ok", data=b"ok\n"), Entry("/evil", data=b"evil\n")]],
    "escape-symlink": [
        [Entry("dir", "symlink", link="/tmp")],
        [Entry("dir/evil", data=b"evil\n")],
    ],
    "escape-hardlink": [[Entry("ok", data=b"ok\n"), Entry("link", "hardlink", link="../../etc/passwd")]],
}


def build_escape(dest, a):
    lay = Layout(dest)
    layers = [_unsorted_layer(lay, ents, f"{a.name} layer {i + 1}")
              for i, ents in enumerate(ESCAPES[a.name])]
    lay.add_image(layers, {"Env": ["PATH=/bin"]}, "amd64", ref=a.tag or "1")
    return lay


def main():
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("dest")
    p.add_argument("--tag")
    p.add_argument("--rootfs")
    p.add_argument("--runtime")
    p.add_argument("--rie")
    p.add_argument("--busybox")
    p.add_argument("--base")
    a = p.parse_args()
    builders = {"python": build_python, "provided": build_provided,
                "multiarch": build_multiarch, "traps": build_traps,
                "compressions": build_compressions, "python-function": build_python_function}
    builders.update({k: build_escape for k in ESCAPES})
    if a.name not in builders:
        sys.exit(f"unknown image {a.name!r}; known: {', '.join(builders)}")
    lay = builders[a.name](a.dest, a)
    lay.finish()
    # Summary on stdout (JSON): the tagged descriptor and the layers.
    with open(os.path.join(a.dest, "index.json")) as f:
        top = json.load(f)["manifests"][0]
    print(json.dumps({"name": a.name, "digest": top["digest"], "mediaType": top["mediaType"],
                      "layers": lay.layer_stats}))


if __name__ == "__main__":
    main()
