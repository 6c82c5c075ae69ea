#!/usr/bin/env bash
# Prints each Lambda binary `make build` produced, with its size against the 8 MB budget (issue 14).
set -euo pipefail
dir="${CARGO_TARGET_DIR:-target}/lambda"
echo "arm64 Lambda binaries (budget: < 8 MiB each):"
for f in "$dir"/*/bootstrap; do
  [ -e "$f" ] || { echo "  none in $dir"; exit 0; }
  size=$(stat -c %s "$f")
  awk -v name="$(basename "$(dirname "$f")")" -v s="$size" \
    'BEGIN { printf "  %-20s %5.2f MiB%s\n", name, s / 1048576, (s >= 8388608 ? "  over budget" : "") }'
done
