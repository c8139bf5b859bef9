#!/bin/bash
# zonectl's options are listed in four places that must agree: the global
# --help, each command's --help (and -h), zonectl(8) and the bash
# completion. This checks, command by command, that the four name the same
# options, and that the command really accepts each of them.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib-e2e.sh"

MAN=$top_srcdir/man/zonectl.8
COMPLETION=$top_srcdir/completion/zonectl
[ -r "$MAN" ] && [ -r "$COMPLETION" ] || die "no $MAN or $COMPLETION"
COMMANDS="devices info report open close finish reset lease write read leases hello stats bench watch status map validate"

zc --help
check_eq "$RC" 0 "--help"
printf '%s\n' "$OUT" >"$T/global"
zc -h
check_eq "$OUT" "$(cat "$T/global")" "-h is --help"
for cmd in $COMMANDS; do
	zc "$cmd" --help
	check_eq "$RC" 0 "$cmd --help status"
	[ -z "$ERR" ] || die "$cmd --help: stderr: $ERR"
	printf '%s\n' "$OUT" >"$T/help-$cmd"
	check_match "$(head -n 1 "$T/help-$cmd")" "Usage: zonectl * $cmd*" "$cmd --help usage line"
	zc "$cmd" -h
	check_eq "$OUT" "$(cat "$T/help-$cmd")" "$cmd -h is --help"
	# After operands, too.
	zc "$cmd" somedev --help
	check_eq "$OUT" "$(cat "$T/help-$cmd")" "$cmd DEV --help"
done

# The options each source names for each command, one line per command:
# "cmd opt opt ...", sorted.
python3 - "$T" "$MAN" "$COMPLETION" $COMMANDS >"$T/agree" <<'PY' || die "option lists differ: $(cat "$T/agree")"
import re, sys
t, man, comp, cmds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
opt = re.compile(r"--([a-z][a-z-]*)")
common = {"help", "json", "socket", "output"}

def opts_of(text):
    return sorted(set(opt.findall(text)) - common)

sources = {c: {} for c in cmds}
# Global help: the command's synopsis line.
for line in open(t + "/global"):
    m = re.match(r"  ([a-z|]+)( |$)", line)
    if m:
        for c in m.group(1).split("|"):
            if c in sources:
                sources[c]["global help"] = opts_of(line)
# The command's own help: its usage line.
for c in cmds:
    sources[c]["command help"] = opts_of(open(t + "/help-" + c).readline())
# The man page: the option lines of the command's entry under COMMANDS.
lines = open(man).read().split("\n")
sect = None
for i, line in enumerate(lines):
    if line.startswith(".SH"):
        sect = line
    if sect != ".SH COMMANDS" or line != ".TP":
        continue
    head = lines[i + 1].replace("\\-", "-")
    m = re.match(r"\.(?:B|BI|BR) +([a-z][a-z| ]*?)(?: +\"|$)", head)
    if not m:
        continue
    names = [n.strip() for n in m.group(1).split("|")]
    found = []
    for l in lines[i + 2:]:
        if l == ".TP" or l.startswith(".SH"):
            break
        if l.startswith(".RB [ \\-\\-"):
            found += opt.findall(l.replace("\\-", "-"))
    for n in names:
        if n in sources:
            sources[n]["man page"] = sorted(set(found) - common)
# The completion: the opts="..." of the command's case branch.
for line in open(comp):
    m = re.match(r"\s+([a-z][a-z |]*)\)(.*)", line)
    if not m:
        continue
    o = re.search(r'opts="([^"]*)"', m.group(2))
    for n in [x.strip() for x in m.group(1).split("|")]:
        if n in sources:
            sources[n]["completion"] = sorted(set(opt.findall(o.group(1)) if o else []) - common)
bad = False
for c in cmds:
    s = sources[c]
    want = ["global help", "command help", "man page", "completion"]
    missing = [w for w in want if w not in s]
    if missing:
        print(c, "not found in", ", ".join(missing))
        bad = True
        continue
    if len({tuple(s[w]) for w in want}) != 1:
        print(c, "; ".join("%s: %s" % (w, " ".join(s[w])) for w in want))
        bad = True
    print(c, " ".join(s["command help"]))
sys.exit(1 if bad else 0)
PY
NCHECKS=$((NCHECKS + 1))
# Named options we know are missing from main should now be there.
grep -q "^write .*label" "$T/agree" || die "write --label not listed"
grep -q "^bench .*rounds" "$T/agree" || die "bench --rounds not listed"

# Every listed option is one the command accepts.
while read -r cmd opts; do
	for o in $opts; do
		zc "$cmd" "--$o"
		NCHECKS=$((NCHECKS + 1))
		case $ERR in
		*"unknown option"*) die "$cmd --$o is listed but refused: $ERR" ;;
		esac
	done
done <"$T/agree"
pass
