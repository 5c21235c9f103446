"""The transformer baseline as a TransformerLens bridge, beside the earlier PyTorch
``nn.TransformerEncoderLayer`` implementation with the same weights, in the same process.

Forward passes (no grad) at the zoo's evaluation lengths and one training step (forward +
backward) at the training lengths, 2 layers, H = 16, batch 64, one thread. The two compute the
same function (``tests/models/test_transformer.py`` checks 1e-5); this measures what the
TransformerLens bridge's hook machinery costs. Run: ``.venv/bin/python benchmarks/bench_transformer.py``.
"""
from __future__ import annotations

import argparse
import time


def _best(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch
    from torch import nn

    torch.set_num_threads(1)
    from workbench.models import ModelConfig, build_model
    from workbench.models.transformer import legacy_reference_forward

    cfg = ModelConfig("transformer", 5, 16, 5, n_layers=2)
    torch.manual_seed(0)
    legacy = {"W_E": torch.randn(5, 16) / 4, "ln_final.weight": torch.ones(16),
              "ln_final.bias": torch.zeros(16), "W_U": torch.randn(16, 5) / 4,
              "b_U": torch.zeros(5)}
    for l in range(2):
        layer = nn.TransformerEncoderLayer(16, cfg.n_heads, 64, dropout=0.0, batch_first=True,
                                           norm_first=True)
        legacy.update({f"layers.{l}.{k}": v for k, v in layer.state_dict().items()})
    from workbench.models.transformer import upgrade_legacy_state_dict

    model = build_model(cfg).eval()
    model.load_state_dict(upgrade_legacy_state_dict(legacy, 2))
    print(f"{'what':<34} {'nn.TransformerEncoderLayer':>27} {'TL bridge':>10} {'ratio':>6}")
    for T in (10, 100, 500):
        tokens = torch.randint(0, 5, (64, T))
        with torch.no_grad():
            ref = _best(lambda tk=tokens: legacy_reference_forward(legacy, cfg, tk), args.repeats)
            new = _best(lambda tk=tokens: model(tk), args.repeats)
        print(f"{f'forward, no grad, B=64, T={T}':<34} {ref * 1e3:>24.1f} ms {new * 1e3:>7.1f} ms "
              f"{new / ref:>6.2f}")

    # Training step: the legacy side as trainable modules, so both do forward + backward.
    tokens = torch.randint(0, 5, (64, 10))
    layers = nn.ModuleList()
    for l in range(2):
        layer = nn.TransformerEncoderLayer(16, cfg.n_heads, 64, dropout=0.0, batch_first=True,
                                           norm_first=True)
        layer.load_state_dict({k[len(f"layers.{l}."):]: v for k, v in legacy.items()
                               if k.startswith(f"layers.{l}.")})
        layers.append(layer)
    W_E, W_U, b_U = (legacy[k].clone().requires_grad_() for k in ("W_E", "W_U", "b_U"))
    ln_final = nn.LayerNorm(16)
    positions = torch.zeros(10, 16)   # the sinusoidal table's cost is the same on both sides

    def legacy_step():
        x = nn.functional.embedding(tokens, W_E) + positions
        mask = nn.Transformer.generate_square_subsequent_mask(10)
        for layer in layers:
            x = layer(x, src_mask=mask, is_causal=True)
        (ln_final(x) @ W_U + b_U).sum().backward()

    model.train()
    ref = _best(legacy_step, args.repeats)
    new = _best(lambda: model(tokens).sum().backward(), args.repeats)
    print(f"{'train step (fwd+bwd), B=64, T=10':<34} {ref * 1e3:>24.1f} ms {new * 1e3:>7.1f} ms "
          f"{new / ref:>6.2f}")


if __name__ == "__main__":
    main()
