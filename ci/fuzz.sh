#!/usr/bin/env bash
# Fuzz repro's readers of outside data: the targets in harness/fuzz/
# (cargo-fuzz, libFuzzer), seeded from harness/fuzz/corpus/. TESTING.md,
# "Fuzzing", says what each target feeds and what it asserts.
#
#   ci/fuzz.sh [--seconds N] [--keep] [TARGET...]   each target N seconds (default 60)
#   ci/fuzz.sh --ci [TARGET...]                     CI's run: fixed seed, fixed runs
#   ci/fuzz.sh --reproduce TARGET FILE              one input through its target
#
# --seconds explores: a new random seed each time, as long as asked. --ci
# is what .ci/run gates a commit on, so it depends on the commit alone: seed
# 1 and a fixed number of executions per target (about 20 s each on a quiet
# 2-core machine; a busy one takes longer, never runs less). The same commit
# and corpus give the same inputs, so a CI finding reproduces here with
# `ci/fuzz.sh --ci TARGET`, and a pass is not luck of the clock.
#
# Stable Rust: cargo-fuzz with --sanitizer none needs no nightly. Coverage
# comes from SanitizerCoverage; the findings are panics (every assertion in
# repro::fuzzing and every panic in repro), inputs slower than -timeout and
# allocations past -rss_limit_mb. repro has no unsafe code of its own to give
# an address sanitizer work.
#
# New inputs the fuzzer finds go to a scratch copy of the corpus; with
# --keep they are merged (only those adding coverage) into the committed
# corpus. A crash leaves its input in harness/fuzz/artifacts/TARGET/, named
# on stderr with the panic and (up to 64 KiB) the input itself as base64, so
# a finding on a CI machine can be replayed from its log; it fails the
# script. The executions per target are printed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$root/harness/fuzz"
seconds=60 keep=0 reproduce=0 ci=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?--seconds N}; shift 2 ;;
    --keep) keep=1; shift ;;
    --ci) ci=1; shift ;;
    --reproduce) reproduce=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz: unknown option $1 (see ci/fuzz.sh --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case "$seconds" in ''|*[!0-9]*) echo "fuzz: --seconds takes a whole number of seconds, not $seconds" >&2; exit 2 ;; esac

# libFuzzer is C++, compiled by the libfuzzer-sys crate.
if ! command -v c++ >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "fuzz: installing g++ (libFuzzer is C++)" >&2
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends g++ >&2
fi
# cargo-fuzz, pinned, beside the other tools CI installs for itself.
tools="${XDG_CACHE_HOME:-$HOME/.cache}/repro-tools"
cargo_fuzz="$tools/cargo-fuzz/bin/cargo-fuzz"
if [ ! -x "$cargo_fuzz" ]; then
  echo "fuzz: installing cargo-fuzz 0.13.2 into $tools/cargo-fuzz" >&2
  cargo install --quiet --locked --version 0.13.2 --root "$tools/cargo-fuzz" cargo-fuzz >&2
fi
# cargo fuzz SUBCOMMAND [ARGS...], its options before the target's (`--` passes libFuzzer's).
cf() { local sub=$1; shift; (cd "$fuzz" && "$cargo_fuzz" fuzz "$sub" --fuzz-dir . --sanitizer none "$@"); }
all=$(cd "$fuzz" && "$cargo_fuzz" fuzz list --fuzz-dir .)

if [ "$reproduce" = 1 ]; then
  [ ${#targets[@]} = 2 ] || { echo "fuzz: --reproduce TARGET FILE" >&2; exit 2; }
  file=$(realpath "${targets[1]}")
  exec "$cargo_fuzz" fuzz run --fuzz-dir "$fuzz" --sanitizer none "${targets[0]}" "$file"
fi
[ ${#targets[@]} -gt 0 ] || mapfile -t targets <<<"$all"
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$all" || { echo "fuzz: no target $t; the targets are: $(tr "\n" " " <<<"$all")" >&2; exit 2; }
done

# --ci's executions per target: about 20 s of each on the quiet 2-core
# machine (TESTING.md, "Fuzzing", has the rates), the corpus replay included.
ci_runs() {
  case "$1" in
    agent_stream) echo 10000 ;; checkpoint_state) echo 12000 ;; report_summary) echo 16000 ;;
    bisect_state) echo 150000 ;; catalog_toml) echo 400000 ;; deb_package) echo 80000 ;;
    rpm_package) echo 140000 ;; scenario_toml) echo 400000 ;; tar_unpack) echo 50000 ;;
    *) echo "fuzz: --ci has no run count for target $1: add it to ci_runs in ci/fuzz.sh" >&2; exit 2 ;;
  esac
}
for t in "${targets[@]}"; do [ "$ci" = 0 ] || ci_runs "$t" >/dev/null; done

echo "fuzz: building ${#targets[@]} target(s)" >&2
cf build >&2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
printf '%-18s %12s %10s %8s\n' target executions "exec/s" corpus
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "$fuzz/artifacts/$t"
  log="$scratch/$t.log"
  # -timeout: one input past 30 s is a hang; -rss_limit_mb: past 2 GiB an exhaustion.
  if [ "$ci" = 1 ]; then budget=(-seed=1 -runs="$(ci_runs "$t")"); else budget=(-max_total_time="$seconds"); fi
  if ! cf run "$t" "$scratch/$t" "$fuzz/corpus/$t" -- "${budget[@]}" -timeout=30 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$fuzz/artifacts/$t/" >"$log" 2>&1; then
    failed+=("$t")
    grep -A3 -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | grep -v "^ *Running" | head -24 >&2 || true
    # A CI machine's artifacts are gone with it: the log carries the input.
    sed -n "s/.*Test unit written to //p" "$log" | while IFS= read -r a; do
      if [ -f "$a" ] && [ "$(stat -c %s "$a")" -le 65536 ]; then
        echo "fuzz: the input, as base64 (base64 -d > finding; ci/fuzz.sh --reproduce $t finding):" >&2
        base64 -w 0 "$a" >&2; echo >&2
      fi
    done
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  kept=$(find "$scratch/$t" -type f | wc -l)
  printf '%-18s %12s %10s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "+$kept"
  if [ "$keep" = 1 ] && [ "$kept" -gt 0 ]; then
    cf run "$t" "$fuzz/corpus/$t" "$scratch/$t" -- -merge=1 -rss_limit_mb=2048 >>"$log" 2>&1
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]}: inputs under harness/fuzz/artifacts/ (reproduce: ci/fuzz.sh --reproduce TARGET FILE)" >&2
  exit 1
fi
