"""What the bench scripts share: running a command, a free port, the CPU's
name, replacing one marked section of BENCHMARKS.md, and the virtualenv of
the Python packages some benchmarks compare against."""
import os, socket, subprocess, sys

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
