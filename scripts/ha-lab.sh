#!/usr/bin/env bash
# A throwaway high-availability lab: one etcd, two Patroni-managed PostgreSQL nodes and HAProxy
# (a `primary` port that follows Patroni's leader, a `replica` port on the streaming standby), all
# on free ports of 127.0.0.1, under ONE temporary folder, started in the background without systemd.
# Used by the failover tests (test/helpers/ha-lab.ts) and by hand.
#
#   scripts/ha-lab.sh up              starts it; prints KEY=value lines last (see below), and writes
#                                     them to <folder>/state.env too
#   scripts/ha-lab.sh status [dir]    `patronictl list` and which node is the primary
#   scripts/ha-lab.sh down [dir]      stops every process by its recorded PID, removes the folder
#   scripts/ha-lab.sh kill-node nodeN [dir]   kill -9 of that node's Patroni and postmaster
#   scripts/ha-lab.sh start-node nodeN [dir]  starts that node's Patroni again (it rejoins, pg_rewind)
#
# `status`, `down`, `kill-node` and `start-node` take the folder from their argument or
# RELAY_HA_LAB. The programs come from Debian's etcd-server, patroni, haproxy and postgresql-15
# packages (scripts/install-fleet.sh installs the first three). As root, PostgreSQL/Patroni run as
# the `postgres` OS user and etcd as `etcd` (PostgreSQL refuses root), HAProxy as root; as another
# user everything runs as that user. Every process logs into the folder: etcd/etcd.log,
# nodeN/patroni.log, nodeN/pglog/postgresql.log, haproxy/haproxy.log (its server up/down
# transitions), db-setup.log (`relay db setup`'s stderr).
#
# AUTH: trust for every connection from 127.0.0.1 and the folder's unix sockets, replication
# included. It is a lab on loopback ports; never copy this pg_hba into anything real.
#
# Timings (env RELAY_HA_TTL, RELAY_HA_LOOP_WAIT, RELAY_HA_RETRY_TIMEOUT override them):
# Debian's Patroni 3.0.2 enforces NO minimum for ttl/loop_wait/retry_timeout: validator.py (line
# 328) only checks `Optional("ttl"): int` under bootstrap.dcs, and config.py
# (_safe_copy_dynamic_configuration, line 249) just does int(value). The "ttl >= 20, loop_wait >= 1,
# retry_timeout >= 3" clamp is in later Patroni releases (their docs: "minimum possible value: 20"),
# and etcd itself grants a lease no shorter than ~2 s (1.5 x election timeout). The one rule that
# matters is Patroni's documented loop_wait + 2 x retry_timeout <= ttl (a primary that cannot reach
# the DCS must demote itself before its leader key expires). Defaults: ttl 10, loop_wait 2,
# retry_timeout 4 (2 + 2x4 = 10): a kill -9 of the primary fails over in about ttl seconds, while a
# primary still has 8 s of slack for a stalled loop on a loaded 2-core CI machine before it loses
# its lock. On a newer Patroni that clamps ttl to 20 the same values stay valid (just slower).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "ha-lab: $*" >&2; }
die() { log "$*"; exit 1; }

# The newest PostgreSQL installation's bin folder (like test/helpers/pg-cluster.ts's postgresBinDir).
pg_bin_dir() {
  if [ -n "${RELAY_TEST_PG_BINDIR:-}" ]; then
    [ -x "$RELAY_TEST_PG_BINDIR/initdb" ] && echo "$RELAY_TEST_PG_BINDIR"
    return 0
  fi
  local v
  for v in $(ls /usr/lib/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -rn); do
    if [ -x "/usr/lib/postgresql/$v/bin/initdb" ] && [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ]; then
      echo "/usr/lib/postgresql/$v/bin"; return
    fi
  done
}

# HTTP status of a GET (000 when nothing answers): Patroni's REST API, etcd's /health.
http_status() {
  "$PY" - "$1" <<'PYEOF' 2>/dev/null || echo 000
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print('000')
PYEOF
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# A recorded PID still of the lab: alive, and its command line names the lab folder (etcd's
# --data-dir, Patroni's nodeN.yml, the postmaster's -D, HAProxy's -f), so that a PID the system
# gave to something else after the lab's process died is never signalled.
lab_pid() { # lab_pid LAB PIDFILE-or-PID: prints the PID when it is the lab's
  local lab="$1" pid="$2"
  [ -f "$pid" ] && pid=$(head -1 "$pid" 2>/dev/null || true)
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  alive "$pid" && [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *"$lab/"* ]] && echo "$pid"
  return 0
}

# PID of a node's postmaster from its postmaster.pid (empty when none).
postmaster_pid() {
  local f="$1/node$2/data/postmaster.pid"
  [ -r "$f" ] && head -1 "$f" 2>/dev/null || true
}

lab_from_args() {
  local dir="${1:-${RELAY_HA_LAB:-}}"
  [ -n "$dir" ] || die "which lab? pass its folder or set RELAY_HA_LAB (printed by 'up')"
  echo "${dir%/}"
}

# ---------------------------------------------------------------------------------------------
# down: Patroni first (so it does not restart PostgreSQL), then any postmaster still up
# (pg_ctl stop -m immediate), then etcd and HAProxy; every PID from the folder. Last, anything
# still running of the lab (a pg_basebackup or pg_rewind Patroni left, an orphaned backend),
# found by its program and its cwd or command line under the folder, is killed by PID; then the
# folder goes.
# ---------------------------------------------------------------------------------------------
stop_pids() { # stop_pids SECONDS PID...: SIGTERM, wait, then SIGKILL what is left
  local secs="$1" pid left i; shift
  for pid in "$@"; do alive "$pid" && kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < secs * 10; i++)); do
    left=0
    for pid in "$@"; do alive "$pid" && left=1; done
    [ $left = 0 ] && return 0
    sleep 0.1
  done
  for pid in "$@"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null || true; done
  return 0
}

lab_down() {
  local lab="$1" pid n bin
  [ -d "$lab" ] || { log "no lab at $lab (already down?)"; return 0; }
  [ -f "$lab/state.env" ] || [ -f "$lab/.ha-lab" ] || die "$lab is not a ha-lab folder (no state.env/.ha-lab); not removing it"
  bin=$(cat "$lab/pg_bin_dir" 2>/dev/null || pg_bin_dir)
  # SIGKILL: a graceful Patroni stop waits for the primary to release its synchronous standby
  # (8 s and more here); a throwaway lab needs none of that, and killed it cannot restart anything.
  for n in 1 2; do
    pid=$(lab_pid "$lab" "$lab/node$n/patroni.pid")
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  for n in 1 2; do
    pid=$(lab_pid "$lab" "$(postmaster_pid "$lab" "$n")")
    if [ -n "$pid" ]; then
      if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups env -i -C / PATH="$SYS_PATH" \
          "$bin/pg_ctl" stop -D "$lab/node$n/data" -m immediate -w -t 10 >/dev/null 2>&1 || true
      else
        env -i PATH="$SYS_PATH" "$bin/pg_ctl" stop -D "$lab/node$n/data" -m immediate -w -t 10 >/dev/null 2>&1 || true
      fi
      alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  stop_pids 5 "$(lab_pid "$lab" "$lab/etcd/etcd.pid")" "$(lab_pid "$lab" "$lab/haproxy/haproxy.pid")"
  # Leftovers of this lab only: a program of the lab (PostgreSQL's, Patroni, etcd, HAProxy) that
  # works in the folder or names it on its command line. Never a shell or anything else that
  # merely sits in the folder (a user's `cd` there).
  local p exe cwd cmd round left
  for round in 1 2 3; do
    left=()
    for p in /proc/[0-9]*; do
      pid=${p#/proc/}
      [ "$pid" = $$ ] && continue
      exe=$(readlink "$p/exe" 2>/dev/null) || continue
      cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
      cwd=$(readlink "$p/cwd" 2>/dev/null || true)
      if [[ "$exe" == "$bin/"* ]]; then
        [[ "$cwd" == "$lab" || "$cwd" == "$lab/"* || "$cmd" == *"$lab/"* ]] && left+=("$pid")
      elif [[ "$cmd" == *"$lab/"* ]] && [[ "$exe" == /usr/bin/etcd || "$exe" == /usr/sbin/haproxy || "$cmd" == *"/usr/bin/patroni $lab/"* ]]; then
        left+=("$pid")
      fi
    done
    [ ${#left[@]} -eq 0 ] && break
    log "killing leftover processes of the lab: ${left[*]}"
    for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.3
  done
  rm -rf "$lab"
  log "lab $lab is down"
}

# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------
lab_status() {
  local lab="$1" n primary=''
  [ -f "$lab/state.env" ] || die "no lab state at $lab/state.env"
  # shellcheck disable=SC1091
  source "$lab/state.env"
  env -i PATH="$SYS_PATH" HOME="$lab" LC_ALL=C.UTF-8 patronictl -c "$lab/node1.yml" list || true
  for n in 1 2; do
    local var="RELAY_HA_NODE${n}_REST"
    [ "$(http_status "${!var}/primary")" = 200 ] && primary="${primary:+$primary }node$n"
  done
  echo "primary: ${primary:-none}"
}

# ---------------------------------------------------------------------------------------------
# kill-node / start-node: fault injection for the failover tests
# ---------------------------------------------------------------------------------------------
node_number() {
  case "${1:-}" in node1 | 1) echo 1 ;; node2 | 2) echo 2 ;; *) die "which node? node1 or node2" ;; esac
}

# kill -9 of the node's Patroni (first, so it cannot start PostgreSQL again) and its postmaster:
# a crash of the whole machine, as far as the cluster can tell. The postmaster's children exit
# by themselves once they notice it is gone.
node_kill() {
  local lab="$1" n pp pm
  n=$(node_number "$2")
  pp=$(lab_pid "$lab" "$lab/node$n/patroni.pid")
  pm=$(lab_pid "$lab" "$(postmaster_pid "$lab" "$n")")
  [ -n "$pp" ] && kill -KILL "$pp" 2>/dev/null || true
  [ -n "$pm" ] && kill -KILL "$pm" 2>/dev/null || true
  echo "killed node$n (patroni ${pp:-none}, postmaster ${pm:-none})"
}

# Starts the node's Patroni again (as a replica it rejoins the leader, through pg_rewind when its
# timeline diverged); returns once its REST API answers, not when it streams.
node_start() {
  local lab="$1" n pp user i
  n=$(node_number "$2")
  pp=$(lab_pid "$lab" "$lab/node$n/patroni.pid")
  [ -n "$pp" ] && die "node$n's patroni (PID $pp) is still running"
  user=$([ "$(id -u)" = 0 ] && echo postgres || id -un)
  start_bg "$lab/node$n/patroni.pid" "$lab/node$n/patroni.log" "$user" /usr/bin/patroni "$lab/node$n.yml"
  # shellcheck disable=SC1091
  source "$lab/state.env"
  local var="RELAY_HA_NODE${n}_REST"
  for ((i = 0; i < 60; i++)); do
    [ "$(http_status "${!var}/health")" != 000 ] && { echo "started node$n (patroni $(cat "$lab/node$n/patroni.pid"))"; return 0; }
    alive "$(cat "$lab/node$n/patroni.pid")" || die "node$n's patroni exited: see $lab/node$n/patroni.log"
    sleep 0.5
  done
  die "node$n's REST API did not answer within 30 s: see $lab/node$n/patroni.log"
}

# ---------------------------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------------------------
LAB=''
cleanup_on_failure() {
  local rc=$?
  if [ $rc -ne 0 ] && [ -n "$LAB" ] && [ -d "$LAB" ]; then
    log "up failed (exit $rc); its processes and logs follow, then the lab is torn down"
    # What was still running (a bootstrap stuck in initdb shows here, and has no PostgreSQL log yet).
    ps -eo pid,ppid,etime,stat,args 2>/dev/null | grep -F "$LAB" | grep -v grep >&2 || true
    local f
    for f in "$LAB"/etcd/etcd.log "$LAB"/node1/patroni.log "$LAB"/node2/patroni.log "$LAB"/node1/pglog/*.log "$LAB"/node2/pglog/*.log "$LAB"/haproxy/haproxy.log "$LAB"/db-setup.log; do
      [ -f "$f" ] && { echo "----- $f (last 40 lines)" >&2; tail -n 40 "$f" >&2; }
    done
    lab_down "$LAB" || true
  fi
}

# start_bg PIDFILE LOGFILE USER CMD...: runs CMD in the background in a session of its own, as
# USER (root: no change), with a clean environment (no PG*/PATRONI_*/ETCD_* of the caller),
# stdin from /dev/null, stdout and stderr into LOGFILE; its PID into PIDFILE. setsid and setpriv
# exec (no fork), so $! is the program's own PID. `env -C /`: from the root folder, since the
# caller's may be one the postgres user cannot enter (a CI clone in a 0700 mktemp folder), and
# Patroni's bootstrap then waits forever on an initdb that could not start.
start_bg() {
  local pidfile="$1" logfile="$2" user="$3" home; shift 3
  home=$(dirname "$pidfile")
  local as=()
  if [ "$(id -u)" = 0 ] && [ "$user" != root ]; then as=(setpriv --reuid="$user" --regid="$user" --init-groups); fi
  setsid "${as[@]}" env -i -C / PATH="$SYS_PATH" HOME="$home" LC_ALL=C.UTF-8 LANG=C.UTF-8 "$@" </dev/null >>"$logfile" 2>&1 &
  echo $! >"$pidfile"
  disown $! 2>/dev/null || true # no "Killed" job notice from this shell when `down` ends it
}

free_ports() { # free_ports N: N distinct free TCP ports of 127.0.0.1, one per line
  "$PY" - "$1" <<'PYEOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
for s in socks:
    s.close()
PYEOF
}

wait_until() { # wait_until SECONDS WHAT CMD...: polls CMD every 0.5 s
  local secs="$1" what="$2" i; shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" && return 0
    sleep 0.5
  done
  die "timed out after ${secs}s waiting for $what"
}

write_node_config() { # write_node_config N
  local n="$1" pg rest
  pg=$([ "$n" = 1 ] && echo "$PG1_PORT" || echo "$PG2_PORT")
  rest=$([ "$n" = 1 ] && echo "$REST1_PORT" || echo "$REST2_PORT")
  cat >"$LAB/node$n.yml" <<EOF
# Patroni node $n of the ha-lab in $LAB (scripts/ha-lab.sh). Trust auth on loopback: a lab only.
scope: $SCOPE
namespace: /relay-ha-lab/
name: node$n
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$rest
  connect_address: 127.0.0.1:$rest
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
  protocol: http
watchdog:
  mode: 'off'
bootstrap:
  dcs:
    ttl: $TTL
    loop_wait: $LOOP_WAIT
    retry_timeout: $RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        max_connections: 100
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        wal_log_hints: 'on'
  initdb:
    - encoding: UTF8
    - locale: C
    - no-sync
  pg_hba:
    - local all all trust
    - local replication all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$pg
  connect_address: 127.0.0.1:$pg
  data_dir: $LAB/node$n/data
  bin_dir: $PG_BIN
  pgpass: $LAB/node$n/pgpass
  use_unix_socket: true
  use_unix_socket_repl: false
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  basebackup:
    - checkpoint: fast
  authentication:
    superuser:
      username: postgres
    replication:
      username: replicator
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: '$LAB/node$n'
    logging_collector: 'on'
    log_directory: '$LAB/node$n/pglog'
    log_filename: postgresql.log
    log_file_mode: '0644'
    log_line_prefix: '%m [%p] %q%u@%d '
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
EOF
  chmod 644 "$LAB/node$n.yml"
}

# The primary answers on HAProxy's primary port as a primary, the replica port leads to a server
# in recovery that streams from it, synchronously.
cluster_ready() {
  [ "$(http_status "http://127.0.0.1:$REST1_PORT/primary")" = 200 ] || [ "$(http_status "http://127.0.0.1:$REST2_PORT/primary")" = 200 ] || return 1
  [ "$(http_status "http://127.0.0.1:$REST1_PORT/replica")" = 200 ] || [ "$(http_status "http://127.0.0.1:$REST2_PORT/replica")" = 200 ] || return 1
  local out
  out=$(env -i PATH="$SYS_PATH" "$PG_BIN/psql" -X -At -d "postgres://postgres@127.0.0.1:$HAP_PRIMARY_PORT/postgres?connect_timeout=2" \
    -c "select pg_is_in_recovery(), (select count(*) from pg_stat_replication where state = 'streaming' and sync_state in ('sync', 'quorum'))" 2>/dev/null) || return 1
  [ "$out" = "f|1" ] || return 1
  out=$(env -i PATH="$SYS_PATH" "$PG_BIN/psql" -X -At -d "postgres://postgres@127.0.0.1:$HAP_REPLICA_PORT/postgres?connect_timeout=2" \
    -c "select pg_is_in_recovery() and exists (select 1 from pg_stat_wal_receiver where status = 'streaming')" 2>/dev/null) || return 1
  [ "$out" = t ]
}

lab_up() {
  PG_BIN=$(pg_bin_dir)
  local missing=() b
  [ -n "$PG_BIN" ] || die "no PostgreSQL server programs (/usr/lib/postgresql/N/bin with initdb, pg_ctl): install Debian's postgresql-15 (and pgvector: scripts/install-pgvector.sh)"
  for b in /usr/bin/patroni /usr/bin/patronictl /usr/bin/etcd /usr/sbin/haproxy; do [ -x "$b" ] || missing+=("$b"); done
  command -v setsid >/dev/null || missing+=(setsid)
  [ "$(id -u)" != 0 ] || command -v setpriv >/dev/null || missing+=(setpriv)
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: run scripts/install-fleet.sh (as root) first"
  [ "$(id -u)" != 0 ] || id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (install PostgreSQL's Debian package)"

  TTL=${RELAY_HA_TTL:-10}
  LOOP_WAIT=${RELAY_HA_LOOP_WAIT:-2}
  RETRY_TIMEOUT=${RELAY_HA_RETRY_TIMEOUT:-4}
  for b in "$TTL" "$LOOP_WAIT" "$RETRY_TIMEOUT"; do [[ "$b" =~ ^[1-9][0-9]*$ ]] || die "RELAY_HA_TTL/LOOP_WAIT/RETRY_TIMEOUT must be positive integers"; done
  [ $((LOOP_WAIT + 2 * RETRY_TIMEOUT)) -le "$TTL" ] || die "loop_wait + 2 x retry_timeout must not exceed ttl ($LOOP_WAIT + 2 x $RETRY_TIMEOUT > $TTL)"

  LAB=$(mktemp -d "${TMPDIR:-/tmp}/relay-ha-lab.XXXXXX")
  trap cleanup_on_failure EXIT
  trap 'exit 130' INT TERM
  chmod 755 "$LAB"
  touch "$LAB/.ha-lab"
  echo "$PG_BIN" >"$LAB/pg_bin_dir"
  # A scope of its own per lab (the folder's random suffix): two labs, or stale keys, never meet.
  SCOPE="relay-ha-$(basename "$LAB" | sed 's/^relay-ha-lab\.//')-$$"
  local pg_user=postgres etcd_user=postgres
  if [ "$(id -u)" = 0 ]; then
    id etcd >/dev/null 2>&1 && etcd_user=etcd
  else
    pg_user=$(id -un); etcd_user=$pg_user
  fi

  local ports
  mapfile -t ports < <(free_ports 8)
  ETCD_PORT=${ports[0]} ETCD_PEER_PORT=${ports[1]} PG1_PORT=${ports[2]} PG2_PORT=${ports[3]}
  REST1_PORT=${ports[4]} REST2_PORT=${ports[5]} HAP_PRIMARY_PORT=${ports[6]} HAP_REPLICA_PORT=${ports[7]}

  # nodeN/ (postgres' socket, pgpass, data/ of its own, logs) belongs to the postgres OS user,
  # etcd/ to etcd's; root opens the log files (the redirects) and reads everything.
  mkdir -p "$LAB/etcd" "$LAB/node1/pglog" "$LAB/node2/pglog" "$LAB/haproxy"
  chmod 700 "$LAB/etcd"
  chmod 755 "$LAB/node1" "$LAB/node2" "$LAB/node1/pglog" "$LAB/node2/pglog"
  if [ "$(id -u)" = 0 ]; then
    chown -R "$etcd_user:" "$LAB/etcd"
    chown -R "$pg_user:" "$LAB/node1" "$LAB/node2"
  fi

  # etcd: one member, v3 API (Patroni's etcd3 module speaks the gRPC gateway over HTTP).
  log "etcd on 127.0.0.1:$ETCD_PORT (as $etcd_user)"
  start_bg "$LAB/etcd/etcd.pid" "$LAB/etcd/etcd.log" "$etcd_user" /usr/bin/etcd \
    --name lab --data-dir "$LAB/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "lab=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new --initial-cluster-token "$SCOPE" \
    --logger zap --log-outputs stderr
  etcd_healthy() {
    alive "$(cat "$LAB/etcd/etcd.pid")" || die "etcd exited: see $LAB/etcd/etcd.log"
    [ "$(http_status "http://127.0.0.1:$ETCD_PORT/health")" = 200 ]
  }
  wait_until 30 "etcd's /health" etcd_healthy

  local n
  for n in 1 2; do
    write_node_config "$n"
    log "patroni node$n: postgres 127.0.0.1:$([ $n = 1 ] && echo "$PG1_PORT" || echo "$PG2_PORT"), REST 127.0.0.1:$([ $n = 1 ] && echo "$REST1_PORT" || echo "$REST2_PORT") (as $pg_user)"
    start_bg "$LAB/node$n/patroni.pid" "$LAB/node$n/patroni.log" "$pg_user" /usr/bin/patroni "$LAB/node$n.yml"
    # node1 first, so it bootstraps (initdb) and node2 clones it; not required, just tidier
    # Generous: seconds when the machine is quiet, but a loaded CI machine has taken over a minute.
    [ "$n" = 1 ] && wait_until 180 "node1 to become the primary" node1_primary
  done

  # HAProxy: Patroni's REST API says who is primary (/primary 200) and who may serve reads (/replica 200).
  # The first expect (a word of Patroni's JSON body, 200 and 503 alike) makes HAProxy read the whole
  # response before it closes: on the status line alone it closes while Patroni still writes the
  # body, and Patroni 3.0.2 logs a ConnectionResetError traceback for every such check.
  # fall 2: one slow check does not cut the primary's sessions; the price is that a demoted primary
  # stays in `primary` up to ~2 s after Patroni answers 503 (a switchover can send a write to a
  # read-only node for that long: clients retry). downinter/fastinter 250ms: a node that is down (the
  # standby, in `primary`) is checked four times a second, so a newly promoted one is let in within
  # ~0.25 s of Patroni saying so.
  # One proxy per role, each admitting the node whose Patroni answers 200 on the role's URI.
  listen_block() { # NAME PORT URI
    cat <<EOF
listen $1
    bind 127.0.0.1:$2
    option httpchk
    http-check send meth GET uri $3
    http-check expect string "role"
    http-check expect status 200
    default-server inter 1s fastinter 250ms downinter 250ms fall 2 rise 1 on-marked-down shutdown-sessions
    server node1 127.0.0.1:$PG1_PORT check port $REST1_PORT
    server node2 127.0.0.1:$PG2_PORT check port $REST2_PORT
EOF
  }
  {
    cat <<EOF
# HAProxy of the ha-lab in $LAB (scripts/ha-lab.sh): follows Patroni's REST health checks.
global
    maxconn 1000
defaults
    mode tcp
    retries 2
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 2s
EOF
    listen_block primary "$HAP_PRIMARY_PORT" /primary
    listen_block replica "$HAP_REPLICA_PORT" /replica
  } >"$LAB/haproxy/haproxy.cfg"
  env -i PATH="$SYS_PATH" /usr/sbin/haproxy -c -q -f "$LAB/haproxy/haproxy.cfg" || die "haproxy refused $LAB/haproxy/haproxy.cfg"
  log "haproxy: primary 127.0.0.1:$HAP_PRIMARY_PORT, replica 127.0.0.1:$HAP_REPLICA_PORT"
  # -db: foreground (its PID is ours to record), started in the background like the rest.
  start_bg "$LAB/haproxy/haproxy.pid" "$LAB/haproxy/haproxy.log" root /usr/sbin/haproxy -db -f "$LAB/haproxy/haproxy.cfg"

  log "waiting for a leader and a streaming synchronous replica (up to 180 s)"
  ready_or_dead() {
    for n in 1 2; do alive "$(cat "$LAB/node$n/patroni.pid")" || die "patroni node$n exited: see $LAB/node$n/patroni.log"; done
    alive "$(cat "$LAB/haproxy/haproxy.pid")" || die "haproxy exited: see $LAB/haproxy/haproxy.log"
    cluster_ready
  }
  wait_until 180 "a leader and a streaming replica" ready_or_dead

  ADMIN_URL="postgres://postgres@127.0.0.1:$HAP_PRIMARY_PORT/postgres"
  log "relay db setup through HAProxy's primary port"
  local setup
  setup=$(cd "$repo" && LOG_LEVEL=warn node bin/relay.mjs db setup --admin-url "$ADMIN_URL" --db relay 2>"$LAB/db-setup.log") \
    || die "relay db setup failed: $(cat "$LAB/db-setup.log")"
  DATABASE_URL=$(sed -n 's/^DATABASE_URL=//p' <<<"$setup")
  RELAY_MIGRATE_URL=$(sed -n 's/^RELAY_MIGRATE_URL=//p' <<<"$setup")
  [ -n "$DATABASE_URL" ] && [ -n "$RELAY_MIGRATE_URL" ] || die "relay db setup printed no DATABASE_URL/RELAY_MIGRATE_URL: $setup"
  [[ "$DATABASE_URL" == *"@127.0.0.1:$HAP_PRIMARY_PORT/"* ]] || die "unexpected DATABASE_URL from relay db setup: $DATABASE_URL"
  RELAY_READ_DATABASE_URL=${DATABASE_URL/@127.0.0.1:$HAP_PRIMARY_PORT\//@127.0.0.1:$HAP_REPLICA_PORT/}

  local vars=(
    RELAY_HA_LAB="$LAB"
    DATABASE_URL="$DATABASE_URL"
    RELAY_READ_DATABASE_URL="$RELAY_READ_DATABASE_URL"
    RELAY_MIGRATE_URL="$RELAY_MIGRATE_URL"
    RELAY_HA_ADMIN_URL="$ADMIN_URL"
    RELAY_HA_NODE1_REST="http://127.0.0.1:$REST1_PORT"
    RELAY_HA_NODE2_REST="http://127.0.0.1:$REST2_PORT"
    RELAY_HA_PATRONICTL="patronictl -c $LAB/node1.yml"
    RELAY_HA_TTL="$TTL"
    RELAY_HA_LOOP_WAIT="$LOOP_WAIT"
    RELAY_HA_RETRY_TIMEOUT="$RETRY_TIMEOUT"
  )
  {
    echo "# ha-lab state (scripts/ha-lab.sh up); source it from bash"
    local kv
    for kv in "${vars[@]}"; do printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"; done
    printf '%s=%q\n' RELAY_HA_SCOPE "$SCOPE" RELAY_HA_ETCD_PORT "$ETCD_PORT" RELAY_HA_NODE1_PG_PORT "$PG1_PORT" \
      RELAY_HA_NODE2_PG_PORT "$PG2_PORT" RELAY_HA_PRIMARY_PORT "$HAP_PRIMARY_PORT" RELAY_HA_REPLICA_PORT "$HAP_REPLICA_PORT" \
      RELAY_HA_PG_BIN "$PG_BIN"
  } >"$LAB/state.env"
  trap - EXIT
  log "up: $LAB"
  local kv
  for kv in "${vars[@]}"; do echo "$kv"; done
}

node1_primary() {
  alive "$(cat "$LAB/node1/patroni.pid")" || die "patroni node1 exited: see $LAB/node1/patroni.log"
  [ "$(http_status "http://127.0.0.1:$REST1_PORT/primary")" = 200 ]
}

case "${1:-}" in
  up) lab_up ;;
  down) lab_down "$(lab_from_args "${2:-}")" ;;
  status) lab_status "$(lab_from_args "${2:-}")" ;;
  kill-node) node_kill "$(lab_from_args "${3:-}")" "${2:-}" ;;
  start-node) node_start "$(lab_from_args "${3:-}")" "${2:-}" ;;
  *) echo "usage: $0 up | down [folder] | status [folder] | kill-node nodeN [folder] | start-node nodeN [folder]   (folder: RELAY_HA_LAB)" >&2; exit 2 ;;
esac
