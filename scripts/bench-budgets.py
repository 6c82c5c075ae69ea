#!/usr/bin/env python3
"""The budget table `make bench` ends with: the mapping per shipped profile (criterion's medians), the arm64
binaries of the last `make build`, and the Lambda figures `lambda-bench` wrote. Exits 1 only when a budget is
exceeded by a wide margin (twice the budget), so a noisy machine does not fail it.

Usage: bench-budgets.py TARGET_DIR [LAMBDA_BENCH_JSON]
"""

import json
import os
import sys

MAPPING_BUDGET_NS = 2_000
BINARY_BUDGET_BYTES = 8 * 1024 * 1024
WIDE = 2.0

MAPPING_CASES = [
    ("genesys-conversation (webhook)", "parse_map_serialise"),
    ("genesys-conversation (EventBridge ACW)", "genesys_conversation_acw"),
    ("genesys-conversation (ACW work note)", "genesys_conversation_acw_update_note"),
    ("architect-flow-webhook (seed 000)", "architect_flow_webhook"),
    ("ivr-escalation (seed 001)", "ivr_escalation"),
]


def verdict(value, budget):
    if value <= budget:
        return "ok"
    return "OVER x%.1f" % (value / budget)


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else "target"
    failed = False
    rows = []

    for label, case in MAPPING_CASES:
        path = os.path.join(target, "criterion", "mapping", case, "new", "estimates.json")
        try:
            with open(path) as f:
                ns = json.load(f)["median"]["point_estimate"]
        except (OSError, KeyError, ValueError):
            rows.append(("mapping: " + label, "not measured (cargo bench -p shared --bench mapping)", "≤ 2 µs", "-"))
            continue
        rows.append(("mapping: " + label, "%.2f µs/event" % (ns / 1000), "≤ 2 µs", verdict(ns, MAPPING_BUDGET_NS)))
        failed |= ns > WIDE * MAPPING_BUDGET_NS

    lambda_dir = os.path.join(target, "lambda")
    names = sorted(os.listdir(lambda_dir)) if os.path.isdir(lambda_dir) else []
    binaries = [(n, os.path.join(lambda_dir, n, "bootstrap")) for n in names]
    binaries = [(n, p) for n, p in binaries if os.path.exists(p)]
    if not binaries:
        rows.append(("arm64 binaries", "not built (make build)", "< 8 MiB", "-"))
    for name, path in binaries:
        size = os.path.getsize(path)
        rows.append(("binary: " + name, "%.2f MiB" % (size / 1048576), "< 8 MiB", verdict(size, BINARY_BUDGET_BYTES)))
        failed |= size > WIDE * BINARY_BUDGET_BYTES

    print()
    print("| figure | measured | budget | verdict |")
    print("|---|---:|---:|---|")
    for row in rows:
        print("| %s | %s | %s | %s |" % row)
    print()
    print("Lambda figures (init, first and warm invocations, RSS): the lambda-bench table above.")
    if failed:
        print("a budget is exceeded by more than %.0fx" % WIDE, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
