"""Deleting one grid tile of a loss plane reruns that tile, the gather and what is drawn from it."""
import shutil

import pytest

from conftest import snakemake
from test_rerun import dry, plan

pytestmark = pytest.mark.e2e


def test_deleting_one_tile_reruns_it_gather_and_render_only(tiny_run, tmp_path):
    full = plan(snakemake(tmp_path / "fresh", "-n"))
    tiles = [j for j in full if j["rule"] == "plane_tile"]
    assert len(tiles) >= 2, "the tiny config should split each plane into several tiles"
    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, symlinks=True)
    victim = tiles[0]
    for out in victim["output"]:
        (work / out).unlink()
    jobs = plan(dry(work))
    assert [j["output"] for j in jobs if j["rule"] == "plane_tile"] == [victim["output"]]
    gathers = [j for j in jobs if j["rule"] == "plane_gather"]
    assert len(gathers) == 1 and set(victim["output"]) <= set(gathers[0]["input"])
    others = [j for j in jobs if j["rule"] not in ("plane_tile", "plane_gather")]
    assert others, "nothing is rendered from the gathered plane"
    for j in others:
        assert "Input files updated by another job" in j["reason"], j
    assert not any(j["rule"] == "train_endpoint" for j in jobs)
