#!/usr/bin/python3
"""Device faults on the kernel backend, inside the VM suite's guest (run by
vm-inner.sh after vm-daemon-test.py, whose "no device error" check this one
would spoil): what the guest kernel (Debian 6.1) offers to fail a zoned device
on purpose, and zonedd under each of those faults.

- null_blk through configfs: a zoned device with bad blocks. A lease's write
  over them fails with EIO; the daemon survives, its view of every zone equals
  `blkzone report`, the other zones and the other device are served.
- The same device powered off under the daemon (configfs power=0): the device
  vanishes; zonedd marks it failed, revokes its lease, answers its waiter, and
  serves the other device.
- null_blk's zone_readonly/zone_offline: a leased zone turning read-only
  fails its holder with -32009 and is refused to its waiter; an offline zone
  the allocator picks is skipped.
- device-mapper: `flakey` over the zoned null_blk device (all I/O failing in
  its down interval) and `error` (which cannot be zoned); what dmsetup says is
  printed as evidence either way.

Found on Debian's 6.1: null_blk offers badblocks, zone_readonly and
zone_offline in configfs, but not its fault-injection options
(CONFIG_BLK_DEV_NULL_BLK_FAULT_INJECTION is unset); a powered-off null_blk
device answers EIO, not ENODEV; dm-flakey maps a host-managed device (its
reports pass through while it is down, its writes fail with EIO); a table
mixing a zoned `linear` with `error` is refused (EINVAL).

Prints PASS:/FAIL:/SKIP: lines and a summary; exits 1 on any failure.
"""
import errno
import json
import mmap
import os
import re
import signal
import socket
import subprocess
import sys
import time

B = os.environ["top_builddir"]
ZONEDD = os.path.join(B, "daemon", "zonedd")
T = "/tmp/zdf"
SOCK = os.path.join(T, "z.sock")
CFS = "/sys/kernel/config/nullb"
MIB = 1 << 20
ZONE = 64 * MIB
BZ_LINE = re.compile(r"start: 0x([0-9a-f]+), len 0x([0-9a-f]+), cap 0x([0-9a-f]+), "
                     r"wptr 0x([0-9a-f]+) .*zcond:\s*(\d+)\(\w+\) \[type: (\d+)")
CONDS = {0x0: "not-wp", 0x1: "empty", 0x2: "implicit-open", 0x3: "explicit-open",
         0x4: "closed", 0xd: "read-only", 0xe: "full", 0xf: "offline"}


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


def blkzone(dev):
    zones = []
    for line in sh("blkzone", "report", dev).stdout.splitlines():
        m = BZ_LINE.search(line)
        if m:
            start, length, cap, wptr = (int(m.group(i), 16) * 512 for i in range(1, 5))
            zones.append({"start": start, "len": length, "capacity": cap, "wp_off": wptr,
                          "cond": CONDS.get(int(m.group(5)), "?")})
    return zones


# A minimal JSON-RPC client over the SOCK_SEQPACKET socket, fds included.
class Conn:
    def __init__(self):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.connect(SOCK)
        self.n = 0
        self.events = []  # notifications that came between replies

    def send(self, method, params=None):
        self.n += 1
        self.s.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {},
                                "id": self.n}).encode())

    def recv(self, timeout=20):
        self.s.settimeout(timeout)
        while True:
            msg, fds, _, _ = socket.recv_fds(self.s, 65536, 4)
            m = json.loads(msg)
            if "method" not in m:
                return m, (fds[0] if fds else -1)
            self.events.append(m["params"])  # a holder's lease.revoked

    def call(self, method, params=None):
        self.send(method, params)
        return self.recv()

    def ok(self, method, params=None):
        r, fd = self.call(method, params)
        check("result" in r, f"{method} {params}: {r}")
        return r["result"], fd

    def err(self, method, params, code):
        r, fd = self.call(method, params)
        if fd >= 0:
            os.close(fd)
        check(r.get("error", {}).get("code") == code, f"{method} {params}: {r}, expected {code}")
        return r["error"]

    def close(self):
        self.s.close()


def view_matches_device(c, name, dev):
    """The daemon's own zone table (cached, no I/O) against blkzone."""
    mine, nxt = [], 0
    while nxt is not None:
        res, _ = c.ok("zone.report", {"device": name, "cached": True, "from": nxt})
        mine += res["zones"]
        nxt = res["next"]
    theirs = blkzone(dev)
    check(len(mine) == len(theirs), f"{name}: {len(mine)} zones, blkzone {len(theirs)}")
    for z, b in zip(mine, theirs):
        check(z["cond"] == b["cond"], f"{name} zone {z['index']}: daemon {z['cond']}, "
              f"device {b['cond']}")
        if z["cond"] not in ("full", "read-only", "offline", "not-wp"):
            check(z["wp"] - z["start"] == b["wp_off"], f"{name} zone {z['index']}: daemon wp "
                  f"+{z['wp'] - z['start']}, device +{b['wp_off']}")


daemon = None


def start_daemon(*devices):
    global daemon
    log = open(os.path.join(T, "zonedd.log"), "ab")
    argv = [ZONEDD, "--no-config", "--socket", SOCK, "--state-dir", os.path.join(T, "state")]
    for d in devices:
        argv += ["--device", d]
    daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    for _ in range(200):
        try:
            c = Conn()
            c.ok("daemon.hello")
            return c
        except (OSError, Fail):
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


def aligned(n, byte):
    buf = mmap.mmap(-1, n)
    buf.write(bytes([byte]) * n)
    return buf


# null_blk through configfs

def nullb_features():
    if not os.path.isdir(CFS):
        os.makedirs("/sys/kernel/config", exist_ok=True)
        sh("mount", "-t", "configfs", "none", "/sys/kernel/config", ok=False)
    try:
        with open(os.path.join(CFS, "features")) as f:
            return f.read().strip()
    except OSError as e:
        raise Skip(f"null_blk configfs is not available: {e}")


def nullb_new(name, badblocks=None, size_mb=512):
    d = os.path.join(CFS, name)
    os.mkdir(d)
    for attr, val in (("size", str(size_mb)), ("blocksize", "4096"), ("memory_backed", "1"),
                      ("zoned", "1"), ("zone_size", "64"), ("zone_nr_conv", "0")):
        with open(os.path.join(d, attr), "w") as f:
            f.write(val)
    if badblocks:
        with open(os.path.join(d, "badblocks"), "w") as f:
            f.write(badblocks)
    with open(os.path.join(d, "power"), "w") as f:
        f.write("1")
    # Since Linux 5.19 a configfs device's disk takes the directory's name.
    if os.path.exists(f"/dev/{name}"):
        return d, f"/dev/{name}"
    with open(os.path.join(d, "index")) as f:
        return d, f"/dev/nullb{int(f.read())}"


def nullb_power(d, on):
    with open(os.path.join(d, "power"), "w") as f:
        f.write("1" if on else "0")


def nullb_del(d):
    try:
        nullb_power(d, False)
    except OSError:
        pass
    try:
        os.rmdir(d)
    except OSError:
        pass


def t_features():
    feats = nullb_features()
    print(f"    null_blk configfs features: {feats}")
    check("badblocks" in feats.split(","), "null_blk has no badblocks")
    # The fault-injection attributes (timeout_inject, requeue_inject,
    # init_hctx) exist only with CONFIG_BLK_DEV_NULL_BLK_FAULT_INJECTION.
    fi = os.path.isdir("/sys/module/null_blk/parameters") and \
        os.path.exists("/sys/module/null_blk/parameters/timeout")
    print(f"    null_blk fault injection (timeout/requeue): "
          f"{'present' if fi else 'not built (CONFIG_BLK_DEV_NULL_BLK_FAULT_INJECTION unset)'}")


def t_badblocks():
    """A lease's write over bad blocks fails with EIO; nothing else moves."""
    # Zone 2's second 4 KiB block (sectors): the first block writes fine.
    s0 = 2 * ZONE // 512 + 8
    d, dev = nullb_new("zfbad", f"+{s0}-{s0 + 7}")
    try:
        c = start_daemon(dev + "=bad", "/dev/nullb0=good")
        try:
            res, fd = c.ok("lease.acquire", {"device": "bad", "zone": 2})
            lease, start = res["lease"], res["lease"]["start"]
            # where the zone is in the fd: 0 for a zone-isolated mapping
            fo = lease["fd_offset"]
            ident = {"id": lease["id"], "token": lease["token"]}
            other, ofd = c.ok("lease.acquire", {"device": "bad", "zone": 3})
            try:
                check(os.pwritev(fd, [aligned(4096, 1)], fo) == 4096, "first block")
                try:
                    os.pwritev(fd, [aligned(4096, 2)], fo + 4096)
                    raise Fail("the write over bad blocks succeeded")
                except OSError as e:
                    check(e.errno == errno.EIO, f"write over bad blocks: {e}")
                    print(f"    write over bad blocks at +4096: {e.strerror} (errno {e.errno})")
                res, _ = c.ok("lease.sync", ident)
                check(res["lease"]["wp"] == start + 4096,
                      f"wp after the failed write: +{res['lease']['wp'] - start}")
                view_matches_device(c, "bad", dev)
                # The zone next to it and the other device are whole.
                check(os.pwritev(ofd, [aligned(4096, 3)], other["lease"]["fd_offset"]) == 4096,
                      "zone 3 write")
                c.ok("lease.sync", {"id": other["lease"]["id"], "token": other["lease"]["token"]})
                g, gfd = c.ok("lease.acquire", {"device": "good"})
                os.close(gfd)
                c.ok("lease.release", {"id": g["lease"]["id"], "token": g["lease"]["token"],
                                       "then": "reset"})
                info, _ = c.ok("device.info", {"device": "bad"})
                check(not info["failed"], "one bad block failed the whole device")
                c.ok("lease.release", dict(ident, then="reset"))
                c.ok("lease.release", {"id": other["lease"]["id"],
                                       "token": other["lease"]["token"], "then": "reset"})
                view_matches_device(c, "bad", dev)
                view_matches_device(c, "good", "/dev/nullb0")
            finally:
                os.close(fd)
                os.close(ofd)
        finally:
            c.close()
            rc = stop_daemon()
            check(rc == 0, f"zonedd exited with status {rc}")
    finally:
        nullb_del(d)


def t_zone_cond():
    """null_blk's zone_readonly/zone_offline under zonedd: a leased zone
    turning read-only fails its holder with -32009, its waiter is refused,
    an offline zone the allocator picks is skipped."""
    d, dev = nullb_new("zfcond", size_mb=512)
    c = w = None
    try:
        c = start_daemon(dev + "=cond", "/dev/nullb0=good")
        w = Conn()
        res, fd = c.ok("lease.acquire", {"device": "cond", "zone": 2})
        ident = {"id": res["lease"]["id"], "token": res["lease"]["token"]}
        check(os.pwritev(fd, [aligned(4096, 7)], res["lease"]["fd_offset"]) == 4096, "write")
        os.close(fd)
        w.send("lease.acquire", {"device": "cond", "zone": 2, "wait_ms": 20000})
        time.sleep(0.3)
        with open(os.path.join(d, "zone_readonly"), "w") as f:
            f.write(str(2 * ZONE // 512))
        e = c.err("lease.sync", ident, -32009)
        check(e.get("data", {}).get("cond") == "read-only", f"lease.sync: {e}")
        print(f"    lease.sync on the zone turned read-only: {e['message']}")
        view_matches_device(c, "cond", dev)
        r, _ = c.ok("lease.release", ident)
        check(r["zone"]["cond"] == "read-only", f"release: {r}")
        r, _ = w.recv()
        check(r.get("error", {}).get("code") == -32009, f"waiter: {r}")
        c.err("lease.acquire", {"device": "cond", "zone": 2}, -32009)
        # Zone 0, the allocator's first pick, goes offline behind its back.
        with open(os.path.join(d, "zone_offline"), "w") as f:
            f.write("0")
        res, fd = c.ok("lease.acquire", {"device": "cond"})
        os.close(fd)
        check(res["lease"]["zone"] not in (0, 2), f"acquire got zone {res['lease']['zone']}")
        print(f"    acquire of any zone skipped offline zone 0, got zone {res['lease']['zone']}")
        c.ok("lease.release", {"id": res["lease"]["id"], "token": res["lease"]["token"]})
        view_matches_device(c, "cond", dev)
        info, _ = c.ok("device.info", {"device": "cond"})
        check(not info["failed"] and info["zones_by_cond"]["read-only"] == 1 and
              info["zones_by_cond"]["offline"] == 1, f"device.info: {info}")
    finally:
        for x in (w, c):
            if x:
                x.close()
        rc = stop_daemon()
        nullb_del(d)
    check(rc == 0, f"zonedd exited with status {rc}")


def t_vanish():
    """The device is powered off under the daemon: failed, lease revoked,
    waiter answered, the other device served."""
    d, dev = nullb_new("zfgone")
    c = w = None
    try:
        c = start_daemon(dev + "=gone", "/dev/nullb0=good")
        w = Conn()
        res, fd = c.ok("lease.acquire", {"device": "gone", "zone": 1})
        os.close(fd)
        ident = {"id": res["lease"]["id"], "token": res["lease"]["token"]}
        g, gfd = c.ok("lease.acquire", {"device": "good"})
        os.close(gfd)
        gident = {"id": g["lease"]["id"], "token": g["lease"]["token"]}
        w.send("lease.acquire", {"device": "gone", "zone": 1, "wait_ms": 20000})
        time.sleep(0.3)
        nullb_power(d, False)
        print(f"    {dev} powered off under zonedd")
        # The next operations find it gone; how many it takes depends on the
        # kernel's answer (ENODEV/ENXIO: one; EIO: three on two zones).
        answers = []
        for z in (2, 3, 4, 5):
            r, fd = c.call("lease.acquire", {"device": "gone", "zone": z})
            if fd >= 0:
                os.close(fd)
            e = r.get("error", {})
            answers.append(f"{e.get('code')}/{e.get('data', {}).get('errno')}")
            info, _ = c.ok("device.info", {"device": "gone"})
            if info["failed"]:
                break
        print(f"    acquires on the vanished device: {', '.join(answers)}")
        check(info["failed"], f"{dev} is not marked failed: {info}")
        print(f"    device.info: failed, \"{info['failure']}\"")
        r, _ = w.recv()
        check(r.get("error", {}).get("code") == -32002, f"waiter: {r}")
        c.err("lease.sync", ident, -32007)
        told = [e for e in c.events if e["type"] == "lease.revoked" and e["lease"] == ident["id"]]
        check(told and told[0]["reason"] == "device-failed", f"holder told: {c.events}")
        c.ok("lease.sync", gident)
        c.ok("lease.release", gident)
        g2, gfd = c.ok("lease.acquire", {})
        os.close(gfd)
        check(g2["lease"]["device"] == "good", f"any-device acquire went to {g2['lease']['device']}")
        c.ok("lease.release", {"id": g2["lease"]["id"], "token": g2["lease"]["token"]})
        view_matches_device(c, "good", "/dev/nullb0")
        c.ok("daemon.hello")
    finally:
        for x in (w, c):
            if x:
                x.close()
        rc = stop_daemon()
        nullb_del(d)
    check(rc == 0, f"zonedd exited with status {rc}")


def dmsetup(*args, ok=True):
    # No udev in the guest: nothing to synchronise with.
    return sh("dmsetup", "--noudevsync", *args, ok=ok)


def mapper_dev(name):
    """/dev/dm-N of a mapping (devtmpfs makes it; /dev/mapper needs udev)."""
    for blk in os.listdir("/sys/block"):
        try:
            with open(f"/sys/block/{blk}/dm/name") as f:
                if f.read().strip() == name:
                    return f"/dev/{blk}"
        except OSError:
            continue
    raise Fail(f"no block device for the mapping {name}")


def t_dm():
    """dm flakey over the zoned device, and dm error."""
    if not os.path.exists("/dev/mapper/control"):
        raise Skip("device-mapper is not available (no /dev/mapper/control)")
    d, dev = nullb_new("zfdm")
    sectors = 512 * MIB // 512
    try:
        # error: has no zones of its own, so it cannot sit in a zoned table.
        p = dmsetup("create", "zferr", "--table",
               f"0 {sectors // 2} linear {dev} 0\n{sectors // 2} {sectors // 2} error", ok=False)
        print(f"    dmsetup create (zoned linear + error): status {p.returncode}: "
              f"{(p.stderr or p.stdout).strip() or 'created'}")
        if p.returncode == 0:
            dmsetup("remove", "zferr", ok=False)
        else:
            dm = [l for l in sh("dmesg", ok=False).stdout.splitlines() if "device-mapper" in l]
            for line in dm[-2:]:
                print(f"    kernel: {line.strip()}")
            dmsetup("remove", "zferr", ok=False)
        # flakey, up for an hour: zoned?
        p = dmsetup("create", "zfflaky", "--table", f"0 {sectors} flakey {dev} 0 3600 0", ok=False)
        print(f"    dmsetup create (flakey over {dev}): status {p.returncode}: "
              f"{(p.stderr or p.stdout).strip() or 'created'}")
        if p.returncode != 0:
            raise Skip("dm-flakey will not map the zoned device")
        try:
            mdev = mapper_dev("zfflaky")
            with open(f"/sys/block/{os.path.basename(mdev)}/queue/zoned") as f:
                model = f.read()
            print(f"    {mdev}: zoned model {model.strip()}")
            c = start_daemon(mdev + "=flaky", "/dev/nullb0=good")
            try:
                res, fd = c.ok("lease.acquire", {"device": "flaky", "zone": 1})
                ident = {"id": res["lease"]["id"], "token": res["lease"]["token"]}
                fo = res["lease"]["fd_offset"]
                check(os.pwritev(fd, [aligned(4096, 5)], fo) == 4096, "write while up")
                # Down for an hour: every I/O fails (flakey's default).
                dmsetup("load", "zfflaky", "--table", f"0 {sectors} flakey {dev} 0 0 3600")
                dmsetup("suspend", "zfflaky")
                dmsetup("resume", "zfflaky")
                try:
                    os.pwritev(fd, [aligned(4096, 6)], fo + 4096)
                    raise Fail("a write through flakey's down interval succeeded")
                except OSError as e:
                    check(e.errno == errno.EIO, f"write while down: {e}")
                    print(f"    write while flakey is down: {e.strerror}")
                r, _ = c.call("lease.sync", ident)
                print(f"    lease.sync while down: {json.dumps(r.get('result', r.get('error')))[:160]}")
                info, _ = c.ok("device.info", {"device": "flaky"})
                print(f"    device.info while down: failed={info['failed']}")
                c.ok("daemon.hello")
                g, gfd = c.ok("lease.acquire", {"device": "good"})
                os.close(gfd)
                c.ok("lease.release", {"id": g["lease"]["id"], "token": g["lease"]["token"]})
                view_matches_device(c, "good", "/dev/nullb0")
                if not info["failed"]:
                    view_matches_device(c, "flaky", mdev)
                os.close(fd)
            finally:
                c.close()
                rc = stop_daemon()
                check(rc == 0, f"zonedd exited with status {rc}")
        finally:
            dmsetup("remove", "--force", "zfflaky", ok=False)
    finally:
        nullb_del(d)


def t_bench_isolation():
    """bench/bench-isolation on kernel devices: two null_blk disks of one
    geometry, one in each isolation mode, one daemon. Figures only (under
    software emulation only the ratios mean anything); it fails only if
    the bench cannot run."""
    dz, zdev = nullb_new("zbiso", size_mb=512)
    dd, ddev = nullb_new("zbdev", size_mb=512)
    conf = os.path.join(T, "bench.conf")
    with open(conf, "w") as f:
        json.dump({"devices": [{"id": "iso", "path": zdev},
                               {"id": "dev", "path": ddev, "isolation": "device"}]}, f)
    sock = os.path.join(T, "bench.sock")
    log = open(os.path.join(T, "bench-zonedd.log"), "ab")
    zd = subprocess.Popen([ZONEDD, "--config", conf, "--socket", sock, "--state-dir",
                           os.path.join(T, "bench-state")], stdin=subprocess.DEVNULL,
                          stdout=log, stderr=log)
    try:
        bench = os.path.join(B, "bench", ".libs", "bench-isolation")
        if not os.access(bench, os.X_OK):
            bench = os.path.join(B, "bench", "bench-isolation")
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(B, "client", ".libs"))
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        p = subprocess.run([bench, "--socket", sock, "--zone-device", "iso", "--device-device",
                            "dev", "--rounds", "3", "--cycles", "20", "--size", "8M"],
                           env=env, capture_output=True, text=True, timeout=600)
        for line in (p.stdout + p.stderr).splitlines():
            print("    " + line)
        check(p.returncode == 0, f"bench-isolation: status {p.returncode}")
    finally:
        zd.send_signal(signal.SIGTERM)
        zd.wait(timeout=30)
        nullb_del(dz)
        nullb_del(dd)


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

    run("faults: what null_blk offers on this kernel", t_features)
    run("faults: null_blk bad blocks under a lease", t_badblocks)
    run("faults: null_blk zones turning read-only and offline under zonedd", t_zone_cond)
    run("faults: a null_blk device powered off under zonedd", t_vanish)
    run("faults: device-mapper flakey and error over a zoned device", t_dm)
    run("bench: zone against device isolation on null_blk (figures)", t_bench_isolation)
    stop_daemon()
    log = os.path.join(T, "zonedd.log")
    if results["FAIL"] and os.path.exists(log):
        print("--- zonedd log (last 30 lines)")
        with open(log, errors="replace") as f:
            for line in f.readlines()[-30:]:
                print("    " + line.rstrip())
    print(f"faults: {results['PASS']} passed, {results['FAIL']} failed, {results['SKIP']} skipped")
    return 1 if results["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
