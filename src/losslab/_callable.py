"""Library modules that are also public API functions of the same name: ``losslab.align`` and
``losslab.hessian`` are modules (the workflow's scripts import them) and, called, the functions
:func:`losslab.api.align` and :func:`losslab.api.hessian` (docs/api.md). The API module is
imported on the first call only, so the workflow's jobs never load it."""
from __future__ import annotations

import importlib
import sys
import types


class CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        api = importlib.import_module("losslab.api")
        return getattr(api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Make the module ``module_name`` callable as the API function of its last name."""
    sys.modules[module_name].__class__ = CallableModule
