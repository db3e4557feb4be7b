"""What the bench scripts share: running a command, a free port, the CPU's
name, and replacing one marked section of BENCHMARKS.md."""
import os, socket, subprocess

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
