#!/usr/bin/env python3
"""Orders API benchmark: for each backend (SQLite under <data>/state, and
PostgreSQL in a fresh schema on postgres://postgres@127.0.0.1:5432/test),
starts `shoplake serve` on a fresh data directory with an `orders` API token
and drives `POST /api/orders` with the order load generator
(crates/server/examples/orderload.rs) on the same machine.

Phases per backend:
  1. saturation: 64 connections, closed loop, --seconds -> creations/s
     acknowledged (each after its commit), latency percentiles;
  2. paced: 5,000 orders/s over 64 connections, open loop (latency from the
     intended send time) -> p50 / p99 against the 20 ms target;
  3. lake freshness: seconds from the end of phase 2 (the last create) until
     `shoplake sql "SELECT count(*) FROM processed.orders"` (which reads the
     lake) counts every order created;
  4. seeding to --orders orders (1,000,000 by default) through the API at
     saturation, then the search phase: --searches `GET /api/orders?q=WORD&
     limit=50` with words from the catalogue's product names.
Results: bench/out/orders.json and the orders section of BENCHMARKS.md.
"""
import argparse, http.client, json, os, re, shutil, signal, subprocess, sys, tempfile, time

from benchlib import ROOT, cpu_model, free_port, sh, write_section
MARK = "<!-- orders: written by bench/orders -->"
PG = "postgres://postgres@127.0.0.1:5432/test"


def psql(sql):
    return sh(["psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", sql]).stdout.strip()


def lake_count(a, data):
    try:
        out = sh([a.bin, "--data", data, "-q", "sql", "--format", "json",
                  "SELECT count(*) AS n FROM processed.orders"], timeout=60).stdout
        return int(json.loads(out)[0]["n"])
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
        return -1


def created(r):
    return r["answers_by_status"].get("201", 0)


def run_backend(a, backend):
    data = tempfile.mkdtemp(prefix=f"shoplake-orders-bench-{backend}-")
    schema = None
    if backend == "postgres":
        schema = f"bench_orders_{os.getpid()}"
        psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        orders_db = f"{PG}?options=-c%20search_path%3D{schema}"
    else:
        orders_db = "sqlite"
    token = sh([a.bin, "--data", data, "-q", "tokens", "create", "bench", "--role", "orders"]).stdout.strip().splitlines()[-1]
    port = free_port()
    addr = f"127.0.0.1:{port}"
    # the orders API alone: the pipeline scheduler and lake maintenance off
    env = dict(os.environ, SHOPLAKE_PIPELINE__SCHEDULE="", SHOPLAKE_PIPELINE__WATCH_SECS="0",
               SHOPLAKE_LAKE__MAINTENANCE_SCHEDULE="", SHOPLAKE_ML__SCHEDULE="")
    srv = subprocess.Popen([a.bin, "--data", data, "-q", "serve", "--addr", addr, "--orders-db", orders_db],
                           env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, "serve.log"), "w"))
    res = {"backend": backend}
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

        def load(*extra):
            out = sh([a.orderload, addr, token, *extra])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{backend}: {' '.join(extra)}: {json.dumps(r)}", flush=True)
            return r

        total = 0
        sat = load("--connections", "64", "--seconds", str(a.seconds), "--run-id", "sat")
        total += created(sat)
        time.sleep(2)
        paced = load("--connections", "64", "--seconds", str(a.seconds), "--rate", str(a.rate), "--run-id", "paced")
        total += created(paced)
        t_last = time.monotonic()
        fresh = None
        while time.monotonic() - t_last < a.fresh_timeout:
            n = lake_count(a, data)
            if n >= total:
                fresh = time.monotonic() - t_last
                break
            time.sleep(0.25)
        res.update(saturation=sat, paced=paced, created_before_seed=total, lake_fresh_s=fresh,
                   lake_fresh_note="upper bound: each poll is a `shoplake sql` process (~0.5 s)")
        print(f"{backend}: all {total} orders in processed.orders after {fresh} s", flush=True)

        seed_n = max(0, a.orders - total)
        t0 = time.monotonic()
        seed = load("--connections", "64", "--seconds", "100000", "--count", str(seed_n), "--run-id", "seed") if seed_n else None
        seed_s = time.monotonic() - t0
        total += created(seed) if seed else 0
        res.update(seed=seed, seed_seconds=seed_s, orders=total)
        if backend == "postgres":
            # what autovacuum would have done by now on a long-running database
            psql(f"ANALYZE {schema}.orders")
        search = load("--search", str(a.searches), "--connections", str(a.search_connections))
        res["search"] = search
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=300)
    finally:
        if srv.poll() is None:
            srv.kill()
        if backend == "postgres":
            res["db_mib"] = int(psql(f"SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{schema}'") or 0) / 2**20
            if not a.keep:
                psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        else:
            db = os.path.join(data, "state", "orders.db")
            res["db_mib"] = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s)) / 2**20
        if not a.keep:
            shutil.rmtree(data, ignore_errors=True)
        else:
            res["data"] = data
    return res


def machine(a):
    cpu = cpu_model()
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0) / 2**20
    tmp = tempfile.gettempdir()
    disk = sh(["df", "-h", "--output=source,fstype,size", tmp]).stdout.strip().splitlines()[-1].split()
    dev = re.sub(r"[0-9]+$", "", os.path.basename(disk[0]))
    rota = open(f"/sys/block/{dev}/queue/rotational").read().strip() if os.path.exists(f"/sys/block/{dev}/queue/rotational") else "?"
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    sqlite = re.search(r'name = "libsqlite3-sys"\nversion = "([^"]+)"', lock)
    sqlx = re.search(r'name = "sqlx"\nversion = "([^"]+)"', lock)
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem, 1),
            "disk": f"{disk[0]} ({disk[1]}, {disk[2]}, {'rotational' if rota == '1' else 'non-rotational' if rota == '0' else '?'})",
            "postgres": psql("SHOW server_version"), "pg_synchronous_commit": psql("SHOW synchronous_commit"),
            "pg_fsync": psql("SHOW fsync"), "libsqlite3_sys": sqlite.group(1) if sqlite else "?",
            "sqlx": sqlx.group(1) if sqlx else "?",
            "shoplake": sh([a.bin, "--version"]).stdout.strip(),
            "commit": sh(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).stdout.strip(),
            "dirty": bool(sh(["git", "status", "--porcelain", "crates/orders"], cwd=ROOT).stdout.strip()),
            "date": time.strftime("%Y-%m-%d")}


def section(a, m, results):
    ok = lambda c: "met" if c else "**not met**"
    L = [MARK, "", f"## Orders API (`bench/orders`, {m['date']})", "",
         f"`shoplake serve` (release; pipeline scheduler and lake maintenance off) on a fresh data directory, driven by "
         f"`crates/server/examples/orderload.rs` on the same machine ({m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, "
         f"disk {m['disk']}; commit {m['commit']}{' + working tree' if m['dirty'] else ''}; {m['shoplake']}; sqlx {m['sqlx']}, "
         f"SQLite from libsqlite3-sys {m['libsqlite3_sys']} in WAL mode with `synchronous = FULL`, PostgreSQL {m['postgres']} with "
         f"`fsync = {m['pg_fsync']}`, `synchronous_commit = {m['pg_synchronous_commit']}`). Each request is `POST /api/orders` with an "
         f"`orders` API token, a unique `order_id` and `Idempotency-Key`, 1–4 lines from the generator's catalogue and a checked total "
         f"(~0.6–1 KB); a 201 comes only after the order's transaction committed. The store writes concurrent requests in one "
         f"transaction (group commit, `crates/orders/src/writer.rs`). Saturation: 64 keep-alive connections, closed loop, "
         f"{a.seconds:.0f} s. Paced: {a.rate:,} orders/s over 64 connections for {a.seconds:.0f} s, open loop, latency from the intended "
         f"send time. Lake: seconds from the last paced create until `shoplake sql` counts every order in `processed.orders` "
         f"(polled by a new process each time, so up to ~1 s of it is the poll). Search: the store seeded through the API at saturation, "
         f"then {a.searches:,} `GET /api/orders?q=WORD&limit=50` over {a.search_connections} connection(s), one word of the catalogue's "
         f"product names each (brands, adjectives, nouns: most match thousands of orders).", "",
         "| backend | target | measured | |", "| --- | --- | --- | --- |"]
    for r in results:
        b, sat, paced, s = r["backend"], r["saturation"], r["paced"], r.get("search")
        sl, pl = sat["latency_ms"], paced["latency_ms"]
        errs = lambda x: ", ".join(f"{k}: {v:,}" for k, v in x["errors_by_status"].items()) or "none"
        L.append(f"| {b} | ≥ 5,000 creations/s | {sat['creations_per_s']:,.0f}/s ({created(sat):,} in {sat['seconds']:.1f} s; "
                 f"p50 {sl['p50']:.1f} ms, p99 {sl['p99']:.1f} ms; errors {errs(sat)}) | {ok(sat['creations_per_s'] >= 5000)} |")
        L.append(f"| {b} | p99 ≤ 20 ms at 5,000/s | p50 {pl['p50']:.1f} ms, p90 {pl['p90']:.1f} ms, p99 {pl['p99']:.1f} ms, max "
                 f"{pl['max']:.0f} ms ({paced['creations_per_s']:,.0f}/s reached; errors {errs(paced)}) | {ok(pl['p99'] <= 20 and paced['creations_per_s'] >= 0.97 * a.rate)} |")
        if s:
            n = r["orders"]
            L.append(f"| {b} | search over 1M orders ≤ 50 ms | at {n:,} orders: p50 {s['latency_ms']['p50']:.1f} ms, p99 "
                     f"{s['latency_ms']['p99']:.1f} ms, max {s['latency_ms']['max']:.0f} ms ({s['requests']:,} searches, "
                     f"{s['mean_orders_per_page']:.0f} orders per page on average) | "
                     f"{ok(s['latency_ms']['p99'] <= 50) if n >= 1_000_000 else ('met at ' + format(n, ',') + ' (1M not run)' if s['latency_ms']['p99'] <= 50 else '**not met**')} |")
        f = r.get("lake_fresh_s")
        L.append(f"| {b} | in the lake within seconds | {'all ' + format(r['created_before_seed'], ',') + ' orders in processed.orders ' + format(f, '.1f') + ' s after the last create' if f is not None else '**not all there** after ' + str(a.fresh_timeout) + ' s'} | "
                 f"{ok(f is not None and f <= 10)} |")
    L.append("")
    for r in results:
        if r.get("seed"):
            sd = r["seed"]
            L.append(f"Seeding {r['backend']}: {created(sd):,} orders in {r['seed_seconds']:.0f} s ({sd['creations_per_s']:,.0f}/s, "
                     f"p99 {sd['latency_ms']['p99']:.1f} ms); database {r['db_mib']:,.0f} MiB.")
    L.append("")
    return L


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--orderload", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--orders", type=int, default=1_000_000, help="orders in the store for the search phase")
    ap.add_argument("--searches", type=int, default=1000)
    ap.add_argument("--search-connections", type=int, default=1)
    ap.add_argument("--fresh-timeout", type=float, default=120)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--keep", action="store_true", help="keep the data directories and the PostgreSQL schema")
    a = ap.parse_args()
    m = machine(a)
    results = [run_backend(a, b) for b in a.backends.split(",")]
    res = {"machine": m, "args": vars(a), "results": results}
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    json.dump(res, open(os.path.join(ROOT, "bench", "out", "orders.json"), "w"), indent=2)
    L = section(a, m, results)
    write_section(MARK, L)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    sys.exit(main())
