#!/bin/bash
# The README's tour is real output: this runs every "$ " command of the
# tour's code block against a fresh daemon started the way `.ci/quickstart
# run` starts it, and compares with the text under each command. What
# cannot be the same on two runs is normalised on both sides: the absolute
# path of the state directory, pids, uids, lease ages. Anything else that differs
# fails, so the tour cannot drift from the program.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

README=$top_srcdir/README.md
[ -r "$README" ] || die "no $README"
mkdir -p "$T/run"
# As .ci/quickstart does: the default device in run/state.
"$ZONEDD" --no-config --socket "$T/run/zonedd.sock" --state-dir "$T/run/state" >>"$T/zonedd.log" 2>&1 </dev/null &
DAEMON_PID=$!
for _ in $(seq 100); do
	[ -S "$T/run/zonedd.sock" ] && "$ZONECTL" --socket "$T/run/zonedd.sock" hello >/dev/null 2>&1 && break
	sleep 0.1
done
BIN=$(cd "$(dirname "$ZONECTL")" && pwd)

python3 - "$README" "$T" "$BIN" <<'PY' || die "the README tour differs from what zonectl prints (above)"
import os, re, subprocess, sys, time
readme, t, bindir = sys.argv[1:4]
text = open(readme).read()
tour = text[text.index("## A tour"):]
block = tour[tour.index("```\n") + 4:]
block = block[:block.index("```\n")]

# Commands and the output written under each.
steps, cur = [], None
for line in block.split("\n"):
    if line.startswith("$ "):
        cur = [line[2:], []]
        steps.append(cur)
    elif cur is not None:
        cur[1].append(line)

env = dict(os.environ, ZONED_SOCKET=t + "/run/zonedd.sock", PATH=bindir + ":" + os.environ["PATH"])
cwd = t

def norm(lines):
    out = []
    for l in lines:
        o = l
        l = re.sub(r"(/[^\s]*)?/run/state/", "<DIR>/run/state/", l)
        # lease list rows: pid and age vary
        m = re.match(r"^(\s*\d+\s+\S+\s+\d+\s+\d+)\s+\d+\s+\d+\s+[\d.]+s(\s+.*)$", l)
        if m:
            l = m.group(1) + " <PID> <UID> <AGE>" + m.group(2)
        if l.startswith("ID  DEVICE  ZONE"):
            l = l + " "  # its widths follow the pid and uid
        if l != o:
            l = re.sub(r"\s+", " ", l)
        out.append(l)
    while out and out[-1] == "":
        out.pop()
    return out

bad = 0
background = []
for cmd, want in steps:
    if cmd.startswith("export "):
        continue  # the environment is set up above
    if cmd.endswith("&"):
        p = subprocess.Popen(cmd[:-1], shell=True, cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        background.append(p)
        got = [p.stdout.readline().rstrip("\n")]
        status = 0
    else:
        r = subprocess.run(cmd, shell=True, cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        got = r.stdout.split("\n")
        status = r.returncode
    if status:
        got = [g for g in got if g != ""] + ["(exit status %d)" % status, ""]
    w, g = norm(want), norm(got)
    if w != g:
        bad += 1
        print("--- $ %s\n--- README:\n%s\n--- real:\n%s" % (cmd, "\n".join(w), "\n".join(g)))
for p in background:
    p.terminate()
    p.wait()
sys.exit(1 if bad else 0)
PY
NCHECKS=$((NCHECKS + 1))
pass
