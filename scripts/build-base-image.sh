#!/usr/bin/env bash
# Make the base images hearth's Dockerfiles start FROM, when no registry can provide them.
#
#   debian:bookworm-slim        debootstrap --variant=minbase bookworm, then `docker import`
#   python:3.11-slim-bookworm   that plus Debian's python3 (3.11) and python3-venv
#                               (docker/base/python.Dockerfile)
#
# A tag that is already present is left alone; one that can be pulled is pulled. Only what is
# still missing is made locally, from Debian's packages. Needs root (debootstrap) and Docker.
# Settings: DEBIAN_MIRROR (default http://deb.debian.org/debian), DEBIAN_IMAGE, PYTHON_IMAGE.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_IMAGE=${DEBIAN_IMAGE:-debian:bookworm-slim}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

have() { docker image inspect "$1" >/dev/null 2>&1; }
try_pull() { docker pull -q "$1" >/dev/null 2>&1; }
say() { echo "base images: $*"; }

make_debian() {
  command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  [ "$(id -u)" -eq 0 ] || { echo "making $DEBIAN_IMAGE with debootstrap needs root" >&2; exit 1; }
  local root
  root=$(mktemp -d /var/tmp/hearth-rootfs.XXXXXX)
  trap 'rm -rf "$root"' RETURN
  say "debootstrap bookworm (minbase) from $DEBIAN_MIRROR ..."
  debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$DEBIAN_MIRROR" \
    >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  # Like Debian's own image: updates and security fixes reachable, no package cache kept.
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security bookworm-security main
SOURCES
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "hearth: debootstrap bookworm minbase" - "$DEBIAN_IMAGE" >/dev/null
  say "made $DEBIAN_IMAGE from Debian packages"
}

if have "$DEBIAN_IMAGE"; then
  say "$DEBIAN_IMAGE present"
elif try_pull "$DEBIAN_IMAGE"; then
  say "pulled $DEBIAN_IMAGE"
else
  make_debian
fi

if have "$PYTHON_IMAGE"; then
  say "$PYTHON_IMAGE present"
elif try_pull "$PYTHON_IMAGE"; then
  say "pulled $PYTHON_IMAGE"
else
  log=$(mktemp)
  docker build --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "$PYTHON_IMAGE" \
    -f docker/base/python.Dockerfile docker/base >"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
  rm -f "$log"
  say "made $PYTHON_IMAGE from $DEBIAN_IMAGE and Debian's python3"
fi
