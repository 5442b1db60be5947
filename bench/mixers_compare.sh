#!/usr/bin/env bash
# Token mixers compared: attention vs conv vs recurrent vs a hybrid (conv below, attention above), each trained
# from scratch with the same recipe, tokenizer, shape (forge-small) and wall-clock budget (FT_MIN minutes of
# training) on SST-2 sentiment and Multi30k de->en translation, then evaluated once on the FULL validation split.
# One JSON line per run is appended to $RESULTS as each run ends (eval + train metrics, parameter count, wall time).
# Resumable: a run already recorded with rc 0 in $RESULTS is skipped, so rerunning the command finishes the rest.
#
#   TOK=outputs/tokenizer-en-16k DATA=../shared/data bash bench/mixers_compare.sh    # README's mixer table
#   python bench/mixers_table.py bench/results/mixers_cpu_15min.jsonl                # the table, from the results
#   SMOKE=1 TOK=/tmp/tok DATA=recipes/sample_data RESULTS=/tmp/mixers.jsonl bash bench/mixers_compare.sh  # dry run
#
# TOK: a Forge tokenizer folder (README: `python -m tokenization.train ... --output_dir outputs/tokenizer-en-16k`).
# ONLY="sentiment-conv translation-hybrid" runs just those; MIXERS="attention conv" just those mixers.
# JOBS runs at a time (default 2, one CPU core each); EXTRA adds recipe flags to every run (e.g. "--bf16" on a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:?set DATA to a folder laid out like ../shared/data (sentiment/, translation/)}
TOK=${TOK:?set TOK to a Forge tokenizer folder (see the README tokenizer command)}
SMOKE=${SMOKE:-0}
FT_MIN=${FT_MIN:-15}
JOBS=${JOBS:-2}
RUNS=${RUNS:-/tmp/forge_mixer_runs}
EXTRA=${EXTRA:-}
MIXERS=${MIXERS:-attention conv recurrent hybrid}
export TOKENIZERS_PARALLELISM=true HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ "$SMOKE" = 1 ]; then
  CONFIG=forge-tiny; FT_MIN=${SMOKE_MIN:-0.02}; BS=8; GEN_BEAMS=1; HYBRID="[conv,attention]"
  MAXS="--max_train_samples 32 --max_eval_samples 8"
  RESULTS=${RESULTS:-/tmp/forge_mixers_smoke.jsonl}
else
  CONFIG=forge-small; BS=32; GEN_BEAMS=4; HYBRID="[conv,conv,attention,attention]"  # forge-small: 4+4 layers
  MAXS=""
  RESULTS=${RESULTS:-bench/results/mixers_cpu_${FT_MIN}min.jsonl}
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))}
mkdir -p "$RUNS" "$(dirname "$RESULTS")"
touch "$RESULTS"

overrides() {  # mixer -> --config_overrides value
  case $1 in
    attention) echo "encoder_mixer=attention,decoder_mixer=attention" ;;
    conv) echo "encoder_mixer=conv,decoder_mixer=conv" ;;
    recurrent) echo "encoder_mixer=recurrent,decoder_mixer=recurrent" ;;
    hybrid) echo "encoder_mixer=$HYBRID,decoder_mixer=$HYBRID" ;;
    *) echo "unknown mixer $1 (attention, conv, recurrent, hybrid)" >&2; return 1 ;;
  esac
}

recorded() {  # name -> exit 0 when $RESULTS already holds a successful run of that name
  python - "$RESULTS" "$1" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
sys.exit(0 if any(r.get("run") == sys.argv[2] and r.get("rc") == 0 for r in rows) else 1)
EOF
}

record() {  # name task mixer folder rc seconds
  python - "$@" <<'EOF' >> "$RESULTS"
import json, sys
from pathlib import Path
name, task, mixer, folder, rc, secs = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
row = {"run": name, "task": task, "mixer": mixer, "rc": rc, "wall_s": secs}
for f in ("eval_results.json", "train_results.json"):
    if (folder / f).is_file():
        row.update(json.loads((folder / f).read_text()))
if (folder / "config.json").is_file():
    config = json.loads((folder / "config.json").read_text())
    row["config"] = {k: config.get(k) for k in ("encoder_mixer", "decoder_mixer", "conv_kernel_size", "recurrent_cell",
                                                  "d_model", "encoder_layers", "decoder_layers")}
weights = folder / "model.safetensors"
if weights.is_file():  # parameters as saved (tied embeddings once), read from the header only
    from safetensors import safe_open
    import math
    with safe_open(str(weights), framework="pt") as handle:
        row["params"] = sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys())
print(json.dumps(row))
EOF
  { echo "=== $1 (rc=$5, $6 s)"; tail -n 15 "$RUNS/$1.log"; } >> "$RUNS/logs.txt"
}

run() {  # task mixer
  local task=$1 mixer=$2 name="$1-$2" t0 extra
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  if recorded "$name"; then echo "skip $name (already in $RESULTS)"; return 0; fi
  if [ "$task" = sentiment ]; then
    extra="--max_seq_length 128"
  else
    extra="--source_lang de --target_lang en --predict_with_generate --generation_num_beams $GEN_BEAMS
           --generation_max_length 64 --max_source_length 64 --max_target_length 64 --label_smoothing_factor 0.1"
  fi
  echo "run $name"
  t0=$(date +%s)
  # shellcheck disable=SC2086  # $extra, $MAXS and $EXTRA are flag lists
  python -m "recipes.$task" --config_name $CONFIG --tokenizer_name "$TOK" --config_overrides "$(overrides "$mixer")" \
    --train_file "$DATA/$task/train.jsonl" --validation_file "$DATA/$task/validation.jsonl" \
    --do_train --do_eval --num_train_epochs 100 --max_train_minutes "$FT_MIN" --learning_rate 5e-4 \
    --weight_decay 0.01 --warmup_steps 50 --per_device_train_batch_size $BS --per_device_eval_batch_size $(( BS * 2 )) \
    --eval_strategy no --save_strategy no --logging_steps 25 --dataloader_num_workers 1 --dataloader_pin_memory false \
    --report_to none --disable_tqdm true --seed 42 --overwrite_output_dir --output_dir "$RUNS/$name" \
    $extra $MAXS $EXTRA > "$RUNS/$name.log" 2>&1
  record "$name" "$task" "$mixer" "$RUNS/$name" $? $(( $(date +%s) - t0 ))
}

slot() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done; }  # at most JOBS runs at once
for mixer in $MIXERS; do
  overrides "$mixer" > /dev/null || exit 2
  for task in sentiment translation; do
    slot; run "$task" "$mixer" &
  done
done
wait
echo "results in $RESULTS (logs: $RUNS/logs.txt)"
