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


def test_schema_enums_match_the_registries():
    props = load_schema()["properties"]
    assert set(props["dataset"]["properties"]["name"]["enum"]) == set(DATASETS)
    assert set(props["model"]["properties"]["name"]["enum"]) == set(MODELS)


@pytest.mark.parametrize(
    "patch, expected",
    [
        ({"endpoints": {"train": {"epochs": -1}}}, "endpoints.train.epochs = -1 is out of range"),
        ({"endpoints": {"train": {"lr": "fast"}}}, "endpoints.train.lr = 'fast' has the wrong type"),
        ({"model": {"name": "alexnet"}}, "allowed values: simplecnn, mlp, resnet20, vgg_small"),
        ({"dataset": {"name": "imagenet"}}, "dataset.name = 'imagenet' is not allowed; allowed values: digits"),
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
