r"""What torch's fused SGD kernel saves siamlab's training step, and that it changes no bit.

On a CPU ``torch.optim.SGD`` runs by default a loop over the parameter tensors, three
kernels each (weight decay, momentum, update); siamlab asks for the fused kernel, one
pass per tensor (``siamlab.train.optim.create_optimizer``). This prints, in one process:

1. the optimiser step alone on the profile's network, the loop and the fused kernel in
   alternating blocks, and whether 20 steps of each give the same parameters and
   momentum buffers bit for bit;
2. siamlab's training step (its step diagnostics on) with each, next to the plain
   reference step (torch's default SGD), in interleaved blocks, with the paired ratios
   round by round (``siamlab.bench.measure.paired_ratio``).

    python benchmarks/fused_sgd.py --set train.precision=fp32            # ~5 min on 2 cores
    python benchmarks/fused_sgd.py --profile cifar10 --steps 12 --block 2 \
        --set data.dataset=npz --set data.root=../shared/data --set train.batch_size=64
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from siamlab.bench.ab import ab_parser, prepared_run
from siamlab.bench.measure import Arm, interleave, paired_ratio
from siamlab.bench.runner import _reference_arm, _siamlab_arm
from siamlab.train.config import OptimConfig
from siamlab.train.optim import create_optimizer
from siamlab.train.speed import speed_label


def with_loop(model: nn.Module, cfg: OptimConfig, batch: int) -> torch.optim.Optimizer:
    """:func:`create_optimizer` on torch's default kernel (a per-tensor loop on a CPU)."""
    return create_optimizer(model, cfg, batch, fused=False)


def optimiser_alone(model: nn.Module, cfg: OptimConfig, rounds: int = 20) -> None:
    """Time the two implementations' step on seeded gradients; check the bits."""
    pairs = {}
    for name, make in (("loop", with_loop), ("fused", create_optimizer)):
        twin = copy.deepcopy(model)
        pairs[name] = twin, make(twin, cfg, 256)
    seconds = dict.fromkeys(pairs, 0.0)
    for r in range(rounds):  # 10 steps of each in turn
        for name, (twin, opt) in pairs.items():
            gen = torch.Generator().manual_seed(r)
            for p in twin.parameters():
                p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=gen))
            t0 = time.perf_counter()
            for _ in range(10):
                opt.step()
            seconds[name] += time.perf_counter() - t0
    (a, opt_a), (b, opt_b) = pairs["loop"], pairs["fused"]
    same = all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    same &= all(
        torch.equal(opt_a.state[p]["momentum_buffer"], opt_b.state[q]["momentum_buffer"])
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )
    tensors = sum(1 for _ in model.parameters())
    ms = {k: 1e3 * v / (10 * rounds) for k, v in seconds.items()}
    print(f"optimiser step alone ({tensors} parameter tensors, {10 * rounds} steps each):")
    print(f"  loop {ms['loop']:.2f} ms, fused {ms['fused']:.2f} ms per step", end="")
    print(f" ({ms['loop'] / ms['fused']:.1f}x); the same bits after them: {same}")


def main() -> None:
    """Time the arms and print their rates and paired ratios."""
    args = ab_parser(__doc__ or "", steps=400).parse_args()
    with prepared_run("fused_sgd", args.profile, args.sets) as (spec, device, data, pool):
        label = f"siamlab {speed_label(spec.config.train)}"
        fused, model, m1 = _siamlab_arm(spec, data, device, pool, f"{label}, fused SGD")
        loop, _, m2 = _siamlab_arm(spec, data, device, pool, f"{label}, loop SGD", with_loop)
        optimiser_alone(model, spec.config.optim)
        ref, _ = _reference_arm(spec, device, pool)
        arms: list[Arm] = [fused, loop, ref]
        try:
            interleave(arms, args.steps, args.block, device, warmup=2)
        finally:
            m1.close()
            m2.close()
    rounds = len(ref.block_rates)
    print(f"{args.profile} profile on {device}, {torch.get_num_threads()} threads, ", end="")
    print(f"{args.steps} steps/arm in {rounds} rounds of {args.block}")
    for arm, base in ((fused, ref), (loop, ref), (fused, loop)):
        p = paired_ratio(arm.block_rates, base.block_rates)
        interval = f"{p.level:.0%}: {p.low:.3f}-{p.high:.3f}" if rounds > 1 else "one round"
        print(f"  {arm.name} / {base.name}: {arm.rate / base.rate:.3f}x over all blocks; ", end="")
        print(f"round by round {p.median:.3f}x ({interval})")
    print(f"  img/s: {', '.join(f'{a.name} {a.rate:.1f}' for a in arms)}")


if __name__ == "__main__":
    main()
