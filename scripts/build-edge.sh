#!/usr/bin/env bash
# Build hearth-edge (the gateway's Rust gRPC front door) and install it at $1.
# Without cargo the gateway still works, serving gRPC from Python at about twice the latency.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:?usage: scripts/build-edge.sh DEST}
if ! command -v cargo >/dev/null 2>&1; then
  echo "build-edge: cargo not found; the gateway will serve gRPC from Python" >&2
  exit 0
fi
cargo build --quiet --release --locked --manifest-path services/gateway/edge/Cargo.toml
install -D -m 755 services/gateway/edge/target/release/hearth-edge "$dest"
