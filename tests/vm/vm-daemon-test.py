#!/usr/bin/python3
"""zonedd and zonectl on real zoned block devices, inside the VM suite's guest
(run by vm-inner.sh): the daemon's refusals, zonectl info and report compared
field by field with util-linux blkzone and sysfs, zone operations, leases
(appends through the passed fd, the write pointer after each, a client killed
while holding one), the devices' open and active limits under more concurrent
writers than they allow, zonectl bench, and no device error throughout.

One Python process for all of it: an interpreter start costs seconds under
software emulation. Prints PASS:/FAIL: lines and exits 1 on any failure.

Environment: top_builddir, ZVM_NULLB_EXPECT, ZVM_ZNS_EXPECT (see check-vm.sh).
"""
import array
import errno
import json
import mmap
import socket
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib

B = os.environ["top_builddir"]
ZONEDD = os.path.join(B, "daemon", "zonedd")
ZONECTL = os.path.join(B, "client", "zonectl")
# Before `make install`, libtool makes zonectl a shell wrapper that costs a
# second a call under emulation; the real binary beside it runs at once.
_real = os.path.join(B, "client", ".libs", "zonectl")
with open(ZONECTL, "rb") as _f:
    if _f.read(2) == b"#!" and os.access(_real, os.X_OK):
        ZONECTL = _real
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [os.path.join(B, "client", ".libs"), os.environ.get("LD_LIBRARY_PATH")]))
T = "/tmp/zd"
SOCK = os.path.join(T, "z.sock")
DEVICES = [  # (id, path, expectations)
    ("nullb0", "/dev/nullb0", os.environ["ZVM_NULLB_EXPECT"]),
    ("nvme0n1", "/dev/nvme0n1", os.environ["ZVM_ZNS_EXPECT"]),
]

CONDS = {0x0: "not-wp", 0x1: "empty", 0x2: "implicit-open", 0x3: "explicit-open",
         0x4: "closed", 0xd: "read-only", 0xe: "full", 0xf: "offline"}
TYPES = {1: "conventional", 2: "seq-write-required", 3: "seq-write-preferred"}
BZ_LINE = re.compile(r"start: 0x([0-9a-f]+), len 0x([0-9a-f]+), cap 0x([0-9a-f]+), "
                     r"wptr 0x([0-9a-f]+) .*zcond:\s*(\d+)\(\w+\) \[type: (\d+)")
# What the kernel logs when a device fails a command.
KERNEL_ERR = re.compile(r"error, dev |I/O Error|zones exceeded")


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def zc(*args, raw=False, ok=True, stdin=None, timeout=30):
    """zonectl ARGS: the parsed --json output, or (status, out, err) with raw."""
    argv = [ZONECTL, "--socket", SOCK] + ([] if raw else ["--json"]) + list(args)
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
    if raw:
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")
    if ok and p.returncode != 0:
        raise Fail(f"zonectl {' '.join(args)}: status {p.returncode}: "
                   f"{p.stderr.decode(errors='replace').strip()}")
    return json.loads(p.stdout) if p.stdout.strip() else None


def blkzone(dev):
    out = subprocess.run(["blkzone", "report", dev], check=True, capture_output=True,
                         text=True, timeout=30).stdout
    zones = []
    for line in out.splitlines():
        m = BZ_LINE.search(line)
        if m:
            start, length, cap, wptr = (int(m.group(i), 16) * 512 for i in range(1, 5))
            zones.append({"start": start, "len": length, "capacity": cap, "wp_off": wptr,
                          "cond": CONDS.get(int(m.group(5)), "?"),
                          "type": TYPES.get(int(m.group(6)), "?")})
    check(zones, f"blkzone reported no zones for {dev}")
    return zones


def sysfs(dev, attr):
    st = os.stat(dev)
    with open(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}/{attr}") as f:
        return f.read().strip()


def kernel_errors():
    out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if KERNEL_ERR.search(line)]


def compare_report(name, dev):
    """zonectl report and blkzone report, every zone, field by field."""
    mine = zc("report", name)["zones"]
    theirs = blkzone(dev)
    check(len(mine) == len(theirs), f"{name}: zonectl {len(mine)} zones, blkzone {len(theirs)}")
    for i, (z, b) in enumerate(zip(mine, theirs)):
        check(z["index"] == i, f"{name}: zone {i} has index {z['index']}")
        for key in ("start", "len", "capacity", "type", "cond"):
            check(z[key] == b[key], f"{name}: zone {i} {key}: zonectl {z[key]}, blkzone {b[key]}")
        # blkzone prints 0 for a conventional zone's wp, which has none
        # A full zone's wp is undefined by the standards: devices report the
        # zone's end, zonedd reports the end of its capacity everywhere
        # (PROTOCOL.md, the zone object).
        if z["type"] != "conventional":
            want = b["capacity"] if b["cond"] == "full" else b["wp_off"]
            check(z["wp"] - z["start"] == want,
                  f"{name}: zone {i} wp: zonectl +{z['wp'] - z['start']}, blkzone "
                  f"+{b['wp_off']} ({b['cond']}), expected +{want}")
    return mine


def zone_is(dev, index, conds, wp_off=None):
    z = blkzone(dev)[index]
    conds = (conds,) if isinstance(conds, str) else conds
    check(z["cond"] in conds, f"{dev}: zone {index} is {z['cond']}, expected {'/'.join(conds)}")
    if wp_off is not None:
        check(z["wp_off"] == wp_off, f"{dev}: zone {index} wp +{z['wp_off']}, expected +{wp_off}")


def counts(dev):
    zones = blkzone(dev)
    nopen = sum(z["cond"] in ("implicit-open", "explicit-open") for z in zones)
    return nopen, nopen + sum(z["cond"] == "closed" for z in zones)


def expectations(s):
    return {k: int(v) for k, v in (kv.split("=") for kv in s.split(","))}


# The daemon

daemon = None


def start_daemon(extra=()):
    global daemon
    log = open(os.path.join(T, "zonedd.log"), "ab")
    argv = [ZONEDD, "--no-config", "--socket", SOCK, "--state-dir", os.path.join(T, "state")]
    argv += list(extra)
    for _, path, _ in DEVICES:
        argv += ["--device", path]
    daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    for _ in range(200):
        if zc("hello", raw=True)[0] == 0:
            return
        check(daemon.poll() is None, f"zonedd exited with status {daemon.returncode}")
        time.sleep(0.05)
    raise Fail("zonedd did not answer within 10 s")


def stop_daemon():
    global daemon
    if daemon is None:
        return 0
    daemon.send_signal(signal.SIGTERM)
    try:
        rc = daemon.wait(timeout=15)
    except subprocess.TimeoutExpired:
        daemon.kill()
        rc = daemon.wait()
    daemon = None
    return rc


# Tests

def t_refusals():
    """zonedd will not serve a plain disk or a partition, and says why."""
    for path, reason in (("/dev/vda", "not a zoned block device"), ("/dev/vda1", "partition")):
        p = subprocess.run([ZONEDD, "--no-config", "--socket", os.path.join(T, "r.sock"),
                            "--state-dir", os.path.join(T, "rstate"), "--device", path],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
        out = (p.stdout + p.stderr).strip()
        print(f"    {path}: status {p.returncode}: {out.splitlines()[0] if out else ''}")
        check(p.returncode != 0, f"zonedd started on {path}")
        check(reason in out, f"zonedd on {path} does not say '{reason}'")


def write_block0(dev, data):
    """Writes 4096 bytes at offset 0 with O_DIRECT (an aligned buffer)."""
    buf = mmap.mmap(-1, 4096)
    buf.write(data)
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    try:
        check(os.pwritev(fd, [buf], 0) == 4096, f"short write to {dev}")
    finally:
        os.close(fd)


def t_refuse_mounted():
    """zonedd will not serve a mounted device: zonefs on nullb0, whose
    superblock goes into conventional zone 0."""
    dev, mnt = "/dev/nullb0", os.path.join(T, "mnt")
    sb = bytearray(4096)
    struct.pack_into("<I", sb, 0, 0x5A4F4653)   # ZONEFS_MAGIC
    sb[8:16] = b"zoned-vm"                        # label
    # Linux's crc32(~0, ...) without the final inversion, over crc = 0
    struct.pack_into("<I", sb, 4, zlib.crc32(bytes(sb)) ^ 0xFFFFFFFF)
    write_block0(dev, bytes(sb))
    os.makedirs(mnt, exist_ok=True)
    m = subprocess.run(["mount", "-t", "zonefs", dev, mnt], capture_output=True, text=True)
    if m.returncode != 0:
        print(f"    SKIP: cannot mount zonefs on {dev}: {m.stderr.strip()}")
        write_block0(dev, bytes(4096))
        return
    try:
        p = subprocess.run([ZONEDD, "--no-config", "--socket", os.path.join(T, "r.sock"),
                            "--state-dir", os.path.join(T, "rstate"), "--device", dev],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    finally:
        subprocess.run(["umount", mnt], check=True)
        write_block0(dev, bytes(4096))
    out = (p.stdout + p.stderr).strip()
    print(f"    {dev} mounted: status {p.returncode}: {out.splitlines()[0] if out else ''}")
    check(p.returncode != 0, f"zonedd started on mounted {dev}")
    check("mounted on" in out, f"zonedd on mounted {dev} does not say 'mounted on'")


def t_info_report_ops(name, dev, expect):
    """info against sysfs and the VM's geometry; report against blkzone after
    each zone operation; conventional zones refused."""
    e = expectations(expect)
    info = zc("info", name)
    want = {
        "backend": "kernel", "model": "host-managed", "nr_zones": e["zones"],
        "nr_conventional": e["conv"], "zone_size": e["zone_size"],
        "zone_capacity": e["capacity"], "max_open": e["max_open"],
        "max_active": e["max_active"], "capacity": int(sysfs(dev, "size")) * 512,
        "logical_block_size": int(sysfs(dev, "queue/logical_block_size")),
        "physical_block_size": int(sysfs(dev, "queue/physical_block_size")),
        "scheduler": re.search(r"\[([^\]]+)\]", sysfs(dev, "queue/scheduler")).group(1),
    }
    for key, val in want.items():
        check(info.get(key) == val, f"{name}: info {key} = {info.get(key)!r}, expected {val!r}")
    print(f"    {name}: info matches: {info['nr_zones']} zones, {info['nr_conventional']} "
          f"conventional, capacity {info['zone_capacity'] >> 20} MiB, limits "
          f"{info['max_open']}/{info['max_active']}, product {info.get('product')!r}")
    conv, nz = info["nr_conventional"], info["nr_zones"]
    zc("reset", name, str(conv), "--count", str(nz - conv))
    compare_report(name, dev)
    z = conv + 1
    # closing an opened, unwritten zone: empty again on null_blk, closed on
    # QEMU's ZNS; blkzone and zonectl must agree either way
    for op, conds in (("open", "explicit-open"), ("close", ("empty", "closed")),
                      ("open", "explicit-open"), ("finish", "full"), ("reset", "empty"),
                      ("finish", "full"), ("reset", "empty")):
        zc(op, name, str(z))
        zone_is(dev, z, conds)
        compare_report(name, dev)
    print(f"    {name}: open/close/finish/reset of zone {z}: zonectl and blkzone agree")
    if conv:
        rc, _, err = zc("reset", name, "0", raw=True)
        check(rc != 0, f"{name}: reset of conventional zone 0 accepted")
        print(f"    {name}: reset of conventional zone 0 refused: {err.strip()}")


def t_leases(name, dev):
    """Appends through the passed fd; the wp after each; read back; a client
    SIGKILLed while holding a lease."""
    data = os.urandom(5000)
    w1 = zc("write", name, "--input", "-", stdin=data)
    zone, off, padded = w1["zone"], w1["device_offset"], w1["padded_length"]
    zones = compare_report(name, dev)
    check(off == zones[zone]["start"], f"{name}: first append at +{off - zones[zone]['start']}")
    zone_is(dev, zone, ("implicit-open", "closed"), padded)
    w2 = zc("write", name, "--zone", str(zone), "--input", "-", stdin=data)
    check(w2["device_offset"] == off + padded,
          f"{name}: second append at {w2['device_offset']}, expected {off + padded}")
    zone_is(dev, zone, ("implicit-open", "closed"), 2 * padded)
    rc, back, err = zc("read", name, str(zone), "--length", str(len(data)), raw=True)
    check(rc == 0 and back == data, f"{name}: read back differs ({rc}, {err.strip()})")
    print(f"    {name}: appends at zone {zone} +0 and +{padded}, wp +{2 * padded} after "
          f"release, data read back")

    holder = subprocess.Popen([ZONECTL, "--socket", SOCK, "lease", name, "--hold", "60"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if any(l["pid"] == holder.pid for l in zc("leases", "--all")["leases"]):
                break
            time.sleep(0.05)
        else:
            raise Fail(f"{name}: no lease for pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    for _ in range(200):
        if not any(l["pid"] == holder.pid for l in zc("leases", "--all")["leases"]):
            break
        time.sleep(0.05)
    else:
        raise Fail(f"{name}: the lease of SIGKILLed pid {holder.pid} is still there")
    compare_report(name, dev)
    print(f"    {name}: the lease of a SIGKILLed client was taken back")


def t_lease_lib(name, dev):
    """vm-lease-test: the library's leases against the device's own view."""
    p = subprocess.run([os.path.join(B, "tests", "vm", "vm-lease-test"), name, dev],
                       env=dict(os.environ, ZONED_SOCKET=SOCK), capture_output=True,
                       text=True, timeout=120)
    for line in (p.stdout + p.stderr).splitlines():
        if ":P:" not in line:
            print("    " + line)
    check(p.returncode == 0, f"vm-lease-test {name}: status {p.returncode}")


def t_limits(name, dev, expect):
    """More concurrent writers than the device can have zones active: the
    daemon keeps within max_open and max_active, and every writer succeeds."""
    e = expectations(expect)
    mo, ma = e["max_open"], e["max_active"]
    zc("reset", name, str(e["conv"]), "--count", str(e["zones"] - e["conv"]))
    n = ma + 4
    block = os.urandom(4096)
    procs = [subprocess.Popen([ZONECTL, "--socket", SOCK, "write", name, "--input", "-"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for _ in range(n)]
    for p in procs:
        try:
            p.stdin.write(block)
            p.stdin.close()
        except BrokenPipeError:
            pass  # it failed before reading: its status and stderr tell
    peak_open = peak_active = 0
    while any(p.poll() is None for p in procs):
        o, a = counts(dev)
        peak_open, peak_active = max(peak_open, o), max(peak_active, a)
        check(o <= mo and a <= ma, f"{name}: {o} open / {a} active, limits {mo}/{ma}")
    o, a = counts(dev)
    peak_open, peak_active = max(peak_open, o), max(peak_active, a)
    check(o <= mo and a <= ma, f"{name}: {o} open / {a} active, limits {mo}/{ma}")
    failures = [p.stderr.read().decode(errors="replace").strip() for p in procs if p.wait()]
    print(f"    {name}: {n} concurrent writers, {n - len(failures)} wrote, {len(failures)} "
          f"refused; peak {peak_open} open, {peak_active} active (limits {mo}/{ma})")
    # Once max_active zones hold data, a writer that needs a fresh zone can
    # only be refused (the daemon will not finish someone's zone to make room):
    # a clean refusal is fine, anything else is not.
    other = [f for f in failures if "zone limit" not in f]
    check(not other, f"{name}: writers failed otherwise than on the limit: {other[:3]}")
    check(len(failures) < n, f"{name}: every writer was refused")
    compare_report(name, dev)


def t_bench(name):
    # The issue's data path: O_DIRECT (zonectl bench's default), 1 MiB
    # blocks, 4 writers; the ratio to plain pwrite is printed, not asserted
    # (under QEMU's software emulation only ratios mean anything).
    rc, out, err = zc("bench", name, "--writers", "4", "--zones", "1", "--size", "32M",
                      "--rounds", "5", "--block", "1M", raw=True, timeout=180)
    for line in out.decode(errors="replace").splitlines():
        print("    " + line)
    check(rc == 0, f"zonectl bench {name}: status {rc}: {err.strip()}")


def t_parallel(name):
    """Acquires of different zones at once, each on a connection of its
    own: their grants (a mapping each) run side by side on the device's
    queue, up to its parallel_works, and every one gets a zone of its own."""
    conns = [Rpc() for _ in range(6)]
    try:
        for i, c in enumerate(conns):
            c.n += 1
            c.s.send(json.dumps({"jsonrpc": "2.0", "method": "lease.acquire",
                                 "params": {"device": name}, "id": c.n}).encode())
        zones = []
        for c in conns:
            fds = array.array("i")
            msg, anc, _, _ = c.s.recvmsg(65536, socket.CMSG_SPACE(64 * fds.itemsize))
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            for fd in fds:
                os.close(fd)
            r = json.loads(msg)
            check("result" in r, f"{name}: acquire: {r.get('error')}")
            zones.append(r["result"]["lease"]["zone"])
        check(len(set(zones)) == len(zones), f"{name}: a zone granted twice: {zones}")
    finally:
        for c in conns:
            c.close()
    # The leases end with their connections, on the device's queue: wait
    # for that, or the next test's acquire finds them still counted
    # against the active limit (and gets a partly written zone).
    d = Rpc()
    for _ in range(300):
        res, err, _ = d.call("device.info", device=name)
        check(err is None, f"device.info: {err}")
        if res["leased_zones"] == 0:
            break
        time.sleep(0.05)
    d.close()
    check(res["leased_zones"] == 0, f"{name}: {res['leased_zones']} leases left")
    print(f"    {name}: 6 acquires at once: peak {res['peak_parallel_works']} device "
          f"operations side by side (at most {res['parallel_works']})")
    check(res["parallel_works"] == 3, f"{name}: parallel_works {res['parallel_works']}")
    check(res["peak_parallel_works"] >= 2,
          f"{name}: the grants ran one at a time (peak {res['peak_parallel_works']})")


def t_report_speed(name, dev):
    """A full report through the daemon (zonectl, the library's iterator)
    beside blkzone report of the same device, each a process of its own,
    interleaved over 5 rounds; medians and their ratio, printed."""
    def timed(argv):
        t0 = time.monotonic()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=60)
        return time.monotonic() - t0
    ours, theirs = [], []
    for i in range(5):
        pair = [(ours, [ZONECTL, "--socket", SOCK, "report", name]),
                (theirs, ["blkzone", "report", dev])]
        for into, argv in (pair if i % 2 == 0 else pair[::-1]):
            into.append(timed(argv))
    a, b = sorted(ours)[2], sorted(theirs)[2]
    print(f"    {name}: full report, median of 5: zonectl {a * 1000:.1f} ms, blkzone "
          f"{b * 1000:.1f} ms, ratio {a / b:.2f} (target <= 1.5)")


class Rpc:
    """A raw connection: one request, its reply and every fd it carries."""

    def __init__(self):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(30)
        self.s.connect(SOCK)
        self.n = 0

    def call(self, method, **params):
        self.n += 1
        self.s.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": params,
                                "id": self.n}).encode())
        fds = array.array("i")
        msg, anc, _, _ = self.s.recvmsg(65536, socket.CMSG_SPACE(64 * fds.itemsize))
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        r = json.loads(msg)
        return r.get("result"), r.get("error"), list(fds)

    def close(self):
        self.s.close()


def dm_names():
    """The device-mapper mappings, by name, as sysfs lists them."""
    names = []
    for blk in os.listdir("/sys/block"):
        try:
            with open(f"/sys/block/{blk}/dm/name") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names


def block(pattern):
    """A page-aligned 4 KiB buffer (O_DIRECT)."""
    m = mmap.mmap(-1, 4096)
    m.write(pattern * (4096 // len(pattern)))
    return m


def write_fails(fd, buf, off):
    try:
        os.pwrite(fd, buf, off)
    except OSError as e:
        return e.errno
    return 0


def t_isolation(name, dev):
    """Zone isolation through the real daemon: a lease's fd reaches its zone
    only; a forced reset revokes it and its kept fd gets EIO while the next
    holder's data stays; a SIGKILLed daemon's orphan keeps its mapping for
    the reclaim, an unreclaimed one is fenced when the grace ends."""
    kname = os.path.basename(dev)
    a = Rpc()
    info, err, _ = a.call("device.info", device=name)
    check(err is None and info["isolation"] == "zone",
          f"{name}: isolation {info and info.get('isolation')}: {info and info.get('isolation_reason')}")
    res, err, fds = a.call("lease.acquire", device=name, label="iso")
    check(err is None and len(fds) == 1, f"{name}: acquire: {err}")
    lease, fd = res["lease"], fds[0]
    zone, zlen = lease["zone"], lease["len"]
    check(lease["fd_offset"] == 0 and lease["isolation"] == "zone", f"{name}: {lease}")
    check(f"zoned-{kname}-{zone}" in dm_names(), f"{name}: no mapping for zone {zone}")
    buf = block(b"A")
    e = write_fails(fd, buf, 0)
    check(e == 0, f"{name}: the first write at the lease's wp failed with errno {e}: "
          f"{lease}, mappings {sorted(n for n in dm_names() if kname in n)}")
    check(write_fails(fd, buf, zlen) != 0, f"{name}: a write past the leased zone succeeded")
    res, err, _ = a.call("lease.sync", id=lease["id"], token=lease["token"])
    check(err is None and res["lease"]["wp"] == lease["start"] + 4096, f"{name}: sync {res} {err}")
    # Revoked by an admin's forced reset: the kept fd fails, the zone is free.
    zc("reset", name, str(zone), "--force")
    e = write_fails(fd, buf, 4096)
    check(e == errno.EIO, f"{name}: the revoked fd's write got errno {e}, not EIO")
    b = Rpc()
    res, err, bfds = b.call("lease.acquire", device=name, zone=zone)
    check(err is None, f"{name}: zone {zone} not leased again after the revocation: {err}")
    bbuf = block(b"B")
    os.pwrite(bfds[0], bbuf, 0)
    check(write_fails(fd, buf, 0) == errno.EIO, f"{name}: the old fd reached the new holder")
    rc, back, _ = zc("read", name, str(zone), "--length", "4096", raw=True)
    check(rc == 0 and back == bytes(bbuf[:]), f"{name}: the next holder's data differs")
    os.close(fd)
    res, err, _ = b.call("lease.release", id=res["lease"]["id"], token=res["lease"]["token"],
                         then="reset")
    check(err is None, f"{name}: release: {err}")
    os.close(bfds[0])
    a.close()
    b.close()
    print(f"    {name}: zone {zone}: reach, revocation (EIO), next holder's data intact")

    # A daemon SIGKILLed with two reclaimable leases out.
    c = Rpc()
    r1, _, f1 = c.call("lease.acquire", device=name, reclaimable=True)
    r2, _, f2 = c.call("lease.acquire", device=name, reclaimable=True)
    l1, l2 = r1["lease"], r2["lease"]
    daemon.kill()
    daemon.wait()
    c.close()
    names = dm_names()
    check(f"zoned-{kname}-{l1['zone']}" in names and f"zoned-{kname}-{l2['zone']}" in names,
          f"{name}: mappings gone with the daemon: {names}")
    os.pwrite(f1[0], buf, 0)  # the daemon's death cuts nothing
    start_daemon(["--grace-ms", "3000"])
    c = Rpc()
    res, err, rf = c.call("lease.reclaim", id=l1["id"], token=l1["token"])
    check(err is None and len(rf) == 1, f"{name}: reclaim: {err}")
    check(res["lease"]["wp"] == l1["start"] + 4096, f"{name}: reclaimed wp {res['lease']['wp']}")
    os.pwrite(rf[0], buf, 4096)
    time.sleep(4)  # l2's grace ends: fenced
    check(write_fails(f2[0], buf, 0) == errno.EIO, f"{name}: an expired orphan's fd still writes")
    check(f"zoned-{kname}-{l2['zone']}" not in dm_names(), f"{name}: expired mapping still there")
    res, err, _ = c.call("lease.release", id=l1["id"], token=l1["token"], then="reset")
    check(err is None, f"{name}: release after reclaim: {err}")
    for f in f1 + f2 + rf:
        os.close(f)
    c.close()
    for _ in range(100):  # deferred removal runs after the last close
        if not any(n.startswith(f"zoned-{kname}-") for n in dm_names()):
            break
        time.sleep(0.05)
    check(not any(n.startswith(f"zoned-{kname}-") for n in dm_names()),
          f"{name}: lease mappings left: {dm_names()}")
    print(f"    {name}: after SIGKILL: reclaimed lease kept its mapping, expired one fenced")


def t_fdstore(dev, mode):
    """Under systemd's fd store (this process stands in for systemd): zonedd
    stores the device's claim; SIGKILLed, the kept fd still holds the device
    (an O_EXCL open and another zonedd are refused); restarted with the kept
    fds, zonedd adopts the claim and serves the device."""
    kname = os.path.basename(dev)
    d = os.path.join(T, "fdstore-" + mode)
    os.makedirs(d, exist_ok=True)
    sock = os.path.join(d, "sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    npath = os.path.join(d, "notify")
    if os.path.exists(npath):
        os.unlink(npath)
    notify.bind(npath)
    notify.settimeout(20)
    log = open(os.path.join(d, "zonedd.log"), "ab")
    args = ["--no-config", "--socket", sock, "--state-dir", os.path.join(d, "state"),
            "--isolation", mode, "--device", dev, "--log-level", "debug"]
    env = dict(os.environ, NOTIFY_SOCKET=npath)

    def wait_ready():
        stored = {}
        while True:
            fds = array.array("i")
            msg, anc, _, _ = notify.recvmsg(4096, socket.CMSG_SPACE(16 * fds.itemsize))
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            lines = msg.decode().split("\n")
            names = [l[7:] for l in lines if l.startswith("FDNAME=")]
            if "FDSTORE=1" in lines and len(names) == 1 and len(fds) == 1:
                stored[names[0]] = fds[0]
            else:
                for fd in fds:
                    os.close(fd)
            if "READY=1" in lines:
                return stored

    first = subprocess.Popen([ZONEDD] + args, env=env, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=log)
    stored = wait_ready()
    name = "dev-" + kname
    check(sorted(stored) == [name, "listen"], f"{kname}: stored {sorted(stored)}")
    first.kill()
    first.wait()
    # The claim outlives the daemon while "systemd" keeps it.
    try:
        fd = os.open(dev, os.O_RDWR | os.O_EXCL)
        os.close(fd)
        raise Fail(f"{kname}: an O_EXCL open succeeded while the claim was kept")
    except OSError as e:
        check(e.errno == errno.EBUSY, f"{kname}: O_EXCL open: {e}")
    p = subprocess.run([ZONEDD, "--no-config", "--socket", os.path.join(d, "other.sock"),
                        "--state-dir", os.path.join(d, "other"), "--device", dev],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    check(p.returncode != 0, f"{kname}: another zonedd took the device while its claim was kept")
    fds = (stored["listen"], stored[name])
    launch = ["/bin/sh", "-c", 'eval "exec 3<&$1 4<&$2"; shift 2; '
              f'LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=listen:{name} exec "$@"', "sh",
              str(fds[0]), str(fds[1]), ZONEDD] + args
    second = subprocess.Popen(launch, env=env, stdin=subprocess.DEVNULL, stdout=log,
                              stderr=log, pass_fds=fds)
    for fd in wait_ready().values():
        os.close(fd)
    for fd in fds:
        os.close(fd)
    info = subprocess.run([ZONECTL, "--socket", sock, "--json", "info", kname],
                          capture_output=True, timeout=30)
    check(info.returncode == 0, f"{kname}: info after the restart: {info.stderr!r}")
    second.send_signal(signal.SIGTERM)
    check(second.wait(timeout=30) == 0, f"{kname}: second zonedd status {second.returncode}")
    notify.close()
    log.close()
    with open(os.path.join(d, "zonedd.log"), errors="replace") as f:
        text = f.read()
    check("exclusive claim kept across the restart (fd store)" in text,
          f"{kname}: the restarted zonedd did not adopt the kept claim")
    # Stopped for good (the kept fds closed): the disk is free again.
    for _ in range(100):
        try:
            fd = os.open(dev, os.O_RDWR | os.O_EXCL)
            os.close(fd)
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise Fail(f"{kname}: still claimed after the last stop")
    print(f"    {kname} ({mode} isolation): claim kept across SIGKILL, adopted, freed at stop")


def main():
    os.makedirs(T, exist_ok=True)
    results = {"PASS": 0, "FAIL": 0}

    def run(title, fn, *args):
        print(f"=== {title}", flush=True)
        t0 = time.monotonic()
        try:
            fn(*args)
            verdict = "PASS"
        except (Fail, subprocess.SubprocessError, OSError, KeyError, ValueError) as e:
            print(f"    {type(e).__name__}: {e}")
            verdict = "FAIL"
        results[verdict] += 1
        print(f"{verdict}: {title} ({time.monotonic() - t0:.1f}s)", flush=True)
        return verdict == "PASS"

    run("zonedd refuses a plain disk and a partition", t_refusals)
    run("zonedd refuses a mounted device", t_refuse_mounted)
    errors_before = len(kernel_errors())
    if run("zonedd starts on " + " and ".join(p for _, p, _ in DEVICES), start_daemon):
        for name, dev, expect in DEVICES:
            run(f"{name}: zonectl info, report and zone operations against blkzone",
                t_info_report_ops, name, dev, expect)
            run(f"{name}: leases", t_leases, name, dev)
            run(f"{name}: libzoned-client leases: sync, release, killed client, many at once",
                t_lease_lib, name, dev)
            run(f"{name}: open and active limits under concurrent writers",
                t_limits, name, dev, expect)
            run(f"{name}: zonectl bench against raw pwrite", t_bench, name)
            run(f"{name}: full report through the daemon beside blkzone", t_report_speed,
                name, dev)
            run(f"{name}: acquires of different zones run side by side", t_parallel, name)
            run(f"{name}: zone isolation: reach, revocation, restart, grace", t_isolation,
                name, dev)

        def t_stop():
            rc = stop_daemon()
            check(rc == 0, f"zonedd exited with status {rc}")
        run("zonedd stops cleanly on SIGTERM", t_stop)
        for mode in ("zone", "device"):
            run(f"nullb0: the device's claim in systemd's fd store ({mode} isolation)",
                t_fdstore, "/dev/nullb0", mode)

        def t_no_errors():
            new = kernel_errors()[errors_before:]
            for line in new[:10]:
                print("    " + line)
            check(not new, f"{len(new)} device errors while zonedd ran")
        run("no device error while zonedd ran", t_no_errors)
    stop_daemon()
    log = os.path.join(T, "zonedd.log")
    if results["FAIL"] and os.path.exists(log):
        print("--- zonedd log (last 20 lines)")
        with open(log, errors="replace") as f:
            for line in f.readlines()[-20:]:
                print("    " + line.rstrip())
    print(f"daemon: {results['PASS']} passed, {results['FAIL']} failed")
    return 1 if results["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
