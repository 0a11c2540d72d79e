#!/usr/bin/env bash
# Build every hearth image without needing a registry (`make images`).
#
# 1. The base images (debian:bookworm-slim, python:3.11-slim-bookworm) are pulled, or made
#    from Debian's packages when they cannot be (scripts/build-base-image.sh).
# 2. Python wheels are built on the host (which reaches PyPI through its own settings) into
#    docker/wheels/, and the Dockerfile installs only from there (PIP_NO_INDEX=1).
# 3. hearth-edge (the gateway's Rust gRPC front door) is built on the host into docker/edge/.
# 4. Each image is built; Docker's layer cache makes a rebuild after a code change quick.
#    Prometheus (prom/prometheus) is made from Debian's `prometheus` package when it cannot
#    be pulled.
# Usage: scripts/build-images.sh [IMAGE...]   (default: all; names as in the list below)
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${HEARTH_TAG:-latest}
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-prom/prometheus:v2.42.0}
PIP=${PIP:-.venv/bin/pip}
LOG=build/images.log
mkdir -p build
: >"$LOG"

# name | Dockerfile | target: one multi-target Dockerfile, one build stage for every Python image.
# Product images first (wake, audio, ci, gateway: no lab code, no pytest), then the lab host
# and the house's audio boxes.
IMAGES=(
  "wake|Dockerfile|wake"
  "audio|Dockerfile|audio"
  "ci|Dockerfile|ci"
  "gateway|Dockerfile|gateway"
  "labhost|Dockerfile|labhost"
  "station|Dockerfile|station"
  "zone|Dockerfile|zone"
)

wanted=("$@")
want() { [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $1 "* ]]; }
now() { date +%s; }
started=$(now)

scripts/build-base-image.sh

echo "images: wheels for the Python images -> docker/wheels/"
[ -x "$PIP" ] || PIP="python3 -m pip"
requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
python3 - >"$requirements" <<'PY'
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
# What the Dockerfile's build stage installs besides hearth's own dependencies.
print("\n".join([*deps, "grpcio-tools", "mypy-protobuf", "googleapis-common-protos",
                 "setuptools", "wheel"]))
PY
$PIP wheel -q --disable-pip-version-check -w docker/wheels -r "$requirements" >>"$LOG" 2>&1 \
  || { tail -20 "$LOG" >&2; exit 1; }

if want gateway; then
  echo "images: hearth-edge for the gateway -> docker/edge/"
  rm -f docker/edge/hearth-edge
  scripts/build-edge.sh docker/edge/hearth-edge >>"$LOG" 2>&1 || { tail -20 "$LOG" >&2; exit 1; }
fi

build() {
  local tag=$1 file=$2 target=$3 t0
  t0=$(now)
  echo "images: building $tag ($file${target:+ --target $target}) ..."
  if ! docker build --build-arg PIP_NO_INDEX=1 -f "$file" ${target:+--target "$target"} \
      -t "$tag" . >>"$LOG" 2>&1; then
    echo "images: building $tag failed; the end of $LOG:" >&2
    tail -30 "$LOG" >&2
    exit 1
  fi
  echo "images: built $tag in $(($(now) - t0)) s"
}

for entry in "${IMAGES[@]}"; do
  IFS='|' read -r name file target <<<"$entry"
  want "$name" && build "hearth-$name:$TAG" "$file" "$target"
done

if want prometheus; then
  if docker image inspect "$PROMETHEUS_IMAGE" >/dev/null 2>&1; then
    echo "images: $PROMETHEUS_IMAGE present"
  elif docker pull -q "$PROMETHEUS_IMAGE" >/dev/null 2>&1; then
    echo "images: pulled $PROMETHEUS_IMAGE"
  else
    build "$PROMETHEUS_IMAGE" docker/prometheus/Dockerfile ""
  fi
fi
echo "images: all done in $(($(now) - started)) s (log: $LOG)"
