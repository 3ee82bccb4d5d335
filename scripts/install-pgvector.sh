#!/usr/bin/env bash
# Builds and installs pgvector for the local PostgreSQL server from Debian's own
# source package (trixie ships pgvector 0.8.x; bookworm's is too old).
# The mirror is taken from this machine's apt sources: no host is written here.
# It is compiled with pgvector's own default flags (-march=native): it runs on the machine
# that built it, and its distance loops are several times faster vectorised.
# Usage: install-pgvector.sh [--force] [PG_MAJOR]   (default: the newest installed server)
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
pg_major="${1:-}"
if [ -z "$pg_major" ]; then
  pg_major=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
fi
[ -n "$pg_major" ] || { echo "install-pgvector: no PostgreSQL server under /usr/lib/postgresql" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "install-pgvector: must run as root (apt-get, make install)" >&2; exit 1; }

if [ "$force" = 0 ] && [ -f "/usr/share/postgresql/$pg_major/extension/vector.control" ]; then
  echo "install-pgvector: vector already installed for PostgreSQL $pg_major"
  exit 0
fi

# The first Debian archive URI in the machine's own sources (deb822 or one-line form).
mirror=$( { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true;
            grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' || true; } \
          | grep -E '/debian/?$' | grep -v security | head -n 1 || true)
[ -n "$mirror" ] || { echo "install-pgvector: no Debian mirror found in /etc/apt sources" >&2; exit 1; }

src_list=/etc/apt/sources.list.d/relay-pgvector-src.sources
if [ ! -f "$src_list" ]; then
  cat > "$src_list" <<SRC
Types: deb-src
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "postgresql-server-dev-$pg_major" dpkg-dev make gcc >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chown _apt "$work" 2>/dev/null || true  # apt-get source downloads as the unprivileged _apt user
cd "$work"
apt-get source -qq --download-only pgvector >/dev/null
dpkg-source -x --no-check ./pgvector_*.dsc src >/dev/null
cd src
version=$(dpkg-parsechangelog -S Version 2>/dev/null || echo unknown)
make -s PG_CONFIG="/usr/lib/postgresql/$pg_major/bin/pg_config" >/dev/null
make -s PG_CONFIG="/usr/lib/postgresql/$pg_major/bin/pg_config" install >/dev/null
echo "install-pgvector: built and installed pgvector $version for PostgreSQL $pg_major"
