"""Write the example's dataset, and (with --checkpoints) train networks outside losslab.

    python examples/conv1d/make_data.py                # examples/conv1d/waves.npz
    python examples/conv1d/make_data.py --checkpoints  # also examples/conv1d/outside/*.pt|.safetensors

The data: noisy 1-D signals of three shapes (sine, square, sawtooth) with random frequency, phase
and amplitude, 64 samples long, one channel; the label is the shape. The checkpoints are trained
by a plain PyTorch loop (no losslab), the way a researcher's own code would, and saved as state
dicts of the network wrapped in DataParallel (so every key starts with "module."): seeds 0 and 2
with torch.save, seed 1 as safetensors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def waves(n: int, length: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length, endpoint=False)
    y = rng.integers(0, 3, n)
    freq = rng.uniform(2, 6, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    amp = rng.uniform(0.5, 1.5, (n, 1))
    arg = 2 * np.pi * freq * t[None] + phase
    shapes = np.stack([np.sin(arg), np.sign(np.sin(arg)), 2 * ((arg / (2 * np.pi)) % 1) - 1])  # [3, n, L]
    x = amp * shapes[y, np.arange(n)] + 0.3 * rng.standard_normal((n, length))
    return x[:, None, :].astype(np.float32), y.astype(np.int64)


def write_data(path: Path, n_train: int, n_test: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x_train, y_train = waves(n_train, seed=0)
    x_test, y_test = waves(n_test, seed=1)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    print(f"wrote {path}: {n_train} train and {n_test} test signals of shape {x_train.shape[1:]}")


def train_outside(data: Path, out: Path, seeds, epochs: int) -> None:
    """A plain PyTorch training loop, independent of losslab."""
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(HERE))
    from model import conv1d_net

    arrays = np.load(data)
    x, y = torch.tensor(arrays["x_train"]), torch.tensor(arrays["y_train"])
    x = (x - x.mean()) / x.std()  # what losslab's standardize does for one channel
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        torch.manual_seed(seed)
        net = conv1d_net(tuple(x.shape[1:]), 3)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(epochs):
            for idx in torch.randperm(len(x)).split(64):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
        acc = (net(x).argmax(1) == y).float().mean().item()
        state = torch.nn.DataParallel(net).state_dict()  # keys "module.0.weight", ...
        if seed == 1:
            path = out / f"seed{seed}.safetensors"
            save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        else:
            path = out / f"seed{seed}.pt"
            torch.save(state, path)
        print(f"wrote {path} (train accuracy {acc:.3f})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "waves.npz")
    ap.add_argument("--n-train", type=int, default=1200)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--checkpoints", action="store_true", help="also train three networks outside losslab")
    ap.add_argument("--checkpoint-dir", type=Path, default=HERE / "outside")
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args(argv)
    write_data(args.out, args.n_train, args.n_test)
    if args.checkpoints:
        train_outside(args.out, args.checkpoint_dir, (0, 1, 2), args.epochs)


if __name__ == "__main__":
    main()
