#!/usr/bin/env python3
"""What the answer cache saves: every built-in report through
`GET /api/reports/{name}` with the cache off, in the process and in Redis.
A lake of N generated clickstream events (1M by default) is processed by
`shoplake pipeline run`; for each backend `shoplake serve` (scheduler off)
answers each report R times after one warm-up request (with the cache on,
the warm-up is the miss that fills it), over one keep-alive connection.
Reports p50 per report and backend, and writes its section of BENCHMARKS.md."""
import argparse, csv, http.client, io, json, os, shutil, statistics, subprocess, sys, time

from benchlib import ROOT, cpu_model, free_port, sh, write_section
MARK = "<!-- cache: written by bench/cache -->"


def serve(bin_, data, env_extra):
    port = free_port()
    env = dict(os.environ, SHOPLAKE_PIPELINE__SCHEDULE="", SHOPLAKE_PIPELINE__WATCH_SECS="0",
               SHOPLAKE_LAKE__MAINTENANCE_SCHEDULE="", SHOPLAKE_ML__SCHEDULE="", CI="true", **env_extra)
    srv = subprocess.Popen([bin_, "--data", data, "-q", "serve", "--addr", f"127.0.0.1:{port}"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return srv, port
        except OSError:
            pass
        time.sleep(0.1)
    srv.kill()
    sys.exit("serve did not become ready")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379")
    ap.add_argument("--out", default="/tmp/shoplake-bench-cache")
    a = ap.parse_args()
    ev = a.events
    sizes = {"clickstream": ev, "transactions": ev // 10, "customers": max(2000, ev // 100),
             "products": max(500, min(5000, ev // 2000)), "reviews": max(1000, ev // 100), "days": 90}
    shutil.rmtree(a.out, ignore_errors=True)
    args = [a.bin, "--data", a.out, "-q", "generate"]
    for k, v in sizes.items():
        args += [f"--{k}", str(v)]
    sh(args)
    sh([a.bin, "--data", a.out, "-q", "pipeline", "run"])
    token = sh([a.bin, "--data", a.out, "-q", "tokens", "create", "bench", "--role", "admin"]).stdout.strip()
    listed = sh([a.bin, "--data", a.out, "-q", "report", "--list", "--format", "csv"]).stdout
    reports = [row[0] for row in list(csv.reader(io.StringIO(listed)))[1:] if row]
    prefix = f"bench-cache-{os.getpid()}"
    backends = {"off": {"SHOPLAKE_CACHE__BACKEND": "off"},
                "memory": {"SHOPLAKE_CACHE__BACKEND": "memory"},
                "redis": {"SHOPLAKE_CACHE__BACKEND": "redis", "SHOPLAKE_CACHE__REDIS_URL": a.redis,
                          "SHOPLAKE_CACHE__KEY_PREFIX": prefix}}
    res = {}
    for name, env in backends.items():
        srv, port = serve(a.bin, a.out, env)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            hdr = {"Authorization": f"Bearer {token}"}
            for rep in reports:
                times, seen = [], set()
                for i in range(a.requests + 1):
                    t = time.perf_counter()
                    conn.request("GET", f"/api/reports/{rep}", headers=hdr)
                    r = conn.getresponse()
                    body = r.read()
                    dt = (time.perf_counter() - t) * 1000
                    if r.status != 200:
                        sys.exit(f"{rep}: HTTP {r.status}: {body[:300]!r}")
                    if i > 0:
                        times.append(dt)
                        seen.add(r.getheader("x-shoplake-cache"))
                res.setdefault(rep, {})[name] = (statistics.median(times), sorted(seen))
                print(f"{name:6} {rep:28} p50 {statistics.median(times):8.2f} ms  {sorted(seen)}", flush=True)
        finally:
            srv.terminate()
            srv.wait()
    cpu = cpu_model()
    commit = sh(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).stdout.strip()
    L = [MARK, "", f"## Answer cache (`bench/cache`, {time.strftime('%Y-%m-%d')})", "",
         f"Every built-in report through `GET /api/reports/{{name}}` (default parameters) on a lake of {ev:,} "
         f"generated clickstream events processed by `pipeline run`; `shoplake serve` (release, scheduler off) "
         f"answers each report {a.requests} times after one warm-up request, over one keep-alive connection, "
         f"with `[cache] backend` off, `memory` and `redis` (the machine's Redis on loopback). With the cache on, "
         f"the warm-up is the miss that fills it and every timed request is a hit (checked with `X-Shoplake-Cache`). "
         f"p50 in ms, request to last byte ({cpu}, {os.cpu_count()} cores; commit {commit}).", "",
         "| report | off | memory | redis | off ÷ memory |", "| --- | ---: | ---: | ---: | ---: |"]
    for rep, r in res.items():
        off, mem, red = r["off"][0], r["memory"][0], r["redis"][0]
        L.append(f"| `{rep}` | {off:.2f} | {mem:.2f} | {red:.2f} | {off / mem:.0f}× |")
    L += ["", "A hit still reads each named table's `_delta_log` listing (so new data is never hidden) and "
          "encodes the answer as JSON; the Redis column adds the round trip and the Arrow IPC decoding.", ""]
    write_section(MARK, L)
    print(json.dumps({k: {b: v[0] for b, v in r.items()} for k, r in res.items()}, indent=2))


if __name__ == "__main__":
    main()
