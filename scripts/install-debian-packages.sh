#!/usr/bin/env bash
# Install the Debian packages hearth needs that are not installed yet (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t wanted < <(cat packaging/debian-packages.txt services/*/debian-packages.txt \
  | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == *"ok installed"* ]] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "debian packages: all ${#wanted[@]} present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "debian packages missing: ${missing[*]}" >&2
  echo "run as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "debian packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
