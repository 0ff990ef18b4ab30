import copy

import pytest
import yaml

from conftest import REPO
from losslab.config import ConfigError, load_schema, validate_config
from losslab.data import DATASETS
from losslab.models import MODELS


def _default():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid_and_defaults_fill_an_empty_config():
    validate_config(_default())
    empty = validate_config({})
    assert empty["dataset"]["name"] == "digits"
    assert empty["endpoints"]["train"]["optimizer"] == "adam"
    assert empty["endpoints"]["settings"] == {"default": {}}


def test_schema_names_and_options_match_the_registries():
    """Every built-in dataset and model name is accepted; the schema types exactly the options
    each built-in model's constructor takes."""
    from losslab.models import model_options

    for name in DATASETS:
        assert validate_config({"dataset": {"name": name, "download": True}})["dataset"]["name"] == name
    for name in MODELS:
        assert validate_config({"model": {"name": name}})["model"]["name"] == name
        opts = load_schema()["definitions"][f"model_options_{name}"]["properties"]
        assert set(opts) == set(model_options(name)), name


@pytest.mark.parametrize(
    "patch, expected",
    [
        ({"endpoints": {"train": {"epochs": -1}}}, "endpoints.train.epochs = -1 is out of range"),
        ({"endpoints": {"train": {"lr": "fast"}}}, "endpoints.train.lr = 'fast' has the wrong type"),
        ({"model": {"name": "alexnet"}}, "model.name = 'alexnet': unknown model; known models: simplecnn, mlp, resnet20, vgg_small"),
        ({"dataset": {"name": "imagenet"}}, "dataset.name = 'imagenet': unknown dataset; known datasets: digits"),
        ({"endpoints": {"setings": {}}}, "unknown key endpoints.setings"),
        ({"endpoints": {"settings": {"hi": {"lrate": 1}}}}, "unknown key endpoints.settings.hi.lrate"),
        ({"model": {"options": {"depthh": 3}, "name": "mlp"}}, "model.options.depthh"),
    ],
)
def test_bad_values_name_the_key(patch, expected):
    cfg = _default()
    for section, val in patch.items():
        cfg[section] = {**cfg[section], **copy.deepcopy(val)}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert expected in str(err.value)
