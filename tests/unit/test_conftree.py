"""A researcher's own config folder: Hydra's ways to add it (``hydra.searchpath``, ``--config-dir``, a primary config
of their own with its ``hydra.searchpath``) are read by the one-line command-line checks (mixgap.core.conftree)."""

from __future__ import annotations

import pytest

from conftest import ROOT
from mixgap.core import conftree
from mixgap.core.errors import ConfigError
from mixgap.core.overrides import check_override_keys, group_choices

STUDENT = (ROOT / "conf" / "student" / "smollm2_135m.yaml").read_text().replace("name: smollm2_135m", "name: mysmol")


@pytest.fixture
def folder(tmp_path):
    """A config folder outside the checkout: a student and a benchmark of the researcher's own."""
    (tmp_path / "mine" / "student").mkdir(parents=True)
    (tmp_path / "mine" / "student" / "mysmol.yaml").write_text(STUDENT)
    (tmp_path / "mine" / "benchmark").mkdir()
    (tmp_path / "mine" / "benchmark" / "mybench.yaml").write_text("mybench:\n  name: mybench\n  size: 2\n  path: b.jsonl\n")
    return tmp_path / "mine"


def test_the_checkout_alone_has_its_own_options_only():
    tree = conftree.checkout()
    assert [p for p in tree.folders()] == [ROOT / "conf"]
    assert "mysmol" not in group_choices("student", tree)


@pytest.mark.parametrize("how", ["searchpath", "config_dir"])
def test_a_folder_given_either_way_adds_its_options_and_composes(folder, how):
    overrides = [f"hydra.searchpath=[file://{folder}]"] if how == "searchpath" else []
    tree = conftree.from_command_line(overrides, config_dir=str(folder) if how == "config_dir" else None)
    assert tree.folders() == [ROOT / "conf", folder]
    assert "mysmol" in group_choices("student", tree) and "mybench" in group_choices("benchmark", tree)
    check_override_keys(["student=mysmol", "benchmark=[math500,mybench]"], tree)
    cfg = conftree.compose(["student=mysmol", "benchmark=[mybench]"], tree)
    assert cfg.student.name == "mysmol" and cfg.benchmark.mybench.path == "b.jsonl" and "hydra" not in cfg


def test_a_misspelt_option_of_a_user_folder_is_one_line_with_did_you_mean(folder):
    tree = conftree.from_command_line([f"hydra.searchpath=[file://{folder}]"])
    with pytest.raises(ConfigError) as err:
        check_override_keys(["student=mysmoll"], tree)
    assert str(err.value).startswith("student=mysmoll is not an option; choose one of llama1b,")
    assert str(err.value).endswith("smollm2_135m (did you mean mysmol?)") and "\n" not in str(err.value)


def test_a_primary_config_of_ones_own_extends_mixgaps_and_brings_its_searchpath(folder, tmp_path):
    """``--config-dir <folder> --config-name study``: study.yaml extends mixgap's config.yaml, chooses the student and
    adds a second folder through its own ``hydra.searchpath`` (Hydra reads it from the primary config only)."""
    other = tmp_path / "other" / "teacher"
    other.mkdir(parents=True)
    (other / "myteacher.yaml").write_text((ROOT / "conf" / "teacher" / "kit_long_cot.yaml").read_text())
    (folder / "study.yaml").write_text(f"defaults:\n  - config\n  - override student: mysmol\n  - _self_\n"
                                       f"hydra:\n  searchpath: [file://{tmp_path / 'other'}]\nmix:\n  weight: 0.5\n")
    tree = conftree.from_command_line([], config_dir=str(folder), config_name="study")
    assert tree.primary == "study" and tree.folders() == [ROOT / "conf", folder, tmp_path / "other"]
    check_override_keys(["teacher@mix.strong=myteacher", "student=smollm2_135m"], tree)  # config.yaml chooses both
    cfg = conftree.compose(["teacher@mix.strong=myteacher"], tree)
    assert (cfg.student.name, cfg.mix.weight, cfg.mix.strong.cot) == ("mysmol", 0.5, "long")


def test_hydras_own_groups_are_set_without_a_plus():
    check_override_keys(["hydra/job_logging=disabled", "hydra/launcher=slurm"], conftree.checkout())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"overrides": ["hydra.searchpath=[file:///no/such/conf]"]},
     "hydra.searchpath: file:///no/such/conf is not available (no such folder); give an existing config folder"),
    ({"overrides": [], "config_dir": "/no/such/conf"}, "--config-dir=/no/such/conf: /no/such/conf is not a folder"),
    ({"overrides": [], "config_name": "studdy"}, "--config-name=studdy: no folder of the search path holds studdy.yaml"),
])
def test_a_folder_or_primary_config_that_is_not_there_is_one_line(kwargs, message):
    with pytest.raises(ConfigError) as err:
        conftree.from_command_line(**kwargs)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
