#!/usr/bin/env bash
# Installs Debian's `chromium` when it is missing: the browser client and the canary status page are tested in headless
# Chromium, driven by playwright-core. Needs root and apt; says what to do otherwise.
# Prints nothing when Chromium is already there.
set -euo pipefail
if [ -n "${RELAY_TEST_CHROMIUM:-}" ] && [ -x "$RELAY_TEST_CHROMIUM" ]; then exit 0; fi
if command -v chromium >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-chromium: the browser tests (client, canary status page) need Chromium; install Debian's 'chromium' package (apt-get install chromium) as root, or set RELAY_TEST_CHROMIUM to a Chromium binary" >&2
  exit 1
fi
echo "install-chromium: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
[ "${RELAY_APT_UPDATED:-}" = 1 ] || apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
