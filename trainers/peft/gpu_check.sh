#!/usr/bin/env bash
# gpu_check.sh: the one check of train.py to run on a GPU machine.
#
#   OUT=/path/to/results bash trainers/peft/gpu_check.sh DATASET_DIR
#
# DATASET_DIR is a directory written by `downshift export --format openai` (an exported
# tau-bench workload). Needs python3 with torch, transformers and peft; no network (it
# builds a tiny random Llama from a config and uses the byte tokenizer), no bitsandbytes.
# Takes well under 5 minutes on an H200; every stage is bounded by `timeout`.
#
# Writes at most 8 files, all directly in $OUT:
#   env.txt           nvidia-smi and the package versions
#   dry_run.json      train.py --dry-run's summary of the dataset
#   events.jsonl      the main run's JSON-lines progress (stdout of train.py)
#   train.log         stderr of every stage (human logs, tracebacks)
#   metrics.json      the main run's metrics
#   loss.csv          the main run's loss curve (step, train_loss, val_loss)
#   adapter_files.txt the adapter's files and sizes, and a check that LoRA B moved
#   variant.jsonl     events of a short second run (fp32, grad accumulation,
#                     gradient checkpointing); it may fail without failing the check
# The adapter itself stays under /tmp: it does not come back.
set -euo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

data=${1:?usage: OUT=DIR bash gpu_check.sh DATASET_DIR}
: "${OUT:?set OUT to the folder for the results}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
train="$here/train.py"
work=$(mktemp -d /tmp/downshift-peft-check.XXXXXX)
mkdir -p "$OUT"
log="$OUT/train.log"
: >"$log"

echo "== environment"
{
	date -u +%Y-%m-%dT%H:%M:%SZ
	nvidia-smi || echo "nvidia-smi failed"
	python3 - <<'PY'
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "transformers", "peft", "accelerate", "safetensors", "bitsandbytes"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as e:  # noqa: BLE001
        print(name, "not available:", type(e).__name__, e)
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
      "bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
PY
} >"$OUT/env.txt" 2>&1 || true
cat "$OUT/env.txt"

echo "== dry run on $data"
drc=0
timeout 60 python3 "$train" --dry-run --tiny-random-llama --data "$data" --max-length 1024 \
	>"$OUT/dry_run.json" 2>>"$log" || drc=$?
if [[ $drc -ne 0 ]]; then
	echo "the dry run failed with exit code $drc:" >&2
	head -n 30 "$log" >&2
	exit "$drc"
fi
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(json.dumps({k: s[k] for k in ("ok", "files", "plan")}, indent=1))' "$OUT/dry_run.json"

# The main run: a LoRA on a randomly initialised model, so a higher learning rate than
# the 2e-4 default makes the curve readable in 300 steps; the check is of the pipeline,
# not of the model.
echo "== training (300 steps or 2 epochs, whichever comes first)"
rc=0
timeout 240 python3 "$train" --tiny-random-llama --data "$data" --out "$work/run" \
	--epochs 2 --max-steps 300 --batch-size 8 --max-length 1024 --lr 1e-3 \
	--eval-every 25 --log-every 5 --seed 1 \
	>"$OUT/events.jsonl" 2>>"$log" || rc=$?
tail -n 40 "$log"
for f in metrics.json loss.csv; do
	if [[ -f "$work/run/$f" ]]; then cp "$work/run/$f" "$OUT/$f"; fi
done
if [[ $rc -ne 0 ]]; then
	echo "training failed with exit code $rc; see train.log and events.jsonl" >&2
	tail -n 3 "$OUT/events.jsonl" >&2 || true
	exit "$rc"
fi

echo "== adapter"
{
	echo "# files under $work/run/adapter"
	find "$work/run/adapter" -type f -printf '%s\t%P\n' | sort -k2
	python3 - "$work/run/adapter" <<'PY'
import sys
from safetensors.torch import load_file
w = load_file(sys.argv[1] + "/adapter_model.safetensors")
b = [k for k in w if "lora_B" in k]
moved = sum(1 for k in b if w[k].abs().max().item() > 0)
print(f"# {len(w)} tensors, {sum(t.numel() for t in w.values()):,} parameters; "
      f"{moved} of {len(b)} lora_B matrices moved from their zero init")
PY
} >"$OUT/adapter_files.txt" 2>&1
cat "$OUT/adapter_files.txt"

echo "== loss curve (every 25 steps)"
awk -F, 'NR == 1 || $3 != "" { print }' "$OUT/loss.csv"
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(json.dumps({k: m[k] for k in ("steps", "epochs", "train_loss_first", "train_loss", "val_loss_initial", "val_loss", "train_tokens", "tokens_per_s", "train_time_s", "wall_time_s", "gpu", "dtype", "versions")}, indent=1))' "$OUT/metrics.json"

echo "== variant: fp32, --grad-accum 2, --gradient-checkpointing, 20 steps (non-fatal)"
vrc=0
timeout 90 python3 "$train" --tiny-random-llama --data "$data" --out "$work/variant" \
	--max-steps 20 --batch-size 4 --grad-accum 2 --max-length 1024 --precision fp32 \
	--gradient-checkpointing --eval-every 10 --log-every 5 \
	>"$OUT/variant.jsonl" 2>>"$log" || vrc=$?
echo "variant exit code $vrc"
tail -n 2 "$OUT/variant.jsonl" || true

echo "== ok (the adapters stay in $work)"
