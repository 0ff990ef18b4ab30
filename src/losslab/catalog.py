"""The names a configuration may use: datasets, models and model options. No torch here.

The Snakefile validates the config against this catalogue before any job runs. Keeping it free
of torch keeps every parse of the workflow cheap: each dry run, and each SLURM job, which parses
the workflow twice. :mod:`losslab.data` and :mod:`losslab.models` build the real things from the
same names; ``tests/test_models.py`` checks that the option names here match the model
constructors.
"""
from __future__ import annotations

from pathlib import Path

# torchvision datasets: name -> (torchvision class name, folder that proves the files are there)
TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
    "mnist": ("MNIST", "MNIST/raw"),
    "fashionmnist": ("FashionMNIST", "FashionMNIST/raw"),
}
EMBEDDED = ("digits", "regression1d")
DATASETS = EMBEDDED + tuple(TORCHVISION)

# model name -> its model-specific options (beyond width, dropout and batchnorm)
MODEL_OPTIONS = {
    "simplecnn": ("channels",),
    "mlp": ("hidden", "depth", "activation"),
    "resnet20": ("skip", "blocks"),
    "vgg_small": ("channels",),
}
MODEL_NAMES = tuple(MODEL_OPTIONS)


class DataMissingError(FileNotFoundError):
    """A dataset's files are not where the config says they are."""


def unknown_dataset(name: str) -> ValueError:
    return ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")


def unknown_model(name: str) -> ValueError:
    return ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")


def check_dataset(name: str, data_dir: str | Path, download: bool) -> None:
    """Fail early, before any job runs, when a dataset cannot be loaded."""
    if name in EMBEDDED:
        return
    if name not in TORCHVISION:
        raise unknown_dataset(name)
    if download:
        return
    folder = Path(data_dir) / TORCHVISION[name][1]
    if not folder.exists():
        raise DataMissingError(
            f"dataset {name!r} is not in data_dir {str(data_dir)!r} (looked for {folder}). "
            f"Set 'dataset.download: true' in the config to fetch it once, or copy the "
            f"torchvision files for {TORCHVISION[name][0]} into {data_dir}."
        )


def check_model_spec(spec: dict) -> None:
    """Raise a clear error for an unknown model name or option, before any work starts."""
    if spec["name"] not in MODEL_OPTIONS:
        raise unknown_model(spec["name"])
    allowed = MODEL_OPTIONS[spec["name"]]
    for key in spec.get("options", {}):
        if key not in allowed:
            raise ValueError(
                f"unknown option model.options.{key} for model {spec['name']!r}; "
                f"allowed options: {', '.join(allowed) or '(none)'}"
            )
