#!/usr/bin/python3
"""zonectl validate and info --sysfs on the VM suite's real devices (run by
vm-inner.sh last): each check's verdict and the exit status on
- the zoned null_blk device and the ZNS namespace (every check ok, status 0),
  and info --sysfs against the geometry check-vm.sh gave them;
- the plain virtio disk and its partition (not zoned, a partition: status 1);
- a mounted device: zonefs on the null_blk device, ext4 on the partition
  (the disk then "holds a mounted partition");
- a device-mapper holder, a device zonedd has claimed (the exclusive open
  fails), and the scheduler check with kyber (the refusal itself is a unit
  test: kernels before 6.10 offer nothing but mq-deadline and none to a
  host-managed device).

Prints PASS:/FAIL:/SKIP: lines and a summary; exits 1 on any failure.
"""
import json
import os
import subprocess
import sys
import time
import zlib

B = os.environ["top_builddir"]
ZONECTL = os.path.join(B, "client", "zonectl")
ZONEDD = os.path.join(B, "daemon", "zonedd")
NULLB = "/dev/nullb0"
ZNS = "/dev/nvme0n1"
T = "/tmp/zdv"
MIB = 1 << 20


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def sh(*argv, ok=True):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if ok and p.returncode != 0:
        raise Fail(f"{' '.join(argv)}: status {p.returncode}: {p.stderr.strip()}")
    return p


def validate(*devs):
    """Runs zonectl validate; returns (status, {dev: {check: (status, detail)}})
    from the human lines, which must match the --json document."""
    p = subprocess.run([ZONECTL, "validate", *devs], capture_output=True, text=True, timeout=60)
    for line in p.stdout.splitlines():
        print("    " + line)
    lines = {}
    for line in p.stdout.splitlines():
        dev, rest = line.split(": ", 1)
        st, name, detail = (rest.split(None, 2) + [""])[:3]
        lines.setdefault(dev, {})[name] = (st, detail)
    j = subprocess.run([ZONECTL, "validate", "--json", *devs], capture_output=True, text=True,
                       timeout=60)
    doc = json.loads(j.stdout)
    check(j.returncode == p.returncode, f"--json status {j.returncode} != {p.returncode}")
    check(doc["ok"] == (p.returncode == 0), f"--json ok {doc['ok']} with status {p.returncode}")
    check([d["path"] for d in doc["devices"]] == list(devs), "--json devices")
    for d in doc["devices"]:
        got = {c["check"]: (c["status"], c["detail"]) for c in d["checks"]}
        check(got == lines[d["path"]], f"--json checks of {d['path']} differ from the lines")
        check(d["ok"] == all(s != "fail" for s, _ in got.values()), f"--json ok of {d['path']}")
    return p.returncode, lines


def expect(lines, dev, want):
    """want: {check: status or (status, substring of the detail)}"""
    for name, w in want.items():
        st, sub = (w, "") if isinstance(w, str) else w
        got = lines[dev].get(name)
        check(got is not None, f"{dev}: no {name} line")
        check(got[0] == st, f"{dev}: {name} is {got[0]} ({got[1]}), expected {st}")
        check(sub in got[1], f"{dev}: {name} detail {got[1]!r} lacks {sub!r}")


ALL_OK = ("block-device", "whole-device", "zoned-model", "zone-geometry", "limits", "mounts",
          "holders", "scheduler", "exclusive-open")


def expected(var):
    return {k: int(v) for k, v in (kv.split("=") for kv in os.environ[var].split(","))}


def t_zoned_ok():
    """The two zoned devices pass every check; info --sysfs shows their geometry."""
    rc, lines = validate(NULLB, ZNS)
    check(rc == 0, f"status {rc}")
    for dev, var in ((NULLB, "ZVM_NULLB_EXPECT"), (ZNS, "ZVM_ZNS_EXPECT")):
        e = expected(var)
        check(sorted(lines[dev]) == sorted(ALL_OK), f"{dev}: checks {sorted(lines[dev])}")
        expect(lines, dev, {c: "ok" for c in ALL_OK})
        expect(lines, dev, {"zoned-model": ("ok", "host-managed"),
                            "zone-geometry": ("ok", f"{e['zones']} zones of {e['zone_size'] // MIB} MiB"),
                            "limits": ("ok", f"max open {e['max_open']}, max active {e['max_active']}")})
        info = json.loads(sh(ZONECTL, "info", "--sysfs", "--json", dev).stdout)
        check(info["model"] == "host-managed", f"{dev}: model {info['model']}")
        check(info["nr_zones"] == e["zones"], f"{dev}: nr_zones {info['nr_zones']}")
        check(info["zone_size"] == e["zone_size"], f"{dev}: zone_size {info['zone_size']}")
        check(info["capacity"] == e["zones"] * e["zone_size"], f"{dev}: capacity {info['capacity']}")
        check(info["max_open"] == e["max_open"] and info["max_active"] == e["max_active"],
              f"{dev}: limits {info['max_open']}/{info['max_active']}")
        check(not info["partition"], f"{dev}: partition")
        sched = open(f"/sys/block/{os.path.basename(dev)}/queue/scheduler").read()
        check(f"[{info['scheduler']}]" in sched or sched.strip() == info["scheduler"],
              f"{dev}: scheduler {info['scheduler']} vs {sched.strip()}")
        human = sh(ZONECTL, "info", "--sysfs", dev).stdout
        check(f"zones:               {e['zones']}\n" in human, f"{dev}: human info {human!r}")
    info = json.loads(sh(ZONECTL, "info", "--sysfs", "--json", ZNS).stdout)
    check("QEMU" in info["product"], f"ZNS product {info['product']!r}")


def t_plain_and_partition():
    """A plain disk is not zoned; its partition is a partition: status 1."""
    rc, lines = validate("/dev/vda", "/dev/vda1")
    check(rc == 1, f"status {rc}")
    expect(lines, "/dev/vda", {"block-device": "ok", "whole-device": "ok",
                               "zoned-model": ("fail", "not a zoned block device (queue/zoned: none)"),
                               "zone-geometry": "skip", "mounts": "ok", "holders": "ok",
                               "exclusive-open": "ok"})
    expect(lines, "/dev/vda1", {"whole-device": ("fail", "a partition of vda"),
                                "zoned-model": "fail", "mounts": "ok", "exclusive-open": "ok"})
    info = json.loads(sh(ZONECTL, "info", "--sysfs", "--json", "/dev/vda1").stdout)
    check(info["partition"] and info["parent"] == "vda", f"vda1: {info}")
    check(info["start"] == 2048 * 512 and info["capacity"] == 129024 * 512, f"vda1: {info}")
    check(info["model"] == "none", f"vda1 model {info['model']}")
    rc, lines = validate("/dev/null")
    check(rc == 1 and lines["/dev/null"]["block-device"][0] == "fail", "/dev/null")
    p = subprocess.run([ZONECTL, "validate"], capture_output=True, text=True, timeout=20)
    check(p.returncode == 2, f"no device: status {p.returncode}")


def zonefs_super():
    sb = bytearray(4096)
    sb[0:4] = (0x5A4F4653).to_bytes(4, "little")
    sb[8:16] = b"zoned-vm"
    # zonefs: crc32_le seeded with ~0, not inverted at the end
    crc = zlib.crc32(bytes(sb)) ^ 0xFFFFFFFF
    sb[4:8] = crc.to_bytes(4, "little")
    return bytes(sb)


def write_at0(dev, data):
    fd = os.open(dev, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def t_mounted():
    """Mounted devices fail mounts (and exclusive-open); a disk whose partition
    is mounted fails as holding it."""
    mnt = os.path.join(T, "mnt")
    os.makedirs(mnt, exist_ok=True)
    write_at0(NULLB, zonefs_super())  # zone 0 is conventional
    zonefs = sh("mount", "-t", "zonefs", NULLB, mnt, ok=False)
    try:
        if zonefs.returncode != 0:
            print(f"    zonefs: {zonefs.stderr.strip()}")
        else:
            rc, lines = validate(NULLB)
            check(rc == 1, f"status {rc}")
            expect(lines, NULLB, {"mounts": ("fail", f"is mounted on {mnt}"),
                                  "exclusive-open": ("fail", "in use"), "zoned-model": "ok"})
    finally:
        if zonefs.returncode == 0:
            sh("umount", mnt)
        write_at0(NULLB, bytes(4096))
    if sh("mkfs.ext4", "-q", "-F", "-O", "^metadata_csum", "/dev/vda1", ok=False).returncode != 0:
        raise Skip("mkfs.ext4 failed on /dev/vda1")
    ext4 = sh("mount", "-t", "ext4", "/dev/vda1", mnt, ok=False)
    if ext4.returncode != 0:
        if zonefs.returncode != 0:
            raise Fail(f"neither zonefs nor ext4 mounts: {ext4.stderr.strip()}")
        raise Skip(f"ext4 does not mount (module missing?): {ext4.stderr.strip()}")
    try:
        rc, lines = validate("/dev/vda", "/dev/vda1")
        check(rc == 1, f"status {rc}")
        expect(lines, "/dev/vda", {"mounts": ("fail", f"has partition vda1 mounted on {mnt}")})
        expect(lines, "/dev/vda1", {"mounts": ("fail", f"is mounted on {mnt}"),
                                    "exclusive-open": ("fail", "in use")})
    finally:
        sh("umount", mnt)
    check(zonefs.returncode == 0, f"zonefs does not mount: {zonefs.stderr.strip()}")


def t_holder_and_claim():
    """A device-mapper target on the device, and zonedd's own claim, each fail."""
    size = int(open("/sys/block/nullb0/size").read())
    dm = sh("dmsetup", "create", "zdv-linear", "--table", f"0 {size} linear {NULLB} 0", ok=False)
    try:
        if dm.returncode == 0:
            rc, lines = validate(NULLB)
            check(rc == 1, f"status {rc}")
            expect(lines, NULLB, {"holders": ("fail", "(device-mapper zdv-linear)"),
                                  "mounts": "ok", "exclusive-open": ("fail", "in use")})
        else:
            print(f"    dmsetup: {dm.stderr.strip()}")
    finally:
        if dm.returncode == 0:
            sh("dmsetup", "remove", "zdv-linear")
    sock = os.path.join(T, "z.sock")
    log = open(os.path.join(T, "zonedd.log"), "ab")
    d = subprocess.Popen([ZONEDD, "--no-config", "--socket", sock, "--state-dir",
                          os.path.join(T, "state"), "--device", ZNS],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        for _ in range(200):
            if sh(ZONECTL, "--socket", sock, "hello", ok=False).returncode == 0:
                break
            check(d.poll() is None, f"zonedd exited with status {d.returncode}")
            time.sleep(0.05)
        rc, lines = validate(ZNS)
        check(rc == 1, f"status {rc}")
        expect(lines, ZNS, {"exclusive-open": ("fail", "in use (opened exclusively elsewhere)"),
                            "mounts": "ok"})
        # With zone isolation (the default where device-mapper works)
        # zonedd holds the disk through its own mapping, and says so.
        if lines[ZNS]["holders"][0] == "fail":
            expect(lines, ZNS, {"holders": ("fail", "(device-mapper zoned-nvme0n1, zonedd's zone isolation)")})
        else:
            expect(lines, ZNS, {"holders": "ok"})
    finally:
        d.terminate()
        d.wait(timeout=15)
    rc, _ = validate(ZNS)
    check(rc == 0, f"after zonedd: status {rc}")
    check(dm.returncode == 0, f"dmsetup create failed: {dm.stderr.strip()}")


def t_scheduler():
    """Before 6.10 only mq-deadline or none keep zone writes in order. Those
    kernels themselves offer nothing else for a host-managed device (an
    elevator needs ELEVATOR_F_ZBD_SEQ_WRITE), so there the refusal of kyber
    is the kernel's, and validate's check is ok; from 6.10 any scheduler is
    fine and validate says so with kyber selected."""
    if "kyber" not in open("/sys/block/vda/queue/scheduler").read():
        raise Skip("kyber is not loaded (no kyber-iosched module)")
    path = "/sys/block/nullb0/queue/scheduler"
    saved = open(path).read()
    old = saved[saved.index("[") + 1:saved.index("]")]
    rel = os.uname().release.split(".")
    before_6_10 = (int(rel[0]), int(rel[1].split("-")[0])) < (6, 10)
    try:
        with open(path, "w") as f:
            f.write("kyber")
        selected = True
    except OSError as e:
        print(f"    selecting kyber on {NULLB}: {e}")
        selected = False
    try:
        rc, lines = validate(NULLB)
        if before_6_10:
            check(not selected, "kyber was selected for a host-managed device before 6.10")
            check(rc == 0, f"status {rc}")
            expect(lines, NULLB, {"scheduler": ("ok", f"{old} (this kernel, before 6.10")})
        else:
            check(selected, "kyber could not be selected")
            check(rc == 0, f"status {rc}")
            expect(lines, NULLB, {"scheduler": ("ok", "kyber (this kernel has zone write plugging)")})
    finally:
        with open(path, "w") as f:
            f.write(old)


def main():
    os.makedirs(T, exist_ok=True)
    results = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    def run(title, fn):
        print(f"=== {title}", flush=True)
        t0 = time.monotonic()
        try:
            fn()
            verdict = "PASS"
        except Skip as e:
            print(f"    {e}")
            verdict = "SKIP"
        except (Fail, subprocess.SubprocessError, OSError, KeyError, ValueError) as e:
            print(f"    {type(e).__name__}: {e}")
            verdict = "FAIL"
        results[verdict] += 1
        print(f"{verdict}: {title} ({time.monotonic() - t0:.1f}s)", flush=True)

    run("validate: null_blk and ZNS pass every check; info --sysfs", t_zoned_ok)
    run("validate: a plain disk and a partition fail, status 1", t_plain_and_partition)
    run("validate: a mounted device, a disk holding a mounted partition", t_mounted)
    run("validate: a device-mapper holder, zonedd's claim", t_holder_and_claim)
    run("validate: a scheduler that may reorder zone writes", t_scheduler)
    print(f"validate: {results['PASS']} passed, {results['FAIL']} failed, "
          f"{results['SKIP']} skipped")
    return 1 if results["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
