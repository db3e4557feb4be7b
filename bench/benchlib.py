"""What the bench scripts share: running a command, a free port, the CPU's
name, replacing one marked section of BENCHMARKS.md, the virtualenv of the
Python packages some benchmarks compare against, and for the collector's
benchmarks: starting `shoplake serve`, reading /metrics and /proc, and
warming the VM's memory."""
import os, socket, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_model():
    return next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")


def write_section(mark, lines):
    """Replaces the section of BENCHMARKS.md that starts at `mark`, up to the
    next marked section, with `lines` (the first of which is `mark`);
    appends it if absent."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    assert lines and lines[0] == mark, "a section starts with its mark"
    body = "\n".join(lines)
    if mark in text:
        before, after = text.split(mark, 1)
        nxt = after.find("\n<!-- ")
        text = before.rstrip() + "\n\n" + body + (after[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + body
    open(path, "w").write(text.rstrip() + "\n")


# The PyPI packages of the bench virtualenv, pinned (bench/duckdb_side.py).
BENCH_PACKAGES = ["duckdb==2.0.1", "deltalake==1.6.6"]


def bench_venv():
    """The python of a virtualenv holding BENCH_PACKAGES, outside the repository
    ($SHOPLAKE_BENCH_VENV, default ~/.cache/shoplake-bench-venv); creates it
    and installs the pins with pip when they changed."""
    venv = os.environ.get("SHOPLAKE_BENCH_VENV") or os.path.join(os.path.expanduser("~"), ".cache", "shoplake-bench-venv")
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, "shoplake-pins.txt")
    want = "\n".join(BENCH_PACKAGES) + "\n"
    if os.path.exists(stamp) and open(stamp).read() == want and os.path.exists(python):
        return python
    print(f"installing {' '.join(BENCH_PACKAGES)} into {venv}", flush=True)
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"] + BENCH_PACKAGES, check=True)
    open(stamp, "w").write(want)
    return python


def serve(bin_, data, addr, *extra, env=None):
    """Starts `shoplake serve` on a data directory and waits until /readyz
    answers 200 (at most 30 s); returns the process."""
    srv = subprocess.Popen([bin_, "--data", data, "-q", "serve", "--addr", addr, *extra], env=env)
    for _ in range(300):
        try:
            if urllib.request.urlopen(f"http://{addr}/readyz").status == 200:
                return srv
        except OSError:
            pass
        time.sleep(0.1)
    srv.kill()
    raise RuntimeError(f"shoplake serve on {addr} not ready after 30 s")


def stop(srv, timeout=300):
    """SIGTERM (the server commits what it acknowledged), then waits; kills it
    if it is still running after `timeout` seconds."""
    import signal
    if srv.poll() is None:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(timeout=timeout)
        finally:
            if srv.poll() is None:
                srv.kill()


def metric(addr, name):
    """The sum of a Prometheus metric's series (/metrics must be public)."""
    text = urllib.request.urlopen(f"http://{addr}/metrics").read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " "))


def status_kib(pid, field):
    """A KiB field of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...); 0 once gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def warm(dirname, gib):
    """Writes and deletes `gib` GiB so the guest's free pages are host-backed:
    this VM's host backs its RAM lazily, and the first write to never-touched
    RAM runs at under 100 MB/s. Returns the seconds it took."""
    t0 = time.time()
    path = os.path.join(dirname, "warm.tmp")
    chunk = b"\x5a" * (1 << 20)
    with open(path, "wb") as f:
        for _ in range(int(gib * 1024)):
            f.write(chunk)
    os.unlink(path)
    return time.time() - t0
