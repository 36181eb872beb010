#!/usr/bin/env bash
# Two builds of the CLI, one instrument: `bench decode` ms/token of build A and build B alternating, idle and beside
# CONTEND busy processes of bench decode's own (--contend), REPEATS rounds of A-idle, B-idle, A-loaded, B-loaded, so
# both builds meet the same minutes of a shared machine. Prints the median of each (build, condition) per model.
# Usage: bench/ab-decode.sh A_CLI B_CLI -- BENCH_DECODE_ARGS…
#   e.g. bench/ab-decode.sh /tmp/old/linearize src/Linearize.Cli/bin/Release/net10.0/linux-x64/linearize -- \
#          --model stories110m.bin --tokenizer tok.bin --model GLA_DIR --contexts 256 --threads 2 --new-tokens 32
#   env: REPEATS=4, CONTEND=2 (0: idle only), BOOST=1: run in a new session whose autogroup has nice -20 (root), so the
#        busy processes compete with the builds and the rest of a shared machine does not.
set -euo pipefail
if [ "${BOOST:-0}" = 1 ] && [ -z "${BOOSTED:-}" ]; then
  exec env BOOSTED=1 setsid -w bash -c 'echo -20 > /proc/$$/autogroup && exec nice -n -20 "$@"' _ "$0" "$@"
fi
[ $# -ge 3 ] && [ "$3" = "--" ] || { sed -n 2,9p "$0"; exit 2; }
A=$1; B=$2; shift 3
REPEATS=${REPEATS:-4}; CONTEND=${CONTEND:-2}
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
loads="0"; [ "$CONTEND" -gt 0 ] && loads="0 $CONTEND"
for r in $(seq "$REPEATS"); do
  for load in $loads; do
    for build in A B; do
      cli=$A; [ $build = B ] && cli=$B
      "$cli" bench decode "$@" --contend "$load" --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
for m in d["models"]:
    for x in m["results"]:
        print(sys.argv[1], sys.argv[2], m["model"], x["context"], x["ms_per_token"], sep="\t")' "$build" "$load" >> "$rows"
      echo "round $r, build $build, $load busy: done" >&2
    done
  done
done
python3 - "$rows" "$A" "$B" <<'EOF'
import statistics, sys
data = {}
for line in open(sys.argv[1]):
    build, load, model, ctx, ms = line.rstrip("\n").split("\t")
    data.setdefault((model, ctx, load, build), []).append(float(ms))
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}\n")
print("| model | context | busy | A ms/token (median) | B ms/token (median) | B ÷ A | runs A; B |")
print("|---|---:|---:|---:|---:|---:|---|")
for (model, ctx, load, build) in sorted(k for k in data if k[3] == "A"):
    a, b = data[(model, ctx, load, "A")], data.get((model, ctx, load, "B"), [float("nan")])
    runs = ", ".join(f"{v:.2f}" for v in a) + "; " + ", ".join(f"{v:.2f}" for v in b)
    print(f"| {model} | {ctx} | {load} | {statistics.median(a):.2f} | {statistics.median(b):.2f} | {statistics.median(b) / statistics.median(a):.2f} | {runs} |")
EOF
