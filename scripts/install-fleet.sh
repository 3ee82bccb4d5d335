#!/usr/bin/env bash
# Installs the fleet parts the server suites and `relay bench replicas` start themselves, from
# Debian's packages, when missing: redis-server, pgbouncer, haproxy. The packages' own services are
# not started (a policy-rc.d refuses while installing, when none is in place); the tests run each
# program in the foreground on a free port of its own. Needs root and apt; says what to do otherwise.
# Prints nothing when everything is there. RELAY_APT_UPDATED=1: apt-get update already ran.
set -euo pipefail
declare -A program=([redis-server]=/usr/bin/redis-server [pgbouncer]=/usr/sbin/pgbouncer [haproxy]=/usr/sbin/haproxy)
missing=()
for pkg in "${!program[@]}"; do
  [ -x "${program[$pkg]}" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-fleet: the replica suites need Debian's ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install-fleet: installing Debian's ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi
trap '[ $own_policy = 1 ] && rm -f "$policy"' EXIT
[ "${RELAY_APT_UPDATED:-}" = 1 ] || apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for pkg in "${missing[@]}"; do
  [ -x "${program[$pkg]}" ] || { echo "install-fleet: $pkg did not install ${program[$pkg]}" >&2; exit 1; }
done
