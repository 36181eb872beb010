#!/usr/bin/env bash
# Usage: bench/peer/contended.sh MODEL.bin TOKENIZER GGUF_DIR [OUT_DIR]
#   Decode ms/token on a shared machine, both engines, one instrument: llama.cpp (llama-batched-bench) and linearize
#   (`bench decode`, the teacher MODEL.bin and its Liger-GLA conversion) at one context depth, idle and beside CONTEND
#   busy processes, the two conditions alternating REPEATS times so every loaded figure has an idle one from the same
#   minute. The busy processes are shell loops started by this script around both engines alike (the same loop as
#   `bench decode --contend`). Prints a markdown table: median idle, median loaded, loaded ÷ idle, per engine.
#   env: LINEARIZE (the CLI), LLAMA_CPP_DIR (/work/peer/llama.cpp), FORMAT=float32 (or bfloat16, q8), DEPTH=256,
#        THREADS=2, CONTEND=2, REPEATS=3, NEW=32 (tokens timed), BOOST=1: run in a new session whose autogroup has
#        nice -20 (root), so the busy loops — started inside it — compete with the engines, and the rest of a
#        shared machine does not.
set -euo pipefail
if [ "${BOOST:-0}" = 1 ] && [ -z "${BOOSTED:-}" ]; then
  exec env BOOSTED=1 setsid -w bash -c 'echo -20 > /proc/$$/autogroup && exec nice -n -20 "$@"' _ "$0" "$@"
fi
[ $# -ge 3 ] || { sed -n 2,11p "$0"; exit 2; }
MODEL=$(realpath "$1"); TOK=$(realpath "$2"); GGUF=$(realpath "$3"); OUT=$(realpath -m "${4:-bench-contended-out}")
HERE=$(cd "$(dirname "$0")" && pwd)
L=${LINEARIZE:-$HERE/../../src/Linearize.Cli/bin/Release/net10.0/linux-x64/linearize}
B=${LLAMA_CPP_DIR:-/work/peer/llama.cpp}/build/bin
FORMAT=${FORMAT:-float32}; DEPTH=${DEPTH:-256}; THREADS=${THREADS:-2}; CONTEND=${CONTEND:-2}; REPEATS=${REPEATS:-3}
NEW=${NEW:-32}
case $FORMAT in float32) G=F32;; bfloat16) G=BF16;; q8) G=Q8_0;; *) echo "FORMAT must be float32, bfloat16 or q8" >&2; exit 2;; esac
name=$(basename "$MODEL" .bin); mkdir -p "$OUT"
GGUF_FILE=$GGUF/$name-$G.gguf
[ -f "$GGUF_FILE" ] || { echo "no $GGUF_FILE (bench/peer/llamacpp.sh writes it)" >&2; exit 2; }
GLA=$OUT/$name-liger-gla
[ -d "$GLA" ] || "$L" convert --model "$MODEL" --tokenizer "$TOK" --method liger-gla --out "$GLA" >/dev/null

busy=()
stop_busy() { [ ${#busy[@]} -eq 0 ] || kill "${busy[@]}" 2>/dev/null || true; wait "${busy[@]}" 2>/dev/null || true; busy=(); }
trap stop_busy EXIT
: > "$OUT/rows.tsv"
for r in $(seq "$REPEATS"); do
  for load in 0 "$CONTEND"; do
    for _ in $(seq "$load"); do sh -c 'while :; do :; done' & busy+=($!); done
    peer=$("$B/llama-batched-bench" -m "$GGUF_FILE" -t "$THREADS" -c $((DEPTH + NEW)) -b 2048 -ub 512 -ctk f32 -ctv f32 \
      -npp "$DEPTH" -ntg "$NEW" -npl 1 --output-format jsonl 2>/dev/null | grep '^{' | python3 -c 'import json,sys; print(1000 / json.loads(sys.stdin.readline())["speed_tg"])')
    "$L" bench decode --model "$MODEL" --tokenizer "$TOK" --model "$GLA" --contexts "$DEPTH" --weight-dtype "$FORMAT" \
      --threads "$THREADS" --new-tokens "$NEW" --beyond-context --no-bandwidth --json 2>/dev/null > "$OUT/linearize-$r-$load.json"
    ours=$(python3 -c 'import json,sys; print(" ".join(str(m["results"][0]["ms_per_token"]) for m in json.load(open(sys.argv[1]))["models"]))' "$OUT/linearize-$r-$load.json")
    stop_busy
    printf '%s\t%s\t%s %s\n' "$r" "$load" "$peer" "$ours" >> "$OUT/rows.tsv"
    echo "repeat $r, $load busy: llama.cpp / teacher / Liger-GLA ms/token = $peer $ours" >&2
  done
done
python3 - "$OUT/rows.tsv" "$CONTEND" "$FORMAT" "$DEPTH" <<'EOF'
import sys, statistics
rows, contend, fmt, depth = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
data = {}
for line in open(rows):
    r, load, vals = line.rstrip("\n").split("\t")
    for engine, v in zip(["llama.cpp teacher", "linearize teacher", "linearize Liger-GLA"], vals.split()):
        data.setdefault((engine, load), []).append(float(v))
print(f"| {fmt}, decode @{depth} | idle ms/token (median) | {contend} busy ms/token (median) | loaded ÷ idle | runs (idle; loaded) |")
print("|---|---:|---:|---:|---|")
for engine in ["llama.cpp teacher", "linearize teacher", "linearize Liger-GLA"]:
    idle, loaded = data[(engine, "0")], data[(engine, contend)]
    runs = ", ".join(f"{v:.1f}" for v in idle) + "; " + ", ".join(f"{v:.1f}" for v in loaded)
    print(f"| {engine} | {statistics.median(idle):.1f} | {statistics.median(loaded):.1f} | {statistics.median(loaded) / statistics.median(idle):.2f}× | {runs} |")
EOF
