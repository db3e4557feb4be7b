#!/usr/bin/env python3
"""Warehouse loading benchmark (`shoplake load postgres`).

1. Generates a lake (`shoplake generate`, 90 days) and runs the pipeline,
   unless --data names a lake that has been processed already.
2. First load, --runs times, each into a fresh schema: every curated table
   and processed.events, the way a user runs it (one process, one
   transaction per table). Per table: rows and seconds as the command
   reports them (DDL, delete, COPY, state row, commit and ANALYZE included);
   rows/s is the median over the runs.
3. PostgreSQL alone, for the two largest tables: the loaded table is written
   to a file with `COPY ... TO (FORMAT binary)` (the same bytes the loader
   sends: both are PostgreSQL's binary COPY format) and read back with a
   server-side `COPY ... FROM file` into an empty table in one transaction.
   That is the most PostgreSQL ingests with one backend, whatever the client.
4. A run with nothing new (every table unchanged), then one day gains a
   transactions file, the pipeline runs, and the load replaces that day.
Results: bench/out/load.json and the loading section of BENCHMARKS.md.
"""
import argparse, json, os, shutil, statistics, subprocess, tempfile, time

from benchlib import ROOT, cpu_model, sh, write_section

MARK = "<!-- load: written by bench/load -->"
# same host: no TLS, as for the server-side COPY it is compared with
PG = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"


def psql(sql):
    return sh(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres",
               "-d", "test", "-c", sql]).stdout.strip()


def shoplake(a, *args):
    return sh([a.bin, "--data", a.data, "-q", *args])


def load(a, schema, tables=None, full=False):
    args = ["load", "postgres", "--url", PG, "--schema", schema, "--format", "json"]
    if tables:
        args += ["--tables", ",".join(tables)]
    if full:
        args.append("--full")
    t0 = time.monotonic()
    r = json.loads(shoplake(a, *args).stdout)
    r["process_seconds"] = time.monotonic() - t0
    return r


def pg_alone(table):
    """Seconds PostgreSQL takes to ingest `table`'s rows from a binary file."""
    path = f"/tmp/shoplake-bench-load-{os.getpid()}.bin"
    psql(f"COPY {table} TO '{path}' (FORMAT binary)")
    copy = f"{table}_pg_alone"
    psql(f"DROP TABLE IF EXISTS {copy}; CREATE TABLE {copy} (LIKE {table})")
    t0 = time.monotonic()
    psql(f"BEGIN; COPY {copy} FROM '{path}' (FORMAT binary); COMMIT")
    secs = time.monotonic() - t0
    psql(f"DROP TABLE {copy}")
    try:
        os.remove(path)
    except OSError:
        pass  # written by the server's user; /tmp is cleaned in time
    return secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", help="an existing, processed data directory (default: generate one); "
                    "the bench adds 100 transaction lines to one of its days")
    ap.add_argument("--transactions", type=int, default=1_000_000)
    ap.add_argument("--clickstream", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--note", help="a sentence for BENCHMARKS.md about the binary or the machine")
    a = ap.parse_args()
    own = a.data is None
    if own:
        a.data = tempfile.mkdtemp(prefix="shoplake-bench-load-")
        shoplake(a, "generate", "--customers", "20000", "--products", "500",
                 "--transactions", str(a.transactions), "--clickstream", str(a.clickstream),
                 "--reviews", "10000", "--days", "90")
        t0 = time.monotonic()
        shoplake(a, "pipeline", "run")
        print(f"pipeline: {time.monotonic() - t0:.1f} s", flush=True)
    curated = [l.split(",")[0] for l in shoplake(a, "catalog", "list", "--format", "csv").stdout.splitlines()[1:]
               if l.startswith("curated.")]
    tables = curated + ["processed.events"]
    schema = f"bench_load_{os.getpid()}"
    res = {"runs": [], "binary": a.bin, "data": a.data}
    try:
        for i in range(a.runs):
            psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            r = load(a, schema, tables)
            res["runs"].append(r)
            print(f"first load {i + 1}: {r['rows']} rows in {r['seconds']:.2f} s "
                  f"({r['rows'] / r['seconds']:,.0f} rows/s)", flush=True)
        last = res["runs"][-1]
        big = sorted((t for t in last["tables"] if t["rows"]), key=lambda t: -t["rows"])[:2]
        res["pg_alone"] = {}
        for t in big:
            secs = [pg_alone(t["target"]) for _ in range(a.runs)]
            res["pg_alone"][t["table"]] = {"rows": t["rows"], "seconds": statistics.median(secs)}
            print(f"PostgreSQL alone, {t['table']}: {t['rows'] / statistics.median(secs):,.0f} rows/s", flush=True)
        res["columns"] = dict(l.split("|") for l in psql(
            f"SELECT table_name, count(*) FROM information_schema.columns WHERE table_schema = '{schema}' "
            "GROUP BY 1").splitlines())
        res["noop"] = load(a, schema, tables)
        print(f"nothing new: {res['noop']['process_seconds']:.2f} s", flush=True)
        # one day gains a file
        tx = os.path.join(a.data, "lake", "raw", "transactions")
        day = sorted(d for d in os.listdir(tx) if d.startswith("date="))[len(os.listdir(tx)) // 2]
        some = next(f for f in sorted(os.listdir(os.path.join(tx, day))) if f.endswith(".csv"))
        head = open(os.path.join(tx, day, some)).readline()
        first = open(os.path.join(tx, day, some)).readlines()[1].split(",")
        extra = os.path.join(tx, day, f"bench-late-{os.getpid()}.csv")
        with open(extra, "w") as f:
            f.write(head)
            for k in range(100):
                f.write(",".join([f"T-BENCH-{os.getpid()}-{k}"] + first[1:]))
        shoplake(a, "pipeline", "run")
        res["incremental"] = load(a, schema, tables)
        r = res["incremental"]
        print(f"one day changed: {r['rows']} rows in {r['seconds']:.2f} s", flush=True)
        os.remove(extra)
    finally:
        if not a.keep:
            psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            if own:
                shutil.rmtree(a.data, ignore_errors=True)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    json.dump(res, open(os.path.join(ROOT, "bench", "out", "load.json"), "w"), indent=1)
    if not a.no_write:
        write(a, res)


def write(a, res):
    runs = res["runs"]
    names = [t["table"] for t in runs[0]["tables"]]

    def med(name, key):
        return statistics.median(next(t for t in r["tables"] if t["table"] == name)[key] for r in runs)

    commit = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    pgv = psql("SHOW server_version")
    lines = [MARK, "## Warehouse loading (`bench/load`, " + time.strftime("%Y-%m-%d") + ")", "",
             f"`shoplake load postgres` into PostgreSQL {pgv} on the same machine ({cpu_model()}, "
             f"{os.cpu_count()} cores), binary `{os.path.relpath(a.bin, ROOT) if a.bin.startswith(ROOT) else a.bin}`, "
             f"commit {commit}; median of {len(runs)} first loads into a fresh schema. Rows/s per table "
             "counts the whole table's transaction (create, COPY, state row, commit, ANALYZE); "
             "the connection is not encrypted (`sslmode=disable`, same host).", ""]
    if a.note:
        lines += [a.note, ""]
    if "/release/" not in a.bin:
        lines += ["**Not a release build**: the Parquet decoding (DataFusion, parquet) and the PostgreSQL "
                  "client (sqlx) run unoptimised and take most of the loader's time; run `bench/load` "
                  "without `--bin` for the release numbers.", ""]
    lines += ["| table | columns | rows | seconds | rows/s | PostgreSQL alone, rows/s |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for n in names:
        rows = med(n, "rows")
        if rows:
            secs = med(n, "seconds")
            target = next(t for t in runs[0]["tables"] if t["table"] == n)["target"].split(".", 1)[1]
            alone = res["pg_alone"].get(n)
            alone = f"{alone['rows'] / alone['seconds']:,.0f}" if alone else ""
            lines.append(f"| {n} | {res['columns'].get(target, '?')} | {rows:,.0f} | {secs:.2f} | "
                         f"{rows / secs:,.0f} | {alone} |")
    total = statistics.median(r["rows"] for r in runs)
    secs = statistics.median(r["seconds"] for r in runs)
    lines += [f"| **all** | | {total:,.0f} | {secs:.2f} | **{total / secs:,.0f}** | |", "",
              "*PostgreSQL alone*: the loaded table written to a file with `COPY ... TO (FORMAT binary)` "
              "(PostgreSQL's own binary encoding of the same rows: as many bytes as the loader sends) and read back "
              "with a server-side `COPY ... FROM` into an empty table in one transaction: what one "
              "PostgreSQL backend ingests, whatever the client.", "",
              f"A run with nothing new: {res['noop']['process_seconds']:.2f} s for the whole process. "
              f"One day changed (100 transaction lines added, pipeline run): "
              f"{res['incremental']['rows']:,} rows in {res['incremental']['seconds']:.2f} s "
              f"({'; '.join(t['table'] + ' ' + t['action'] for t in res['incremental']['tables'] if t['action'] != 'unchanged')})."]
    write_section(MARK, lines)


if __name__ == "__main__":
    main()
