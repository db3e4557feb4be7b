#!/usr/bin/env python3
"""Render time of every dashboard page: a lake generated with N clickstream
events (10M by default) is processed by `shoplake pipeline run`, then
`shoplake serve` (scheduler off) answers each page R times after one warm-up
request, over keep-alive HTTP/1.1 from this machine, with an API token.
Reports p50 / p95 / max per page and writes its section of BENCHMARKS.md."""
import argparse, http.client, json, os, shutil, statistics, subprocess, sys, time

from benchlib import ROOT, cpu_model, free_port, sh, write_section
MARK = "<!-- dashboard: written by bench/dashboard -->"
PAGES = ["/", "/funnel", "/products", "/customers", "/traffic", "/pipeline", "/sql", "/live",
         "/admin", "/api/live", "/api/reports/daily_kpis"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--requests", type=int, default=15)
    ap.add_argument("--out", default="/tmp/shoplake-bench-dashboard")
    a = ap.parse_args()
    ev = a.events
    sizes = {"clickstream": ev, "transactions": ev // 10, "customers": max(2000, ev // 100),
             "products": max(500, min(5000, ev // 2000)), "reviews": max(1000, ev // 100), "days": 90}
    shutil.rmtree(a.out, ignore_errors=True)
    args = [a.bin, "--data", a.out, "-q", "generate"]
    for k, v in sizes.items():
        args += [f"--{k}", str(v)]
    t0 = time.monotonic()
    sh(args)
    sh([a.bin, "--data", a.out, "-q", "pipeline", "run"])
    print(f"lake ready in {time.monotonic() - t0:.0f} s", flush=True)
    token = sh([a.bin, "--data", a.out, "-q", "tokens", "create", "bench", "--role", "admin"]).stdout.strip()
    port = free_port()
    env = dict(os.environ, SHOPLAKE_PIPELINE__SCHEDULE="", SHOPLAKE_PIPELINE__WATCH_SECS="0",
               SHOPLAKE_LAKE__MAINTENANCE_SCHEDULE="", CI="true")
    srv = subprocess.Popen([a.bin, "--data", a.out, "-q", "serve", "--addr", f"127.0.0.1:{port}"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        hdr = {"Authorization": f"Bearer {token}"}
        results = {}
        for page in PAGES:
            times = []
            for i in range(a.requests + 1):
                t = time.perf_counter()
                conn.request("GET", page, headers=hdr)
                r = conn.getresponse()
                body = r.read()
                dt = (time.perf_counter() - t) * 1000
                if r.status != 200:
                    sys.exit(f"{page}: HTTP {r.status}: {body[:300]!r}")
                if i > 0:  # the first request warms the table caches
                    times.append(dt)
            times.sort()
            results[page] = {"p50": statistics.median(times), "p95": times[int(0.95 * (len(times) - 1))],
                             "max": times[-1], "bytes": len(body)}
            print(f"{page:28} p50 {results[page]['p50']:7.1f} ms  p95 {results[page]['p95']:7.1f} ms  "
                  f"max {results[page]['max']:7.1f} ms  {len(body):>7} bytes", flush=True)
    finally:
        srv.terminate()
        srv.wait()
    cpu = cpu_model()
    commit = sh(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).stdout.strip()
    date = time.strftime("%Y-%m-%d")
    worst = max(r["p95"] for p, r in results.items() if not p.startswith("/api/"))
    L = [MARK, "", f"## Dashboard: page render time ({date})", "",
         f"`bench/dashboard`: a lake of {ev:,} generated clickstream events ({sizes['transactions']:,} transactions, "
         f"90 days) processed by `shoplake pipeline run`, then `shoplake serve` (release, scheduler off) answering "
         f"each page {a.requests} times after one warm-up request, over one keep-alive connection from the same "
         f"machine, with an admin API token; the default range (the last 30 days with data). "
         f"Time is from the request to the last byte of the page ({cpu}, {os.cpu_count()} cores; commit {commit}).", "",
         "| page | p50 | p95 | max | size |", "| --- | ---: | ---: | ---: | ---: |"]
    for p, r in results.items():
        L.append(f"| `{p}` | {r['p50']:.1f} ms | {r['p95']:.1f} ms | {r['max']:.1f} ms | {r['bytes'] / 1024:.0f} KiB |")
    L += ["", f"Slowest page at p95: {worst:.0f} ms (target < 300 ms: **{'met' if worst < 300 else 'not met'}**). "
          "`/live` and `/sql` are static pages (Live fetches `/api/live`, which here finds no collected events: "
          "the lake holds generated files only); a wider range (the All preset, 90 days) is not measured.", ""]
    write_section(MARK, L)
    print(json.dumps({"events": ev, "results": results, "commit": commit}, indent=2))


if __name__ == "__main__":
    main()
