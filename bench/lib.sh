# Shared by the bench scripts (sourced): a scratch folder, and the processes a script starts, stopped on exit.
#
#   bench_workdir NAME        sets $work to a fresh /tmp/NAME.XXXXXX and arranges that on exit, error or Ctrl-C
#                             every pid in $pids is stopped (bench_stop) and the folder is removed
#   bench_stop PID...         SIGTERM to each, SIGKILL to any still running 5 s later; reaps them and takes them
#                             out of $pids, so that a pid the kernel hands out again is never signalled
#   bench_build DIR TOOL...   builds apps/TOOL (Release) from the source tree DIR into $work/TOOL each (into
#                             $work/PREFIX/TOOL when BENCH_BUILD_PREFIX is set); the log goes to $work/build.log

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
pids=()

bench_stop() {
  local pid p left=()
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    for pid in "$@"; do [ "$p" = "$pid" ] && continue 2; done
    left+=("$p")
  done
  pids=("${left[@]}")
}

bench_cleanup() {
  [ "${#pids[@]}" -eq 0 ] || bench_stop "${pids[@]}"
  wait 2>/dev/null || true
  rm -rf "$work"
}

bench_workdir() {
  work="$(mktemp -d "/tmp/$1.XXXXXX")"
  trap bench_cleanup EXIT
  trap 'bench_cleanup; exit 130' INT TERM
}

bench_build() {
  local src="$1" tool out; shift
  for tool in "$@"; do
    out="$work/${BENCH_BUILD_PREFIX:+$BENCH_BUILD_PREFIX/}$tool"
    dotnet build "$src/apps/$tool/$tool.csproj" -c Release -nologo -v quiet -o "$out" >>"$work/build.log" 2>&1 \
      || { echo "Error, building $tool from $src failed; the end of $work/build.log:" >&2; tail -20 "$work/build.log" >&2; exit 1; }
  done
}
