#!/usr/bin/env bash
# The main job on the shared stories260K model: build, generate text, and measure perplexity under both
# golden protocols. Needs only the .NET 10 SDK and ../shared (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
SHARED="${LINEARIZE_SHARED:-../shared}"
if [ ! -d "$SHARED/models/stories260K" ]; then
  echo "error: $SHARED/models/stories260K not found (set LINEARIZE_SHARED to the shared material)" >&2
  exit 1
fi
dotnet build src/Linearize.Cli -c Release -v quiet -nologo >&2
L=src/Linearize.Cli/bin/Release/net10.0/linux-x64/linearize
MODEL="$SHARED/models/stories260K"
TEXT="$SHARED/data/tinystories/val.txt"

echo "== inspect"
"$L" inspect --model "$MODEL"
echo "== generate (greedy)"
"$L" generate --model "$MODEL" --prompt "Once upon a time" --max-new-tokens 100
echo "== generate (temperature 0.8, top-p 0.9, seed 1)"
"$L" generate --model "$MODEL" --prompt "The little dog" --max-new-tokens 100 --temperature 0.8 --top-p 0.9 --seed 1
echo "== perplexity, per-line protocol (golden: mean NLL 1.439589)"
"$L" eval ppl --model "$MODEL" --text "$TEXT" --max-docs 200
echo "== perplexity, rolling 512-token protocol (golden: mean NLL 1.402990)"
"$L" eval ppl --model "$MODEL" --text "$TEXT" --max-docs 200 --rolling --max-length 512
