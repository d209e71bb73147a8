"""Stage ``export``: one finished artifact (a teacher pool, a mixture, or an evaluation's samples) published as a
Hugging Face dataset folder, as the authors released their pools and mixtures (``UWNSL/...``).

``python launch.py stage=export export.artifact=pool.strong export.out=<dir>`` builds what the artifact needs
through the store (:func:`builds`; the plan, :mod:`mixgap.plan.jobs`), then writes ``<dir>``:

- ``data/train-0000i-of-0000n.parquet``: the artifact's rows (``datasets.Dataset.from_list(rows).to_parquet``);
- ``README.md``: the dataset card, whose YAML header (``configs``, ``license``, ``mixgap:`` provenance) and text
  carry the provenance read from the artifact's manifest and those of its inputs (:func:`provenance`).

``datasets.load_dataset(<dir>)`` reads it; ``backend: dataset`` with ``dataset.path: <dir>`` imports it back as a
teacher (:func:`mixgap.stages.backends.dataset.read_rows`). With ``export.repo_id`` the folder is uploaded to the Hub
as a dataset repository (private unless ``export.private=false``).
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

import mixgap
from mixgap.core.config import to_container
from mixgap.core.errors import ConfigError
from mixgap.core.store import Store
from mixgap.stages import data
from mixgap.stages.backends.registry import backend_class
from mixgap.stages.generate import POOL
from mixgap.stages.mix import MIXTURE
from mixgap.stages.verdicts import PREDICTIONS

#: The role prefixes each exportable artifact needs built (``eval.<arm>.<benchmark>`` takes its own name and its
#: completions'); the plan adds the student wherever a role takes it as input. A mixture is always checked against
#: the benchmarks.
NEEDS = {
    "pool.strong": ("generation.strong", "pool.strong"),
    "pool.weak": ("generation.weak", "pool.weak"),
    "mixture": ("generation", "pool", "scores", "mixture", "benchmarks"),  # scores: a student-aware mixture's
    "eval.untuned": ("generation", "pool", "scores", "mixture", "benchmarks"),
    "eval.tuned": ("generation", "pool", "scores", "mixture", "benchmarks", "checkpoint"),
}
ROWS_FILE = {"pool": POOL, "mixture": MIXTURE, "eval": PREDICTIONS}
MARK = "mixgap-export"  # a card tag: a folder holding it is a previous export, safe to replace
SHARD_ROWS = 50_000
LICENSE_NOTE = ("The teacher model's license governs these responses: read it before you reuse or redistribute "
                "them (the `license: other` field says no single license is asserted here).")

log = logging.getLogger(__name__)


def builds(artifact: str) -> tuple[str, ...]:
    """The plan's role prefixes that ``export.artifact`` needs built: :data:`NEEDS`, plus the evaluation itself.

    Raises:
        ConfigError: an artifact that is not ``pool.strong``, ``pool.weak``, ``mixture`` or ``eval.<arm>.<benchmark>``.
    """
    if artifact in NEEDS:
        return NEEDS[artifact]
    arm = ".".join(artifact.split(".")[:2])
    if arm in ("eval.untuned", "eval.tuned") and artifact.count(".") == 2:
        return (*NEEDS[arm], f"completions.{artifact.split('.', 1)[1]}", artifact)
    raise ConfigError(f"export.artifact={artifact!r} is not allowed; choose pool.strong, pool.weak, mixture, "
                      "eval.tuned.<benchmark> or eval.untuned.<benchmark>")


def _manifest(store: Store, key: str) -> dict[str, Any]:
    return store.manifest(key) if store.is_done(key) else {}


def _source(dataset: dict[str, Any]) -> str:
    """Where imported responses came from: ``hub:<id>[/<config>]:<split>`` or the file's path."""
    if dataset.get("hub_id"):
        return f"hub:{dataset['hub_id']}" + (f"/{dataset['hub_config']}" if dataset.get("hub_config") else "") \
            + f":{dataset.get('split')}"
    return str(dataset.get("path"))


def _teacher(cfg: Any, role: str, store: Store, pool_key: str) -> dict[str, Any]:
    """A pool's provenance: the teacher (config of this job, whose fields give the pool's key), how its
    responses came about (generation manifest), the rejection sampling (pool manifest)."""
    pool = _manifest(store, pool_key)
    gen = _manifest(store, (pool.get("inputs") or [""])[0])
    teacher, fields, counts = cfg.mix[role], gen.get("config", {}), pool.get("counts", {})
    imported = not backend_class(teacher.backend).generates
    source = to_container(teacher.dataset) if imported else None
    weights = fields.get("weights")
    return {
        "name": teacher.name, "hf_id": teacher.hf_id,
        "revision": (weights.get("revision") if isinstance(weights, dict) else None) or "not recorded",
        "family": teacher.family, "size_b": teacher.size_b, "cot": teacher.cot, "backend": teacher.backend,
        "prompt": "imported responses (no prompt run)" if imported else fields.get("prompt"),
        "sampling": "imported responses (unknown)" if imported else fields.get("sampling"),
        "responses_source": _source(source) if imported else "generated by the model above",
        "problems_source": fields.get("problems") or "the imported rows' own ids and answers",
        "keep_rate": counts.get("keep_rate"), "tried": counts.get("tried"), "kept": counts.get("kept"),
        "filter": (pool.get("config") or {}).get("filter"), "grader": (pool.get("config") or {}).get("grader"),
        "generation_key": gen.get("key"), "pool_key": pool_key,
    }


def provenance(cfg: Any, store: Store, artifact: str, keys: dict[str, str]) -> dict[str, Any]:
    """What the card records (``keys``: the plan's store key by role): the artifact, its store key, the teachers behind it, mix weight and realised weight
    (strong rows / all rows), the seeds, the grader's policy version, mixgap's version and git SHA."""
    key = keys[artifact]
    man = _manifest(store, key)
    out: dict[str, Any] = {"artifact": artifact, "store_key": key, "stage": man.get("stage"),
                           "mixgap_version": mixgap.__version__, "git_sha": man.get("git_sha"), "seed": int(cfg.seed)}
    roles = [artifact.split(".")[1]] if artifact.startswith("pool.") else ["strong", "weak"]
    out["teachers"] = {r: _teacher(cfg, r, store, keys[f"pool.{r}"]) for r in roles}
    if artifact == "mixture" or artifact.startswith("eval.tuned"):
        mix = _manifest(store, keys["mixture"])
        counts = mix.get("counts", {})
        out["mix"] = {"weight": float(cfg.mix.weight), "seed": int(cfg.mix.seed), "problems": cfg.mix.problems,
                      "realised_weight": round(counts["strong"] / counts["N"], 4) if counts.get("N") else None,
                      "rows": counts.get("N"), "mixture_key": mix.get("key")}
    if artifact.startswith("eval."):
        fields, generated = man.get("config", {}), _manifest(store, (man.get("inputs") or [""])[0])
        made = generated.get("config", {})
        out["evaluation"] = {"benchmark": (made.get("benchmark") or {}).get("name"), "grader": fields.get("grader"),
                             "extract": fields.get("extract"), "rule": fields.get("rule"),
                             "completions_key": generated.get("key"), "model_key": (generated.get("inputs") or [None])[0],
                             "student": cfg.student.name, "max_new_tokens": made.get("max_new_tokens")}
    return out


def card(prov: dict[str, Any], rows: int, files: Sequence[str], license_id: str) -> str:
    """The ``README.md`` dataset card: YAML header (``configs`` naming the Parquet shards, ``license``, tags and the
    ``mixgap`` provenance block) and a text that says the same in words."""
    header = {"license": license_id, "pretty_name": f"mixgap {prov['artifact']} ({prov['store_key']})",
              "tags": [MARK, "math", "chain-of-thought", "distillation"],
              "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}],
              "mixgap": prov}
    lines = ["---", OmegaConf.to_yaml(OmegaConf.create(header)).rstrip(), "---", "",
             f"# {prov['artifact']}: {rows} rows", "",
             f"Exported by mixgap {prov['mixgap_version']} (git {prov['git_sha'] or 'unknown'}) from store artifact "
             f"`{prov['store_key']}`; {len(files)} Parquet shard(s) under `data/`.", ""]
    for role, t in prov["teachers"].items():
        keep = f"{t['keep_rate']:.1%}" if t["keep_rate"] is not None else "unknown"
        lines += [f"## Teacher ({role}): {t['name']}", "",
                  f"- model: {t['hf_id'] or 'none named'} (revision: {t['revision']}), {t['family']} {t['size_b']}B, "
                  f"{t['cot']} CoT, backend `{t['backend']}`",
                  f"- responses: {t['responses_source']}; prompt: {t['prompt']}; sampling: {t['sampling']}",
                  f"- problems: {t['problems_source']}",
                  f"- rejection sampling: kept {t['kept']} of {t['tried']} problems (keep-rate {keep}), filter "
                  f"`{t['filter']}`, grader `{t['grader']}`", ""]
    if "mix" in prov:
        m = prov["mix"]
        lines += ["## Mixture", "", f"- mix weight w = {m['weight']:g} (fraction of problems answered by the strong "
                  f"teacher), realised {m['realised_weight']}, {m['rows']} rows, mix seed {m['seed']}, problems "
                  f"{m['problems']}", ""]
    if "evaluation" in prov:
        e = prov["evaluation"]
        lines += ["## Evaluation", "", f"- benchmark {e['benchmark']}, model `{e['model_key']}` (student {e['student']}), "
                  f"grader `{e['grader']}` (extract {e['extract']}), {e['max_new_tokens']} new tokens", ""]
    lines += ["## License", "", f"`{license_id}`. " + (LICENSE_NOTE if license_id == "other" else ""), ""]
    return "\n".join(lines)


def shard_names(rows: int) -> list[str]:
    """The Parquet shards of ``rows`` rows, :data:`SHARD_ROWS` each: ``data/train-00000-of-00001.parquet``, ..."""
    shards = max(1, math.ceil(rows / SHARD_ROWS))
    return [f"data/train-{i:05d}-of-{shards:05d}.parquet" for i in range(shards)]


def write_folder(rows: Sequence[dict[str, Any]], card_text: str, out: Path) -> list[str]:
    """Write ``out/data/*.parquet`` and ``out/README.md`` through a temporary folder renamed into place; a previous
    export there (its card carries :data:`MARK`) is replaced.

    Raises:
        ConfigError: ``out`` exists and is neither empty nor a previous export.
    """
    import datasets  # heavy: datasets (pyarrow), only when exporting

    out = Path(out)
    previous = (out / "README.md").is_file() and MARK in (out / "README.md").read_text(errors="replace")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not previous)):
        raise ConfigError(f"export.out={str(out)!r} holds files that are not a mixgap export; give an empty or new folder")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    files = shard_names(len(rows))
    for i, name in enumerate(files):
        datasets.Dataset.from_list(list(rows[i * SHARD_ROWS : (i + 1) * SHARD_ROWS])).to_parquet(str(tmp / name))
    (tmp / "README.md").write_text(card_text)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return files


def push(out: Path, repo_id: str, private: bool) -> str:
    """Upload the exported folder as the Hub dataset repository ``repo_id`` (created if absent); returns its URL."""
    import huggingface_hub  # heavy: huggingface_hub, only when pushing

    api = huggingface_hub.HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(out), repo_id=repo_id, repo_type="dataset",
                      commit_message=f"mixgap export of {out.name}")
    return f"https://huggingface.co/datasets/{repo_id}"


def run(ctx: Any, roles: Sequence[str]) -> None:
    """The export step (stage contract, :mod:`mixgap.core.stage`): after the plan built ``export.artifact``, write
    ``export.out`` and, with ``export.repo_id``, push it; ``result.json`` gets ``export`` (folder, rows, shards, url)."""
    cfg, store = ctx.cfg, ctx.store
    artifact = str(cfg.export.artifact)
    rows = data.read_jsonl(ctx.path(artifact) / ROWS_FILE[artifact.split(".")[0]])
    prov = provenance(cfg, store, artifact, {r: s.key for r, s in ctx.specs.items()})
    text = card(prov, len(rows), shard_names(len(rows)), str(cfg.export.license))
    files = write_folder(rows, text, Path(cfg.export.out))
    result = {"folder": str(cfg.export.out), "artifact": artifact, "key": prov["store_key"], "rows": len(rows), "shards": files}
    ctx.receipt("export", f"{artifact} ({prov['store_key']}): {len(rows):,} rows in {len(files)} Parquet shard(s) and "
                f"a dataset card, {cfg.export.out}")
    if cfg.export.repo_id:
        result["url"] = push(Path(cfg.export.out), str(cfg.export.repo_id), bool(cfg.export.private))
        log.info("pushed to %s (private=%s)", result["url"], bool(cfg.export.private))
    ctx.values["export"] = str(cfg.export.out)
    ctx.result["export"] = result
