#!/usr/bin/env bash
# Install the Debian packages hearth needs that are not installed yet (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t wanted < <(cat packaging/debian-packages.txt services/*/debian-packages.txt \
  | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == *"ok installed"* ]]
}
# An entry "a|b" is satisfied by either (a package renamed between Debian releases, e.g.
# libpcap0.8 on bookworm, libpcap0.8t64 on trixie); the first one apt knows is installed.
missing=()
for entry in "${wanted[@]}"; do
  IFS='|' read -ra choices <<<"$entry"
  ok=0
  for pkg in "${choices[@]}"; do installed "$pkg" && ok=1 && break; done
  [ "$ok" -eq 1 ] && continue
  pick=${choices[0]}
  for pkg in "${choices[@]}"; do
    if apt-cache show "$pkg" >/dev/null 2>&1; then pick=$pkg; break; fi
  done
  missing+=("$pick")
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
