#!/usr/bin/env bash
# Side-by-side comparison of our dc_server with Debian's redis-server and memcached, on loopback, all three driven
# by one generator (Distcache.Compare load) with the same shape of load, dc_server and Redis also by their own
# tools (dc_test -bench, redis-benchmark). docs/performance.md, "Side by side with Redis and memcached", says how
# the shapes match.
#
#   bench/compare.sh [--quick] [--head] [--out DIR]
#
#   --quick   short windows, smaller counts, one round of the store-size runs (about 4 minutes instead of about 10
#             on a 2-core VM)
#   --head    build the servers and tools from `git archive HEAD` (a clean copy) instead of the working tree
#   --out     where results go (default bench/results/YYYYmmdd-HHMMSS); the report is DIR/report.md + DIR/chart.svg
#
# Installs redis-server, redis-tools, memcached and libmemcached-tools with apt when missing. Every server it
# starts is stopped on exit, error or Ctrl-C. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

quick=0
from_head=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --head) from_head=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "Error, \"$1\" not recognised" >&2; exit 1 ;;
  esac
  shift
done

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# ---- the shape ------------------------------------------------------------------------------------------------
clients=50                 # connections, every server and generator
pipelines=(1 16)           # requests in flight per connection
datasize=1000              # value bytes
idsize=32                  # key bytes (dc_test ids; memcached/Redis key names of exactly 32 characters)
if [ "$quick" -eq 1 ]; then
  duration=3; warmup=1
  keys=50000               # stored (prefilled) keys of the GET-heavy scenarios; also the prefill of ADD-heavy
  addkeys=2000000          # ADD-heavy key space: 40x the prefill, so most ADDs store a new key
  memcount=200000          # sessions stored for the memory measurement
  scale=(1000 1000000)     # our GET throughput at these stored counts
  low_rate=20000           # GETs/s of the low paced runs
  scale_rounds=1           # rounds of the same-generator store-size runs (medians are reported)
else
  duration=10; warmup=2
  keys=100000
  addkeys=10000000
  memcount=1000000
  scale=(1000 1000000)
  low_rate=50000
  scale_rounds=3
fi
# Below Linux's ephemeral range (32768-60999 by default): a port in it can be taken at any moment as the local end
# of some outgoing connection, and a server started there then fails to bind ("Address already in use").
port_ours=29101; port_redis=29102; port_memcached=29103

out="${out:-bench/results/$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log="$out/compare.log"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log" >&2; }

# ---- packages -------------------------------------------------------------------------------------------------
packages=()
for pkg in redis-server redis-tools memcached libmemcached-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || packages+=("$pkg")
done
if [ "${#packages[@]}" -gt 0 ]; then
  say "installing ${packages[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
# Debian's service starts its own instances on the default ports; ours use their own ports, so they do not mind.

# ---- build (Release) ------------------------------------------------------------------------------------------
bin="$out/bin"
build_from() {
  local src="$1"
  dotnet build "$src/apps/dc_server/dc_server.csproj" -c Release -nologo -v quiet -o "$bin/dc_server" >>"$log" 2>&1 &&
  dotnet build "$src/apps/dc_test/dc_test.csproj" -c Release -nologo -v quiet -o "$bin/dc_test" >>"$log" 2>&1 &&
  dotnet build "$src/bench/Distcache.Compare/Distcache.Compare.csproj" -c Release -nologo -v quiet -o "$bin/compare" >>"$log" 2>&1
}
build_head() {
  local copy; copy="$(mktemp -d)"
  git -C "$repo" archive HEAD | tar -x -C "$copy"
  # bench/Distcache.Compare may be newer than HEAD: always take the working tree's.
  rm -rf "$copy/bench/Distcache.Compare"; mkdir -p "$copy/bench"
  cp -r "$repo/bench/Distcache.Compare" "$copy/bench/"; rm -rf "$copy/bench/Distcache.Compare/bin" "$copy/bench/Distcache.Compare/obj"
  build_from "$copy"; local status=$?
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
dc_server="$bin/dc_server/dc_server"
dc_test="$bin/dc_test/dc_test"
compare="$bin/compare/Distcache.Compare"

# ---- servers --------------------------------------------------------------------------------------------------
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap cleanup EXIT
trap 'say "interrupted"; cleanup; exit 130' INT TERM

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || { say "Error, the server exited at start-up"; return 1; }
    sleep 0.1
  done
  say "Error, nothing listens on port $1"; return 1
}

# start KIND: stops the running server, starts a fresh, empty one; sets server_pid and port.
start() {
  cleanup
  case "$1" in
    ours)
      port=$port_ours
      # Room for the whole ADD-heavy key space; the store grows as sessions arrive (nothing preallocated).
      "$dc_server" -listen "IP:127.0.0.1:$port" -sessions $((addkeys + 1000)) -memory 24G >>"$out/dc_server.log" 2>&1 &
      ;;
    redis)
      port=$port_redis
      redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no --daemonize no \
        --loglevel warning >>"$out/redis.log" 2>&1 &
      ;;
    memcached)
      port=$port_memcached
      user=(); [ "$(id -u)" -eq 0 ] && user=(-u nobody)
      memcached "${user[@]}" -l 127.0.0.1 -p "$port" -U 0 -m 24576 -c 1024 >>"$out/memcached.log" 2>&1 &
      ;;
  esac
  server_pid=$!
  wait_port "$port"
}

json_field() { # FILE KEY: the first number after "KEY":
  grep -o "\"$2\": *[-0-9.eE+]*" "$1" | head -1 | sed 's/.*: *//'
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

# ---- scenarios ------------------------------------------------------------------------------------------------
started=$(date +%s)
{
  echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "command bench/compare.sh $([ "$quick" -eq 1 ] && echo --quick) $([ "$from_head" -eq 1 ] && echo --head)"
  echo "source $source_desc"
  echo "versions $(redis-server --version | awk '{print $1, $2, $3}'); memcached $(memcached -V | awk '{print $2}'); redis-benchmark $(redis-benchmark --version 2>/dev/null | awk '{print $2}')"
  echo "shape clients=$clients datasize=$datasize idsize=$idsize duration=$duration warmup=$warmup keys=$keys addkeys=$addkeys memcount=$memcount low_rate=$low_rate scale_rounds=$scale_rounds"
} >"$out/meta.txt"

for pipeline in "${pipelines[@]}"; do
  for scenario in get90 add90; do
    if [ "$scenario" = get90 ]; then mix="get=90,add=10"; space=$keys; else mix="get=10,add=90"; space=$addkeys; fi
    name="$scenario-p$pipeline"
    say "$name: dc_server (dc_test -bench)"
    start ours; dctest_run "$name.ours" "$mix" "$space" "$pipeline"
    # The same server driven by the generator Redis and memcached get: the generators' own CPU per operation differs
    # (dc_test keeps per-key arrays and checks answers), and on 2 cores that leaks into the server's throughput.
    say "$name: dc_server (Distcache.Compare load, distcache protocol)"
    start ours; gen_run "$name.ours-gen" distcache "$mix" "$space" "$pipeline"
    say "$name: memcached (Distcache.Compare load, text protocol)"
    start memcached; gen_run "$name.memcached" memcache "$mix" "$space" "$pipeline"
    say "$name: redis (Distcache.Compare load, RESP)"
    start redis; gen_run "$name.redis" redis "$mix" "$space" "$pipeline"
    # redis-benchmark runs one command per test: a GET test and a SET NX test, each on a fresh, prefilled server,
    # sized to last about half the window at the rate the mixed run just measured; the report composes the mix.
    rate="$(json_field "$out/$name.redis.json" ops_per_sec)"
    n=$(awk -v r="$rate" -v d="$duration" 'BEGIN { n = int(r * d / 2); if (n < 20000) n = 20000; print n }')
    say "$name: redis (redis-benchmark GET, then SET NX, $n requests each)"
    start redis; "$compare" load -proto redis -port "$port" -clients "$clients" -keys "$keys" -prefill "$keys" -idsize "$idsize" -datasize "$datasize" -prefillonly >>"$log" 2>&1
    rb_run "$name.rb-get" "$pipeline" "$n" "$space" GET "${key_prefix}__rand_int__"
    start redis; "$compare" load -proto redis -port "$port" -clients "$clients" -keys "$keys" -prefill "$keys" -idsize "$idsize" -datasize "$datasize" -prefillonly >>"$log" 2>&1
    rb_run "$name.rb-set" "$pipeline" "$n" "$space" SET "${key_prefix}__rand_int__" "$value" NX EX 3600
  done
done

for count in "${scale[@]}"; do
  name="scale-$count"
  say "$name: dc_server GET only (dc_test -bench), $count stored sessions, pipeline 16"
  start ours
  "$dc_test" -connect "IP:127.0.0.1:$port" -bench -clients "$clients" -pipeline 16 -duration "$duration" -warmup "$warmup" \
    -mix get=100 -keys "$count" -prefill "$count" -datasize "$datasize" -idsize "$idsize" -serverpid "$server_pid" \
    -json "$out/$name.json" >"$out/$name.txt" 2>&1 || { say "Error, dc_test failed: $(tail -3 "$out/$name.txt")"; exit 1; }
done

# The same for ours and for Redis with one generator, so the slowdown with store size can be compared with a mature
# in-memory store's without the generators' own costs (dc_test's grow with the key count) in between. The 1M / 1k
# ratio is the quotient of two noisy throughputs, so the store sizes alternate for several rounds and the report
# takes medians; round 1 is NAME.json, round r NAME.rR.json.
get_only_run() { # NAME KIND PROTO COUNT [RATE]: GET only, 16 in flight, COUNT stored sessions, by the same generator
  local rate=(); [ -n "${5:-}" ] && rate=(-rate "$5")
  say "$1: $2 GET only (Distcache.Compare load${5:+, paced at $5 ops/s}), $4 stored sessions"
  start "$2"
  "$compare" load -proto "$3" -port "$port" -clients "$clients" -pipeline 16 "${rate[@]}" -duration "$duration" \
    -warmup "$warmup" -mix get=100 -keys "$4" -prefill "$4" -datasize "$datasize" -idsize "$idsize" -serverpid "$server_pid" \
    -json "$out/$1.json" >"$out/$1.txt" 2>&1 || { say "Error, the generator failed: $(tail -3 "$out/$1.txt")"; exit 1; }
}
for round in $(seq "$scale_rounds"); do
  suffix=""; [ "$round" -gt 1 ] && suffix=".r$round"
  for count in "${scale[@]}"; do
    get_only_run "ours-gen-scale-$count$suffix" ours distcache "$count"
    get_only_run "redis-scale-$count$suffix" redis redis "$count"
  done
done

# Latency at half of the maximum GET throughput just measured with the largest store, paced evenly (an open loop),
# so queueing at saturation does not hide pauses: ours by dc_test -rate, then ours and Redis by the same generator's
# -rate, each at half of its own maximum, ours also at Redis's rate, and both at a low rate that neither server
# feels, which shows what the machine itself adds (two processes waking each other on two shared cores).
count="${scale[-1]}"
half_median() { # PREFIX: half of the median throughput of PREFIXscale-COUNT.json and its rounds (upper middle if even)
  for f in "$out/$1scale-$count.json" "$out/$1scale-$count".r*.json; do if [ -f "$f" ]; then json_field "$f" ops_per_sec; fi; done |
    sort -g | awk '{ v[NR] = $1 } END { printf "%d", v[int(NR / 2) + 1] / 2 }'
}
half=$(half_median "")
say "half-load: dc_server GET only at $half ops/s (half of dc_test's maximum), $count stored sessions"
start ours
"$dc_test" -connect "IP:127.0.0.1:$port" -bench -clients "$clients" -pipeline 16 -rate "$half" -duration "$duration" \
  -warmup "$warmup" -mix get=100 -keys "$count" -prefill "$count" -datasize "$datasize" -idsize "$idsize" \
  -serverpid "$server_pid" -json "$out/half-load.json" >"$out/half-load.txt" 2>&1 || { say "Error, dc_test failed: $(tail -3 "$out/half-load.txt")"; exit 1; }
half_ours=$(half_median ours-gen-)
half_redis=$(half_median redis-)
get_only_run paced-half.ours ours distcache "$count" "$half_ours"
get_only_run paced-half.redis redis redis "$count" "$half_redis"
get_only_run paced-redis-half.ours ours distcache "$count" "$half_redis"
get_only_run paced-low.ours ours distcache "$count" "$low_rate"
get_only_run paced-low.redis redis redis "$count" "$low_rate"

echo "server count rss_empty_kib rss_full_kib" >"$out/memory.txt"
for kind in ours redis memcached; do
  say "memory: $kind with $memcount sessions"
  start "$kind"; sleep 1
  empty="$("$compare" rss "$server_pid")"
  if [ "$kind" = ours ]; then
    "$dc_test" -connect "IP:127.0.0.1:$port" -bench -clients "$clients" -pipeline 16 -requests 1 -warmup 0 -mix get=100 \
      -keys "$memcount" -prefill "$memcount" -datasize "$datasize" -idsize "$idsize" >>"$log" 2>&1
  else
    proto=redis; [ "$kind" = memcached ] && proto=memcache
    "$compare" load -proto "$proto" -port "$port" -clients "$clients" -keys "$memcount" -prefill "$memcount" \
      -idsize "$idsize" -datasize "$datasize" -prefillonly >>"$log" 2>&1
  fi
  sleep 1
  full="$("$compare" rss "$server_pid")"
  echo "$kind $memcount $empty $full" >>"$out/memory.txt"
done
cleanup

echo "elapsed_s $(( $(date +%s) - started ))" >>"$out/meta.txt"
"$compare" report "$out" "$out/report.md" "$out/chart.svg"
say "done: $out/report.md, $out/chart.svg"
