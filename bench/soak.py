#!/usr/bin/env python3
"""Soak: `shoplake serve` (release, default settings) under a steady load for
a long time (an hour by default), to show that throughput holds, memory stays
flat and nothing is refused (issue #11).

  1. a short saturation run measures what the server sustains: the smaller of
     the rate it acknowledges and the rate its sink commits to the lake
     (past that the event log fills and refuses);
  2. the soak sends half of that, paced, in one-minute windows of the load
     generator (crates/server/examples/loadgen.rs), while the server's
     resident memory is sampled every 5 s;
  3. at the end every acknowledged event must be in processed.events.

Writes bench/out/soak.json, docs/soak.svg (the RSS and throughput
curves) and the soak section of BENCHMARKS.md.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, threading, time

from benchlib import stop, cpu_model, free_port, metric, serve, status_kib, warm, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "<!-- soak: written by bench/soak -->"
KEY = "soak-key-00000001"


def svg(samples, windows, path):
    """Two panels: resident memory (MiB) and events/s per window, over minutes."""
    W, H, pad = 760, 420, 50
    ph = (H - 3 * pad) / 2
    t_end = max([s["t"] for s in samples] + [w["end_s"] for w in windows]) / 60 or 1

    def panel(y0, points, vmax, label, colour):
        vmax = vmax or 1
        xs = lambda t: pad + (W - 2 * pad) * t / t_end
        ys = lambda v: y0 + ph - ph * v / vmax
        poly = " ".join(f"{xs(t):.1f},{ys(v):.1f}" for t, v in points)
        out = [f'<rect x="{pad}" y="{y0}" width="{W - 2 * pad}" height="{ph:.0f}" fill="none" stroke="#ccc"/>',
               f'<text x="{pad}" y="{y0 - 6}" font-size="13">{label}</text>',
               f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{poly}"/>']
        for frac in (0, 0.5, 1):
            out.append(f'<text x="{pad - 6}" y="{ys(vmax * frac) + 4:.1f}" font-size="11" text-anchor="end">{vmax * frac:,.0f}</text>')
        return out

    rss = [(s["t"] / 60, s["rss_kib"] / 1024) for s in samples]
    anon = [(s["t"] / 60, s["anon_kib"] / 1024) for s in samples]
    eps = [(w["end_s"] / 60, w["events_per_s"]) for w in windows]
    vmax = max(v for _, v in rss) * 1.15
    parts = panel(pad, rss, vmax, "server resident memory, MiB (blue: all; grey: anonymous)", "#1f5fbf")
    parts += panel(pad, anon, vmax, "", "#999")[2:3]
    parts += panel(2 * pad + ph, eps, max(v for _, v in eps) * 1.15, "events acknowledged per second (per load-generator window)", "#2a8a3a")
    for m in range(0, int(t_end) + 1, max(1, int(t_end) // 6)):
        x = pad + (W - 2 * pad) * m / t_end
        parts.append(f'<text x="{x:.1f}" y="{H - pad + 18}" font-size="11" text-anchor="middle">{m} min</text>')
    open(path, "w").write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">'
                          f'<rect width="100%" height="100%" fill="white"/>{"".join(parts)}</svg>\n')


def run_line(r):
    """One pipeline run in a table cell: status, wall time, its slowest step."""
    out = f"{r.get('started_at', '')[11:19]} UTC {r.get('status')}"
    if r.get("seconds") is not None:
        out += f" in {r['seconds']:,.0f} s"
    steps = [st for st in (r.get("steps") or []) if isinstance(st, dict) and st.get("seconds") is not None]
    if steps:
        slow = max(steps, key=lambda st: st["seconds"])
        out += f" (slowest step {slow.get('step', slow.get('name', '?'))}: {slow['seconds']:,.0f} s)"
    if r.get("error"):
        out += f": {r['error'][:160]}"
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--rate", type=float, default=0, help="events/s (default: half the measured maximum)")
    ap.add_argument("--window", type=float, default=60, help="seconds per load-generator run")
    ap.add_argument("--warm-gib", type=float, default=2)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="shoplake-soak-")
    warm(data, a.warm_gib)
    addr = f"127.0.0.1:{free_port()}"
    # default settings (scheduler, maintenance and all), but /metrics open for the script
    env = dict(os.environ, SHOPLAKE_SERVER__METRICS_PUBLIC="true")
    srv = serve(a.bin, data, addr, "--write-key", f"soak={KEY}", env=env)
    samples, windows = [], []
    try:
        def run(*extra):
            out = subprocess.run([a.loadgen, addr, KEY, "--batch", "50", *extra], capture_output=True, text=True, check=True)
            return json.loads(out.stdout.strip().splitlines()[-1])

        maximum = None
        rate = a.rate
        if not rate:
            t0 = time.time()
            before = metric(addr, "shoplake_sink_events_committed_total")
            sat = run("--connections", "64", "--seconds", "20")
            sunk = (metric(addr, "shoplake_sink_events_committed_total") - before) / (time.time() - t0)
            maximum = {"acked_per_s": sat["events_per_s"], "sunk_per_s": sunk}
            rate = min(sat["events_per_s"], sunk) / 2
            # let the sink drain the saturation's backlog before the clock starts
            while metric(addr, "shoplake_sink_lag_records") > 0:
                time.sleep(1)
        start = time.time()
        sampling = True

        def sample():
            while sampling and srv.poll() is None:
                samples.append({"t": time.time() - start, "rss_kib": status_kib(srv.pid, "VmRSS"),
                                "anon_kib": status_kib(srv.pid, "RssAnon"), "file_kib": status_kib(srv.pid, "RssFile")})
                time.sleep(5)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        acked = 0
        while time.time() - start < a.minutes * 60:
            w = run("--connections", "32", "--seconds", str(a.window), "--rate", str(rate))
            w["end_s"] = time.time() - start
            w["wal_bytes"] = metric(addr, "shoplake_wal_bytes")
            w["sink_lag_records"] = metric(addr, "shoplake_sink_lag_records")
            windows.append(w)
            acked += w["events_acked"]
            print(f"{w['end_s'] / 60:5.1f} min: {w['events_per_s']:,.0f} events/s, p99 {w['latency_ms']['p99']:.1f} ms, "
                  f"refused {w['requests_refused']}, RSS {samples[-1]['rss_kib'] / 1024:.0f} MiB", flush=True)
        sampling = False
        sampler.join()
        # every acknowledged event reaches the lake
        t_drain = time.time()
        while metric(addr, "shoplake_sink_lag_records") > 0 and time.time() - t_drain < 120:
            time.sleep(1)
        committed = metric(addr, "shoplake_sink_events_committed_total")
        compacted = metric(addr, "shoplake_sink_files_compacted_total")
        peak_kib = status_kib(srv.pid, "VmHWM")
    finally:
        stop(srv, 300)
    count = subprocess.run([a.bin, "--data", data, "-q", "sql", "--format", "csv",
                            "SELECT count(*) AS n FROM processed.events"], capture_output=True, text=True, check=True)
    in_lake = int(count.stdout.strip().splitlines()[-1])
    # the pipeline runs the scheduler made during the soak, and their steps
    runs = json.loads(subprocess.run([a.bin, "--data", data, "-q", "pipeline", "runs", "--format", "json"],
                                     capture_output=True, text=True, check=True).stdout or "[]")
    for r in runs:
        show = subprocess.run([a.bin, "--data", data, "-q", "pipeline", "show", r["run_id"], "--format", "json"],
                              capture_output=True, text=True)
        r["steps"] = json.loads(show.stdout).get("steps", []) if show.returncode == 0 and show.stdout.strip() else []
    shutil.rmtree(data, ignore_errors=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    steady = [s for s in samples if s["t"] >= 300] or samples
    rss = [s["rss_kib"] / 1024 for s in steady]
    eps = [w["events_per_s"] for w in windows]
    refused = sum(w["requests_refused"] for w in windows)
    p99 = max(w["latency_ms"]["p99"] for w in windows)
    res = {"rate": rate, "maximum": maximum, "minutes": a.minutes, "windows": windows, "samples": samples,
           "acked": acked, "committed_by_sink": committed, "files_compacted": compacted, "peak_rss_kib": peak_kib, "in_lake": in_lake, "cpu": cpu_model(), "cores": os.cpu_count(),
           "pipeline_runs": runs, "commit": commit, "date": time.strftime("%Y-%m-%d")}
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    json.dump(res, open(os.path.join(ROOT, "bench", "out", "soak.json"), "w"), indent=1)
    svg(samples, windows, os.path.join(ROOT, "docs", "soak.svg"))

    first5 = [s["rss_kib"] / 1024 for s in samples if s["t"] < 300]
    how = (f"half the measured maximum: a 20 s saturation run acknowledged {maximum['acked_per_s']:,.0f} events/s and the sink "
           f"committed {maximum['sunk_per_s']:,.0f} events/s" if maximum else "a rate given on the command line")
    L = [MARK, "", f"## Soak (`bench/soak`, {res['date']})", "",
         f"`shoplake serve` (release, default settings: fsync always, the pipeline scheduler and lake maintenance on) on a fresh data "
         f"directory, {cpu_model()}, {os.cpu_count()} cores, commit {commit}. Load: `crates/server/examples/loadgen.rs` on the same machine, "
         f"Segment batches of 50 events over 32 connections paced at {rate:,.0f} events/s ({how}), for {a.minutes:g} minutes "
         f"in windows of {a.window:g} s; resident memory sampled every 5 s. The curves are in [docs/soak.svg](docs/soak.svg).", "",
         "| | |", "| --- | --- |",
         f"| events acknowledged | {acked:,} ({min(eps):,.0f}–{max(eps):,.0f} events/s per window) |",
         f"| requests refused or failed | {refused:,} |",
         f"| worst window's p99 request latency | {p99:.1f} ms |",
         f"| in `processed.events` at the end | {in_lake:,} |",
         f"| RSS in the first 5 minutes | {min(first5 or [0]):,.0f}–{max(first5 or [0]):,.0f} MiB |",
         f"| RSS after 5 minutes | {min(rss):,.0f}–{max(rss):,.0f} MiB (first {rss[0]:,.0f}, last {rss[-1]:,.0f}) |",
         f"| peak resident memory (VmHWM, scheduled pipeline runs included) | {peak_kib / 1024:,.0f} MiB |",
         f"| small files of the sink's tables compacted by their upkeep | {compacted:,.0f} |",
         f"| scheduled pipeline runs | {'; '.join(run_line(r) for r in runs) or 'none'} |", "",
         "| minute | events/s | p99 ms | refused | RSS MiB | event log MiB |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    step = max(1, len(windows) // 12)
    for w in windows[step - 1::step]:
        near = min(samples, key=lambda s: abs(s["t"] - w["end_s"]))
        L.append(f"| {w['end_s'] / 60:.0f} | {w['events_per_s']:,.0f} | {w['latency_ms']['p99']:.1f} | {w['requests_refused']} | "
                 f"{near['rss_kib'] / 1024:,.0f} | {w['wal_bytes'] / 2**20:,.0f} |")
    write_section(MARK, L)
    print(json.dumps({k: v for k, v in res.items() if k not in ("windows", "samples")}, indent=2))
    ok_runs = all(r.get("status") == "succeeded" for r in runs)
    return 0 if refused == 0 and in_lake >= acked and ok_runs else 1


if __name__ == "__main__":
    sys.exit(main())
