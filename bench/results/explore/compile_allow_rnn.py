"""Does torch.compile trace Forge's recurrent encoder in one graph? (issue 19: no graph break under --torch_compile)

forge-tiny sequence classifier with a BiLSTM in every encoder layer, batch 4, a padded row, eval mode (no dropout),
aot_eager-style compilation whose forward/backward compilers count the ATen nodes of the joint graph. Prints
Dynamo's graph breaks, the number of graphs, whether loss and gradients match eager, and the node counts at two
sequence lengths, with torch._dynamo.config.allow_rnn off (torch's default) and on.

    PYTHONPATH=. python bench/results/explore/compile_allow_rnn.py
"""

import torch
import torch._dynamo
from torch._dynamo.backends.common import aot_autograd
from torch._dynamo.utils import counters

try:
    import forge.modeling  # noqa: F401  (the installed package)
    from forge.modeling.configuration_forge import ForgeConfig
    from forge.modeling.modeling_forge import ForgeForSequenceClassification
except ImportError:  # run from the repository root
    import modeling  # noqa: F401
    from modeling.configuration_forge import ForgeConfig
    from modeling.modeling_forge import ForgeForSequenceClassification


def probe(allow_rnn: bool, length: int) -> None:
    torch._dynamo.reset()
    counters.clear()
    torch._dynamo.config.allow_rnn = allow_rnn
    nodes = {"forward": 0, "backward": 0}

    def counting(kind):
        def compiler(gm, example_inputs):
            nodes[kind] += sum(1 for n in gm.graph.nodes if n.op == "call_function")
            return gm.forward
        return compiler

    backend = aot_autograd(fw_compiler=counting("forward"), bw_compiler=counting("backward"))
    torch.manual_seed(0)
    config = ForgeConfig.from_pretrained("forge-tiny", vocab_size=100, encoder_mixer="recurrent",
                                         recurrent_cell="lstm", num_labels=2)
    model = ForgeForSequenceClassification(config).eval()
    ids = torch.randint(3, 100, (4, length))
    mask = torch.ones_like(ids)
    mask[0, length // 2:] = 0
    labels = torch.tensor([0, 1, 0, 1])
    out = torch.compile(model, backend=backend)(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = model(input_ids=ids, attention_mask=mask, labels=labels)
    ref.loss.backward()
    same = torch.allclose(out.loss, ref.loss, atol=1e-5) and all(
        torch.allclose(a, p.grad, atol=1e-5) for a, p in zip(compiled_grads, model.parameters()))
    print(f"allow_rnn={allow_rnn} length={length}: graph breaks {sum(counters['graph_break'].values())}, "
          f"graphs {counters['stats']['unique_graphs']}, same loss and gradients as eager {same}, "
          f"ATen nodes forward {nodes['forward']} backward {nodes['backward']}")


if __name__ == "__main__":
    print(f"torch {torch.__version__}")
    for allow in (False, True):
        for length in (16, 32):
            probe(allow, length)
