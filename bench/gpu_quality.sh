#!/usr/bin/env bash
# Issue 13, part 3: convergence on ONE GPU in about 10 minutes (H200 class), as one prepared script.
#   1. a 16k byte-level BPE tokenizer on ../shared/data/pretrain                       (~0.5 min)
#   2. pretrain forge-small (PRESET) in bf16 for PRE_MIN minutes (several epochs of the corpus at batch 128)
#   3. fine-tune all five tasks from it, FT_MIN minutes each, PAR runs at once on the one GPU, bf16, with an
#      evaluation every EVAL_MIN minutes on 200 validation examples (learning curves), then the FULL validation split
#   4. every log, the results JSONL, the table and one learning-curve PNG per task under $OUT (bench/results/...)
# Budget (defaults): 0.5 + 3.5 + 2 x (1.5 + eval) ~= 9 min. ARCHS="forge bart" adds the BART control (twice the
# fine-tuning and a second pretraining: raise the device budget or lower PRE_MIN/FT_MIN first).
#
#   bash bench/gpu_quality.sh                 # on the GPU machine
#   bash bench/gpu_quality.sh --dry-run       # print every command, run nothing (any machine)
#   bash bench/gpu_quality.sh --smoke         # the whole chain on CPU in seconds: sample data, forge-tiny, /tmp output
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
DATA=${DATA:-../shared/data}
PRESET=${PRESET:-forge-small}
PRE_MIN=${PRE_MIN:-3.5}
FT_MIN=${FT_MIN:-1.5}
EVAL_MIN=${EVAL_MIN:-0.25}
PAR=${PAR:-5}
ARCHS=${ARCHS:-forge}
OUT=${OUT:-bench/results/gpu_quality}
RUNS=${RUNS:-outputs/gpu_quality}

case "$MODE" in
  --dry-run)
    exec python bench/quality.py --dry_run --data_dir "$DATA" --runs_dir "$RUNS" --results "$OUT/quality_gpu.jsonl" \
      --preset "$PRESET" --architectures $ARCHS --pretrain_minutes "$PRE_MIN" --finetune_minutes "$FT_MIN" \
      --eval_every_minutes "$EVAL_MIN" --parallel "$PAR" --batch_size 64 --extra_pretrain "--bf16 true --per_device_train_batch_size 128" \
      --extra_finetune --bf16 true ;;
  --smoke)
    OUT=${SMOKE_OUT:-$(mktemp -d /tmp/gpu_quality_smoke.XXXXXX)}
    python bench/quality.py --smoke --runs_dir "$OUT/runs" --results "$OUT/quality_gpu.jsonl" --architectures $ARCHS \
      --parallel 2 2>&1 | tee "$OUT/quality.log"
    echo "smoke output: $OUT"
    exit 0 ;;
  run) ;;
  *) echo "usage: bash bench/gpu_quality.sh [--dry-run|--smoke]" >&2; exit 2 ;;
esac

mkdir -p "$OUT" "$RUNS"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
  echo "commit ${FORGE_GIT_COMMIT:-$(git rev-parse HEAD)}"
} 2>&1 | tee "$OUT/gpu_info.txt"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: use --smoke on CPU')" || exit 1

# One process per run; the harness records each run as it ends (so a killed script keeps what finished).
# -k: a run that outlives SIGTERM is killed 20 s later (a hung child must not hold the pipe to tee open)
timeout -k 20 "${TOTAL_TIMEOUT:-570}" python bench/quality.py --data_dir "$DATA" --runs_dir "$RUNS" --results "$OUT/quality_gpu.jsonl" \
  --preset "$PRESET" --architectures $ARCHS --pretrain_minutes "$PRE_MIN" --finetune_minutes "$FT_MIN" \
  --eval_every_minutes "$EVAL_MIN" --eval_subset_size 200 --parallel "$PAR" --batch_size 64 --threads 3 \
  --learning_rate 5e-4 --pretrain_learning_rate 1e-3 --save_steps 100000 \
  --extra_pretrain "--bf16 true --per_device_train_batch_size 128 --dataloader_num_workers 4 --preprocessing_num_workers 8" \
  --extra_finetune --bf16 true 2>&1 | tee "$OUT/quality.log"
rc=${PIPESTATUS[0]}
# keep the run logs and learning-curve points next to the results (the model folders stay in $RUNS)
mkdir -p "$OUT/logs"
cp "$RUNS"/logs/*.log "$OUT/logs/" 2>/dev/null || true
for d in "$RUNS"/*/; do [ -f "$d/learning_curve.jsonl" ] && cp "$d/learning_curve.jsonl" "$OUT/logs/$(basename "$d")_learning_curve.jsonl"; done
python bench/quality.py render --results "$OUT/quality_gpu.jsonl" | tee -a "$OUT/quality.log"
exit "$rc"
