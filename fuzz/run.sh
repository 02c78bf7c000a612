#!/usr/bin/env bash
# Coverage-guided fuzzing of the protocol code with AFL++ and SharpFuzz.
#
#   fuzz/run.sh [frame|reassembly|payload|response|all] [minutes]     (defaults: all, 10 minutes per target)
#
# Installs afl++ (apt) and the sharpfuzz instrumenter (a dotnet tool, under fuzz/.tools) when missing, builds
# the fuzz host, instruments the protocol assemblies in a copy of its output, then fuzzes the targets one after
# another at the lowest priority. Starts from fuzz/corpus/<target> (seeded from test/vectors when empty); new
# corpus entries are merged back into it, and every crash or hang is copied to fuzz/regressions/<target>/ for the
# replay tests (test/Distcache.Fuzz.Tests). Prints executions, corpus size, crashes and hangs per target.
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir="$(pwd)"
repo="$(cd .. && pwd)"

targets=(frame reassembly payload response)
which="${1:-all}"
minutes="${2:-10}"
if [ "$which" != all ]; then
  case " ${targets[*]} " in
    *" $which "*) targets=("$which") ;;
    *) echo "fuzz/run.sh: unknown target '$which'; choose one of: ${targets[*]} all" >&2; exit 2 ;;
  esac
fi
case "$minutes" in
  ''|*[!0-9]*) echo "fuzz/run.sh: minutes must be a whole number, not '$minutes'" >&2; exit 2 ;;
esac

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

if ! command -v afl-fuzz >/dev/null 2>&1; then
  echo "Installing afl++..."
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends afl++
fi

sharpfuzz="$fuzz_dir/.tools/sharpfuzz"
if [ ! -x "$sharpfuzz" ]; then
  echo "Installing the sharpfuzz instrumenter..."
  dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$fuzz_dir/.tools" >/dev/null
fi

echo "Building the fuzz host..."
dotnet build "$fuzz_dir/Distcache.Fuzz/Distcache.Fuzz.csproj" -c Release -warnaserror -nologo -v quiet >/dev/null

# Instrument a fresh copy: sharpfuzz rewrites assemblies in place and refuses to do it twice.
build="$fuzz_dir/build"
rm -rf "$build"
cp -r "$fuzz_dir/Distcache.Fuzz/bin/Release/net10.0" "$build"
for assembly in Distcache.Protocol Distcache.Proxy Distcache.Server; do
  "$sharpfuzz" "$build/$assembly.dll" >/dev/null
done
host=("$(command -v dotnet)" "$build/Distcache.Fuzz.dll")
# Instrumented code only runs under AFL (it writes to AFL's shared memory); seeding uses the plain build.
plain=("$(command -v dotnet)" "$fuzz_dir/Distcache.Fuzz/bin/Release/net10.0/Distcache.Fuzz.dll")

# The fuzzer shares the machine: it never binds a core, never asks for CPU frequency settings, and prints no UI.
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1

stat_of() { sed -n "s/^$2 *: *//p" "$1" | head -n 1; }

summary=()
for target in "${targets[@]}"; do
  corpus="$fuzz_dir/corpus/$target"
  if [ -z "$(ls -A "$corpus" 2>/dev/null)" ]; then
    "${plain[@]}" seed "$repo/test/vectors" "$fuzz_dir/corpus" >/dev/null
  fi

  out="$fuzz_dir/out/$target"
  rm -rf "$out"
  mkdir -p "$out"
  echo "Fuzzing $target for $minutes minute(s) (log: fuzz/out/$target/afl.log)..."
  # A hang is any input that runs over a second (-t 1000).
  nice -n 19 afl-fuzz -i "$corpus" -o "$out" -t 1000 -m none -V "$((minutes * 60))" -- "${host[@]}" "$target" >"$out/afl.log" 2>&1 || {
    echo "afl-fuzz failed for $target; the end of its log:" >&2
    tail -n 30 "$out/afl.log" >&2
    exit 1
  }

  stats="$out/default/fuzzer_stats"
  execs="$(stat_of "$stats" execs_done)"
  queue="$(stat_of "$stats" corpus_count)"
  crashes="$(stat_of "$stats" saved_crashes)"
  hangs="$(stat_of "$stats" saved_hangs)"

  # Every crash and hang becomes a named regression file, replayed by the tests from then on.
  mkdir -p "$fuzz_dir/regressions/$target"
  for kind in crashes hangs; do
    for file in "$out/default/$kind"/id:*; do
      [ -e "$file" ] || continue
      name="${kind%es}"; name="${name%s}-$(sha1sum "$file" | cut -c1-12)"
      cp "$file" "$fuzz_dir/regressions/$target/$name"
    done
  done

  # Merge what the fuzzer found into the corpus: the smallest set that keeps the coverage (afl-cmin), capped in
  # size so the repository stays small.
  merged="$out/merged"
  mkdir -p "$merged"
  cp "$corpus"/* "$out/default/queue"/id:* "$merged/" 2>/dev/null || true
  minimised="$out/minimised"
  if nice -n 19 afl-cmin -i "$merged" -o "$minimised" -t 5000 -m none -- "${host[@]}" "$target" >"$out/cmin.log" 2>&1; then
    rm -rf "$corpus"
    mkdir -p "$corpus"
    budget=$((256 * 1024))
    used=0
    # Smallest first: the same coverage costs fewest bytes, and big inputs are slow to replay.
    while read -r size file; do
      [ $((used + size)) -le "$budget" ] || continue
      used=$((used + size))
      base="$(basename "$file")"
      case "$base" in
        seed-*|found-*) cp "$file" "$corpus/$base" ;;
        *) cp "$file" "$corpus/found-$(sha1sum "$file" | cut -c1-12)" ;;
      esac
    done < <(find "$minimised" -type f -printf '%s %p\n' | sort -n)
    # The seeds from the real captures always stay, whatever afl-cmin made of them: they are the readable examples.
    "${plain[@]}" seed "$repo/test/vectors" "$fuzz_dir/corpus" >/dev/null
  else
    echo "afl-cmin failed for $target (see fuzz/out/$target/cmin.log); the corpus is left as it was." >&2
  fi

  line="$(printf '%-11s %4s min  %12s execs  %5s queue  %4s corpus files  %3s crashes  %3s hangs' \
    "$target" "$minutes" "$execs" "$queue" "$(ls "$corpus" | wc -l)" "$crashes" "$hangs")"
  echo "$line"
  summary+=("$line")
done

echo
echo "Summary ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores):"
printf '%s\n' "${summary[@]}"
