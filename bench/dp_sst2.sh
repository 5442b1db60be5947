#!/usr/bin/env bash
# SST-2 accuracy with differentially private fine-tuning (DP-SGD, recipes.privacy.dp) at epsilon 3 and 8, against
# non-private fine-tuning at the same budget: the same starting model, epochs, expected batch size, learning rate
# and schedule; only --dp_epsilon differs. Each run is evaluated on the full SST-2 validation split (872 sentences).
# One JSON line per finished run is appended to $RESULTS (default bench/results/dp_sst2.jsonl); a rerun skips the
# runs that already have a successful line there, so the script resumes after an interruption.
#
#   PRETRAINED=outputs/forge-small-pretrained DATA=../shared/data bash bench/dp_sst2.sh      # the measurement
#   SMOKE=1 PRETRAINED=... DATA=../shared/data RESULTS=/tmp/dp.jsonl bash bench/dp_sst2.sh     # tiny dry run
#   EPSILONS="1 3 8" SEEDS="42 43" EPOCHS=3 BS=256 LR=1e-3 ...                                  # other settings
#   EXTRA="--use_lora" TAG=-lora ...   # flags added to every run (private and not); TAG is appended to run names
#   PRESET=forge-small TOK=outputs/quality_pt/tokenizer EXTRA="--config_overrides d_model=64,encoder_layers=2,\
#     encoder_attention_heads=2,encoder_ffn_dim=256,decoder_layers=1,decoder_attention_heads=2,decoder_ffn_dim=256 \
#     --init_embeddings ../shared/data/wordvectors/glove.6B.50d.top20k.txt --freeze_embeddings" TAG=-glove64 ...
#                                      # session 11: a 0.1M-parameter model from scratch on frozen GloVe rows
#   EXTRA="... --optim sgd --optim_args momentum=0.9" LR=0.5 ...   # DP-SGD proper (momentum SGD) instead of DP-AdamW
#
# Without PRETRAINED it trains from scratch with TOK (a tokenizer folder) and PRESET (default forge-tiny: smoke tests).
# DP-SGD needs fp32, one device and no gradient accumulation (recipes.privacy.dp refuses the rest); large expected batches
# (BS) and a higher learning rate than non-private fine-tuning are the usual DP-SGD recipe (Li et al., 2022).
# Cost: Opacus materialises each example's gradient of every trained weight, the token embedding included
# (batch x vocabulary x d_model floats: 4.3 GB per step for 256 examples, a 16k vocabulary and d_model 256). Full
# fine-tuning of forge-small ran at about 18 s per step on 2 CPU cores against 0.8 s without privacy, and about
# 7.4 s once each Poisson batch runs as length-sorted passes (--dp_micro_batch_size, default 32 rows); with
# EXTRA="--use_lora" only the adapters and the head get per-example gradients (about 1.5 s per step; 6.6 s before);
# EXTRA="--freeze_embeddings" keeps the token table fixed (about 3-4 s per step).
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:?set DATA to a folder laid out like ../shared/data (sentiment/train.jsonl, sentiment/validation.jsonl)}
RESULTS=${RESULTS:-bench/results/dp_sst2.jsonl}
RUNS=${RUNS:-/tmp/forge_dp_runs}
SMOKE=${SMOKE:-0}
EPSILONS=${EPSILONS:-"3 8"}
SEEDS=${SEEDS:-42}
EXTRA=${EXTRA:-}
TAG=${TAG:-}
if [ "$SMOKE" = 1 ]; then
  EPOCHS=${EPOCHS:-1}; BS=${BS:-8}; LR=${LR:-1e-3}; MAXS="--max_train_samples 64 --max_eval_samples 16"
else
  EPOCHS=${EPOCHS:-3}; BS=${BS:-256}; LR=${LR:-1e-3}; MAXS=""
fi
if [ -n "${PRETRAINED:-}" ]; then
  INIT="--model_name_or_path $PRETRAINED"
else
  INIT="--config_name ${PRESET:-forge-tiny} --tokenizer_name ${TOK:?set PRETRAINED (a Forge folder) or TOK (a tokenizer folder)}"
fi
mkdir -p "$RUNS" "$(dirname "$RESULTS")"
touch "$RESULTS"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

done_already() {  # run name -> 0 when $RESULTS has a successful line for it
  python - "$RESULTS" "$1" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
sys.exit(0 if any(r.get("run") == sys.argv[2] and r.get("rc") == 0 for r in rows) else 1)
EOF
}

record() {  # name folder rc seconds epsilon_target seed extra_flags
  python - "$@" >> "$RESULTS" <<'EOF'
import json, platform, sys
from pathlib import Path

import torch
import transformers

name, folder, rc, secs, target, seed, extra = sys.argv[1:8]
row = {"run": name, "rc": int(rc), "wall_s": int(secs), "target_epsilon": None if target == "none" else float(target),
       "seed": int(seed), "extra_flags": extra, "torch": torch.__version__, "transformers": transformers.__version__,
       "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"}
for f in ("eval_results.json", "train_results.json"):
    path = Path(folder) / f
    if path.is_file():
        row.update(json.loads(path.read_text()))
print(json.dumps(row))
EOF
}

run() {  # name epsilon(or none) seed
  local name=$1 eps=$2 seed=$3 t0 rc dp=""
  if done_already "$name"; then echo "skip $name (in $RESULTS)"; return 0; fi
  if [ "$eps" != none ]; then dp="--dp_epsilon $eps --dp_max_grad_norm ${CLIP:-1.0}"; fi
  echo "run $name"
  t0=$(date +%s)
  python -m recipes.sentiment $INIT --train_file "$DATA/sentiment/train.jsonl" \
    --validation_file "$DATA/sentiment/validation.jsonl" --class_names negative,positive --max_seq_length 64 \
    --do_train --do_eval --num_train_epochs "$EPOCHS" --per_device_train_batch_size "$BS" \
    --per_device_eval_batch_size 128 --learning_rate "$LR" --lr_scheduler_type constant --warmup_steps 0 \
    --eval_strategy no --save_strategy no --logging_steps 25 --report_to none --disable_tqdm true \
    --seed "$seed" --overwrite_output_dir --dataloader_pin_memory false $MAXS $EXTRA $dp \
    --output_dir "$RUNS/$name" > "$RUNS/$name.log" 2>&1
  rc=$?
  record "$name" "$RUNS/$name" "$rc" $(( $(date +%s) - t0 )) "$eps" "$seed" "$EXTRA"
  [ "$rc" = 0 ] || { echo "$name failed (rc=$rc); log tail:"; tail -n 20 "$RUNS/$name.log"; }
}

for seed in $SEEDS; do
  run "sst2-nonprivate$TAG-s$seed" none "$seed"
  for eps in $EPSILONS; do
    run "sst2-dp-eps$eps$TAG-s$seed" "$eps" "$seed"
  done
done
echo "results: $RESULTS"
