"""The names a configuration may use, and where they point. No torch here.

The Snakefile validates the config against this catalogue before any job runs. Keeping it free
of torch keeps every parse of the workflow cheap: each dry run, and each SLURM job, which parses
the workflow twice. :mod:`losslab.data` and :mod:`losslab.models` build the real things from the
same names; ``tests/test_models.py`` checks that the option names here match the model
constructors.

Besides the built-in names, a config may name the researcher's own inputs:

- a model ``package.module:function``, ``path/to/file.py:function`` or ``torchvision:<name>``;
- a dataset ``file``, ``folder`` or ``package.module:function`` (also ``path/to/file.py:function``).

:func:`resolve_path` finds the files such names point to (the working directory first, then the
workflow folder exported as ``LOSSLAB_WORKFLOW_DIR``), and :func:`load_callable` imports the
functions (importing the user's module is the only thing here that may import torch).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

# torchvision datasets: name -> (torchvision class name, folder that proves the files are there)
TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
    "mnist": ("MNIST", "MNIST/raw"),
    "fashionmnist": ("FashionMNIST", "FashionMNIST/raw"),
}
EMBEDDED = ("digits", "regression1d", "mnist1d")
DATASETS = EMBEDDED + tuple(TORCHVISION)
USER_DATASETS = ("file", "folder")  # plus "package.module:function"

_POSINT = {"type": "integer", "minimum": 1}
_CHANNELS = {"type": "array", "items": _POSINT, "minItems": 1}
# model name -> {option: JSON-schema fragment} for its own options (beyond width, dropout and
# batchnorm). The one source of these types: the config schema types `model.options` per model
# from them (losslab.config.load_schema), and :func:`typed_options` converts library calls.
MODEL_OPTION_TYPES: dict[str, dict[str, dict]] = {
    "simplecnn": {"channels": {**_CHANNELS, "description": "output channels of each conv-pool stage (default [16, 32, 32])"}},
    "mlp": {"hidden": {**_POSINT, "description": "units per hidden layer (default 100)"},
            "depth": {**_POSINT, "description": "hidden layers (default 2)"},
            "activation": {"type": "string", "enum": ["relu", "tanh"], "description": "default relu"}},
    "resnet20": {"skip": {"type": "boolean", "description": "skip connections (default true; false as in the blog's pictures)"},
                 "blocks": {**_POSINT, "description": "basic blocks per stage (default 3)"}},
    "vgg_small": {"channels": {**_CHANNELS, "description": "channels of each conv-conv-pool block (default [32, 64, 128])"}},
    "cnn1d": {"channels": {**_CHANNELS, "description": "output channels of each strided convolution (default [25, 25, 25])"},
              "kernel": {**_POSINT, "description": "kernel length of the first convolution (later ones: 3; default 5)"}},
    "transformer": {"dim": {**_POSINT, "description": "token width before the width multiplier (default 32)"},
                    "depth": {**_POSINT, "description": "encoder blocks (default 2)"},
                    "heads": {**_POSINT, "description": "attention heads (default 4)"},
                    "mlp_ratio": {"type": "number", "exclusiveMinimum": 0, "description": "MLP width / token width (default 2)"},
                    "patch": {"type": "integer", "minimum": 0, "description": "patch side (images) or length (1-D signals); 0: a quarter of the smallest input side (default)"},
                    "attention": {"type": "string", "enum": ["mha", "manual"], "description": "nn.MultiheadAttention (default mha) or attention written from four Linear layers (manual)"}},
}
# built-in datasets: name -> (input shape, outputs, task, train size, test size); digits has 1797
# samples split by dataset.test_fraction (test size None); mnist1d's sizes follow its generator arguments
BUILTIN_INFO = {
    "digits": ((1, 8, 8), 10, "classification", 1797, None),
    "regression1d": ((1,), 1, "regression", 120, 200),
    "cifar10": ((3, 32, 32), 10, "classification", 50000, 10000),
    "cifar100": ((3, 32, 32), 100, "classification", 50000, 10000),
    "mnist": ((1, 28, 28), 10, "classification", 60000, 10000),
    "fashionmnist": ((1, 28, 28), 10, "classification", 60000, 10000),
}


# The mnist1d package's standard generator arguments (mnist1d.data.get_dataset_args, without its
# download url): 5000 samples, 80 % train, signals of length 40, seed 42.
MNIST1D_ARGS = {"num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
                "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 0.02,
                "shear_scale": 0.75, "shuffle_seq": False, "final_seq_length": 40, "seed": 42}


def mnist1d_args(options: dict | None) -> dict:
    """The generator arguments: the package's standard ones with ``dataset.mnist1d`` on top."""
    return {**MNIST1D_ARGS, **{k: v for k, v in (options or {}).items() if v is not None}}


def mnist1d_sizes(options: dict | None) -> tuple[int, int, int]:
    """(train size, test size, signal length) the generator makes, without running it."""
    a = mnist1d_args(options)
    n = a["num_samples"] // 10 * 10
    n_train = int(n * a["train_split"])
    return n_train, n - n_train, a["final_seq_length"]


def builtin_info(name: str, test_fraction: float, mnist1d: dict | None = None) -> tuple:
    """(in_shape, num_outputs, task, n_train, n_test) of a built-in dataset, without loading it
    (``mnist1d``: the generator arguments, which set its sizes)."""
    if name == "mnist1d":
        n_train, n_test, length = mnist1d_sizes(mnist1d)
        return (1, length), 10, "classification", n_train, n_test
    in_shape, n_out, task, n_train, n_test = BUILTIN_INFO[name]
    if n_test is None:
        n_test = int(round(n_train * test_fraction))
        n_train -= n_test
    return in_shape, n_out, task, n_train, n_test
MODEL_OPTIONS = {name: tuple(opts) for name, opts in MODEL_OPTION_TYPES.items()}
MODEL_NAMES = tuple(MODEL_OPTIONS)
USER_MODEL_FORMS = "package.module:function, path/to/file.py:function or torchvision:<name>"

WORKFLOW_DIR_ENV = "LOSSLAB_WORKFLOW_DIR"


class DataMissingError(FileNotFoundError):
    """A dataset's files are not where the config says they are."""


class InputNotFoundError(FileNotFoundError):
    """A file named in the config (model file, data file, checkpoint) is not found."""


class ModelSpecError(ValueError):
    """A model spec cannot be built or does not fit its data; the message names the key."""


class DatasetError(ValueError):
    """A dataset config or the data it points to is unusable; the message names the key and file."""


def unknown_dataset(name: str, key: str = "dataset.name") -> ValueError:
    return DatasetError(
        f"{key} = {name!r}: unknown dataset; known datasets: {', '.join(DATASETS)}; "
        f"or your own data: file, folder or package.module:function"
    )


def unknown_model(name: str, key: str = "model.name") -> ValueError:
    return ModelSpecError(
        f"{key} = {name!r}: unknown model; known models: {', '.join(MODEL_NAMES)}; or your own: {USER_MODEL_FORMS}"
    )


# ----- files and functions named in the config -------------------------------------------------

def search_roots() -> list[Path]:
    """Folders that relative paths resolve against, in order: the working directory, then the
    workflow folder (``$LOSSLAB_WORKFLOW_DIR``) when it is set and different."""
    roots = [Path.cwd()]
    wf = os.environ.get(WORKFLOW_DIR_ENV)
    if wf and Path(wf).absolute() != roots[0]:
        roots.append(Path(wf).absolute())
    return roots


def resolve_path(path: str | os.PathLike, key: str, value: str | None = None) -> Path:
    """The absolute path of an existing file or folder named by config key ``key``.

    Absolute paths are taken as they are; relative ones are looked up in :func:`search_roots`.
    Raises :class:`InputNotFoundError` naming the key, its value (``value``, when the path is
    only part of it) and every place looked in.
    """
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [root / p for root in search_roots()]
    for c in candidates:
        if c.exists():
            return c.absolute()
    shown = f"{value!r}: file {str(path)!r}" if value is not None else repr(str(path))
    raise InputNotFoundError(
        f"{key} = {shown} not found (looked for {', '.join(map(str, candidates))}); "
        f"relative paths are read from the working directory first, then from the workflow folder"
    )


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_PACKAGE_REF = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}$")
_FILE_REF = re.compile(rf"^(?P<file>.+\.py):(?P<attr>{_IDENT})$")


def callable_kind(ref: str) -> str | None:
    """``"file"`` for ``path/to/file.py:function``, ``"package"`` for ``package.module:function``,
    None for anything else."""
    if _FILE_REF.match(ref):
        return "file"
    if _PACKAGE_REF.match(ref):
        return "package"
    return None


@contextmanager
def _on_sys_path(folders):
    """Temporarily append ``folders`` (those not on ``sys.path`` yet) to ``sys.path``."""
    added = [str(f) for f in folders if str(f) not in sys.path]
    sys.path.extend(added)
    try:
        yield
    finally:
        for f in added:
            sys.path.remove(f)


def _import_file(path: Path):
    """Import a Python file as a module with a name unique to its path and contents' stat, so
    two files called ``model.py`` never collide and an edited file is imported afresh."""
    st = path.stat()
    tag = hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    name = f"losslab_user_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{tag}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _on_sys_path([path.parent]):  # sibling modules of the file import as they would in a script
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_callable(ref: str, key: str, error: type[Exception] = ValueError) -> Callable[..., Any]:
    """The function named by ``package.module:function`` or ``path/to/file.py:function``.

    A file is found by :func:`resolve_path`; a package is imported normally, with the search
    roots appended to ``sys.path`` so a package folder beside the config imports in every job.
    A missing file raises :class:`InputNotFoundError`; any other failure raises ``error`` naming
    ``key``, the reference and the cause, with the module's own exception text.
    """
    kind = callable_kind(ref)
    if kind is None:
        raise error(f"{key} = {ref!r} is not a reference to a function; write package.module:function or path/to/file.py:function")
    target, attr = ref.rsplit(":", 1)
    try:
        if kind == "file":
            module = _import_file(resolve_path(target, key, ref))
        else:
            with _on_sys_path(search_roots()):
                module = importlib.import_module(target)
    except InputNotFoundError:
        raise
    except ModuleNotFoundError as exc:
        raise error(
            f"{key} = {ref!r}: cannot import module {target!r} ({exc}); install the package or put its "
            f"folder in the working directory, the workflow folder or PYTHONPATH"
        ) from exc
    except Exception as exc:
        raise error(f"{key} = {ref!r}: importing {target!r} failed: {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        what = "is not callable" if hasattr(module, attr) else "does not exist"
        raise error(f"{key} = {ref!r}: {target} has no function {attr!r} ({what}); its functions: {', '.join(public) or '(none)'}")
    return fn


_TRUE_FALSE = {"true": True, "false": False}
_INT = re.compile(r"^[+-]?[0-9]+$")
_FROM_STRING = {
    bool: lambda s: _TRUE_FALSE[s.lower()],
    int: lambda s: int(s) if _INT.match(s.strip()) else s,
    float: float,
}


def call_options(fn: Callable, options: dict, key: str, error: type[Exception] = ValueError, skip: int = 0) -> dict:
    """The keyword arguments ``options`` for user function ``fn``, checked against its signature.

    The first ``skip`` parameters are not options (a model factory's input shape and output
    count). An option the function does not take is refused with ``error`` naming
    ``<key>.<option>`` and the options it does take (unless it takes ``**kwargs``). A string given
    for a parameter whose default is a bool, int or float (as ``--config`` strings arrive) is
    converted to that type when it spells one; anything else is passed on unchanged.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # callables without a signature: pass everything on
        return dict(options)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    named = {p.name: p for p in params[skip:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    out = {}
    for opt, value in options.items():
        if opt not in named and not takes_any:
            raise error(
                f"unknown option {key}.{opt}: {getattr(fn, '__qualname__', fn)} takes "
                f"{', '.join(named) or 'no options'}"
            )
        convert = _FROM_STRING.get(type(named[opt].default)) if opt in named else None
        if isinstance(value, str) and convert is not None:
            try:
                value = convert(value)
            except (KeyError, ValueError):
                pass  # not a spelling of that type: the function sees the string and may refuse it
        out[opt] = value
    return out


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "x"


def model_kind(name: str, key: str = "model.name") -> str:
    """``builtin``, ``torchvision``, ``file`` or ``package``; raise :class:`ModelSpecError`
    naming ``key`` for a name of none of these forms."""
    if name in MODEL_OPTIONS:
        return "builtin"
    if name.startswith("torchvision:") and re.fullmatch(_IDENT, name.split(":", 1)[1]):
        return "torchvision"
    kind = callable_kind(name)
    if kind is None:
        raise unknown_model(name, key)
    return kind


def model_label(name: str) -> str:
    """A short name for result paths: the built-in name, ``torchvision-resnet18``,
    ``<file stem>-<function>`` or ``<package.module>-<function>``."""
    kind = model_kind(name)
    if kind == "builtin":
        return name
    target, attr = name.rsplit(":", 1)
    return _label(f"{Path(target).stem if kind == 'file' else target}-{attr}")


def dataset_kind(name: str, key: str = "dataset.name") -> str:
    """``embedded``, ``torchvision``, ``file``, ``folder`` or ``function``; raise
    :class:`DatasetError` naming ``key`` for a name of none of these forms."""
    if name in EMBEDDED:
        return "embedded"
    if name in TORCHVISION:
        return "torchvision"
    if name in USER_DATASETS:
        return name
    if callable_kind(name):
        return "function"
    raise unknown_dataset(name, key)


def dataset_label(name: str, path: str | None = None) -> str:
    """A short name for result paths: the built-in name, the stem of a data file or folder, or
    ``<module>-<function>`` of a dataset function."""
    kind = dataset_kind(name)
    if kind in ("embedded", "torchvision"):
        return name
    if kind in USER_DATASETS:
        if not path:
            raise DatasetError(f"dataset.name = {name!r} needs dataset.path: the {name} to read")
        p = Path(path)
        return _label(p.stem if kind == "file" else p.name)
    target, attr = name.rsplit(":", 1)
    return _label(f"{Path(target).stem if target.endswith('.py') else target}-{attr}")


# ----- built-in model options ---------------------------------------------------------------

def _describe(schema: dict, plural: bool = False) -> str:
    """What values of a JSON-schema fragment are allowed, in words."""
    t = schema["type"]
    if t == "array":
        return "a non-empty list of " + _describe(schema["items"], plural=True)
    if t == "boolean":
        return "true or false"
    if "enum" in schema:
        return f"one of: {', '.join(schema['enum'])}"
    words = ("integers" if plural else "an integer") if t == "integer" else t
    return f"{words} >= {schema['minimum']}" if "minimum" in schema else words


def _typed(value, schema: dict):
    """``value`` converted to the type of ``schema`` (strings from the command line included);
    raise ``TypeError``/``ValueError`` when it has no such meaning."""
    t = schema["type"]
    if t == "array":
        if not isinstance(value, (list, tuple)) or len(value) < schema.get("minItems", 0):
            raise ValueError
        return [_typed(v, schema["items"]) for v in value]
    if t == "boolean":
        if isinstance(value, str) and value.lower() in _TRUE_FALSE:
            return _TRUE_FALSE[value.lower()]
        if not isinstance(value, bool):
            raise TypeError
        return value
    if t == "integer":
        if isinstance(value, str) and _INT.match(value.strip()):
            value = int(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < schema.get("minimum", value):
            raise ValueError
        return value
    if not isinstance(value, str) or value not in schema.get("enum", [value]):
        raise ValueError
    return value


def typed_options(name: str, options: dict, key: str = "model") -> dict:
    """The options of built-in model ``name``, each converted to its declared type.

    Strings that arrive from the command line (``"false"``, ``"32"``) become booleans and
    integers. Raise :class:`ModelSpecError` naming ``<key>.options.<option>``, the value and what
    is allowed, for an unknown option or a value of the wrong type or range.
    """
    types = MODEL_OPTION_TYPES[name]
    out = {}
    for opt, value in (options or {}).items():
        if opt not in types:
            raise ModelSpecError(
                f"unknown option {key}.options.{opt} for model {name!r}; allowed options: {', '.join(types) or '(none)'}"
            )
        try:
            out[opt] = _typed(value, types[opt])
        except (TypeError, ValueError):
            raise ModelSpecError(
                f"{key}.options.{opt} = {value!r} is not allowed for model {name!r}; it must be {_describe(types[opt])}"
            ) from None
    return out


def check_model_spec(spec: dict, key: str = "model") -> dict:
    """Check a model spec's name and, for a built-in model, its options, without importing
    anything. Returns a copy of ``spec`` whose built-in options carry their declared types.
    Raise :class:`ModelSpecError` naming ``<key>.name`` or ``<key>.options.<option>``."""
    name = spec.get("name")
    if not isinstance(name, str):
        raise ModelSpecError(f"{key}.name = {name!r} must be a string; known models: {', '.join(MODEL_NAMES)}; or {USER_MODEL_FORMS}")
    out = dict(spec)
    if model_kind(name, f"{key}.name") == "builtin":
        out["options"] = typed_options(name, spec.get("options") or {}, key)
    return out


def check_dataset(name: str, data_dir: str | Path, download: bool) -> None:
    """Fail early, before any job runs, when a built-in dataset cannot be loaded. User datasets
    pass here: :func:`losslab.data.dataset_info` reads and checks their files."""
    if name == "mnist1d":
        if importlib.util.find_spec("mnist1d") is None:
            raise DataMissingError(
                "dataset 'mnist1d' is generated by the mnist1d package, which is not installed here; "
                "install it with `pip install mnist1d` (it is in pyproject.toml and environment.yml)")
        return
    if dataset_kind(name) != "torchvision" or download:
        return
    folder = Path(data_dir) / TORCHVISION[name][1]
    if not folder.exists():
        raise DataMissingError(
            f"dataset {name!r} is not in data_dir {str(data_dir)!r} (looked for {folder}). "
            f"Set 'dataset.download: true' in the config to fetch it once, or copy the "
            f"torchvision files for {TORCHVISION[name][0]} into {data_dir}."
        )
