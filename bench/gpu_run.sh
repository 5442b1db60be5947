#!/usr/bin/env bash
# The GPU part of issue 7, as one script for a lent accelerator: bf16 autocast + sdpa (and flash_attention_2 when its
# package is importable), forge-small shape plus forge-base training. Results land in ${OUT:-bench/results}.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu_info.txt"
python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu_info.txt"
timeout "${MAIN_TIMEOUT:-400}" python bench/bench_model.py --device cuda --dtype bf16 --attn sdpa --threads 8 --rounds 5 --warmup 2 --square 8192 \
  --mm-repeats 10 --scaling-batch 8 --extra-train-presets forge-base --note "GPU not shared" \
  --json "$OUT/cuda_bf16_sdpa_forge-small.json" 2>&1 | tee "$OUT/cuda_bf16_sdpa.txt"
if python -c "import flash_attn" 2>/dev/null; then
  timeout "${FLASH_TIMEOUT:-200}" python bench/bench_model.py --device cuda --dtype bf16 --attn flash_attention_2 --threads 8 --rounds 5 --warmup 2 \
    --square 8192 --mm-repeats 10 --scaling-lens '' --extra-train-presets forge-base --note "GPU not shared" \
    --json "$OUT/cuda_bf16_flash_forge-small.json" 2>&1 | tee "$OUT/cuda_bf16_flash.txt"
else
  echo "flash_attn is not installed on this machine: flash_attention_2 not measured" | tee -a "$OUT/gpu_info.txt"
fi
