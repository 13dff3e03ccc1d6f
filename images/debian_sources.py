#!/usr/bin/env python3
"""Prints the host's apt sources for one Debian suite as one-line "deb URI SUITE COMPONENTS" entries,
for mmdebstrap's MIRROR arguments: the entries of /etc/apt/sources.list and
/etc/apt/sources.list.d/*.list|*.sources whose suite is SUITE, SUITE-updates or SUITE-security
(or SUITE/updates). Options such as [signed-by=...] are dropped; mmdebstrap uses the Debian
archive keyring. Prints nothing when the host has no such entry (the caller then falls back to
mmdebstrap's default, deb.debian.org).

    debian_sources.py bookworm
"""

import glob
import re
import sys


def one_line(path):
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)
        words = line.split()
        if len(words) >= 4 and words[0] == "deb":
            yield words[1], [words[2]], words[3:]


def deb822(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    for stanza in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split(), fields.get("components", "").split()


def main():
    suite = sys.argv[1]
    ok = re.compile(rf"^{re.escape(suite)}([-/](updates|security|proposed-updates))?$")
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    sources = sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    seen = set()
    for path, parse in [(f, one_line) for f in files] + [(f, deb822) for f in sources]:
        try:
            entries = list(parse(path))
        except OSError:
            continue
        for uri, suites, comps in entries:
            for s in suites:
                if ok.match(s) and "main" in comps:
                    line = f"deb {uri} {s} main"
                    if line not in seen:
                        seen.add(line)
                        print(line)


if __name__ == "__main__":
    main()
