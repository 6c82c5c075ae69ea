#!/usr/bin/env bash
# The mapping pipeline of BASE (a git revision) against the working tree, in one process, interleaved
# (scripts/mapping-ab/main.rs): on a shared host whose speed drifts by tens of percent between runs, separate
# benchmark runs cannot tell a 5 % change; this can. Usage: scripts/mapping-ab.sh BASE [BLOCKS]
set -euo pipefail
base_rev=${1:?usage: scripts/mapping-ab.sh BASE [BLOCKS]}
blocks=${2:-200}
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
base_commit=$(git -C "$root" rev-parse --verify --quiet "$base_rev^{commit}") || {
  echo "mapping-ab: $base_rev is not a revision of $root" >&2
  exit 2
}
# One directory per run (runs may overlap); the build cache is shared between runs.
mkdir -p "${TMPDIR:-/tmp}/mapping-ab"
work=$(mktemp -d "${TMPDIR:-/tmp}/mapping-ab/run.XXXXXX")
target=${MAPPING_AB_TARGET:-${TMPDIR:-/tmp}/mapping-ab/target}
mkdir -p "$work/ab/src"
git -C "$root" worktree add --quiet --detach "$work/base" "$base_commit"
trap 'git -C "$root" worktree remove --force "$work/base"; rm -rf "$work"' EXIT
# Two packages may not share a name in one build: the base is renamed.
sed -i 's/^name = "shared"$/name = "shared-base"/' "$work/base/shared/Cargo.toml"
grep -q '^name = "shared-base"$' "$work/base/shared/Cargo.toml" || {
  echo "mapping-ab: could not rename the base's shared package" >&2
  exit 1
}
cp "$root/scripts/mapping-ab/main.rs" "$work/ab/src/main.rs"
cp "$root/Cargo.lock" "$work/ab/Cargo.lock"
cat > "$work/ab/Cargo.toml" <<TOML
[package]
name = "mapping-ab"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
base = { path = "$work/base/shared", package = "shared-base" }
new = { path = "$root/shared", package = "shared" }
serde_json = "1"

# As the workspace builds the functions (Cargo.toml): size-optimised, the hot path at opt-level 3.
[profile.release]
opt-level = "s"
lto = "fat"
codegen-units = 1
[profile.release.package.shared]
opt-level = 3
[profile.release.package.shared-base]
opt-level = 3
[profile.release.package.serde_json]
opt-level = 3
[profile.release.package.sha2]
opt-level = 3
[profile.release.package.memchr]
opt-level = 3

[workspace]
TOML
CARGO_TARGET_DIR="$target" cargo build --quiet --release --manifest-path "$work/ab/Cargo.toml"
echo "base: $(git -C "$root" rev-parse --short "$base_commit"); new: the working tree"
"$target/release/mapping-ab" "$root/shared/tests/fixtures" "$blocks"
