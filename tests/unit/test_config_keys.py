"""Unknown keys are refused against the schema, typed with or without ``+``; the launch.py runs of these refusals
are in tests/integration/test_cli_refusals.py."""

from __future__ import annotations

import pytest

from conftest import ROOT, compose_cfg
from mixgap.core.config import validate
from mixgap.core.errors import ConfigError
from mixgap.core.overrides import check_override_keys


def test_plus_typo_in_composed_config_is_refused_naming_the_closest_field(kit):
    cfg = compose_cfg("+mix.wieght=0.2", data=kit)
    assert cfg.mix.weight == 0.2 and cfg.mix.wieght == 0.2  # Hydra accepted it: the schema walk must not
    with pytest.raises(ConfigError, match=r"mix\.wieght is not a field .*did you mean mix\.weight\?"):
        validate(cfg)


@pytest.mark.parametrize(("override", "closest"), [
    ("+benchmark.gsm8k.limt=3", "benchmark.gsm8k.limit"),
    ("+student.size=3", "student.size_b"),
    ("+mix.strong.sampling.temprature=0.1", "mix.strong.sampling.temperature"),
    ("+finetune_mode.lora.rr=8", "finetune_mode.lora.r"),
    ("+evall.limit=2", "eval"),
])
def test_nested_plus_typos_are_refused(kit, override, closest):
    with pytest.raises(ConfigError, match=rf"did you mean {closest.replace('.', '[.]')}\?"):
        validate(compose_cfg(override, data=kit))


@pytest.mark.parametrize("typed", ["mix.wieght=0.2", "+mix.wieght=0.2", "++mix.wieght=0.2", "mix.wieght=0,0.2"])
def test_override_keys_are_checked_with_or_without_plus(typed):
    with pytest.raises(ConfigError) as err:
        check_override_keys([typed])
    assert str(err.value).startswith(f"{typed}: mix.wieght is not a field") and "did you mean mix.weight?" in str(err.value)


@pytest.mark.parametrize("legit", [
    "+experiment=demo", "student=qwen3b", "teacher@mix.strong=kit_long_cot", "teacher=qwq32b",
    "hydra/launcher=slurm", "+hydra.launcher.additional_parameters.reservation=r1", "benchmark=[math500]",
    "benchmark.math500.limit=3", "report.sweep=[a,b]", "finetune_mode.lora.target_modules=[q_proj]",
    "mix.strong.gguf.file=x.gguf", "~teacher", "-m",
])
def test_legitimate_overrides_pass(legit):
    check_override_keys([legit])


def test_every_experiment_with_a_plus_passes_the_schema_walk(kit):
    for exp in sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")):
        validate(compose_cfg(f"+experiment={exp}", data=kit), [f"+experiment={exp}"])
