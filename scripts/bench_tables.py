#!/usr/bin/env python3
"""Writes the tables of docs/benchmarks.md from the JSON that scripts/bench.sh
leaves in docs/bench/, between the markers <!-- tables:begin --> and
<!-- tables:end -->. Everything else in the file is prose and stays as it is."""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "docs" / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"


def load(name):
    return json.loads((BENCH / name).read_text())


def ops(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def target(t, row):
    return next((s for s in row["targets"] if s["target"] == t), None)


def ratio(row, b):
    return next((r["median"] for r in row["ratios"] if r["b"] == b), None)


def row_of(rows, workload, threads):
    return next(r for r in rows if r["workload"] == workload and r["threads"] == threads)


def verdict(value, goal, below=False):
    ok = value <= goal if below else value >= goal
    if ok:
        return "met"
    short = (value / goal - 1) * 100 if below else (1 - value / goal) * 100
    return f"missed by {abs(short):.0f}%"


def main():
    m = load("modules.json")
    f = load("find-1m.json")
    t = load("topology.json")
    rows = m["rows"]
    raw, soft = "raw aws-lc-rs", "softhsm2"
    out = []
    mach = m["machine"]
    out.append(
        f"Measured on {mach['cpu']}, {mach['cores']} cores, Linux {mach['kernel']}; "
        f"{m['duration_secs']:g} s per module and thread count, in {m['runs']} runs "
        "interleaved module by module. Ratios are medians of the run-by-run ratios."
    )
    out.append("")
    out.append("### The targets")
    out.append("")
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    goals = [
        ("ECDSA P-256 sign, 1 thread: ≥ 1.5x SoftHSM2", ratio(row_of(rows, "ecdsa-p256", 1), soft), 1.5),
        ("ECDSA P-256 sign, 2 threads: ≥ 2.5x SoftHSM2", ratio(row_of(rows, "ecdsa-p256", 2), soft), 2.5),
        ("ECDSA P-256 sign, 2 threads: ≥ 60% of raw", ratio(row_of(rows, "ecdsa-p256", 2), raw), 0.6),
        ("RSA-2048 PKCS#1 sign, 1 thread: ≥ 90% of raw", ratio(row_of(rows, "rsa2048-pkcs1", 1), raw), 0.9),
        ("RSA-2048 PKCS#1 sign, 2 threads: ≥ 90% of raw", ratio(row_of(rows, "rsa2048-pkcs1", 2), raw), 0.9),
        ("RSA-2048 PKCS#1 sign, 1 thread: ≥ 2x SoftHSM2", ratio(row_of(rows, "rsa2048-pkcs1", 1), soft), 2.0),
        ("RSA-2048 PKCS#1 sign, 2 threads: ≥ 2x SoftHSM2", ratio(row_of(rows, "rsa2048-pkcs1", 2), soft), 2.0),
        ("AES-256-GCM 4 KiB, 1 thread: ≥ 2x SoftHSM2", ratio(row_of(rows, "aes-gcm-4k", 1), soft), 2.0),
        ("AES-256-GCM 4 KiB, 2 threads: ≥ 2x SoftHSM2", ratio(row_of(rows, "aes-gcm-4k", 2), soft), 2.0),
        ("find by label among 2,000 keys, 1 thread: ≥ 1,000x SoftHSM2", ratio(row_of(rows, "find-2000", 1), soft), 1000),
    ]
    for name, value, goal in goals:
        shown = f"{value:,.2f}x" if value < 100 else f"{value:,.0f}x"
        out.append(f"| {name} | {shown} | {verdict(value, goal)} |")
    for r in f["rows"]:
        p99 = r["targets"][0]["p99_us"]
        out.append(
            f"| find among 1,000,000 keys, {r['threads']} thread{'s' if r['threads'] > 1 else ''}: p99 < 1 ms "
            f"| p99 {p99:,.0f} µs | {verdict(p99, 1000, below=True)} |"
        )
    local = t["ways"][0]["summary"]["p50_us"]
    pooled = t["ways"][1]["summary"]["p50_us"] / local
    fresh = t["ways"][2]["summary"]["p50_us"] / local
    net = "netem" if t["added_rtt_us"] else "loopback only, no netem"
    out.append(f"| local vs central with a handshake per request: ≥ 20x lower p50 ({net}) | {fresh:,.1f}x | {verdict(fresh, 20)} |")
    out.append(f"| local vs pooled central: ≥ 3x lower p50 ({net}) | {pooled:,.1f}x | {verdict(pooled, 3)} |")
    out.append("")
    out.append("### Every workload")
    out.append("")
    out.append("ops/s, and ihsm's latency; `—` where a module lacks the mechanism "
               "(SoftHSM2 2.6 has no ML-DSA or ML-KEM, and OAEP with SHA-1 only) or the "
               "ceiling has nothing to do (a find).")
    out.append("")
    out.append("| workload | threads | ihsm ops/s | ihsm p50 / p99 µs | SoftHSM2 ops/s | raw ops/s | ihsm / SoftHSM2 | ihsm / raw |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        i = target("ihsm", r)
        s = target(soft, r)
        w = target(raw, r)
        rs, rw = ratio(r, soft), ratio(r, raw)
        out.append(
            f"| {r['workload']} | {r['threads']} | {ops(i['ops_per_sec'])} | "
            f"{i['p50_us']:,.1f} / {i['p99_us']:,.1f} | "
            f"{ops(s['ops_per_sec']) if s else '—'} | {ops(w['ops_per_sec']) if w else '—'} | "
            f"{(f'{rs:,.2f}x' if rs < 100 else f'{rs:,.0f}x') if rs else '—'} | {f'{rw:.2f}x' if rw else '—'} |"
        )
    out.append("")
    out.append("### Find among 1,000,000 keys (ihsm only)")
    out.append("")
    out.append("| threads | ops/s | p50 µs | p99 µs | p99.9 µs |")
    out.append("|---|---|---|---|---|")
    for r in f["rows"]:
        s = r["targets"][0]
        out.append(f"| {r['threads']} | {ops(s['ops_per_sec'])} | {s['p50_us']:,.1f} | {s['p99_us']:,.1f} | {s['p999_us']:,.1f} |")
    out.append("")
    out.append(f"### Host HSM versus central HSM ({t['network']})")
    out.append("")
    out.append(f"ECDSA P-256 sign, one request at a time; PIN hashing {t['pin_iterations']:,} iterations.")
    out.append("")
    out.append("| way | ops/s | p50 µs | p99 µs | p99.9 µs | p50 / host |")
    out.append("|---|---|---|---|---|---|")
    for w in t["ways"]:
        s = w["summary"]
        out.append(f"| {w['name']} | {ops(s['ops_per_sec'])} | {s['p50_us']:,.1f} | {s['p99_us']:,.1f} | {s['p999_us']:,.1f} | {s['p50_us'] / local:,.1f}x |")
    table = "\n".join(out)
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        sys.exit(f"{DOC}: the markers {BEGIN} and {END} are missing")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    print(f"wrote the tables of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
