"""What a workflow job does first: load its dataset, the fixed evaluation subsets and the network,
and read checkpoints only when they fit that network.

Every rule that evaluates or trains networks passes ``spec = {"dataset", "model", "evaluation"}``
(a section of the run plan) and gets one :class:`Context`.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import data, io
from .flat import FlatModel
from .models import build_model


@dataclass
class Context:
    ds: data.Dataset
    ev: data.EvalData
    fm: FlatModel
    spec: dict

    @property
    def task(self) -> str:
        return self.ds.task

    @property
    def bn_batch(self) -> int:
        return self.spec["evaluation"]["bn_batch"]


def context(spec: dict, device) -> Context:
    """The dataset of ``spec["dataset"]``, its evaluation subsets on ``device`` and the network of
    ``spec["model"]`` (on ``device``)."""
    ds = data.load_dataset(**spec["dataset"])
    ev = data.eval_from_config(ds, spec, device)
    fm = FlatModel(build_model(spec["model"], ds.in_shape, ds.num_outputs).to(device))
    return Context(ds, ev, fm, spec)


def load_point(path, fm: FlatModel, map_location="cpu") -> io.Point:
    """A weight-space point whose parameters fit ``fm``; else an ArtifactError naming the file."""
    point = io.load_point(path, map_location)
    layout = point.meta.get("layout")
    if point.flat.numel() != fm.numel or (layout is not None and layout != fm.layout):
        raise io.ArtifactError(
            f"checkpoint {path} does not fit this rule's network: it holds {point.flat.numel()} parameters of "
            f"model {point.meta.get('model_spec', '?')}, the network has {fm.numel}; it was made by another "
            "configuration: delete it and rerun the rule that makes it")
    return point
