#!/usr/bin/env bash
# Installs Debian's `prometheus` package (the server and promtool) when either is missing:
# the observability suite checks /metrics/memory with promtool and scrapes it with a real
# Prometheus. Needs root and apt; says what to do otherwise.
set -euo pipefail
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-prometheus: promtool and prometheus are needed by the observability tests; install Debian's 'prometheus' package (apt-get install prometheus) as root" >&2
  exit 1
fi
echo "install-prometheus: installing Debian's prometheus package (promtool, prometheus)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null && command -v prometheus >/dev/null
