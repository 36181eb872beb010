#!/usr/bin/env bash
# Usage: bench/peer/compare.sh MODEL.bin TOKENIZER GGUF_DIR [OUT_DIR]
#   Prompt-to-answer speed of linearize (the teacher MODEL.bin and its Liger-GLA conversion) beside llama.cpp on the
#   same weights, measured in one run, format by format (linearize float32/bfloat16/q8 ↔ llama.cpp F32/BF16/Q8_0):
#   prefill tok/s and decode ms/token at each context, then a markdown table with the ratios.
#   GGUF_DIR holds NAME-F32.gguf, NAME-BF16.gguf, NAME-Q8_0.gguf as bench/peer/llamacpp.sh writes them.
#   env: LINEARIZE (the CLI), LLAMA_CPP_DIR (/work/peer/llama.cpp), THREADS=2, PREFILL=512,4096, DEPTHS="256 4096",
#        FORMATS="float32 bfloat16 q8", CONTEND=0 (busy processes beside every measurement, both engines),
#        BOOST=1: run in a new session whose autogroup has nice -20 (root; other sessions' work on a shared machine
#        otherwise takes most of the CPU, in turn, from both engines)
set -euo pipefail
if [ "${BOOST:-0}" = 1 ] && [ -z "${BOOSTED:-}" ]; then
  exec env BOOSTED=1 setsid -w bash -c 'echo -20 > /proc/$$/autogroup && exec nice -n -20 "$@"' _ "$0" "$@"
fi
[ $# -ge 3 ] || { sed -n 2,8p "$0"; exit 2; }
MODEL=$(realpath "$1"); TOK=$(realpath "$2"); GGUF=$(realpath "$3"); OUT=$(realpath -m "${4:-bench-compare-out}")
HERE=$(cd "$(dirname "$0")" && pwd)
L=${LINEARIZE:-$HERE/../../src/Linearize.Cli/bin/Release/net10.0/linux-x64/linearize}
B=${LLAMA_CPP_DIR:-/work/peer/llama.cpp}/build/bin
THREADS=${THREADS:-2}; PREFILL=${PREFILL:-512,4096}; DEPTHS=${DEPTHS:-256 4096}; FORMATS=${FORMATS:-float32 bfloat16 q8}
CONTEND=${CONTEND:-0}
name=$(basename "$MODEL" .bin); mkdir -p "$OUT"
GLA=$OUT/$name-liger-gla
[ -d "$GLA" ] || "$L" convert --model "$MODEL" --tokenizer "$TOK" --method liger-gla --out "$GLA" >/dev/null
busy=()
if [ "$CONTEND" -gt 0 ]; then
  for _ in $(seq "$CONTEND"); do sh -c 'while :; do :; done' & busy+=($!); done
  trap 'kill "${busy[@]}" 2>/dev/null || true' EXIT
fi
for F in $FORMATS; do
  case $F in float32) G=F32;; bfloat16) G=BF16;; q8) G=Q8_0;; esac
  "$B/llama-bench" -m "$GGUF/$name-$G.gguf" -t "$THREADS" -r 2 -ctk f32 -ctv f32 -p "$PREFILL" -n 0 -o json 2>/dev/null > "$OUT/llamacpp-prefill-$F.json"
  "$L" bench prefill --model "$MODEL" --tokenizer "$TOK" --model "$GLA" --prompt-tokens "$PREFILL" --weight-dtype "$F" \
    --threads "$THREADS" --json 2>/dev/null > "$OUT/linearize-prefill-$F.json"
  for D in $DEPTHS; do
    "$B/llama-batched-bench" -m "$GGUF/$name-$G.gguf" -t "$THREADS" -c $((D + 32)) -b 2048 -ub 512 -ctk f32 -ctv f32 \
      -npp "$D" -ntg 32 -npl 1 --output-format jsonl 2>/dev/null | grep '^{' > "$OUT/llamacpp-decode-$F-$D.jsonl"
  done
  "$L" bench decode --model "$MODEL" --tokenizer "$TOK" --model "$GLA" --contexts "${DEPTHS// /,}" --weight-dtype "$F" \
    --threads "$THREADS" --beyond-context --no-bandwidth --json 2>/dev/null > "$OUT/linearize-decode-$F.json"
done
python3 - "$OUT" "$FORMATS" "$PREFILL" "$DEPTHS" <<'EOF'
import json, sys, os
out, formats, prefill, depths = sys.argv[1], sys.argv[2].split(), [int(x) for x in sys.argv[3].split(',')], [int(x) for x in sys.argv[4].split()]
print("| format | measure | llama.cpp teacher | linearize teacher | linearize Liger-GLA | teacher ÷ llama.cpp | GLA ÷ llama.cpp |")
print("|---|---|---:|---:|---:|---:|---:|")
for f in formats:
    lp = {r["n_prompt"]: r["avg_ts"] for r in json.load(open(f"{out}/llamacpp-prefill-{f}.json"))}
    mp = json.load(open(f"{out}/linearize-prefill-{f}.json"))["models"]
    for t in prefill:
        ours = [next((r["tokens_per_second"] for r in m["results"] if r["prompt_tokens"] == t), None) for m in mp]
        fmt = lambda v: "—" if v is None else f"{v:.0f}"
        ratio = lambda v: "—" if v is None else f"{v / lp[t]:.2f}×"
        print(f"| {f} | prefill tok/s @{t} | {lp[t]:.0f} | {fmt(ours[0])} | {fmt(ours[1])} | {ratio(ours[0])} | {ratio(ours[1])} |")
    md = json.load(open(f"{out}/linearize-decode-{f}.json"))["models"]
    for d in depths:
        r = json.loads(open(f"{out}/llamacpp-decode-{f}-{d}.jsonl").readline())
        peer = 1000 / r["speed_tg"]
        ours = [next(x["ms_per_token"] for x in m["results"] if x["context"] == d) for m in md]
        print(f"| {f} | decode ms/token @{d} | {peer:.1f} | {ours[0]:.1f} | {ours[1]:.1f} | {peer / ours[0]:.2f}× faster | {peer / ours[1]:.2f}× faster |")
EOF
