"""Micro-bench: a bidirectional LSTM layer over padded rows, packed (current) vs two directions without packing."""
import time, torch
from torch import nn
import sys; sys.path.insert(0, "/work/main")
from modeling.mixers_forge import run_skipping_padding

from modeling.mixers_forge import run_directions_unpacked as split_run

torch.manual_seed(0)
rnn = nn.LSTM(256, 128, batch_first=True, bidirectional=True)
B, T = 32, 200
x = torch.randn(B, T, 256, requires_grad=True)
lengths = torch.randint(150, T + 1, (B,)); lengths[0] = T
mask = torch.arange(T)[None] < lengths[:, None]
a, _ = run_skipping_padding(rnn, x, mask, None); b = split_run(rnn, x, mask)
print("max |packed - split| outputs:", (a - b).abs().max().item())
ga = torch.autograd.grad(a.square().sum(), [x] + list(rnn.parameters())); gb = torch.autograd.grad(b.square().sum(), [x] + list(rnn.parameters()))
print("max |packed - split| gradients:", max((u - v).abs().max().item() for u, v in zip(ga, gb)))
rnn_gru = nn.GRU(256, 128, batch_first=True, bidirectional=True)
print("GRU max |packed - split|:", (run_skipping_padding(rnn_gru, x, mask, None)[0] - split_run(rnn_gru, x, mask)).abs().max().item())
def timeit(fn, n=5):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); out = fn(); out.sum().backward(); ts.append(time.perf_counter() - t0)
    return sorted(ts)[n // 2]
print('threads', torch.get_num_threads(), 'batch', B, 'max length', T, 'lengths', lengths.tolist())
for rep in range(3):
    print("packed", round(timeit(lambda: run_skipping_padding(rnn, x, mask, None)[0]), 4),
          "split", round(timeit(lambda: split_run(rnn, x, mask)), 4),
          "no mask", round(timeit(lambda: rnn(x)[0]), 4))
