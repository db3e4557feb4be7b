#!/usr/bin/env python3
"""DuckDB next to shoplake's built-in reports, over the same Delta tables.

Runs in the bench virtualenv (`benchlib.bench_venv()`: pinned `duckdb` and
`deltalake` from PyPI); `bench.py` calls it once per data set, after it has
timed shoplake's reports and saved each report's CSV output.

What it does, per data set:

1. The report SQL comes from the source of truth: the names and parameter
   defaults from the binary (`shoplake report --list`), the text from
   `sql/reports/NAME.sql` (the files the binary embeds with `include_str!`;
   the header's `-- params:` must match what the binary lists, or the binary
   was built from other sources and the run stops). Defaults are substituted
   the way `Report::render` does (`from` 0001-01-01, `to` 9999-12-31), then
   the DataFusion-only spellings are translated (TRANSLATIONS, SESSION).
2. Every table a report names (`curated.daily_kpis`, ...) becomes a DuckDB view
   `curated.daily_kpis` over `read_parquet([...])` of the Parquet files of the
   table's *current* Delta version, as the Delta log lists them
   (`deltalake.DeltaTable(path).file_uris()`); a directory glob would also read
   files that were removed from the table but not yet vacuumed. Partition
   columns (`date`) come from the Hive-style paths, typed from the Delta schema.
   A table that has no Delta log or no files (shoplake answers from an empty
   table then) becomes an empty view typed from `shoplake catalog describe`.
   No DuckDB extension is loaded (nothing is downloaded).
3. In process: one connection, the views created once, then per report
   1 warm-up + N runs of `execute(sql).fetchall()`, median.
4. Fresh process: 1 + N runs of `python -c` (import duckdb, connect, create
   the views this report needs from a file list written beforehand, run the
   query, print CSV), median wall time under GNU time like shoplake's
   process time. The Delta-log resolution is not in either figure; it is
   timed separately (`resolve`: deltalake opening the report's tables and
   listing their files, in process, median).
5. The answers are compared with shoplake's: column names, row count, per
   column the number of NULLs, the sum of each numeric column (within what
   the printed precision can account for) and the multiset of every other
   column's values. A ratio over different answers is meaningless, so every
   difference is a mismatch, printed loudly and returned.

Usage (bench.py does this):
    duckdb_side.py --bin BIN --data DIR --shoplake-csv DIR --runs N --work DIR --out FILE.json
"""
import argparse
import collections
import csv
import datetime
import decimal
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

import deltalake
import duckdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZONES = ("raw", "processed", "curated", "quarantine")

# DataFusion -> DuckDB: (DataFusion, DuckDB, regex, replacement, why).
# Applied in order to the rendered SQL of every report; each report records
# which ones it needed.
TRANSLATIONS = [
    ("to_char(d, '%Y-%m')", "strftime(d, '%Y-%m')", r"\bto_char\s*\(", "strftime(",
     "DataFusion's to_char takes chrono format codes; DuckDB's to_char does not exist, its strftime takes the same codes "
     "in the same argument order"),
]

# Session settings that give DuckDB DataFusion's semantics where the same SQL
# text means something else (set on every connection, in and out of process).
SESSION = [
    ("SET default_null_order = 'nulls_last_on_asc_first_on_desc'",
     "ORDER BY puts NULLs last ascending and first descending in DataFusion (DuckDB: last in both)"),
    ("SET integer_division = true",
     "INT / INT is integer division in DataFusion (DuckDB: a DOUBLE)"),
]

# Spellings that need no change, checked in DuckDB 2.0: date_trunc('week', ts)
# (Monday in both), DATE 'x' - INTERVAL '1' DAY, MEDIAN, FIRST_VALUE/LAG,
# SUM(COUNT(*)) OVER (), ORDER BY + LIMIT inside a CTE, CAST(NULL AS VARCHAR).

# `shoplake catalog describe` types -> DuckDB (for empty tables only).
DESCRIBE_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp(µs, UTC)": "TIMESTAMPTZ",
    "decimal(18,2)": "DECIMAL(18,2)",
    "list<struct<product_id, sku, name, category, brand, price decimal(18,2), quantity int>>":
        "STRUCT(product_id VARCHAR, sku VARCHAR, name VARCHAR, category VARCHAR, brand VARCHAR, "
        "price DECIMAL(18,2), quantity INTEGER)[]",
}

# Delta primitive types -> DuckDB (partition columns only).
DELTA_TYPES = {
    "string": "VARCHAR", "long": "BIGINT", "integer": "INTEGER", "short": "SMALLINT",
    "byte": "TINYINT", "double": "DOUBLE", "float": "FLOAT", "boolean": "BOOLEAN",
    "date": "DATE", "timestamp": "TIMESTAMPTZ", "timestamp_ntz": "TIMESTAMP",
}

PROCESS_CODE = r"""
import csv, sys, duckdb
con = duckdb.connect()
con.execute(open(sys.argv[1]).read())
cur = con.execute(open(sys.argv[2]).read())
w = csv.writer(sys.stdout, lineterminator="\n")
w.writerow([d[0] for d in cur.description])
w.writerows(cur.fetchall())
"""


def sh(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


# ---------------------------------------------------------------- report SQL

def parse_params(text):
    """`from, to, limit=20` -> [("from", None), ("to", None), ("limit", "20")]"""
    out = []
    for p in (x.strip() for x in text.split(",")):
        if p:
            k, _, v = p.partition("=")
            out.append((k.strip(), v.strip() if "=" in p else None))
    return out


def header_params(sql):
    for line in sql.splitlines():
        s = line.strip()
        if not s.startswith("--"):
            break
        k, _, v = s[2:].partition(":")
        if k.strip() == "params":
            return parse_params(v)
    return []


def render(sql, params):
    """The SQL with default parameters, as `Report::render` does it."""
    for name, default in params:
        value = default if default is not None else {"from": "0001-01-01", "to": "9999-12-31"}.get(name)
        if value is None:
            raise ValueError(f"parameter {name} has no default")
        sql = sql.replace("{{" + name + "}}", value)
    if "{{" in sql:
        raise ValueError("placeholder left after rendering: " + sql[sql.index("{{"):][:40])
    return sql


def translate(sql):
    applied = []
    for frm, to, pat, rep, _why in TRANSLATIONS:
        sql, n = re.subn(pat, rep, sql, flags=re.IGNORECASE)
        if n:
            applied.append(f"{frm} -> {to}")
    return sql, applied


def load_reports(binary, data):
    """[(name, duckdb_sql, translations applied)] for every report the binary lists.

    The binary cannot print a report's SQL yet; a `shoplake report NAME --sql`
    (render with the given parameters, print, do not run) would replace the
    file read, `render` and the params check here."""
    out = csv.reader(sh([binary, "--data", data, "report", "--list", "--format", "csv"]).stdout.splitlines())
    next(out)
    reports = []
    for name, params, _desc in out:
        path = os.path.join(ROOT, "sql", "reports", f"{name}.sql")
        if not os.path.exists(path):
            raise SystemExit(f"report {name}: no {path} (not a built-in report?); its SQL cannot be taken from the source")
        text = open(path).read()
        if header_params(text) != parse_params(params):
            raise SystemExit(f"report {name}: the binary lists params {params!r} but {path} declares "
                             f"{header_params(text)!r}: the binary was built from other sources")
        sql, applied = translate(render(text, parse_params(params)))
        reports.append((name, sql, applied))
    return reports


def table_refs(sql):
    body = "\n".join(l.split("--", 1)[0] for l in sql.splitlines())
    return sorted(set(re.findall(r"\b(" + "|".join(ZONES) + r")\.([a-z_][a-z0-9_]*)\b", body, re.IGNORECASE)))


# ---------------------------------------------------------------- tables

def q(s):
    return "'" + s.replace("'", "''") + "'"


def resolve(data, zone, table):
    """(files, {partition column: DuckDB type}) of the table's current version,
    or (None, None) when there is no Delta table."""
    path = os.path.join(data, "lake", zone, table)
    if not os.path.isdir(os.path.join(path, "_delta_log")):
        return None, None
    dt = deltalake.DeltaTable(path)
    files = [f[len("file://"):] if f.startswith("file://") else f for f in dt.file_uris()]
    types = {f.name: f.type for f in dt.schema().fields}
    parts = {}
    for c in dt.metadata().partition_columns:
        t = getattr(types[c], "type", str(types[c]))
        if t.startswith("decimal"):
            parts[c] = t.upper()
        elif t in DELTA_TYPES:
            parts[c] = DELTA_TYPES[t]
        else:
            raise SystemExit(f"{zone}.{table}: partition column {c} has type {t}, not mapped")
    return files, parts


def empty_view(binary, data, zone, table):
    d = json.loads(sh([binary, "--data", data, "catalog", "describe", f"{zone}.{table}", "--format", "json"]).stdout)
    cols = []
    for c in d["columns"]:
        if c["type"] not in DESCRIBE_TYPES:
            raise SystemExit(f"{zone}.{table}.{c['name']}: type {c['type']} not mapped to DuckDB")
        cols.append(f'CAST(NULL AS {DESCRIBE_TYPES[c["type"]]}) AS "{c["name"]}"')
    return f"SELECT {', '.join(cols)} WHERE false"


def view_sql(binary, data, zone, table, files, parts):
    if not files:
        body = empty_view(binary, data, zone, table)
    else:
        opts = "hive_partitioning = false"
        if parts:
            opts = "hive_partitioning = true, hive_types = {" + ", ".join(f"{q(c)}: {t}" for c, t in parts.items()) + "}"
        body = f"SELECT * FROM read_parquet([{', '.join(q(f) for f in files)}], {opts})"
    return f"CREATE SCHEMA IF NOT EXISTS {zone};\nCREATE OR REPLACE VIEW {zone}.{table} AS {body};\n"


# ---------------------------------------------------------------- answers

def text_of(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return str(v)


def compare(shoplake_csv, cols, rows):
    """Differences between shoplake's CSV output and DuckDB's rows (empty: same answer)."""
    got = list(csv.reader(open(shoplake_csv, newline="")))
    if not got:
        return ["shoplake printed nothing"]
    s_cols, s_rows = got[0], got[1:]
    problems = []
    if s_cols != cols:
        problems.append(f"columns differ: shoplake {s_cols} vs DuckDB {cols}")
        return problems
    if len(s_rows) != len(rows):
        problems.append(f"row count: shoplake {len(s_rows)} vs DuckDB {len(rows)}")
    for i, name in enumerate(cols):
        s_vals = [r[i] for r in s_rows]
        d_vals = [r[i] for r in rows]
        s_null = sum(v == "" for v in s_vals)
        d_null = sum(v is None for v in d_vals)
        numeric = any(v is not None for v in d_vals) and all(
            v is None or (isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)) for v in d_vals)
        if numeric:
            try:
                s_num = [float(v) for v in s_vals if v != ""]
            except ValueError:
                problems.append(f"{name}: numeric in DuckDB, not in shoplake ({s_vals[:3]})")
                continue
            if s_null != d_null:
                problems.append(f"{name}: NULLs shoplake {s_null} vs DuckDB {d_null}")
            a = math.fsum(s_num)
            b = math.fsum(float(v) for v in d_vals if v is not None)
            # each printed value may differ by one unit of its last place
            # (ROUND/DECIMAL casts of a float, or of AVG/MEDIAN computed in
            # another type); integers must match exactly.
            decs = [len(v.split(".", 1)[1]) for v in s_vals if "." in v and "e" not in v.lower()]
            unit = 10.0 ** -max(decs) if decs else 0.0
            tol = len(s_num) * unit + 1e-9 * max(abs(a), abs(b), 1.0)
            if abs(a - b) > tol:
                problems.append(f"{name}: sum shoplake {a!r} vs DuckDB {b!r} (tolerance {tol:.3g})")
        else:
            sv = collections.Counter(s_vals)
            dv = collections.Counter(text_of(v) for v in d_vals)
            if sv != dv:
                only_s = sorted((sv - dv).elements())[:3]
                only_d = sorted((dv - sv).elements())[:3]
                problems.append(f"{name}: values differ (shoplake only: {only_s}, DuckDB only: {only_d})")
    return problems


# ---------------------------------------------------------------- timing

def timed_process(setup_path, sql_path):
    full = ["/usr/bin/time", "-f", "__TIME__ %e %M", sys.executable, "-c", PROCESS_CODE, setup_path, sql_path]
    t0 = time.perf_counter()
    p = subprocess.run(full, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip()[-2000:])
    m = re.search(r"__TIME__ ([\d.]+) (\d+)", p.stderr)
    return wall, (int(m.group(2)) / 1024 if m else float("nan")), p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--shoplake-csv", required=True, help="directory of NAME.csv, shoplake's output")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", required=True, help="directory for the per-report setup and query files")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", help="these reports only")
    a = ap.parse_args()
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    os.makedirs(a.work, exist_ok=True)

    reports = load_reports(a.bin, a.data)
    if a.only:
        reports = [r for r in reports if r[0] in a.only]
    session = "".join(s + ";\n" for s, _ in SESSION)

    # Delta log -> file lists, timed (1 + N, median) per table
    tables, views, resolve_s = {}, {}, {}
    for zone, table in sorted({t for _, sql, _ in reports for t in table_refs(sql)}):
        times = []
        for _ in range(a.runs + 1):
            t0 = time.perf_counter()
            files, parts = resolve(a.data, zone.lower(), table.lower())
            times.append(time.perf_counter() - t0)
        key = f"{zone.lower()}.{table.lower()}"
        tables[key] = {"files": len(files or []), "delta": files is not None}
        resolve_s[key] = statistics.median(times[1:])
        views[key] = view_sql(a.bin, a.data, zone.lower(), table.lower(), files, parts)

    # what every fresh process pays before it connects: Python and `import duckdb`
    imports = []
    for _ in range(a.runs + 1):
        t0 = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%e", sys.executable, "-c", "import duckdb"], check=True, capture_output=True)
        imports.append(time.perf_counter() - t0)

    con = duckdb.connect()
    con.execute(session + "".join(views.values()))
    res = {
        "duckdb_version": duckdb.__version__,
        "deltalake_version": deltalake.__version__,
        "threads": con.execute("SELECT current_setting('threads')").fetchall()[0][0],
        "tables": tables,
        "python_import_s": statistics.median(imports[1:]),
        "translations": [{"from": f, "to": t, "why": w} for f, t, _p, _r, w in TRANSLATIONS],
        "session": [{"sql": s, "why": w} for s, w in SESSION],
        "reports": {},
    }
    for name, sql, applied in reports:
        refs = [f"{z.lower()}.{t.lower()}" for z, t in table_refs(sql)]
        r = {"tables": refs, "translations": applied, "resolve_s": sum(resolve_s[t] for t in refs)}
        res["reports"][name] = r
        try:
            times = []
            for _ in range(a.runs + 1):
                t0 = time.perf_counter()
                cur = con.execute(sql)
                rows = cur.fetchall()
                times.append(time.perf_counter() - t0)
            cols = [d[0] for d in cur.description]
        except duckdb.Error as e:
            r["error"] = f"DuckDB cannot run the translated SQL: {e}"
            r["mismatch"] = [r["error"]]
            print(f"MISMATCH {name}: {r['error']}", file=sys.stderr, flush=True)
            continue
        r["query_median_s"] = statistics.median(times[1:])
        r["rows"] = len(rows)
        r["mismatch"] = compare(os.path.join(a.shoplake_csv, f"{name}.csv"), cols, rows)

        setup_path = os.path.join(a.work, f"{name}.setup.sql")
        sql_path = os.path.join(a.work, f"{name}.sql")
        open(setup_path, "w").write(session + "".join(views[t] for t in refs))
        open(sql_path, "w").write(sql)
        try:
            walls, rss = [], []
            for _ in range(a.runs + 1):
                w, m, out = timed_process(setup_path, sql_path)
                walls.append(w)
                rss.append(m)
            r["process_median_s"] = statistics.median(walls[1:])
            r["process_peak_rss_mib"] = max(rss)
            n = len(list(csv.reader(out.splitlines()))) - 1
            if n != len(rows):
                r["mismatch"].append(f"the fresh process printed {n} rows, in process {len(rows)}")
        except RuntimeError as e:
            r["mismatch"].append(f"the fresh DuckDB process failed: {e}")
        for p in r["mismatch"]:
            print(f"MISMATCH {name}: {p}", file=sys.stderr, flush=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
