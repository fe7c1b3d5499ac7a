"""Prometheus text exposition format 0.0.4, checked line by line (stdlib only).

The integration tests read GET /metrics of the [admin] listener with it:

    import prom
    m = prom.parse_prometheus(body)
    m[("sluice_downloads_total", frozenset({("outcome", "complete")}))]
    m[("sluice_connections", frozenset())]

parse_prometheus(text) checks EVERY line against the 0.0.4 grammar
(https://prometheus.io/docs/instrumenting/exposition_formats/, the same rules
as Go's expfmt text parser) and returns {(name, frozenset(labels.items())):
float}.  A bad line raises ValueError naming its number and text.

strict=True (the default) adds sluice's own rules (daemon/proxy/admin.c): every
family has a `# HELP` and a `# TYPE` line before its samples, its type is
counter or gauge, a counter's name ends in `_total` and its value is not
negative, no other comment lines, no label name starting with `__`.
strict=False accepts any valid 0.0.4 text (histogram, summary, untyped,
free comments, families without HELP/TYPE); it does not check histogram
and summary semantics (`le` and `quantile` labels).

Not accepted although Go's ParseFloat would: hexadecimal floats and
underscores in values.  Timestamps are checked and dropped.

Run it to self-test, or `python3 prom.py FILE` (`-` for stdin) to check a
scrape and print its samples.
"""

import math
import re
import sys

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_VALUE = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|(?i:inf|infinity))"
    r"|(?i:nan)")
_TIMESTAMP = re.compile(r"-?[0-9]+")
_BLANKS = " \t"

TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
STRICT_TYPES = ("counter", "gauge")

# Sample names that belong to a family of another name, by its type.
_SUFFIXES = (
    ("_bucket", ("histogram",)),
    ("_sum", ("histogram", "summary")),
    ("_count", ("histogram", "summary")),
)


class _Line:
    """One line being parsed: a cursor and errors that name the line."""

    def __init__(self, number, text):
        self.number = number
        self.text = text
        self.pos = 0

    def fail(self, why):
        raise ValueError("line %d: %s: %r" % (self.number, why, self.text))

    def skip_blanks(self):
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _BLANKS:
            self.pos += 1
        return self.pos > start

    def at_end(self):
        return self.pos == len(self.text)

    def peek(self):
        return self.text[self.pos:self.pos + 1]

    def match(self, regex, what):
        m = regex.match(self.text, self.pos)
        if m is None:
            self.fail("expected %s at column %d" % (what, self.pos + 1))
        self.pos = m.end()
        return m.group(0)

    def token(self):
        """The characters up to the next blank or the end."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _BLANKS:
            self.pos += 1
        return self.text[start:self.pos]

    def escaped(self, stop, escapes):
        """Text up to stop (None: the end), with backslash escapes."""
        out = []
        while True:
            if self.at_end():
                if stop is None:
                    return "".join(out)
                self.fail("unterminated label value")
            c = self.text[self.pos]
            self.pos += 1
            if c == stop:
                return "".join(out)
            if c != "\\":
                out.append(c)
                continue
            e = self.peek()
            if e not in escapes:
                self.fail("invalid escape sequence \\%s" % e)
            self.pos += 1
            out.append(escapes[e])


class _State:
    def __init__(self, strict):
        self.strict = strict
        self.help = {}
        self.types = {}
        self.current = None  # the family whose samples come now
        self.done = set()  # families whose samples have ended
        self.started = set()  # families with samples
        self.samples = {}

    def family_of(self, name):
        for suffix, kinds in _SUFFIXES:
            base = name[:-len(suffix)]
            if name.endswith(suffix) and self.types.get(base) in kinds:
                return base
        return name


def _comment(st, ln):
    ln.pos = ln.text.index("#") + 1
    ln.skip_blanks()
    keyword = ln.token()
    if keyword not in ("HELP", "TYPE"):
        if st.strict:
            ln.fail("comment other than # HELP or # TYPE")
        return
    if not ln.skip_blanks():
        ln.fail("# %s without a metric name" % keyword)
    name = ln.match(_NAME, "a metric name")
    if not ln.at_end() and not ln.skip_blanks():
        ln.fail("bad character in metric name")
    if name in st.started:
        ln.fail("# %s for %s after its samples" % (keyword, name))
    if keyword == "HELP":
        if name in st.help:
            ln.fail("second # HELP for %s" % name)
        st.help[name] = ln.escaped(None, {"\\": "\\", "n": "\n"})
        return
    if name in st.types:
        ln.fail("second # TYPE for %s" % name)
    kind = ln.token()
    ln.skip_blanks()
    if not ln.at_end():
        ln.fail("text after the type")
    if kind not in (STRICT_TYPES if st.strict else TYPES):
        ln.fail("unknown metric type %r" % kind)
    st.types[name] = kind


def _labels(st, ln):
    labels = {}
    ln.pos += 1  # "{"
    while True:
        ln.skip_blanks()
        if ln.peek() == "}":
            break
        label = ln.match(_LABEL, "a label name or }")
        if label in labels:
            ln.fail("label %s given twice" % label)
        if st.strict and label.startswith("__"):
            ln.fail("label name %s is reserved" % label)
        ln.skip_blanks()
        if ln.peek() != "=":
            ln.fail("expected = after label %s" % label)
        ln.pos += 1
        ln.skip_blanks()
        if ln.peek() != '"':
            ln.fail("expected a quoted value for label %s" % label)
        ln.pos += 1
        labels[label] = ln.escaped('"', {"\\": "\\", "n": "\n", '"': '"'})
        ln.skip_blanks()
        if ln.peek() == ",":
            ln.pos += 1
        elif ln.peek() != "}":
            ln.fail("expected , or } after label %s" % label)
    ln.pos += 1  # "}"
    return labels


def _check_family(st, ln, name, family, value):
    if family != st.current:
        if family in st.done:
            ln.fail("samples of %s are not together" % family)
        if st.current is not None:
            st.done.add(st.current)
        st.current = family
    st.started.add(family)
    if not st.strict:
        return
    if family not in st.help or family not in st.types:
        ln.fail("%s has no # HELP and # TYPE before its samples" % family)
    if st.types[family] == "counter":
        if not name.endswith("_total"):
            ln.fail("counter %s does not end in _total" % name)
        if math.isnan(value) or value < 0:
            ln.fail("counter %s is not a count" % name)


def _sample(st, ln):
    ln.skip_blanks()
    name = ln.match(_NAME, "a metric name")
    ln.skip_blanks()
    labels = _labels(st, ln) if ln.peek() == "{" else {}
    ln.skip_blanks()
    text = ln.token()
    if _VALUE.fullmatch(text) is None:
        ln.fail("bad value %r" % text)
    value = float(text)
    ln.skip_blanks()
    if not ln.at_end():
        stamp = ln.token()
        if _TIMESTAMP.fullmatch(stamp) is None:
            ln.fail("bad timestamp %r" % stamp)
        ln.skip_blanks()
        if not ln.at_end():
            ln.fail("text after the timestamp")
    _check_family(st, ln, name, st.family_of(name), value)
    key = (name, frozenset(labels.items()))
    if key in st.samples:
        ln.fail("sample given twice")
    st.samples[key] = value


def parse_prometheus(text, strict=True):
    """Checks every line of text; returns {(name, frozenset(labels)): value}.

    Raises ValueError naming the first bad line.
    """
    if not isinstance(text, str):
        raise TypeError("text must be str, not %s" % type(text).__name__)
    if text and not text.endswith("\n"):
        raise ValueError("the last line does not end with a line feed")
    st = _State(strict)
    for number, line in enumerate(text.split("\n")[:-1], 1):
        ln = _Line(number, line)
        stripped = line.strip(_BLANKS)
        if stripped == "":
            continue
        if stripped.startswith("#"):
            _comment(st, ln)
        else:
            _sample(st, ln)
    return st.samples


# ---------------------------------------------------------------------------
# Self-test: python3 tests/integration/prom.py
# ---------------------------------------------------------------------------

_GOOD_SLUICE = """\
# HELP sluice_downloads_total Downloads finished, by how they ended.
# TYPE sluice_downloads_total counter
sluice_downloads_total{outcome="complete"} 7
sluice_downloads_total{outcome="truncated"} 0
# HELP sluice_upstream_paused_seconds_total Time reads were stopped.
# TYPE sluice_upstream_paused_seconds_total counter
sluice_upstream_paused_seconds_total 12.005
# HELP sluice_connections Client connections open.
# TYPE sluice_connections gauge
sluice_connections 3
"""

# The example of the format's documentation, with odd but valid spacing.
_GOOD_GENERAL = """\
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
  spaced_out { a = "1" , b="2", } -1e-3
nan_metric NaN
"""

_HEAD = "# HELP x_total X.\n# TYPE x_total counter\n"

# (text, strict, what the error must mention)
_BAD = [
    ("x_total 1", True, "line feed"),
    (_HEAD + "x_total{a=\"1\"} 1\nx_total{a=\"1\"} 2\n", True, "twice"),
    (_HEAD + "x_total one\n", True, "bad value"),
    (_HEAD + "x_total 1 12.5\n", True, "bad timestamp"),
    (_HEAD + "x_total 1 12 more\n", True, "after the timestamp"),
    (_HEAD + "x_total{a=1} 1\n", True, "quoted value"),
    (_HEAD + "x_total{a=\"1} 1\n", True, "unterminated"),
    (_HEAD + "x_total{a=\"\\t\"} 1\n", True, "escape"),
    (_HEAD + "x_total{a=\"1\" b=\"2\"} 1\n", True, "expected , or }"),
    (_HEAD + "x_total{a=\"1\",a=\"2\"} 1\n", True, "twice"),
    (_HEAD + "x_total{1a=\"1\"} 1\n", True, "label name"),
    (_HEAD + "x_total{__name__=\"1\"} 1\n", True, "reserved"),
    (_HEAD + "x_total\n", True, "bad value"),
    (_HEAD + "x_total -1\n", True, "not a count"),
    (_HEAD + "x_total 1\r\n", True, "bad value"),
    ("1x 1\n", False, "metric name"),
    ("x-y 1\n", False, "bad value"),
    ("x_total 1\n", True, "no # HELP"),
    ("# HELP x Some.\n# TYPE x counter\nx 1\n", True, "_total"),
    (_HEAD + "# TYPE x_total counter\n", True, "second # TYPE"),
    (_HEAD + "# HELP x_total Again.\n", True, "second # HELP"),
    ("# TYPE x histogram\nx_count 1\n", True, "unknown metric type"),
    ("# TYPE x countr\n", False, "unknown metric type"),
    ("# TYPE x counter extra\n", False, "after the type"),
    ("# TYPE\n", False, "without a metric name"),
    ("# HELP x bad \\escape\n", False, "escape"),
    ("# a free comment\n", True, "comment other than"),
    ("x 1\n# TYPE x gauge\n", False, "after its samples"),
    ("a 1\nb 1\na{l=\"2\"} 1\n", False, "not together"),
]


def _self_test():
    m = parse_prometheus(_GOOD_SLUICE)
    assert m[("sluice_downloads_total",
              frozenset({("outcome", "complete")}))] == 7.0
    assert m[("sluice_upstream_paused_seconds_total", frozenset())] == 12.005
    assert m[("sluice_connections", frozenset())] == 3.0
    assert len(m) == 4, m

    g = parse_prometheus(_GOOD_GENERAL, strict=False)
    path = ("msdos_file_access_time_seconds", frozenset({
        ("path", "C:\\DIR\\FILE.TXT"),
        ("error", "Cannot find file:\n\"FILE.TXT\""),
    }))
    assert g[path] == 1.458255915e9, g
    assert g[("something_weird",
              frozenset({("problem", "division by zero")}))] == math.inf
    assert g[("spaced_out", frozenset({("a", "1"), ("b", "2")}))] == -1e-3
    assert math.isnan(g[("nan_metric", frozenset())])
    assert g[("http_request_duration_seconds_count", frozenset())] == 144320
    assert parse_prometheus("") == {}
    try:
        parse_prometheus(_GOOD_GENERAL)
        raise AssertionError("strict mode took free comments")
    except ValueError:
        pass

    for text, strict, want in _BAD:
        try:
            parse_prometheus(text, strict=strict)
        except ValueError as e:
            if want not in str(e):
                raise AssertionError("%r: error %r lacks %r" % (text, str(e),
                                                                want))
            continue
        raise AssertionError("accepted bad text %r" % text)
    print("prom.py self-test: %d good, %d bad texts: ok" % (2, len(_BAD)))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        src = sys.stdin if sys.argv[1] == "-" else open(sys.argv[1])
        with src:
            samples = parse_prometheus(src.read())
        for (name, labels), value in sorted(samples.items(),
                                            key=lambda kv: kv[0][0]):
            lab = ",".join('%s="%s"' % kv for kv in sorted(labels))
            print("%s{%s} %r" % (name, lab, value))
    else:
        _self_test()
