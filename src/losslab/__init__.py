"""losslab: the geometry of neural-network loss landscapes.

The public functions of :mod:`losslab.api` are attributes of this package (``losslab.plane``,
``losslab.fit_curve``, ...; docs/api.md). They are loaded on first use, so that the workflow's jobs,
which import only the modules they run, neither load nor depend on the API module (a rule lists the
library modules its script imports as inputs; see ``losslab.config.library_closure``).
"""
import importlib

API = ("interpolate", "plane", "fit_curve", "evaluate_path", "tunnel_width", "connector", "align", "align_lines",
       "hessian", "ensemble_eval", "vector", "network", "surface", "write_html", "write_vtk", "Landscape", "Curve")


def __getattr__(name):
    if name in API:
        return getattr(importlib.import_module("losslab.api"), name)
    raise AttributeError(f"module 'losslab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(API))
