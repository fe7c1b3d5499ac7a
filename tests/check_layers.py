#!/usr/bin/env python3
"""The layout of daemon/ (docs/architecture.md), checked so it stays true.

daemon/ holds main.c and five layer folders.  A lower layer never includes
a higher one:

    base/    libc, libuv, llhttp only: nothing of ours outside base/
    proxy/   base/
    peers/   base/
    model/   base/, proxy/config.h, lab/lab.h (plan reads scenarios)
    lab/     base/, proxy/config.h, model/
    main.c   anything

Every include of ours names its folder ("base/log.h"), so the rule is a
matter of reading include lines.  Also: no .c file over 1,300 lines, and
every .c file of a folder is listed in that folder's meson.build.

Usage: check_layers.py SOURCE_ROOT.  Prints TAP.
"""

import os
import re
import sys

LAYERS = ("base", "proxy", "peers", "model", "lab")

# folder -> (folders it may include anything from, single headers it may)
ALLOWED = {
    "base": ({"base"}, set()),
    "proxy": ({"base", "proxy"}, set()),
    "peers": ({"base", "peers"}, set()),
    "model": ({"base", "model"}, {"proxy/config.h", "lab/lab.h"}),
    "lab": ({"base", "lab", "model"}, {"proxy/config.h"}),
}
GENERATED = {"version.h"}  # meson's configure_file, in the build root
MAX_LINES = 1300

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources(daemon):
    """(folder or None for daemon/ itself, relative path) of every .c/.h."""
    out = []
    for root, _dirs, files in os.walk(daemon):
        rel = os.path.relpath(root, daemon)
        for f in sorted(files):
            if f.endswith((".c", ".h")):
                folder = None if rel == "." else rel.split(os.sep)[0]
                out.append((folder, os.path.join(rel, f) if rel != "." else f))
    return sorted(out, key=lambda t: t[1])


def include_problems(daemon, folder, path):
    text = open(os.path.join(daemon, path), encoding="utf-8").read()
    problems = []
    for inc in INCLUDE.findall(text):
        if inc in GENERATED:
            continue
        if "/" not in inc:
            problems.append('"%s" does not name its folder' % inc)
            continue
        if not os.path.isfile(os.path.join(daemon, inc)):
            problems.append('"%s" is not a file under daemon/' % inc)
            continue
        if folder is None:  # main.c: verb dispatch, may include all
            continue
        dirs, headers = ALLOWED[folder]
        if inc.split("/")[0] not in dirs and inc not in headers:
            problems.append('"%s": %s/ may not include it' % (inc, folder))
    return problems


def meson_lists(daemon, folder):
    path = os.path.join(daemon, folder, "meson.build")
    if not os.path.isfile(path):
        return set()
    return set(re.findall(r"'([^'/]+\.c)'", open(path).read()))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    daemon = os.path.join(root, "daemon")
    results = []

    def check(name, problems):
        results.append((name, problems))

    top = sorted(f for f in os.listdir(daemon)
                 if os.path.isfile(os.path.join(daemon, f)) and f.endswith((".c", ".h")))
    check("daemon/ holds main.c and the layer folders, no other source",
          ["daemon/%s is outside the layers" % f for f in top if f != "main.c"]
          + ["daemon/%s/ is missing or has no .c file" % d for d in LAYERS
             if not os.path.isdir(os.path.join(daemon, d))
             or not any(f.endswith(".c") for f in os.listdir(os.path.join(daemon, d)))])
    folders = sorted({f for f, _ in sources(daemon) if f is not None})
    check("every folder under daemon/ is a layer",
          ["daemon/%s/ is not one of %s" % (f, ", ".join(LAYERS))
           for f in folders if f not in LAYERS])

    files = sources(daemon)
    for layer in (None,) + LAYERS:
        problems = []
        for folder, path in files:
            if folder == layer and (folder is None or folder in ALLOWED):
                problems += ["daemon/%s: %s" % (path, p)
                             for p in include_problems(daemon, folder, path)]
        what = "main.c" if layer is None else layer + "/"
        check("includes of %s follow the layer rule" % what, problems)

    long_files = []
    for _folder, path in files:
        if path.endswith(".c"):
            with open(os.path.join(daemon, path), encoding="utf-8") as f:
                n = sum(1 for _ in f)
            if n > MAX_LINES:
                long_files.append("daemon/%s has %d lines" % (path, n))
    check("no .c file over %d lines" % MAX_LINES, long_files)

    unlisted = []
    for layer in LAYERS:
        listed = meson_lists(daemon, layer)
        d = os.path.join(daemon, layer)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if f.endswith(".c") and f not in listed:
                unlisted.append("daemon/%s/%s is not in its meson.build" % (layer, f))
            listed.discard(f)
        unlisted += ["daemon/%s/meson.build lists %s, which is not there" % (layer, f)
                     for f in sorted(listed)]
    check("each folder's meson.build lists exactly its .c files", unlisted)

    failed = 0
    for i, (name, problems) in enumerate(results, 1):
        if problems:
            failed += 1
            print("not ok %d - %s" % (i, name))
            for p in problems:
                print("#   " + p)
        else:
            print("ok %d - %s" % (i, name))
    print("1..%d" % len(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
