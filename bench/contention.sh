#!/usr/bin/env bash
# Training beside competing load: steady-state tokens/s of `linearize train` (demo.sh's recipe on the Liger-GLA
# conversion of stories260K) alone, beside one busy process (a shell loop) and beside a second `train` of its own.
# Usage: [BOOST=1] [STEPS=8] [LINEARIZE=path] [SCENARIOS="alone busy pair"] bench/contention.sh [DIR]
#        Extra environment (OMP_WAIT_POLICY, GOMP_SPINCOUNT, OMP_NUM_THREADS, …) passes through to every train.
#        BOOST=1: run in a new session whose autogroup has nice -20 (root), so the competitors below compete with
#        each other and not with the rest of a shared machine.
# Output: one line per scenario, "scenario tokens/s" (for pair: both trains, then their sum), then the load average.
# Steady state: the first optimizer step carries one-time costs (tens of seconds for this model), so the rate is
# taken from metrics.jsonl between the end of step 2 and the end of the last step: labelled tokens over
# training-step seconds (tokens / tokens_per_second gives each line's cumulative step seconds).
set -euo pipefail
if [ "${BOOST:-0}" = 1 ] && [ -z "${BOOSTED:-}" ]; then
  exec env BOOSTED=1 setsid -w bash -c 'echo -20 > /proc/$$/autogroup && exec nice -n -20 "$@"' _ "$0" "$@"
fi
cd "$(dirname "$0")/.."
L="${LINEARIZE:-src/Linearize.Cli/bin/Release/net10.0/linux-x64/linearize}"
STEPS="${STEPS:-8}"
DIR="${1:-runs/contention}"
mkdir -p "$DIR"
[ -d "$DIR/gla" ] || "$L" convert --model samples/stories260K --method liger-gla --out "$DIR/gla" >/dev/null

TRAIN=("$L" train --model "$DIR/gla" --data samples/tinystories/val-excerpt.txt --skip-docs 1000 --text-split stream
  --targets q,k,v,o --lr 1e-2 --overwrite)

# Steady tokens/s of a metrics.jsonl between step lines $2 and $3 (1-based).
rate() {
  awk -v a="$2" -v b="$3" -F'[,:]' '{ for (i = 1; i < NF; i++) { if ($i == "\"tokens\"") t = $(i + 1); if ($i == "\"tokens_per_second\"") r = $(i + 1) }
    if (NR == a) { t0 = t; s0 = t / r } if (NR == b) { t1 = t; s1 = t / r } }
    END { if (b > a && s1 > s0) printf "%.0f", (t1 - t0) / (s1 - s0); else printf "n/a" }' "$1"
}

# Competitors die with the script, however it ends (the second train is stopped with SIGKILL: its checkpoint is not
# wanted, and SIGTERM would wait for a step boundary).
busy="" second=""
trap 'kill -9 $busy $second 2>/dev/null || true' EXIT
lines() { [ -f "$1" ] && wc -l < "$1" || echo 0; }

# CPU seconds the whole machine spent busy (/proc/stat: user nice system irq softirq steal), and CPU seconds this
# script's reaped children used (bash's `times`): their difference over a scenario is what other processes took,
# the measure of how fair the measurement was.
machine_cpu() { awk '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat; }
children_cpu() { # into $children: in a pipeline or $(…), `times` would report a subshell, which has no children
  times > "$DIR/.times"; children=$(awk 'NR == 2 { split($0, f, /[ ms]+/); print f[1] * 60 + f[2] + f[3] * 60 + f[4] }' "$DIR/.times"); }

for scenario in ${SCENARIOS:-alone busy pair}; do
  rm -rf "$DIR/a" "$DIR/b"
  children_cpu; m0=$(machine_cpu) c0=$children t0=$(date +%s.%N)
  case "$scenario" in
    alone)
      "${TRAIN[@]}" --max-steps "$STEPS" --out "$DIR/a" >/dev/null 2>&1
      echo "alone $(rate "$DIR/a/metrics.jsonl" 2 "$STEPS")" ;;
    busy)
      sh -c 'while :; do :; done' &
      busy=$!
      "${TRAIN[@]}" --max-steps "$STEPS" --out "$DIR/a" >/dev/null 2>&1
      kill -9 "$busy"; wait "$busy" 2>/dev/null || true; busy=""
      echo "busy $(rate "$DIR/a/metrics.jsonl" 2 "$STEPS")" ;;
    pair)
      # The second train runs until the first is done; it starts first and the measured one starts once the
      # second is past its first step, so both windows below are windows where both trained.
      "${TRAIN[@]}" --max-steps 100000 --out "$DIR/b" >/dev/null 2>&1 &
      second=$!
      while [ "$(lines "$DIR/b/metrics.jsonl")" -lt 1 ]; do sleep 0.5; done
      "${TRAIN[@]}" --max-steps "$STEPS" --out "$DIR/a" >/dev/null 2>&1 &
      first=$!
      while [ "$(lines "$DIR/a/metrics.jsonl")" -lt 2 ]; do sleep 0.5; done
      from=$(lines "$DIR/b/metrics.jsonl")
      wait "$first"
      to=$(lines "$DIR/b/metrics.jsonl")
      kill -9 "$second"; wait "$second" 2>/dev/null || true; second=""
      a=$(rate "$DIR/a/metrics.jsonl" 2 "$STEPS")
      b=$(rate "$DIR/b/metrics.jsonl" "$from" "$to")
      echo "pair $a $b $([ "$a" != n/a ] && [ "$b" != n/a ] && echo $((a + b)) || echo n/a)" ;;
    *) echo "error: unknown scenario $scenario (alone, busy, pair)" >&2; exit 2 ;;
  esac
  children_cpu; m1=$(machine_cpu) c1=$children t1=$(date +%s.%N)
  echo "  other processes: $(echo "$m0 $m1 $c0 $c1 $t0 $t1" | awk '{ printf "%.1f CPU-s of %.0f s", ($2 - $1) - ($4 - $3), $6 - $5 }'); load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
done
