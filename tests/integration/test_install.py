#!/usr/bin/env python3
"""Install tests: `meson install --destdir` of a fresh build with
--prefix=/usr lays out the expected tree (the binary, /etc/sluice/sluice.ini,
the unit with the prefix's paths in systemd's unit directory, sluice(8), the
docs, and nothing else); `systemd-analyze verify` accepts the installed unit
and `man` renders the page without warnings (each a TAP SKIP, not a failure,
when the tool is missing); -Dsystemdunitdir=DIR and =no, and the fallback without
pkg-config's systemd, put the unit where meson_options.txt says.  Then the
readiness protocol live: `sluice proxy` with NOTIFY_SOCKET pointing at a
datagram socket this script binds sends READY=1 once it listens, STOPPING=1
on SIGTERM, and RELOADING=1 then READY=1 around a SIGHUP (daemon/proxy/notify.h).

The build is a fresh `meson setup` of the source tree (the parent of tests/)
in the temp dir, compiling only the binary (about 6 s); meson gives tests no
MESON_BUILD_ROOT, and the build under test has its own prefix.  Its llhttp
options are copied from the build dir that holds --sluice.

    python3 tests/integration/test_install.py --sluice build/sluice --origin tests/origin.py
"""

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, config  # noqa: E402

env = harness.Env(__doc__)

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESON = shutil.which("meson")
NINJA = shutil.which("ninja") or shutil.which("samu")

state = {}      # what the setup case made, for the cases after it


def run(cmd, timeout=120, **kw):
    """Run cmd to completion (text); a non-zero exit fails the case with
    the command's last output lines."""
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL, **kw)
    if res.returncode != 0:
        out = (res.stdout + res.stderr).strip().splitlines()[-12:]
        raise AssertionError("%s exited %d: %s" % (" ".join(cmd[:4]), res.returncode,
                                                  " | ".join(out)))
    return res


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def tree(root):
    """Every file and symlink under root, as paths relative to it."""
    out = set()
    for d, _, files in os.walk(root):
        for name in files:
            out.add(os.path.relpath(os.path.join(d, name), root))
    return out


def llhttp_options():
    """-Dllhttp_dir/-Dllhttp_include_dir as the build under test has them
    (its directory holds --sluice: the binary sits at the build root)."""
    build = os.path.dirname(env.sluice)
    if not os.path.isdir(os.path.join(build, "meson-info")):
        return []
    res = subprocess.run([MESON, "introspect", "--buildoptions", build],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        return []
    return ["-D%s=%s" % (o["name"], o["value"]) for o in json.loads(res.stdout)
            if o["name"] in ("llhttp_dir", "llhttp_include_dir")]


def pkgconfig_unitdir():
    """systemd's systemdsystemunitdir from pkg-config, or None."""
    if not shutil.which("pkg-config"):
        return None
    res = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
                         capture_output=True, text=True, timeout=30)
    return res.stdout.strip() or None if res.returncode == 0 else None


def unit_keys(path):
    """The unit's [Service]/[Unit] assignments: {key: [values]}."""
    keys = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[" or "=" not in line:
                continue
            k, _, v = line.partition("=")
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def install(destdir):
    run([MESON, "install", "-C", state["build"], "--no-rebuild", "--destdir", destdir])
    return destdir


def reconfigure(*options):
    run([MESON, "setup", "--reconfigure", state["build"], SOURCE] + list(options), cwd=SOURCE)


# ---------------------------------------------------------------------------

def setup_build():
    check(MESON, "meson is not on PATH")
    check(NINJA, "ninja is not on PATH")
    build = os.path.join(env.tmp, "build")
    t0 = time.monotonic()
    run([MESON, "setup", "--prefix=/usr", build, SOURCE] + llhttp_options(), cwd=SOURCE)
    t1 = time.monotonic()
    # Only the binary: meson install --no-rebuild then copies what is built
    # (the unit tests are not installed, so they need not be compiled).
    run([NINJA, "-C", build, "sluice"], timeout=300)
    t2 = time.monotonic()
    state["build"] = build
    state["dest"] = install(os.path.join(env.tmp, "dest"))
    env.note("meson setup %.1f s, ninja sluice %.1f s, meson install %.1f s"
             % (t1 - t0, t2 - t1, time.monotonic() - t2))


def expected_tree(unitdir):
    docs = sorted(n for n in os.listdir(os.path.join(SOURCE, "docs"))
                  if os.path.isfile(os.path.join(SOURCE, "docs", n)))
    want = {"usr/bin/sluice", "etc/sluice/sluice.ini", "usr/share/man/man8/sluice.8",
            "usr/share/doc/sluice/README.md"}
    want |= {"usr/share/doc/sluice/" + n for n in docs}
    if unitdir:
        want.add(os.path.join(unitdir.lstrip("/"), "sluice.service"))
    return want


def check_tree(dest, unitdir):
    got = tree(dest)
    want = expected_tree(unitdir)
    check(got == want, "installed tree differs: missing %s, unexpected %s"
          % (sorted(want - got), sorted(got - want)))


def installed_tree():
    check("dest" in state, "the install case did not run")
    dest = state["dest"]
    unitdir = pkgconfig_unitdir() or "/usr/lib/systemd/system"
    state["unitdir"] = unitdir
    check_tree(dest, unitdir)
    for rel in sorted(tree(dest)):
        env.note("  /%s" % rel)

    exe = os.path.join(dest, "usr/bin/sluice")
    mode = os.stat(exe).st_mode
    check(stat.S_ISREG(mode) and mode & 0o111 == 0o111, "usr/bin/sluice mode %o" % mode)
    version = json.loads(run([MESON, "introspect", "--projectinfo", state["build"]]).stdout)
    res = run([exe, "--version"], timeout=10)
    check(res.stdout.strip() == "sluice %s" % version["version"],
          "installed sluice --version says %r" % res.stdout)

    for rel, src in [("etc/sluice/sluice.ini", "conf/sluice.ini"),
                     ("usr/share/man/man8/sluice.8", "man/sluice.8"),
                     ("usr/share/doc/sluice/README.md", "README.md")] + \
            [("usr/share/doc/sluice/" + n, "docs/" + n)
             for n in os.listdir(os.path.join(SOURCE, "docs"))]:
        check(read_bytes(os.path.join(dest, rel)) == read_bytes(os.path.join(SOURCE, src)),
              "%s differs from %s" % (rel, src))


def unit_paths():
    check("unitdir" in state, "the tree case did not run")
    unit = os.path.join(state["dest"], state["unitdir"].lstrip("/"), "sluice.service")
    text = open(unit).read()
    check(not re.search(r"@\w+@", text), "unreplaced placeholder in the unit: %s"
          % re.findall(r"@\w+@", text))
    k = unit_keys(unit)
    want = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStartPre": "/usr/bin/sluice check -c /etc/sluice/sluice.ini",
        "ExecStart": "/usr/bin/sluice proxy -c /etc/sluice/sluice.ini",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
        "DynamicUser": "yes",
        "StateDirectory": "sluice",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }
    for key, value in want.items():
        check(k.get(key) == [value], "%s=%s, expected %s" % (key, k.get(key), value))
    # A bad file fails `systemctl reload` itself; a good one gets SIGHUP.
    reload = ["/usr/bin/sluice check -c /etc/sluice/sluice.ini", "/bin/kill -HUP $MAINPID"]
    check(k.get("ExecReload") == reload, "ExecReload=%s, expected %s"
          % (k.get("ExecReload"), reload))
    check(int(k["LimitNOFILE"][0]) >= 65536, "LimitNOFILE=%s" % k["LimitNOFILE"])
    # The stop timeout covers the default drain and a margin.
    with open(os.path.join(SOURCE, "conf/sluice.ini")) as f:
        drain = re.search(r"^drain_timeout = (\d+)s$", f.read(), re.M)
    check(drain, "no drain_timeout = Ns in conf/sluice.ini")
    stop = re.fullmatch(r"(\d+)s", k["TimeoutStopSec"][0])
    check(stop and int(stop.group(1)) > int(drain.group(1)),
          "TimeoutStopSec=%s does not exceed drain_timeout %ss"
          % (k["TimeoutStopSec"], drain.group(1)))
    # Documentation= names files that were installed.
    for doc in k["Documentation"][0].split():
        if doc.startswith("file://"):
            check(os.path.isfile(os.path.join(state["dest"], doc[7:].lstrip("/"))),
                  "Documentation= names %s, not installed" % doc)
    env.note("ExecStart=%s; TimeoutStopSec=%s for drain_timeout %ss; LimitNOFILE=%s"
             % (k["ExecStart"][0], k["TimeoutStopSec"][0], drain.group(1),
                k["LimitNOFILE"][0]))


def analyze_verify():
    """systemd-analyze verify checks that ExecStart's binary exists and runs
    man for Documentation=man:.  systemd 252's --root=DESTDIR is no help: it
    resolves /bin/kill and the units it pulls in (sysinit.target) inside the
    root too, and fails for want of them.  So verify a copy of the unit whose
    /usr/bin/sluice points into DESTDIR, with MANPATH at DESTDIR's man pages
    (which also proves man finds the installed sluice(8))."""
    check("unitdir" in state, "the tree case did not run")
    tool = shutil.which("systemd-analyze")
    if not tool:
        raise harness.Skip("systemd-analyze not installed (Debian: apt-get install systemd)")
    dest = state["dest"]
    unit = os.path.join(dest, state["unitdir"].lstrip("/"), "sluice.service")
    vdir = os.path.join(env.tmp, "verify")
    os.makedirs(vdir, exist_ok=True)
    copy = os.path.join(vdir, "sluice.service")     # verify takes the unit name from the file
    with open(unit) as f, open(copy, "w") as out:
        out.write(f.read().replace("/usr/bin/sluice", os.path.join(dest, "usr/bin/sluice")))
    venv = dict(os.environ, MANPATH=os.path.join(dest, "usr/share/man"), SYSTEMD_PAGER="")
    res = subprocess.run([tool, "verify", copy], capture_output=True, text=True, timeout=60,
                         env=venv, stdin=subprocess.DEVNULL)
    lines = [l for l in (res.stdout + res.stderr).splitlines() if l.strip()]
    about = [l for l in lines if "sluice" in l]
    check(res.returncode == 0 and not about,
          "systemd-analyze verify exited %d: %s" % (res.returncode, " | ".join(lines)))
    for l in lines:
        env.note("systemd-analyze (not about the unit): %s" % l)
    # The exposure score, for the record (offline mode needs systemd >= 250).
    sec = subprocess.run([tool, "security", "--offline=true", "--no-pager", copy],
                         capture_output=True, text=True, timeout=60, env=venv)
    m = re.search(r"Overall exposure level for \S+: (\S+ \S+)", sec.stdout)
    env.note("systemd-analyze verify: exit 0, no output%s"
             % ("; security exposure %s" % m.group(1) if m else ""))


def man_renders():
    if not shutil.which("man"):
        raise harness.Skip("man not installed (Debian: apt-get install man-db)")
    page = os.path.join(state["dest"], "usr/share/man/man8/sluice.8")
    res = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", page],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING=""))
    check(res.returncode == 0 and not res.stderr.strip(),
          "man exited %d: %s" % (res.returncode, " | ".join(res.stderr.splitlines()[:8])))
    text = res.stdout
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "SIGNALS", "CONFIGURATION", "FILES",
                    "EXIT STATUS", "ENVIRONMENT", "EXAMPLES", "SEE ALSO"):
        check(re.search(r"^%s$" % section, text, re.M), "no %s section" % section)
    for verb in ("proxy", "check", "origin", "fetch", "plan", "lab", "help", "--version"):
        check(re.search(r"^\s+sluice %s\b" % re.escape(verb), text, re.M),
              "SYNOPSIS does not show sluice %s" % verb)
    env.note("sluice(8): %d lines at 80 columns, no warnings" % len(text.splitlines()))


def option_unitdir():
    check("build" in state, "the install case did not run")
    reconfigure("-Dsystemdunitdir=/usr/lib/systemd/system")
    dest = install(os.path.join(env.tmp, "dest-option"))
    check_tree(dest, "/usr/lib/systemd/system")
    reconfigure("-Dsystemdunitdir=no")
    dest = install(os.path.join(env.tmp, "dest-no-unit"))
    check_tree(dest, None)
    reconfigure("-Dsystemdunitdir=")


def fallback_unitdir():
    """Without systemd's pkg-config file the unit goes to
    prefix/lib/systemd/system, and its paths follow the prefix: a setup
    with --prefix=/usr/local whose pkg-config sees every .pc file but
    systemd.pc (meson introspect --installed; nothing is compiled)."""
    pc = os.path.join(env.tmp, "pkgconfig")
    os.makedirs(pc)
    found = False
    res = run(["pkg-config", "--variable", "pc_path", "pkg-config"])
    for d in res.stdout.strip().split(":"):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if name == "systemd.pc":
                found = True
            elif name.endswith(".pc") and not os.path.exists(os.path.join(pc, name)):
                os.symlink(os.path.join(d, name), os.path.join(pc, name))
    build = os.path.join(env.tmp, "build-local")
    penv = dict(os.environ, PKG_CONFIG_LIBDIR=pc)
    penv.pop("PKG_CONFIG_PATH", None)
    run([MESON, "setup", "--prefix=/usr/local", build, SOURCE] + llhttp_options(),
        cwd=SOURCE, env=penv)
    installed = json.loads(run([MESON, "introspect", "--installed", build]).stdout)
    units = [v for k, v in installed.items() if k.endswith("sluice.service")]
    check(units == ["/usr/local/lib/systemd/system/sluice.service"],
          "unit installed to %s, expected /usr/local/lib/systemd/system" % units)
    k = unit_keys(os.path.join(build, "sluice.service"))
    check(k["ExecStart"] == ["/usr/local/bin/sluice proxy -c /usr/local/etc/sluice/sluice.ini"],
          "ExecStart=%s under --prefix=/usr/local" % k["ExecStart"])
    check("/usr/local/etc/sluice/sluice.ini" in installed.values(),
          "sluice.ini not installed to /usr/local/etc/sluice/")
    if not found:
        env.note("no systemd.pc on this host: the fallback is also what the first case tested")


# ---- the readiness protocol, live --------------------------------------------

def spawn_notified(ns, name):
    return env.spawn_proxy(config(["127.0.0.1:%d" % harness.free_port_refused()]),
                           name=name, notify=ns)


def expect_notify(ns, var, count=1):
    """The datagram that held var the count-th time (bounded wait)."""
    msg = ns.wait_for(var, count)
    check(msg, "no %s (number %d) on NOTIFY_SOCKET: got %r" % (var, count, ns.messages))
    return msg


def listening_port(proc):
    with open(proc.log_path, "rb") as f:
        m = re.search(rb"(?<!admin: )listening on 127\.0\.0\.1:(\d+)", f.read())
    return int(m.group(1)) if m else None


def stop_notified(ns, proc):
    proc.popen.send_signal(signal.SIGTERM)
    expect_notify(ns, "STOPPING=1")
    try:
        rc = proc.popen.wait(60 * harness.SLOW)
    except subprocess.TimeoutExpired:
        raise AssertionError("proxy still running %d s after SIGTERM" % (60 * harness.SLOW))
    check(rc == 0, "exit status %s after SIGTERM" % rc)


def notify_ready_stopping():
    """READY=1 once the port accepts, not before; STOPPING=1 after
    SIGTERM, then exit 0."""
    ns = env.notify_socket()
    try:
        proc, _ = spawn_notified(ns, "proxy-notify")
        t0 = time.monotonic()
        expect_notify(ns, "READY=1")
        ready = time.monotonic() - t0
        port = listening_port(proc)
        check(port, "READY=1 came before the \"listening on\" line: %s"
              % " | ".join(proc.log_tail()))
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
        stop_notified(ns, proc)
        env.note("READY=1 %.0f ms after the start; datagrams: %r" % (ready * 1000, ns.messages))
    finally:
        ns.close()


def notify_reload():
    """SIGHUP: RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC, what
    Python's time.monotonic() reads on Linux), then READY=1, the proxy still
    serving; the same for a config that is refused."""
    ns = env.notify_socket()
    try:
        proc, cfg = spawn_notified(ns, "proxy-reload")
        expect_notify(ns, "READY=1")
        for i, (what, text) in enumerate([("valid", None),
                                          ("invalid", "[listen]\nfrobnicate = 1\n")]):
            if text is not None:
                with open(cfg, "w") as f:
                    f.write(text)
            before = time.monotonic()
            proc.popen.send_signal(signal.SIGHUP)
            msg = expect_notify(ns, "RELOADING=1", i + 1)
            after = time.monotonic()
            m = re.search(r"^MONOTONIC_USEC=(\d+)$", msg, re.M)
            check(m, "RELOADING=1 without MONOTONIC_USEC: %r" % msg)
            usec = int(m.group(1))
            check(before * 1e6 - 1000 <= usec <= after * 1e6 + 1000,
                  "MONOTONIC_USEC=%d not between %.0f and %.0f" % (usec, before * 1e6,
                                                                  after * 1e6))
            expect_notify(ns, "READY=1", i + 2)
            check(proc.alive(), "proxy exited after a %s reload: %s"
                  % (what, " | ".join(proc.log_tail())))
            socket.create_connection(("127.0.0.1", listening_port(proc)), timeout=10).close()
        stop_notified(ns, proc)
        env.note("datagrams: %r" % ns.messages)
    finally:
        ns.close()


env.case("meson setup --prefix=/usr, ninja, meson install --destdir", setup_build)
env.case("installed tree: binary, config, unit, sluice(8), docs and nothing else",
         installed_tree)
env.case("unit: the prefix's paths, Type=notify, the issue's hardening", unit_paths)
env.case("systemd-analyze verify of the installed unit", analyze_verify)
env.case("man renders sluice(8) without warnings", man_renders)
env.case("-Dsystemdunitdir=DIR and -Dsystemdunitdir=no", option_unitdir)
env.case("no systemd.pc: prefix/lib/systemd/system, paths under /usr/local", fallback_unitdir)
env.case("proxy: READY=1 once listening, STOPPING=1 on SIGTERM", notify_ready_stopping)
env.case("proxy: SIGHUP sends RELOADING=1 + MONOTONIC_USEC then READY=1", notify_reload)
env.finish()
