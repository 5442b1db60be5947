"""The int8 switch through ``pipeline()`` on a trained translation folder (session 24, README "Speed switches")::

    python bench/results/explore/int8_pipeline_check.py outputs/s24_mt_scratch43/translation-forge-scratch-seed43 \
        | tee bench/results/explore/int8_pipeline_check.log

Needs ``pip install -e ".[int8]"``. Loads the folder with int8 weights in one ``pipeline()`` call, turns on compiled
greedy decoding, translates one sentence (the first call compiles), then times five more calls.
"""

import os
import statistics
import sys
import time
import warnings

import torch
from torchao.quantization import Int8WeightOnlyConfig
from transformers import TorchAoConfig, pipeline

warnings.filterwarnings("ignore", message=".*_stable_hash_for_caching.*")
pipe = pipeline(model=sys.argv[1], trust_remote_code=True, dtype=torch.bfloat16,
                model_kwargs={"quantization_config": TorchAoConfig(Int8WeightOnlyConfig())})
pipe.model.generation_config.compiled_decoding = True
pipe.model.generation_config.num_beams = 1
weight = pipe.model.model.decoder.layers[0].self_attn.qkv_proj.weight
print(f"load average {os.getloadavg()}; {type(pipe).__name__}; decoder weights: {type(weight).__name__}")
source = "Ein Mann mit einem roten Hut fährt mit dem Fahrrad über eine Brücke."
start = time.perf_counter()
print(pipe(source), f"first call {time.perf_counter() - start:.1f} s")
times = []
for _ in range(5):
    start = time.perf_counter()
    out = pipe(source)
    times.append(time.perf_counter() - start)
print(out, f"median of 5 calls {1e3 * statistics.median(times):.0f} ms")
