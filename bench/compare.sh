#!/usr/bin/env bash
# Side-by-side comparison of our dc_server (and dc_client in front of it) with Debian's redis-server and memcached
# and Microsoft's Garnet, on loopback, in one run. The main figures come from one independent generator,
# bench/loadgen (C, one thread, epoll), driving every server with the same load in the shapes TLS servers make;
# the servers are restarted each round and the targets alternate within it, and the report gives medians over the
# rounds. Distcache.Compare (the C# generator), dc_test -bench and redis-benchmark are run once more as second
# opinions. docs/performance.md, "Side by side with Redis, memcached and Garnet", says what each part measures.
#
#   bench/compare.sh [--quick] [--head] [--out DIR] [--rounds N] [--main-only]
#
#   --quick      1 round, 2 s windows after 0.5-2 s of warm-up, smaller counts: about 8 minutes on a 2-core VM,
#                build included (the full run takes about 25)
#   --head       build the servers and tools from `git archive HEAD` (a clean copy) instead of the working tree
#   --out        where results go (default bench/results/YYYYmmdd-HHMMSS); the report is DIR/report.md + chart.svg
#   --rounds     rounds of the loadgen sections (default 3; --quick: 1)
#   --main-only  only the loadgen shapes below (about 12 minutes with 3 rounds, 4 with --quick)
#
# Shapes (loadgen; 1000-byte values, 32-byte keys, 90% GET / 10% ADD over prefilled keys unless said otherwise):
#   perop-unix  a connection per operation, 8 clients, unix socket: dc_server, dc_client (unix) -> dc_server (TCP),
#               Redis, memcached, Garnet                                       -per-op -clients 8
#   perop-tcp   the same over TCP (without dc_client)                         -per-op -clients 8 -sources 16
#   kept50x1    50 kept connections x 1 request in flight, TCP                -clients 50 -pipeline 1
#   kept50x16   50 x 16 in flight                                             -clients 50 -pipeline 16
#   kept8x1     8 x 1 (the shape of 8 `dc_test -persistent` processes)        -clients 8 -pipeline 1
#   add50x16    ADD-heavy, 10% GET / 90% ADD over a key space 20-100x the prefill, 50 x 16
# then GET only at 1 000 and at 1 000 000 stored sessions (50 x 16, loadgen, every server), memory per stored
# session (every server filled by loadgen), and the second opinions: GET-heavy and ADD-heavy at 50 x 1 and 50 x 16
# by Distcache.Compare (dc_server, Redis, memcached), dc_test -bench and redis-benchmark; the store sizes by
# Distcache.Compare (dc_server, Redis) and dc_test; latency under a paced load by Distcache.Compare -rate and
# dc_test -rate (loadgen has no pacing).
#
# Installs redis-server, redis-tools, memcached, gcc and make with apt when missing, and garnet-server (a .NET tool,
# version 2.2.12, from NuGet) into bench/results/.tools when missing. Every process it starts is stopped on exit,
# error or Ctrl-C. Loopback and unix sockets only. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

quick=0
from_head=0
out=""
rounds=""
rounds_given=0
main_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --head) from_head=1 ;;
    --out) out="$2"; shift ;;
    --rounds) rounds="$2"; rounds_given=1; shift ;;
    --main-only) main_only=1 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "Error, \"$1\" not recognised" >&2; exit 1 ;;
  esac
  shift
done
case "$rounds" in ''|[1-9]|[1-9][0-9]) ;; *) echo "Error, --rounds $rounds: must be 1..99" >&2; exit 1 ;; esac

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# ---- the shape ------------------------------------------------------------------------------------------------
clients=50                 # connections of the second opinions' runs (Distcache.Compare, dc_test, redis-benchmark)
datasize=1000              # value bytes
idsize=32                  # key bytes
if [ "$quick" -eq 1 ]; then
  rounds="${rounds:-1}"
  lg_duration=2; lg_warmup=0.5   # loadgen's windows
  size_warmup=2            # loadgen's warm-up in the store-size runs, each on a server just started
  duration=2; warmup=1     # the second opinions' windows (dc_test takes whole seconds)
  keys=50000               # stored (prefilled) keys of the GET-heavy shapes; also the prefill of ADD-heavy
  addkeys=2000000          # ADD-heavy key space: 40x the prefill, so most ADDs store a new key
  memcount=200000          # sessions stored for the memory measurement
  scale=(1000 1000000)     # GET throughput at these stored counts
  low_rate=20000           # GETs/s of the low paced runs
else
  rounds="${rounds:-3}"
  lg_duration=5; lg_warmup=1
  size_warmup=3
  duration=5; warmup=2
  keys=100000
  addkeys=10000000
  memcount=1000000
  scale=(1000 1000000)
  low_rate=50000
fi
# Below Linux's ephemeral range (32768-60999 by default): a port in it can be taken at any moment as the local end
# of some outgoing connection, and a server started there then fails to bind ("Address already in use").
port_ours=29101; port_redis=29102; port_memcached=29103; port_garnet=29104
garnet_version=2.2.12
garnet_dir="$repo/bench/results/.tools/garnet-$garnet_version"

out="${out:-bench/results/$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$out/lg" "$out/size"
out="$(cd "$out" && pwd)"
log="$out/compare.log"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log" >&2; }

# Scratch folder for the unix sockets and the builds (short paths: a socket path has at most 107 bytes); every
# process started below goes into $pids and is stopped on exit, error or Ctrl-C.
source bench/lib.sh
bench_workdir dc-compare

# ---- packages -------------------------------------------------------------------------------------------------
packages=()
for pkg in redis-server redis-tools memcached gcc make libc6-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || packages+=("$pkg")
done
if [ "${#packages[@]}" -gt 0 ]; then
  say "installing ${packages[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
# Debian's service starts its own instances on the default ports; ours use their own ports, so they do not mind.
garnet="$garnet_dir/garnet-server"
if [ ! -x "$garnet" ]; then
  say "installing garnet-server $garnet_version (dotnet tool) into $garnet_dir"
  dotnet tool install garnet-server --version "$garnet_version" --tool-path "$garnet_dir" >>"$log" 2>&1 \
    || { say "Error, installing garnet-server failed (see $log)"; exit 1; }
fi

# ---- build (Release) ------------------------------------------------------------------------------------------
bin="$work/bin"
build_from() {
  local src="$1" tool
  for tool in dc_server dc_client dc_test; do
    dotnet build "$src/apps/$tool/$tool.csproj" -c Release -nologo -v quiet -o "$bin/$tool" >>"$log" 2>&1 || return 1
  done
  dotnet build "$src/bench/Distcache.Compare/Distcache.Compare.csproj" -c Release -nologo -v quiet -o "$bin/compare" >>"$log" 2>&1
}
build_head() {
  local copy; copy="$(mktemp -d)"
  git -C "$repo" archive HEAD | tar -x -C "$copy"
  # bench/Distcache.Compare may be newer than HEAD: always take the working tree's.
  rm -rf "$copy/bench/Distcache.Compare"; mkdir -p "$copy/bench"
  cp -r "$repo/bench/Distcache.Compare" "$copy/bench/"; rm -rf "$copy/bench/Distcache.Compare/bin" "$copy/bench/Distcache.Compare/obj"
  local status=0
  build_from "$copy" || status=$?
  echo "built from git HEAD $(git -C "$repo" rev-parse --short HEAD) in $copy" >>"$log"
  rm -rf "$copy"; return $status
}
say "building Release into $bin"
if [ "$from_head" -eq 1 ]; then
  build_head || { say "Error, the build failed (see $log)"; exit 1; }
  source_desc="git HEAD $(git rev-parse --short HEAD)"
elif build_from "$repo"; then
  source_desc="working tree at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src apps 2>/dev/null || echo ' + uncommitted changes')"
else
  say "the working tree does not build (edits in progress?); building git HEAD instead"
  build_head || { say "Error, the build failed (see $log)"; exit 1; }
  source_desc="git HEAD $(git rev-parse --short HEAD)"
fi
# The generator is always the working tree's.
make -C "$repo/bench/loadgen" -s >>"$log" 2>&1 || { say "Error, building bench/loadgen failed (see $log)"; exit 1; }
cp "$repo/bench/loadgen/loadgen" "$bin/loadgen"
dc_server="$bin/dc_server/dc_server"
dc_client="$bin/dc_client/dc_client"
dc_test="$bin/dc_test/dc_test"
compare="$bin/compare/Distcache.Compare"
loadgen="$bin/loadgen"

# ---- starting and stopping servers ----------------------------------------------------------------------------
# Waits until PID listens on every ADDRESS given (tcp:PORT, unix:PATH); 10 s at most.
wait_ready() {
  local pid="$1" a; shift
  for a in "$@"; do
    for _ in $(seq 100); do
      case "$a" in
        tcp:*) (exec 3<>"/dev/tcp/127.0.0.1/${a#tcp:}") 2>/dev/null && continue 2 ;;
        unix:*) [ -S "${a#unix:}" ] && continue 2 ;;
      esac
      kill -0 "$pid" 2>/dev/null || { say "Error, process $pid exited at start-up (waiting for $a)"; return 1; }
      sleep 0.1
    done
    say "Error, process $pid does not listen on $a after 10 s"; return 1
  done
}
wait_log() { # FILE TEXT: waits until TEXT appears in FILE (10 s at most)
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  say "Error, no \"$2\" in $1 after 10 s"; return 1
}

# The servers' command lines. Each starts empty; the log goes to $out/KIND.log.
run_dc_server() { # LISTEN
  # Room for the whole ADD-heavy key space; the store grows as sessions arrive (nothing preallocated). -maxconns:
  # with a connection per operation dc_server counts closed connections it has not reaped yet against the cap
  # (1024 by default), which would refuse connections in the per-operation shapes, so the cap is raised.
  "$dc_server" -listen "$1" -sessions $((addkeys + 1000)) -memory 24G -maxconns 100000 >>"$out/dc_server.log" 2>&1 &
}
run_redis() { # PORT [UNIXSOCKET]
  local unix=(); [ -n "${2:-}" ] && unix=(--unixsocket "$2")
  # Protected mode off: the per-operation TCP shape connects from 127.0.0.2.. (loadgen -sources).
  redis-server --port "$1" --bind 127.0.0.1 "${unix[@]}" --save "" --appendonly no --protected-mode no \
    --daemonize no --loglevel warning >>"$out/redis.log" 2>&1 &
}
run_memcached() { # -p PORT | -s PATH (memcached listens on either, not both)
  memcached -u "$(id -un)" "$@" -U 0 -m 24576 -c 4096 >>"$out/memcached.log" 2>&1 &
}
run_garnet() { # PORT [UNIXSOCKET]
  local unix=(); [ -n "${2:-}" ] && unix=(--unixsocket "$2")
  # Persistence is off by default (no --aof, no --storage-tier, --checkpoint-freq 0); protected mode is not.
  # Started in $work, where any file it might write stays.
  (cd "$work" && exec "$garnet" --port "$1" --bind 127.0.0.1 "${unix[@]}" --protected-mode no -q \
    --logger-level Warning >>"$out/garnet.log" 2>&1) &
}

# start KIND: stops the server start() started last, starts a fresh, empty KIND on loopback TCP; sets server_pid,
# port, proto.
server_pid=""
start() {
  [ -z "$server_pid" ] || bench_stop "$server_pid"
  case "$1" in
    ours) port=$port_ours; proto=distcache; run_dc_server "IP:127.0.0.1:$port" ;;
    redis) port=$port_redis; proto=resp; run_redis "$port" ;;
    memcached) port=$port_memcached; proto=memcache; run_memcached -l 127.0.0.1 -p "$port" ;;
    garnet) port=$port_garnet; proto=resp; run_garnet "$port" ;;
  esac
  server_pid=$!; pids+=("$server_pid")
  wait_ready "$server_pid" "tcp:$port"
}
stop() { [ -z "$server_pid" ] || bench_stop "$server_pid"; server_pid=""; }

# The loadgen rounds' servers, all at once: dc_server on TCP and on a unix socket, dc_client (unix) in front of the
# TCP one, Redis and Garnet on TCP and a unix socket each, memcached twice (TCP, unix).
garnet_unix=1
round_start() {
  run_dc_server "IP:127.0.0.1:$port_ours"; dc_tcp=$!; pids+=("$dc_tcp")
  run_dc_server "UNIX:$work/dc.sock"; dc_unix=$!; pids+=("$dc_unix")
  run_redis "$port_redis" "$work/redis.sock"; redis=$!; pids+=("$redis")
  run_memcached -l 127.0.0.1 -p "$port_memcached"; mc_tcp=$!; pids+=("$mc_tcp")
  run_memcached -s "$work/mc.sock"; mc_unix=$!; pids+=("$mc_unix")
  if [ "$garnet_unix" -eq 1 ]; then run_garnet "$port_garnet" "$work/garnet.sock"; else run_garnet "$port_garnet"; fi
  garnet_pid=$!; pids+=("$garnet_pid")
  wait_ready "$dc_tcp" "tcp:$port_ours"
  wait_ready "$dc_unix" "unix:$work/dc.sock"
  wait_ready "$redis" "tcp:$port_redis" "unix:$work/redis.sock"
  wait_ready "$mc_tcp" "tcp:$port_memcached"
  wait_ready "$mc_unix" "unix:$work/mc.sock"
  wait_ready "$garnet_pid" "tcp:$port_garnet"
  if [ "$garnet_unix" -eq 1 ] && ! wait_ready "$garnet_pid" "unix:$work/garnet.sock"; then
    say "Garnet made no unix socket: Garnet is compared over TCP only"
    garnet_unix=0
  fi
  "$dc_client" -listen "UNIX:$work/proxy.sock" -server "IP:127.0.0.1:$port_ours" >"$out/dc_client.r$round.log" 2>&1 &
  proxy=$!; pids+=("$proxy")
  wait_log "$out/dc_client.r$round.log" "Connected to the server"
}
round_stop() { bench_stop "$dc_tcp" "$dc_unix" "$redis" "$mc_tcp" "$mc_unix" "$garnet_pid" "$proxy"; rm -f "$work"/*.sock; }

# ---- generators -----------------------------------------------------------------------------------------------
json_field() { # FILE KEY: the first number after "KEY":
  grep -o "\"$2\": *[-0-9.eE+]*" "$1" | head -1 | sed 's/.*: *//'
}

# lg NAME PROTO ADDRESS PID... -- FLAGS...: one loadgen run, results in $out/NAME.json and .txt. Errors counted by
# loadgen (exit 2) are reported and the run is kept (the report shows them); a failed set-up (exit 1) stops here.
lg() {
  local name="$1" proto="$2" address="$3" rc=0 pidargs=(); shift 3
  while [ "$1" != "--" ]; do pidargs+=(-serverpid "$1"); shift; done; shift
  "$loadgen" -proto "$proto" -connect "$address" -datasize "$datasize" -idsize "$idsize" "${pidargs[@]}" \
    -json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1 || rc=$?
  case "$rc" in
    0) ;;
    2) say "warning, $name: loadgen counted $(json_field "$out/$name.json" total) errors: $(grep -m1 'first' "$out/$name.txt" || true)" ;;
    *) say "Error, loadgen failed for $name: $(tail -3 "$out/$name.txt")"; exit 1 ;;
  esac
}

dctest_run() { # NAME MIX KEYS PIPELINE
  "$dc_test" -connect "IP:127.0.0.1:$port" -bench -clients "$clients" -pipeline "$4" -duration "$duration" \
    -warmup "$warmup" -mix "$2" -keys "$3" -prefill "$keys" -datasize "$datasize" -idsize "$idsize" \
    -serverpid "$server_pid" -json "$out/$1.json" >"$out/$1.txt" 2>&1 || { say "Error, dc_test failed: $(tail -3 "$out/$1.txt")"; exit 1; }
}

gen_run() { # NAME PROTO MIX KEYS PIPELINE
  "$compare" load -proto "$2" -port "$port" -clients "$clients" -pipeline "$5" -duration "$duration" -warmup "$warmup" \
    -mix "$3" -keys "$4" -prefill "$keys" -datasize "$datasize" -idsize "$idsize" -serverpid "$server_pid" \
    -json "$out/$1.json" >"$out/$1.txt" 2>&1 || { say "Error, the generator failed: $(tail -3 "$out/$1.txt")"; exit 1; }
}

key_prefix="distcache-bench-key:"   # KeyNames.Prefix(32): 20 characters + 12 digits of __rand_int__ = 32 bytes
value="$(head -c "$datasize" /dev/zero | tr '\0' 'v')"

rb_run() { # NAME PIPELINE REQUESTS KEYSPACE COMMAND...: one redis-benchmark test, server CPU sampled around it
  local name="$1" pipeline="$2" n="$3" r="$4"; shift 4
  local cpu0 cpu1
  cpu0="$("$compare" cpu "$server_pid")"
  ( redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -P "$pipeline" -n "$n" -r "$r" "$@" >"$out/$name.txt" 2>&1
    times >"$out/$name.times" )
  cpu1="$("$compare" cpu "$server_pid")"
  echo "server_cpu_s $cpu0 $cpu1" >>"$out/$name.times"
}

# ---- what the report needs to know ----------------------------------------------------------------------------
started=$(date +%s)
command="bench/compare.sh"
[ "$quick" -eq 1 ] && command+=" --quick"
[ "$from_head" -eq 1 ] && command+=" --head"
[ "$rounds_given" -eq 1 ] && command+=" --rounds $rounds"
[ "$main_only" -eq 1 ] && command+=" --main-only"
{
  echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "command $command"
  echo "source $source_desc"
  echo "versions $(redis-server --version | awk '{print $1, $2, $3}'); memcached $(memcached -V | awk '{print $2}'); Garnet $("$garnet" --version 2>/dev/null | head -1 | awk '{print $2}' | cut -d+ -f1); redis-benchmark $(redis-benchmark --version 2>/dev/null | awk '{print $2}')"
  echo "load datasize=$datasize idsize=$idsize keys=$keys addkeys=$addkeys memcount=$memcount"
  echo "loadgen rounds=$rounds duration=$lg_duration warmup=$lg_warmup size_warmup=$size_warmup"
  echo "second clients=$clients duration=$duration warmup=$warmup low_rate=$low_rate"
} >"$out/meta.txt"

# ---- main: loadgen, every server, round after round -----------------------------------------------------------
# Each round starts every server afresh, then runs the shapes in order, each shape on every target in turn (the
# order of the targets rotates from round to round). The GET-heavy shapes leave the stores as they found them
# (every ADD finds its key stored); ADD-heavy grows them and runs last.
get_heavy=(-keys "$keys" -prefill "$keys" -mix get=90,add=10 -warmup "$lg_warmup" -duration "$lg_duration")
add_heavy=(-keys "$addkeys" -prefill "$keys" -mix get=10,add=90 -warmup "$lg_warmup" -duration "$lg_duration")
shapes=(perop-unix perop-tcp kept50x1 kept50x16 kept8x1 add50x16)
declare -A shape_text shape_flags
shape_text[perop-unix]="a connection per operation, unix socket, 8 clients"
shape_flags[perop-unix]="-per-op -clients 8"
shape_text[perop-tcp]="a connection per operation, TCP, 8 clients"
# From 127.0.0.2..17 in turn: spares loadgen the kernel's search for a free port among its own TIME_WAITs.
shape_flags[perop-tcp]="-per-op -clients 8 -sources 16"
shape_text[kept50x1]="50 kept connections x 1 in flight, TCP"
shape_flags[kept50x1]="-clients 50 -pipeline 1"
shape_text[kept50x16]="50 kept connections x 16 in flight, TCP"
shape_flags[kept50x16]="-clients 50 -pipeline 16"
shape_text[kept8x1]="8 kept connections x 1 in flight, TCP (8 dc_test -persistent)"
shape_flags[kept8x1]="-clients 8 -pipeline 1"
shape_text[add50x16]="ADD-heavy (10% GET / 90% ADD), 50 x 16, TCP"
shape_flags[add50x16]="-clients 50 -pipeline 16"

# use TARGET UNIX (1: over its unix socket, 0: over TCP): sets t_proto, t_address and t_pids (the processes whose
# CPU is measured) for one of the round's servers.
use() {
  case "$1:$2" in
    dc_server:1) t_proto=distcache; t_address="UNIX:$work/dc.sock"; t_pids=("$dc_unix") ;;
    dc_server:0) t_proto=distcache; t_address="IP:127.0.0.1:$port_ours"; t_pids=("$dc_tcp") ;;
    dc_client:1) t_proto=distcache; t_address="UNIX:$work/proxy.sock"; t_pids=("$proxy" "$dc_tcp") ;;
    redis:1) t_proto=resp; t_address="UNIX:$work/redis.sock"; t_pids=("$redis") ;;
    redis:0) t_proto=resp; t_address="IP:127.0.0.1:$port_redis"; t_pids=("$redis") ;;
    memcached:1) t_proto=memcache; t_address="UNIX:$work/mc.sock"; t_pids=("$mc_unix") ;;
    memcached:0) t_proto=memcache; t_address="IP:127.0.0.1:$port_memcached"; t_pids=("$mc_tcp") ;;
    garnet:1) t_proto=resp; t_address="UNIX:$work/garnet.sock"; t_pids=("$garnet_pid") ;;
    garnet:0) t_proto=resp; t_address="IP:127.0.0.1:$port_garnet"; t_pids=("$garnet_pid") ;;
  esac
}

# matrix_run SHAPE TARGET ROUND: one measured run, lg/SHAPE.TARGET.rROUND.json
matrix_run() {
  local shape="$1" target="$2" round="$3" unix=0 load=("${get_heavy[@]}") flags
  case "$shape" in perop-unix) unix=1 ;; add50x16) load=("${add_heavy[@]}") ;; esac
  read -r -a flags <<<"${shape_flags[$shape]}"
  say "round $round, $shape: $target"
  use "$target" "$unix"
  lg "lg/$shape.$target.r$round" "$t_proto" "$t_address" "${t_pids[@]}" -- "${flags[@]}" "${load[@]}"
}

# Before the first measured run of a round, every server is filled with the GET-heavy keys and driven for a
# second with 16 in flight and a second with a connection per operation, unmeasured (lg/warm.*): the .NET servers
# (dc_server, dc_client, Garnet) start with their code not yet compiled by the JIT's optimising tier, and the first
# shape's own warm-up alone would leave part of that in its measured window.
warm_round() {
  local round="$1" t list=(dc_server:1 dc_client:1 redis:1 memcached:1)
  [ "$garnet_unix" -eq 1 ] && list+=(garnet:1)
  list+=(dc_server:0 redis:0 memcached:0 garnet:0)
  say "round $round: filling and warming every server (unmeasured)"
  for t in "${list[@]}"; do
    use "${t%:*}" "${t#*:}"
    lg "lg/warm.${t%:*}-${t#*:}.r$round" "$t_proto" "$t_address" "${t_pids[@]}" -- -clients 50 -pipeline 16 \
      -keys "$keys" -prefill "$keys" -mix get=90,add=10 -warmup 0 -duration 1
    lg "lg/warm.${t%:*}-${t#*:}-per-op.r$round" "$t_proto" "$t_address" "${t_pids[@]}" -- -per-op -clients 8 \
      -keys "$keys" -mix get=90,add=10 -warmup 0 -duration 1
  done
}

for round in $(seq "$rounds"); do
  say "round $round of $rounds: starting dc_server (TCP, unix), dc_client, Redis, memcached (TCP, unix), Garnet"
  round_start
  warm_round "$round"
  for shape in "${shapes[@]}"; do
    targets=(dc_server redis memcached garnet)
    if [ "$shape" = perop-unix ]; then
      targets=(dc_server dc_client redis memcached)
      [ "$garnet_unix" -eq 1 ] && targets+=(garnet)
    fi
    n=${#targets[@]}
    for i in $(seq 0 $((n - 1))); do
      matrix_run "$shape" "${targets[$(( (i + round - 1) % n ))]}" "$round"
    done
  done
  round_stop
done
{
  for shape in "${shapes[@]}"; do echo "$shape|${shape_text[$shape]}|${shape_flags[$shape]}"; done
} >"$out/lg/shapes.txt"
echo "garnet_unix $([ "$garnet_unix" -eq 1 ] && echo yes || echo no)" >>"$out/meta.txt"

finish() {
  echo "elapsed_s $(( $(date +%s) - started ))" >>"$out/meta.txt"
  "$compare" report "$out" "$out/report.md" "$out/chart.svg" >/dev/null
  say "done: $out/report.md, $out/chart.svg"
}
if [ "$main_only" -eq 1 ]; then finish; exit 0; fi

# ---- store size: GET only, 50 x 16, 1 000 and 1 000 000 stored sessions, loadgen ------------------------------
# Every server fresh and filled for each run; the sizes and the servers alternate, round after round.
kinds=(ours redis memcached garnet)
for round in $(seq "$rounds"); do
  for count in "${scale[@]}"; do
    for i in 0 1 2 3; do
      kind="${kinds[$(( (i + round - 1) % 4 ))]}"
      say "round $round, store size $count: $kind GET only (loadgen, 50 x 16)"
      start "$kind"
      lg "size/$kind-$count.r$round" "$proto" "IP:127.0.0.1:$port" "$server_pid" -- -clients 50 -pipeline 16 \
        -keys "$count" -prefill "$count" -mix get=100 -warmup "$size_warmup" -duration "$lg_duration"
    done
  done
done
stop

# ---- memory per stored session: every server filled by loadgen with the same keys and values -----------------
echo "server count rss_empty_kib rss_full_kib" >"$out/memory.txt"
for kind in "${kinds[@]}"; do
  say "memory: $kind with $memcount sessions"
  start "$kind"; sleep 1
  empty="$("$compare" rss "$server_pid")"
  lg "memory-$kind" "$proto" "IP:127.0.0.1:$port" "$server_pid" -- -clients 50 -keys "$memcount" -prefill "$memcount" \
    -mix get=100 -warmup 0 -duration 0.5
  sleep 1
  full="$("$compare" rss "$server_pid")"
  echo "$kind $memcount $empty $full" >>"$out/memory.txt"
done
stop

# ---- second opinions: Distcache.Compare, dc_test -bench, redis-benchmark, one run each --------------------------
# Every run on a fresh server. 50 connections; GET-heavy over the prefilled keys, ADD-heavy over a key space 20-100x
# the prefill.
for pipeline in 1 16; do
  for scenario in get90 add90; do
    if [ "$scenario" = get90 ]; then mix="get=90,add=10"; space=$keys; else mix="get=10,add=90"; space=$addkeys; fi
    name="$scenario-p$pipeline"
    say "second opinion, $name: dc_server (dc_test -bench)"
    start ours; dctest_run "$name.ours" "$mix" "$space" "$pipeline"
    say "second opinion, $name: dc_server (Distcache.Compare load, distcache protocol)"
    start ours; gen_run "$name.ours-gen" distcache "$mix" "$space" "$pipeline"
    say "second opinion, $name: memcached (Distcache.Compare load, text protocol)"
    start memcached; gen_run "$name.memcached" memcache "$mix" "$space" "$pipeline"
    say "second opinion, $name: redis (Distcache.Compare load, RESP)"
    start redis; gen_run "$name.redis" redis "$mix" "$space" "$pipeline"
    # redis-benchmark runs one command per test: a GET test and a SET NX test, each on a fresh, prefilled server,
    # sized to last about half the window at the rate the mixed run just measured; the report composes the mix.
    rate="$(json_field "$out/$name.redis.json" ops_per_sec)"
    n=$(awk -v r="$rate" -v d="$duration" 'BEGIN { n = int(r * d / 2); if (n < 20000) n = 20000; print n }')
    say "second opinion, $name: redis (redis-benchmark GET, then SET NX, $n requests each)"
    start redis; "$compare" load -proto redis -port "$port" -clients "$clients" -keys "$keys" -prefill "$keys" -idsize "$idsize" -datasize "$datasize" -prefillonly >>"$log" 2>&1
    rb_run "$name.rb-get" "$pipeline" "$n" "$space" GET "${key_prefix}__rand_int__"
    start redis; "$compare" load -proto redis -port "$port" -clients "$clients" -keys "$keys" -prefill "$keys" -idsize "$idsize" -datasize "$datasize" -prefillonly >>"$log" 2>&1
    rb_run "$name.rb-set" "$pipeline" "$n" "$space" SET "${key_prefix}__rand_int__" "$value" NX EX 3600
  done
done

# Store sizes by the other generators: dc_test for ours, Distcache.Compare for ours and Redis (whose maxima also
# set the paced runs' rates below).
for count in "${scale[@]}"; do
  name="scale-$count"
  say "second opinion, $name: dc_server GET only (dc_test -bench), $count stored sessions, pipeline 16"
  start ours
  "$dc_test" -connect "IP:127.0.0.1:$port" -bench -clients "$clients" -pipeline 16 -duration "$duration" -warmup "$warmup" \
    -mix get=100 -keys "$count" -prefill "$count" -datasize "$datasize" -idsize "$idsize" -serverpid "$server_pid" \
    -json "$out/$name.json" >"$out/$name.txt" 2>&1 || { say "Error, dc_test failed: $(tail -3 "$out/$name.txt")"; exit 1; }
done
get_only_run() { # NAME KIND PROTO COUNT [RATE]: GET only, 16 in flight, COUNT stored sessions, Distcache.Compare
  local rate=(); [ -n "${5:-}" ] && rate=(-rate "$5")
  say "second opinion, $1: $2 GET only (Distcache.Compare load${5:+, paced at $5 ops/s}), $4 stored sessions"
  start "$2"
  "$compare" load -proto "$3" -port "$port" -clients "$clients" -pipeline 16 "${rate[@]}" -duration "$duration" \
    -warmup "$warmup" -mix get=100 -keys "$4" -prefill "$4" -datasize "$datasize" -idsize "$idsize" -serverpid "$server_pid" \
    -json "$out/$1.json" >"$out/$1.txt" 2>&1 || { say "Error, the generator failed: $(tail -3 "$out/$1.txt")"; exit 1; }
}
for count in "${scale[@]}"; do
  get_only_run "ours-gen-scale-$count" ours distcache "$count"
  get_only_run "redis-scale-$count" redis redis "$count"
done

# Latency at half of the maximum GET throughput just measured with the largest store, paced evenly (an open loop),
# so queueing at saturation does not hide pauses: ours by dc_test -rate, then ours and Redis by Distcache.Compare's
# -rate, each at half of its own maximum, ours also at Redis's rate, and both at a low rate that neither server
# feels, which shows what the machine itself adds (two processes waking each other on two shared cores).
count="${scale[-1]}"
half_of() { awk -v r="$(json_field "$1" ops_per_sec)" 'BEGIN { printf "%d", r / 2 }'; }
half=$(half_of "$out/scale-$count.json")
say "second opinion, half-load: dc_server GET only at $half ops/s (half of dc_test's maximum), $count stored sessions"
start ours
"$dc_test" -connect "IP:127.0.0.1:$port" -bench -clients "$clients" -pipeline 16 -rate "$half" -duration "$duration" \
  -warmup "$warmup" -mix get=100 -keys "$count" -prefill "$count" -datasize "$datasize" -idsize "$idsize" \
  -serverpid "$server_pid" -json "$out/half-load.json" >"$out/half-load.txt" 2>&1 || { say "Error, dc_test failed: $(tail -3 "$out/half-load.txt")"; exit 1; }
half_ours=$(half_of "$out/ours-gen-scale-$count.json")
half_redis=$(half_of "$out/redis-scale-$count.json")
get_only_run paced-half.ours ours distcache "$count" "$half_ours"
get_only_run paced-half.redis redis redis "$count" "$half_redis"
get_only_run paced-redis-half.ours ours distcache "$count" "$half_redis"
get_only_run paced-low.ours ours distcache "$count" "$low_rate"
get_only_run paced-low.redis redis redis "$count" "$low_rate"
stop
finish
