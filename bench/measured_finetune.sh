#!/usr/bin/env bash
# Measured fine-tuning results: README.md's fine-tuning table comes from this script.
# Each task is fine-tuned from a pretrained Forge folder AND from scratch (same tokenizer, same wall-clock
# budget of FT_MIN minutes of training), then evaluated once on the FULL validation split. At most JOBS runs
# at a time. Results are appended to $OUT/measured.jsonl as each run ends, log tails to $OUT/logs.txt.
#
#   PRETRAINED=outputs/forge-small-pretrained DATA=../shared/data OUT=outputs/measured15 \
#       FT_MIN=15 JOBS=2 bash bench/measured_finetune.sh                        # 2 CPU cores (README table, ~100 min)
#   python bench/finetune_table.py outputs/measured15/measured.jsonl          # README's table from the results
#   DATA=../shared/data OUT=/tmp/out TOK=outputs/tokenizer-en-16k PRE_MIN=1 FT_MIN=1 JOBS=10 GPU=1 \
#       bash bench/measured_finetune.sh                                        # one GPU: pretrains first (bf16)
#   SMOKE=1 DATA=../shared/data OUT=/tmp/out TOK=outputs/tokenizer-en-16k bash bench/measured_finetune.sh   # dry run
#
# ONLY="sentiment-pre translation-pre" reruns just those runs (their new records replace the old ones in the table).
# Without PRETRAINED, stage 1 pretrains forge-small on pretrain/train for PRE_MIN minutes (T5 span corruption).
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:?set DATA to a folder laid out like ../shared/data}
OUT=${OUT:?set OUT to an output folder}
RUNS=${RUNS:-/tmp/forge_runs}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT" "$RUNS"
export TOKENIZERS_PARALLELISM=true HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

GPU=${GPU:-0}
JOBS=${JOBS:-2}
if [ "$SMOKE" = 1 ]; then
  PRE_MIN=${PRE_MIN:-0.05}; FT_MIN=${FT_MIN:-0.05}; BLOCK=64; BS=8; PREC=""; PAR=1
  MAXS="--max_train_samples 64 --max_eval_samples 16"; PRE_MAXS="--max_train_samples 200 --max_eval_samples 20"
  VOCAB="--vocab_size 2000 --tokenizer_train_samples 200"
elif [ "$GPU" = 1 ]; then
  PRE_MIN=${PRE_MIN:-1}; FT_MIN=${FT_MIN:-1}; BLOCK=256; BS=64; PREC="--bf16"; PAR=4
  MAXS=""; PRE_MAXS=""; VOCAB="--vocab_size 16384"
else
  PRE_MIN=${PRE_MIN:-25}; FT_MIN=${FT_MIN:-15}; BLOCK=256; BS=32; PREC=""; PAR=1
  MAXS=""; PRE_MAXS=""; VOCAB="--vocab_size 16384"
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))}
fi
if [ -n "${TOK:-}" ]; then VOCAB="--tokenizer_name $TOK"; fi
COMMON="--report_to none --disable_tqdm true --seed 42 --overwrite_output_dir --dataloader_pin_memory false $PREC"
record() {  # name folder rc seconds
  python - "$@" >> "$OUT/measured.jsonl" <<'EOF'
import json, sys
from pathlib import Path
name, folder, rc, secs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
row = {"run": name, "rc": rc, "wall_s": secs}
for f in ("eval_results.json", "train_results.json"):
    if (folder / f).is_file():
        row.update(json.loads((folder / f).read_text()))
print(json.dumps(row))
EOF
  { echo "=== $1 (rc=$3, $4 s)"; tail -n 15 "$RUNS/$1.log"; } >> "$OUT/logs.txt"
}
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)" >> "$OUT/logs.txt" 2>&1

# 1. pretraining (unless PRETRAINED names a folder) ----------------------------------------------
if [ -n "${PRETRAINED:-}" ]; then
  BASE=$PRETRAINED
else
BASE=$RUNS/pretrained
t0=$(date +%s)
python -m recipes.pretrain --train_file "$DATA/pretrain/train.jsonl" --validation_file "$DATA/pretrain/validation.jsonl" \
  --config_name forge-small $VOCAB --block_size $BLOCK --max_steps 100000 --max_train_minutes $PRE_MIN \
  --per_device_train_batch_size $BS --per_device_eval_batch_size $BS --learning_rate 2e-3 --warmup_steps 100 \
  --eval_strategy no --save_strategy no --logging_steps 25 --dataloader_num_workers 2 \
  --preprocessing_num_workers $(( PAR * 2 )) $PRE_MAXS --output_dir "$RUNS/pretrained" $COMMON > "$RUNS/pretrained.log" 2>&1
record pretrained "$RUNS/pretrained" $? $(( $(date +%s) - t0 ))
fi

# 2. fine-tuning, pretrained vs from scratch -----------------------------------------------------
finetune() {  # name recipe init_flags extra...
  local name=$1 recipe=$2 init=$3; shift 3
  local task=${recipe#recipes.} t0
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  t0=$(date +%s)
  python -m "$recipe" $init --train_file "$DATA/$task/train.jsonl" --validation_file "$DATA/$task/validation.jsonl" \
    --do_train --do_eval --num_train_epochs 100 --max_train_minutes $FT_MIN --learning_rate 5e-4 --weight_decay 0.01 \
    --warmup_steps 50 --per_device_train_batch_size $BS --per_device_eval_batch_size $(( BS * 2 )) \
    --eval_strategy no --save_strategy no --logging_steps 25 --dataloader_num_workers 1 \
    --preprocessing_num_workers $PAR --output_dir "$RUNS/$name" $MAXS $COMMON "$@" > "$RUNS/$name.log" 2>&1
  record "$name" "$RUNS/$name" $? $(( $(date +%s) - t0 ))
}
PRE="--model_name_or_path $BASE"
SCR="--config_name forge-small --tokenizer_name $BASE"
slot() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done; }  # at most JOBS runs at once
GEN="--predict_with_generate --generation_num_beams 4 --generation_max_length 64"
for init in pre scr; do
  if [ $init = pre ]; then I=$PRE; else I=$SCR; fi
  slot; finetune sentiment-$init recipes.sentiment "$I" --max_seq_length 128 &
  slot; finetune translation-$init recipes.translation "$I" --source_lang de --target_lang en $GEN \
    --max_source_length 64 --max_target_length 64 --label_smoothing_factor 0.1 &
  slot; finetune summarization-$init recipes.summarization "$I" $GEN --max_source_length 512 --max_target_length 64 &
  slot; finetune qa-$init recipes.qa "$I" --max_seq_length 384 --doc_stride 128 &
  slot; finetune srl-$init recipes.srl "$I" --max_seq_length 128 &
done
wait
echo "done" >> "$OUT/logs.txt"
