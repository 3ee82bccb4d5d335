#!/usr/bin/env bash
# Installs the fleet parts the server suites, `relay bench replicas` and scripts/ha-lab.sh start
# themselves, from Debian's packages, when missing: redis-server, pgbouncer, haproxy, and for the
# high-availability lab patroni and etcd-server. The packages' own services are not started (a
# policy-rc.d refuses while installing, when none is in place); the tests run each program in the
# foreground on a free port of its own. Needs root and apt; says what to do otherwise.
# Prints nothing when everything is there. RELAY_APT_UPDATED=1: apt-get update already ran.
set -euo pipefail
declare -A program=([redis-server]=/usr/bin/redis-server [pgbouncer]=/usr/sbin/pgbouncer [haproxy]=/usr/sbin/haproxy
  [patroni]=/usr/bin/patroni [etcd-server]=/usr/bin/etcd)
missing=()
for pkg in "${!program[@]}"; do
  [ -x "${program[$pkg]}" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-fleet: the replica suites and the HA lab need Debian's ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
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
# patroni's first DCS alternative is python3-etcd; with --no-install-recommends apt takes it.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for pkg in "${missing[@]}"; do
  [ -x "${program[$pkg]}" ] || { echo "install-fleet: $pkg did not install ${program[$pkg]} ($(dpkg -L "$pkg" 2>/dev/null | grep -E '/s?bin/' | tr '\n' ' '))" >&2; exit 1; }
done
# etcd-server ships an etcd.service on the default 127.0.0.1:2379. The policy above keeps it from
# starting; should a system have started it anyway (an existing policy-rc.d that allows it), stop and
# disable it: nothing here uses it (scripts/ha-lab.sh runs an etcd of its own on free ports).
if [[ " ${missing[*]} " == *" etcd-server "* ]]; then
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/etcd ] && /etc/init.d/etcd status >/dev/null 2>&1; then
    /etc/init.d/etcd stop >/dev/null 2>&1 || true
  fi
fi
