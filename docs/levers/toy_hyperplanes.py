"""Lever study of the toy claim "zero loss iff d >= s": the scorecard's effect (log10 jump of the
final/start loss ratio from d = s-1 to d = s, Welch 95 % interval over planes) as the in-plane
optimisation's steps and learning rate change. Prints a markdown table (docs/stages.md).

    python docs/levers/toy_hyperplanes.py
"""
import itertools

import torch

from losslab import scorecard, wedge

D, S, PLANES = 200, 20, 8
print("| steps | in-plane lr | ratio at d = s-1 | ratio at d = s | effect [95 % interval] | verdict |")
print("|---|---|---|---|---|---|")
torch.set_num_threads(1)
for steps, lr in itertools.product((300, 1000, 3000), (0.3, 1.0)):
    t = wedge.hyperplane_experiment(D, S, [S - 1, S], PLANES, steps, lr, seed=0, init_mean=3.0, init_std=1.0,
                                    optimizer="adam")
    r = scorecard.hyperplanes(t)
    ratio = (t.final_loss / t.start_loss).groupby(t.d).median()
    print(f"| {steps} | {lr:g} | {ratio[S - 1]:.2g} | {ratio[S]:.2g} | {r['effect']:.2f} [{r['ci_low']:.2f}, "
          f"{r['ci_high']:.2f}] | {r['verdict']} |", flush=True)
