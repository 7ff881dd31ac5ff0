#!/usr/bin/env bash
# benches/load.sh - our server against Postfix smtp-sink and aiosmtpd, side by side, on
# loopback, under the same loads from our own generator (benches/loadgen, `smtp-load`).
#
# For every scenario each server is started fresh on its own 127.0.0.1 port, loaded,
# measured (CPU seconds of all its threads, to the microsecond from a cgroup of its own
# where the machine allows, else utime+stime ticks from /proc; peak RSS = VmHWM) and
# stopped. The report (markdown) gives CPU per 10k messages, its ratio to smtp-sink
# (lower is better), throughput, p50/p99 latency and peak RSS, plus memory per idle
# connection and a burst of simultaneous connects, and checks the project's targets.
#
#   benches/load.sh                 # full run, 3 rounds (~7 min; installs what is missing, needs root)
#   benches/load.sh --quick         # 1/5 of the message counts, 500 idle connections
#   benches/load.sh --help
#
# Every load run is bounded (message count, --timeout seconds, and an outer `timeout`);
# every address is 127.0.0.1. Results go to benches/results/<UTC time>/ (not tracked).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
HOST=127.0.0.1
BASE_PORT=${BASE_PORT:-2640}
ALL_SCENARIOS="lock1 c50 pipe50 churn50 c500 mib16 idle burst500"
SERVERS="ours smtp-sink aiosmtpd"
SCENARIOS="$ALL_SCENARIOS"
QUICK=0
ROUNDS=""
RUN_TIMEOUT=90
PIN=same
INSTALL=1
BUILD=1
OUT=""
OURS_ARGS=""
GEN_THREADS=1
QUIET_WAIT=20        # seconds to wait, before each run, for other processes to go quiet
QUIET_BUDGET=180     # total seconds of such waiting in one invocation
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$HERE/.venv"

usage() {
  cat <<'EOF'
usage: benches/load.sh [options]
  --quick              1/5 of the message counts, 500 idle connections
  --servers "LIST"     any of: ours smtp-sink aiosmtpd ours-quiet ours-1t ceiling
                       (default: ours smtp-sink aiosmtpd; ours-quiet = ours with RUST_LOG=warn,
                       to see what logging costs; ours-1t = ours with --threads 1; ceiling =
                       ../shared/bench's ceiling-sink, a reference with no SMTP logic, the
                       floor of CPU per message; smtp-sink is always added: ratios are to it)
  --scenarios "LIST"   subset of (default all):
                         lock1    1 session, 10k x 1 KiB, lock-step on one connection
                         c50      50 sessions, 20k x 1 KiB, lock-step
                         pipe50   50 sessions, 20k x 1 KiB, MAIL+RCPT+DATA pipelined where advertised
                         churn50  50 sessions, 5k x 1 KiB, one message per connection
                         c500     500 sessions, 20k x 1 KiB, lock-step
                         mib16    16 sessions, 640 x 1 MiB (bandwidth)
                         idle     2000 idle connections (EHLO done): server RSS delta / 2000
                         burst500 500 simultaneous connects, one message each
  --rounds N           repeat each scenario N times (servers interleaved); medians reported
                       (default 3, with --quick 1: single runs on this VM vary 10-40 %)
  --timeout S          time bound of each load run (default 90)
  --pin same|none|split
                       CPU placement (default same: server and generator on CPU 0, as
                       ../shared/bench/run-anchors.sh measures the anchors: the repeatable
                       setting on a 2-vCPU VM, where cross-CPU wake-ups are slow and erratic;
                       none: the scheduler decides; split: server on CPU 0, generator on CPU 1)
  --ours-args "ARGS"   extra arguments for our smtpd (e.g. "--threads 1")
  --gen-threads N      generator runtime threads (default 1)
  --quiet-wait S       before each run wait up to S seconds (default 20; 180 in total) until
                       other processes use < 15 % of the CPUs; 0 = do not wait. CPU used by
                       other processes during a run is recorded and flagged in the report
  --no-install         do not apt-get / pip install anything
  --no-build           do not build (use the binaries in the target dir)
  --out DIR            results directory (default benches/results/<UTC time>)
Target dir: $CARGO_TARGET_DIR, else <repo>/target.
EOF
  exit "${1:-0}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --servers) SERVERS="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --timeout) RUN_TIMEOUT="$2"; shift 2 ;;
    --pin) PIN="$2"; shift 2 ;;
    --ours-args) OURS_ARGS="$2"; shift 2 ;;
    --gen-threads) GEN_THREADS="$2"; shift 2 ;;
    --quiet-wait) QUIET_WAIT="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage 2 ;;
  esac
done
case "$PIN" in none|same|split) ;; *) echo "--pin must be none, same or split" >&2; exit 2 ;; esac
if [ -z "$ROUNDS" ]; then ROUNDS=3; [ "$QUICK" = 1 ] && ROUNDS=1; fi
[[ "$ROUNDS" =~ ^[1-9][0-9]?$ ]] || { echo "--rounds must be 1..99" >&2; exit 2; }
[[ "$QUIET_WAIT" =~ ^[0-9]{1,3}$ ]] || { echo "--quiet-wait must be 0..999 seconds" >&2; exit 2; }
[[ "$RUN_TIMEOUT" =~ ^[1-9][0-9]{0,3}$ ]] || { echo "--timeout must be 1..9999 seconds" >&2; exit 2; }
for s in $SCENARIOS; do
  case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "unknown scenario $s" >&2; exit 2 ;; esac
done
for s in $SERVERS; do
  case "$s" in ours|ours-quiet|ours-1t|smtp-sink|aiosmtpd|ceiling) ;; *) echo "unknown server $s" >&2; exit 2 ;; esac
done
case " $SERVERS " in *" smtp-sink "*) ;; *) SERVERS="$SERVERS smtp-sink" ;; esac

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
export PATH="$PATH:/usr/sbin:/sbin"

# ------------------------------------------------------------------ install and build
MADE_POLICY=0
drop_policy() { # remove the policy-rc.d only if this script made it
  [ "$MADE_POLICY" = 1 ] && rm -f /usr/sbin/policy-rc.d
  MADE_POLICY=0
}
trap drop_policy EXIT
apt_install() { # packages...; keeps package daemons (postfix) from starting
  if [ "$(id -u)" != 0 ]; then log "need root to install: $*"; return 1; fi
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && MADE_POLICY=1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null
  apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  local rc=$?
  drop_policy
  return $rc
}

if [ "$INSTALL" = 1 ]; then
  need=()
  command -v smtp-sink >/dev/null || need+=(postfix)
  command -v ss >/dev/null || need+=(iproute2)
  command -v taskset >/dev/null || need+=(util-linux)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]} (package daemons kept from starting)"
    apt_install "${need[@]}" || { log "install failed"; exit 1; }
  fi
  if ! "$VENV/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
    log "creating $VENV with aiosmtpd"
    python3 -m venv "$VENV" && "$VENV/bin/python" -m pip install -q aiosmtpd \
      || log "aiosmtpd install failed: that server is skipped"
  fi
fi
SMTPD_BIN="$TARGET_DIR/release/smtpd"
LOAD_BIN="$TARGET_DIR/release/smtp-load"
CEILING_SRC="$ROOT/../shared/bench/loadgen"
CEILING_BIN="$TARGET_DIR/release/ceiling-sink"
if [ "$BUILD" = 1 ]; then
  log "cargo build --release (smtpd-linux, smtp-load) into $TARGET_DIR"
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q -p smtpd-linux) \
    || { log "building smtpd failed"; exit 1; }
  CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q --manifest-path "$HERE/loadgen/Cargo.toml" \
    || { log "building smtp-load failed"; exit 1; }
  case " $SERVERS " in
    *" ceiling "*)
      log "cargo build --release (ceiling-sink from $CEILING_SRC)"
      CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q --manifest-path "$CEILING_SRC/Cargo.toml" \
        --bin ceiling-sink || log "building ceiling-sink failed: that server is skipped" ;;
  esac
fi
[ -x "$SMTPD_BIN" ] || { echo "missing $SMTPD_BIN" >&2; exit 1; }
[ -x "$LOAD_BIN" ] || { echo "missing $LOAD_BIN" >&2; exit 1; }
command -v smtp-sink >/dev/null || { echo "smtp-sink not found (Debian package postfix)" >&2; exit 1; }
command -v ss >/dev/null || { echo "ss not found (Debian package iproute2)" >&2; exit 1; }

# 2000 idle connections, 500 sessions: both sides need the descriptors (children inherit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null

if [ "$PIN" != none ] && ! command -v taskset >/dev/null; then log "no taskset: not pinning"; PIN=none; fi
if [ "$PIN" = split ] && [ "$(nproc)" -lt 2 ]; then PIN=same; fi
case "$PIN" in
  none)  SRV_PIN=(); GEN_PIN=() ;;
  same)  SRV_PIN=(taskset -c 0); GEN_PIN=(taskset -c 0) ;;
  split) SRV_PIN=(taskset -c 0); GEN_PIN=(taskset -c 1) ;;
esac

[ -n "$OUT" ] || OUT="$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/logs" || exit 1
RUNS="$OUT/runs.txt"
: > "$RUNS"
CLK_TCK="$(getconf CLK_TCK)"

# ------------------------------------------------------------------ servers
# server_cmd NAME PORT: sets CMD (array) and ENVS (array of VAR=value); false if unavailable
server_cmd() {
  local name="$1" port="$2"
  ENVS=()
  case "$name" in
    ours)       CMD=("$SMTPD_BIN" -c Sink $OURS_ARGS "$HOST:$port") ;;
    ours-quiet) CMD=("$SMTPD_BIN" -c Sink $OURS_ARGS "$HOST:$port"); ENVS=(RUST_LOG=warn) ;;
    ours-1t)    CMD=("$SMTPD_BIN" -c Sink --threads 1 $OURS_ARGS "$HOST:$port") ;;
    smtp-sink)  local u=(); [ "$(id -u)" = 0 ] && u=(-u nobody)
                CMD=("$(command -v smtp-sink)" "${u[@]}" -m 5000 "$HOST:$port" 4096) ;;
    ceiling)    [ -x "$CEILING_BIN" ] || return 1
                CMD=("$CEILING_BIN" "$HOST:$port") ;;
    aiosmtpd)   "$VENV/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1 || return 1
                CMD=("$VENV/bin/python" -m aiosmtpd -n -l "$HOST:$port" -c aiosmtpd.handlers.Sink) ;;
    *) return 1 ;;
  esac
}

# The server's CPU time, all its threads (including any that end during the run): to the
# microsecond from a cgroup of its own where this machine lets us make one (cgroup v2
# cpu.stat, or v1 cpuacct), else utime+stime in ticks (1/CLK_TCK s: 3 % of a lock-step run).
METER=ticks METER_DIR=""
meter_start() { # meter_start PID: puts PID in a fresh cgroup if it can
  local base
  METER=ticks METER_DIR=""
  for base in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    [ -f "$base/cgroup.procs" ] && [ -f "$base/cpu.stat" -o -f "$base/cgroup.controllers" ] || continue
    METER_DIR="$base/smtpd-bench-$$"
    if mkdir -p "$METER_DIR" 2>/dev/null && echo "$1" > "$METER_DIR/cgroup.procs" 2>/dev/null \
       && [ -f "$METER_DIR/cpu.stat" ]; then METER=cgroup2; return; fi
    rmdir "$METER_DIR" 2>/dev/null
  done
  base=/sys/fs/cgroup/cpuacct
  METER_DIR="$base/smtpd-bench-$$"
  if [ -f "$base/cpuacct.usage" ] && mkdir -p "$METER_DIR" 2>/dev/null \
     && echo "$1" > "$METER_DIR/cgroup.procs" 2>/dev/null; then METER=cgroup1; return; fi
  rmdir "$METER_DIR" 2>/dev/null
  METER_DIR=""
}
meter_read() { # meter_read PID: CPU seconds so far (since meter_start, for a cgroup)
  case "$METER" in
    cgroup2) awk '$1=="usage_usec"{printf "%.6f", $2/1e6}' "$METER_DIR/cpu.stat" ;;
    cgroup1) awk '{printf "%.6f", $1/1e9}' "$METER_DIR/cpuacct.usage" ;;
    *) local s
       s="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
       s="${s##*) }"   # the fields after the command name; utime/stime are fields 14/15
       set -- $s
       awk -v t=$(( ${12} + ${13} )) -v hz="$CLK_TCK" 'BEGIN{printf "%.6f", t/hz}' ;;
  esac
}
meter_stop() { # once the server has exited
  [ -n "$METER_DIR" ] && rmdir "$METER_DIR" 2>/dev/null
  METER_DIR=""
}
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
NCPU="$(nproc)"
QUIET_SPENT=0
wait_quiet() { # until the machine is idle enough (bounded); we run nothing ourselves now
  [ "$QUIET_WAIT" -gt 0 ] || return 0
  local t0=$SECONDS a b pct
  while :; do
    a="$(busy_ticks)"; sleep 0.5; b="$(busy_ticks)"
    pct=$(( (b - a) * 100 * 2 / (CLK_TCK * NCPU) ))
    [ "$pct" -lt 15 ] && break
    if [ $((SECONDS - t0)) -ge "$QUIET_WAIT" ] || [ $((QUIET_SPENT + SECONDS - t0)) -ge "$QUIET_BUDGET" ]; then
      log "  machine still ${pct}% busy with other processes: measuring anyway (flagged in the report)"
      break
    fi
  done
  QUIET_SPENT=$((QUIET_SPENT + SECONDS - t0))
}
status_kb() { awk -v f="$2:" '$1==f{print $2}' "/proc/$1/status" 2>/dev/null; }
listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

SRV_PID=""
stop_server() {
  [ -n "$SRV_PID" ] || return 0
  kill -TERM "$SRV_PID" 2>/dev/null
  local i
  for i in $(seq 1 30); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SRV_PID" 2>/dev/null && kill -KILL "$SRV_PID" 2>/dev/null
  wait "$SRV_PID" 2>/dev/null
  SRV_PID=""
}
trap 'stop_server; meter_stop; drop_policy' EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ scenarios
# scenario ID: sets GEN_ARGS (generator arguments) and LABEL
scenario() {
  local q=1; [ "$QUICK" = 1 ] && q=5
  case "$1" in
    lock1)    GEN_ARGS=(-s 1 -m $((10000 / q)) -l 1024 -p off) ;;
    c50)      GEN_ARGS=(-s 50 -m $((20000 / q)) -l 1024 -p off) ;;
    pipe50)   GEN_ARGS=(-s 50 -m $((20000 / q)) -l 1024 -p auto) ;;
    churn50)  GEN_ARGS=(-s 50 -m $((5000 / q)) -l 1024 -p off --churn) ;;
    c500)     GEN_ARGS=(-s 500 -m $((20000 / q)) -l 1024 -p off) ;;
    mib16)    GEN_ARGS=(-s 16 -m $((640 / q)) -l 1MiB -p off) ;;
    idle)     GEN_ARGS=(--idle $((2000 / (q == 1 ? 1 : 4)))) ;;
    burst500) GEN_ARGS=(-s 500 -m 1 --per-session -l 1024 -p off --churn) ;;
  esac
}

# measure ROUND SCENARIO SERVER PORT
measure() {
  local round="$1" scen="$2" name="$3" port="$4"
  local lp="$OUT/logs/r$round-$scen-$name"
  if ! server_cmd "$name" "$port"; then log "  skip $name: not available"; return; fi
  if listening "$port"; then log "  skip $name: port $port is busy"; return; fi
  env "${ENVS[@]}" "${SRV_PIN[@]}" "${CMD[@]}" >"$lp.server.log" 2>&1 &
  SRV_PID=$!
  local i ok=0
  for i in $(seq 1 100); do
    if listening "$port"; then ok=1; break; fi
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$ok" != 1 ]; then log "  skip $name: did not listen on $port (see $lp.server.log)"; stop_server; return; fi
  sleep 0.3
  scenario "$scen"
  local args=("${GEN_ARGS[@]}" -t "$GEN_THREADS" -d "$RUN_TIMEOUT")
  [ "$scen" = idle ] && args+=(--watch-pid "$SRV_PID")
  wait_quiet
  local c0 c1 rc b0 b1 t0 t1
  b0="$(busy_ticks)"; t0="$EPOCHREALTIME"
  meter_start "$SRV_PID"
  c0="$(meter_read "$SRV_PID")"
  "${GEN_PIN[@]}" timeout -k 2 $((RUN_TIMEOUT + 15)) "$LOAD_BIN" "${args[@]}" "$HOST:$port" \
    >"$lp.out" 2>"$lp.err"
  rc=$?
  c1="$(meter_read "$SRV_PID")"
  b1="$(busy_ticks)"; t1="$EPOCHREALTIME"
  local hwm rss alive=1
  hwm="$(status_kb "$SRV_PID" VmHWM)"; rss="$(status_kb "$SRV_PID" VmRSS)"
  kill -0 "$SRV_PID" 2>/dev/null || alive=0
  stop_server
  local result
  result="$(grep '^RESULT ' "$lp.out" | tail -1)"
  [ -n "$result" ] || result="RESULT mode=none"
  meter_stop
  local cpu; cpu="$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.6f", b-a}')"
  # CPU that neither the server nor the generator used during the run (other processes)
  local gen other
  gen="$(sed -n 's/.* client_cpu_s=\([0-9.]*\).*/\1/p' <<<"$result")"
  other="$(awk -v a="$b0" -v b="$b1" -v hz="$CLK_TCK" -v s="$cpu" -v g="${gen:-0}" -v w0="$t0" -v w1="$t1" -v n="$NCPU" \
    'BEGIN{o=(b-a)/hz-s-g; if(o<0)o=0; w=w1-w0; if(w<=0)w=1e-9; printf "%.0f", o/(w*n)*100}')"
  echo "$result round=$round scenario=$scen server=$name rc=$rc srv_cpu_s=$cpu srv_hwm_kb=${hwm:-0} srv_rss_end_kb=${rss:-0} srv_alive=$alive other_cpu_pct=$other cpu_meter=$METER" >> "$RUNS"
  awk '{for(i=2;i<=NF;i++){split($i,kv,"=");v[kv[1]]=kv[2]}
        if (v["mode"]=="idle")
          printf "  %-10s idle: %s/%s open, %s B/conn, errors=%s, srv_cpu=%ss\n", v["server"], v["open"], v["requested"], v["rss_per_conn_bytes"], v["errors"], v["srv_cpu_s"]
        else
          printf "  %-10s %s/%s msgs in %ss = %s msgs/s %s MiB/s p50=%sms p99=%sms srv_cpu=%ss hwm=%skB errors=%s rc=%s other=%s%%%s\n", v["server"], v["delivered"], v["requested"], v["elapsed_s"], v["msgs_per_s"], v["mib_per_s"], v["p50_ms"], v["p99_ms"], v["srv_cpu_s"], v["srv_hwm_kb"], v["errors"], v["rc"], v["other_cpu_pct"], (v["timed_out"]=="1" ? " TIMED OUT" : "")}' <<<"$(tail -1 "$RUNS")" >&2
}

# ------------------------------------------------------------------ run
{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ) host_kernel=$(uname -r) cpus=$(nproc) cpu=\"$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)\""
  echo "ours=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet -- core linux 2>/dev/null || echo +dirty) ours_args=\"$OURS_ARGS\" postfix=$(dpkg-query -W -f='${Version}' postfix 2>/dev/null) aiosmtpd=$("$VENV/bin/python" -c 'import aiosmtpd;print(aiosmtpd.__version__)' 2>/dev/null) python=$("$VENV/bin/python" -c 'import sys;print(sys.version.split()[0])' 2>/dev/null)"
  echo "pin=$PIN quick=$QUICK rounds=$ROUNDS timeout=$RUN_TIMEOUT gen_threads=$GEN_THREADS servers=\"$SERVERS\" scenarios=\"$SCENARIOS\""
} > "$OUT/env.txt"
cat "$OUT/env.txt" >&2

START=$SECONDS
for r in $(seq 1 "$ROUNDS"); do
  for sc in $SCENARIOS; do
    scenario "$sc"
    log "round $r: $sc (smtp-load ${GEN_ARGS[*]})"
    i=0
    for name in $SERVERS; do
      measure "$r" "$sc" "$name" $((BASE_PORT + i))
      i=$((i + 1))
    done
  done
done
log "load runs took $((SECONDS - START)) s"
gzip -q "$OUT"/logs/*.server.log 2>/dev/null   # our server logs every message

python3 "$HERE/load_report.py" "$OUT" > "$OUT/table.md" || { log "report failed"; exit 1; }
cat "$OUT/table.md"
log "results in $OUT"
