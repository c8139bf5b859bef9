#!/bin/bash
# End to end: zonectl's progress bars. With stderr a pipe or a file nothing
# but results is printed (reset --all, finish --all, report, write, bench);
# with stderr a terminal (a pty from python's pty module, stdout still a
# file) reset --all draws a bar with a percentage, write from a slow pipe
# draws the bytes written, and each bar is erased at the end, the results
# on stdout being the same as without a terminal.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

# 16384 zones of 256 KiB: --all takes 256 batches, several tenths of a second.
start_daemon --emulate "$T/big,id=big,size=4G,zone-size=256K,conv=0" \
	--emulate "$T/small,id=small,size=64M,zone-size=1M,conv=0"

# Silent without a terminal: stderr empty for every long command.
ok finish big --all
cp "$T/out" "$T/finish.plain"
ok reset big --all
cp "$T/out" "$T/reset.plain"
ok report big
head -c $((3 * 1024 * 1024)) /dev/urandom >"$T/data"
ok write small --split --input "$T/data"
ok bench small --writers 1 --zones 2 --size 1M --block 64K --rounds 1
check_eq "$(wc -l <"$T/finish.plain")" 16385 "finish --all lists every zone"

# On a terminal. onpty.py CMD...: runs CMD with stderr on a pty, stdout to
# $T/pty.out, and prints what the terminal received, repr()ed.
cat >"$T/onpty.py" <<'PY'
import os, pty, subprocess, sys
out, cmd = sys.argv[1], sys.argv[2:]
master, slave = pty.openpty()
feeder = None
if os.environ.get("SLOW_INPUT"):
    # A producer that takes a second: 16 pieces of 256 KiB, 60 ms apart.
    feeder = subprocess.Popen([sys.executable, "-c", """
import os, sys, time
for _ in range(16):
    os.write(1, os.urandom(256 * 1024)); time.sleep(0.06)
"""], stdout=subprocess.PIPE)
p = subprocess.Popen(cmd, stdin=feeder.stdout if feeder else subprocess.DEVNULL,
                     stdout=open(out, "wb"), stderr=slave)
os.close(slave)
got = b""
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:  # EIO: the last writer closed the pty
        break
    if not chunk:
        break
    got += chunk
rc = p.wait()
if feeder:
    feeder.wait()
print(rc)
print(repr(got.decode(errors="replace")))
PY
pty() {
	python3 "$T/onpty.py" "$T/pty.out" "$ZONECTL" --socket "$T/sock" "$@" >"$T/pty.res" ||
		die "onpty.py $*"
	PTY_RC=$(sed -n 1p "$T/pty.res")
	PTY_ERR=$(sed -n 2p "$T/pty.res")
}

# Resetting full zones is the slower work (the emulator frees their data).
ok finish big --all
pty reset big --all
check_eq "$PTY_RC" 0 "reset --all on a terminal: status"
check_match "$PTY_ERR" "*\\\\rzonectl: reset big: zones: \[*\]*%*/16384*" "reset --all draws a bar"
check_match "$PTY_ERR" "*\\\\r\\\\x1b\[K'" "the bar is erased at the end"
cmp -s "$T/pty.out" "$T/reset.plain" || die "reset --all on a terminal: stdout differs"
NCHECKS=$((NCHECKS + 1))

SLOW_INPUT=1 pty write small --split
check_eq "$PTY_RC" 0 "write from a slow pipe on a terminal: status"
check_match "$PTY_ERR" "*\\\\rzonectl: write small: *MiB*" "write draws the bytes written"
check_match "$PTY_ERR" "*\\\\r\\\\x1b\[K'" "the write bar is erased at the end"
grep -q '^wrote ' "$T/pty.out" || die "write on a terminal: no result on stdout"
NCHECKS=$((NCHECKS + 1))

pass
