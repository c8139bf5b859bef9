#!/bin/sh
# debian/libzoned-client0.symbols names exactly the symbols, and their
# version nodes, that client/libzoned-client.sym exports: a symbol added to
# the library without the packaging (or the other way round) fails here in
# make check, not only in the root-only make check-deb.
set -u
srcdir=${top_srcdir:-$(dirname "$0")/..}
sym=$srcdir/client/libzoned-client.sym
deb=$srcdir/debian/libzoned-client0.symbols
[ -f "$deb" ] || { echo "SKIP: deb-symbols: no $deb (not in the release tarball)"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "SKIP: deb-symbols: no python3"; exit 77; }
python3 - "$sym" "$deb" <<'PY'
import re, sys
text = re.sub(r"/\*.*?\*/", "", open(sys.argv[1]).read(), flags=re.S)
want = set()
for node, body in re.findall(r"(ZONED_CLIENT_[0-9.]+)\s*\{(.*?)\}", text, flags=re.S):
    want.add(f"{node}@{node}")
    want |= {f"{s}@{node}" for s in re.findall(r"(zc_\w+);", body.split("local:")[0])}
lines = open(sys.argv[2]).read().splitlines()
assert lines[0] == "libzoned-client.so.0 libzoned-client0 #MINVER#", lines[0]
got = {l.split()[0] for l in lines[1:] if l.startswith(" ")}
missing, extra = sorted(want - got), sorted(got - want)
if missing or extra:
    print(f"FAIL: deb-symbols: missing from {sys.argv[2]}: {missing}; not exported: {extra}")
    sys.exit(1)
print(f"PASS: deb-symbols: {len(got)} symbols")
PY
