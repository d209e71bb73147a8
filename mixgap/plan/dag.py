"""The study as dependent SLURM jobs, derived from each grid job's plan and the store; nothing here submits (the
launcher ``hydra_plugins/mixgap_launcher`` does; :mod:`mixgap.plan.study` reads a submitted study back).

- **pool jobs**: one per teacher pool that a grid job builds (the rows of :data:`mixgap.plan.table.TABLE` whose
  module is the generate stage) with a generating backend, not finished in the store. An imported pool (backend
  ``dataset``) is left to the grid job: it needs no GPU. The job is the table's one-teacher row,
  ``stage=generate teacher=<the grid's teacher>``, with the grid job's other overrides (problems and data
  settings) and ``teacher.<field>=`` overrides where the grid's teacher differs from its ``conf/teacher`` file; it
  must plan the very pool key the grid job plans, else the study is refused. Its folder is ``pools/<teacher>``;
  its allocation is ``tensor_parallel_size`` GPUs and the same share of the launcher's CPUs and memory.
- **grid jobs**: the sweep's points, less those whose ``result.json`` says done with every planned artifact
  finished in the store. SLURM gives one dependency to a whole array, so the grid is one array per set of pools
  its jobs wait for (``afterok`` on those pool jobs): no grid job starts, or holds a node, before its pools exist.
- a **report job** on the CPU after the grid (``afterany``: it runs on what finished): ``stage=report
  report.sweep=<sweep dir>``, when the grid evaluates and a grid job is submitted or the report is missing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.core.config import to_container
from mixgap.core.errors import ConfigError
from mixgap.core.store import Store
from mixgap.plan import table
from mixgap.plan.jobs import JobPlan, checked_plan, row_roles
from mixgap.plan.machine import Allocation, plan_job
from mixgap.results.sweep import read_result
from mixgap.stages import generate
from mixgap.stages.backends.registry import backend_class

#: The ``stage=`` of a pool job: that of the table's row building one teacher's pool (``stage=generate teacher=``).
POOL_STAGE = next(row.stages[0] for row in table.TABLE if "pool.teacher" in row.artifacts)
#: The report job's allocation (our choice: the report reads result files and bootstraps on the CPU), each capped
#: by the launcher's own value: CPUs, memory in GB, time limit in minutes.
REPORT_CPUS, REPORT_MEM_GB, REPORT_TIMEOUT_MIN = 2, 16, 240
_PLAIN = re.compile(r"[\w./:@+-]+")  # a value Hydra's override grammar reads unquoted


@dataclass(frozen=True)
class Point:
    """One grid job as the sweeper composed it: its number, task overrides, config (no ``hydra`` node) and the
    config groups Hydra chose (``hydra.runtime.choices``: ``teacher@mix.strong`` -> ``qwq32b``)."""

    num: int
    overrides: list[str]
    cfg: DictConfig
    choices: Mapping[str, str]


@dataclass(frozen=True)
class PoolNeed:
    """A generated teacher pool a grid job needs: its ``mix.<role>`` field, the teacher's name, its config-group
    choice, the generation and pool keys the grid job plans, and whether the store has finished the pool."""

    field: str
    name: str
    choice: str
    generation: str
    pool: str
    done: bool = False  # finished in the store: no pool job


@dataclass
class DagJob:
    """One job of the study: ``kind`` (pool | grid | report), ``name`` (teacher, job number, ``report``), Hydra job
    number, folder (relative to the sweep dir), overrides (``hydra.sweep.subdir`` included for pool and report
    jobs), the launcher fields it sets over the launcher's own (``resources``), what it waits for (``after``:
    ``pool:<name>`` or ``array:<n>``, with ``dependency`` ``afterok`` / ``afterany``), its array and plan line."""

    kind: str
    name: str
    num: int
    folder: str
    overrides: list[str]
    resources: dict[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    dependency: str = ""
    array: int | None = None
    plan: str = ""


@dataclass
class Study:
    """The jobs to submit (pools, then the grid arrays, then the report), the launcher's fields, one line per
    job not submitted and why (``kept``), and one line per reason the study cannot be submitted (``refusals``)."""

    sweep: Path
    launcher: str
    params: dict[str, Any]
    jobs: list[DagJob] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[DagJob]:
        return [job for job in self.jobs if job.kind == kind]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def pool_needs(cfg: DictConfig, plan: JobPlan, choices: Mapping[str, str], store: Store | None) -> list[PoolNeed]:
    """The pools a grid job's plan builds with the generate stage's rows of the table (``pool.strong``,
    ``pool.weak``; a one-teacher job builds its own and needs none) with a backend that generates, each ``done``
    when ``store`` (None: no store yet) has finished it."""
    needs = []
    for row in table.TABLE:
        if row.module is not generate or "pool.teacher" in row.artifacts:
            continue
        for role in [r for r in row_roles(row, plan.specs) if r.startswith("pool.") and r in plan.roles]:
            which = role.split(".", 1)[1]
            teacher = cfg.mix[which]
            if backend_class(teacher.backend).generates:
                needs.append(PoolNeed(f"mix.{which}", str(teacher.name), choices[f"teacher@mix.{which}"],
                                      plan.key(f"generation.{which}"), plan.key(role),
                                      store is not None and store.is_done(plan.key(role))))
    return needs


def override_value(value: Any) -> str | None:
    """``value`` written as a Hydra override value (``null``, ``true``, ``0.6``, ``'a b'``, ``[1,2]``), or None
    when it cannot be (a string with a quote or a line break, a mapping)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in ("null", "true", "false"):
            return value
        return None if re.search(r"['\"\\\n]", value) else f"'{value}'"
    if isinstance(value, list):
        items = [override_value(v) for v in value]
        return None if None in items else f"[{','.join(items)}]"
    return None


def teacher_overrides(file_teacher: Any, teacher: Any, prefix: str = "teacher") -> list[str] | None:
    """``<prefix>.<field>=<value>`` for every field of ``teacher`` (plain containers) that differs from
    ``file_teacher`` (its ``conf/teacher`` file as composed), or None when one cannot be written as an override."""
    out: list[str] = []
    for name, value in teacher.items():
        mine = file_teacher.get(name) if isinstance(file_teacher, dict) else None
        if isinstance(value, dict):
            deeper = teacher_overrides(mine if isinstance(mine, dict) else {}, value, f"{prefix}.{name}")
            if deeper is None:
                return None
            out += deeper
        elif value != mine or (isinstance(file_teacher, dict) and name not in file_teacher):
            text = override_value(value)
            if text is None:
                return None
            out.append(f"{prefix}.{name}={text}")
    return out


def grid_done(folder: Path, plan: JobPlan, store: Store | None) -> bool:
    """True when the grid job's ``result.json`` in ``folder`` says done, names exactly the artifacts its plan
    builds, and every one is finished in ``store``."""
    result = read_result(folder)
    if not result or result.get("status") != "done" or store is None:
        return False
    wanted = {role: plan.key(role) for role in plan.roles}
    return result.get("artifacts") == wanted and all(store.is_done(key) for key in wanted.values())


def pool_resources(params: Mapping[str, Any], gpus: int) -> dict[str, Any]:
    """A pool job's launcher fields: ``gpus`` GPUs (at most the launcher's ``gpus_per_node``) and the same share of
    its ``cpus_per_task`` and ``mem_gb`` (0, the whole node's memory, stays 0); a launcher without GPUs (the CPU
    test cluster): its own."""
    node = params.get("gpus_per_node")
    if not node:
        return {}
    gpus = max(1, min(int(gpus), int(node)))
    out: dict[str, Any] = {"gpus_per_node": gpus, "cpus_per_task": max(1, int(params.get("cpus_per_task") or 1) * gpus // node)}
    if params.get("mem_gb"):
        out["mem_gb"] = max(1, math.ceil(params["mem_gb"] * gpus / node))
    return out


def report_resources(params: Mapping[str, Any]) -> dict[str, Any]:
    """The report job's launcher fields: no GPU, :data:`REPORT_CPUS` CPUs, :data:`REPORT_MEM_GB` GB and
    :data:`REPORT_TIMEOUT_MIN` minutes, each at most the launcher's own."""
    cpus, mem, limit = params.get("cpus_per_task") or REPORT_CPUS, params.get("mem_gb") or REPORT_MEM_GB, params.get("timeout_min")
    return {"gpus_per_node": None, "cpus_per_task": min(REPORT_CPUS, int(cpus)), "mem_gb": min(REPORT_MEM_GB, int(mem)),
            "timeout_min": min(REPORT_TIMEOUT_MIN, int(limit or REPORT_TIMEOUT_MIN)), "name": "mixgap_report"}


def _pool_job(need: PoolNeed, point: Point, compose: Callable[[list[str]], tuple[DictConfig, list[str]]],
              study: Study) -> tuple[DictConfig, list[str]] | None:
    """The pool job's config and task overrides, checked to plan ``need.pool``; None with a refusal when it cannot."""
    base = [o for o in point.overrides if _key(o) not in ("stage", "teacher") and not _key(o).startswith(("teacher.", "hydra."))]
    base += [f"stage={POOL_STAGE}", f"teacher={need.choice}"]
    label = f"pool job for {need.field}={need.name} (grid job {point.num})"
    try:
        plain, _ = compose(base)
        extra = teacher_overrides(to_container(plain.teacher), to_container(point.cfg.mix[need.field.split(".")[1]]))
        cfg, task = compose(base + (extra or []))
        plan = checked_plan(cfg, task, planning=point.cfg.stage == "plan")
    except ConfigError as err:
        study.refusals.append(f"{label}: {err}")
        return None
    if extra is None or plan is None or plan.key("pool.teacher") != need.pool:
        built = plan.key("generation.teacher") if plan is not None else "nothing"
        study.refusals.append(
            f"{label}: `stage={POOL_STAGE} teacher={need.choice}` with the grid's overrides builds generation {built}, "
            f"the grid needs {need.generation}; set the teacher's fields on the command line (mix.strong.<field>=) "
            f"or in conf/teacher/{need.choice}.yaml")
        return None
    return cfg, task


def make_study(points: Sequence[Point], compose: Callable[[list[str]], tuple[DictConfig, list[str]]], sweep: Path,
               launcher: str, params: Mapping[str, Any], stores: Callable[[DictConfig], Store | None]) -> Study:
    """The study of a sweep on a SLURM launcher (the module docstring says which jobs and why).

    Args:
        points: the sweep's grid jobs, each checked (:func:`mixgap.plan.jobs.checked_plan` holds its plan).
        compose: a sweep point's ``(task config, task overrides)`` for a list of overrides, composed as the
            launcher will compose that job (the sweeper's ``load_sweep_config``).
        sweep: the sweep dir; launcher: the ``hydra/launcher`` choice; params: its resolved fields.
        stores: the store of a job config, None when its folder does not exist yet.

    Returns:
        The :class:`Study`; its ``refusals`` say why it cannot be submitted (a pool job that would not build the
        grid's pool, or that its allocation refuses).
    """
    study = Study(Path(sweep), launcher, dict(params))
    pools: dict[str, DagJob] = {}
    groups: dict[tuple[str, ...], list[tuple[Point, JobPlan]]] = {}
    evaluates, done, stored = False, 0, set()
    for point in points:
        plan = checked_plan(point.cfg, point.overrides)
        if plan is None:
            continue
        store = stores(point.cfg)
        evaluates = evaluates or plan.builds("eval.")
        if grid_done(study.sweep / str(point.num), plan, store):
            done += 1
            continue
        needs = pool_needs(point.cfg, plan, point.choices, store)
        for need in [n for n in needs if n.done and n.pool not in stored]:
            stored.add(need.pool)
            study.kept.append(f"pool {need.name} ({need.field}): in the store ({need.pool})")
        needs = [n for n in needs if not n.done]
        for need in needs:
            if need.pool not in pools:
                pools[need.pool] = _add_pool(need, point, compose, study, store, pools)
        groups.setdefault(tuple(pools[n.pool].name for n in needs if pools[n.pool] is not None), []).append((point, plan))
    for num, job in enumerate([job for job in pools.values() if job is not None], start=len(points)):
        job.num = num  # after the grid's numbers: hydra.job.num of a pool job names nothing
        study.jobs.append(job)
    common = [o for o in points[0].overrides if all(o in p.overrides for p in points)] if points else []
    for array, (after, members) in enumerate(groups.items()):
        for point, _ in members:
            study.jobs.append(DagJob("grid", str(point.num), point.num, str(point.num), list(point.overrides),
                                     after=tuple(f"pool:{name}" for name in after),
                                     dependency="afterok" if after else "", array=array))
    out = points[0].cfg.report.out if points else None
    report_md = Path(out or study.sweep / "report") / "report.md"
    if evaluates and (groups or not report_md.is_file()):
        sweep_value = override_value(str(study.sweep)) or f"'{study.sweep}'"
        keep = [o for o in common if _key(o) not in ("stage", "report.sweep") and not _key(o).startswith("hydra.")]
        study.jobs.append(DagJob("report", "report", len(points) + len(study.of("pool")), "report",
                                 [*keep, "stage=report", f"report.sweep={sweep_value}", "hydra.sweep.subdir=report"],
                                 report_resources(params), tuple(f"array:{n}" for n in range(len(groups))),
                                 "afterany" if groups else ""))
    if done:
        study.kept.append(f"{done} grid job(s) done (result.json done, every artifact in the store)")
    if evaluates and not any(job.kind == "report" for job in study.jobs):
        study.kept.append(f"the report: {report_md} is written and no grid job is left")
    return study


def _add_pool(need: PoolNeed, point: Point, compose: Callable[[list[str]], tuple[DictConfig, list[str]]],
              study: Study, store: Store | None, pools: Mapping[str, DagJob | None]) -> DagJob | None:
    """The pool job of ``need`` (None, with a refusal in ``study``, when it cannot be made)."""
    made = _pool_job(need, point, compose, study)
    if made is None:
        return None
    cfg, task = made
    taken = {job.name for job in pools.values() if job is not None}
    name = need.name if need.name not in taken else f"{need.name}-{need.generation.rsplit('-', 1)[-1][:8]}"
    resources = {**pool_resources(study.params, int(cfg.teacher.tensor_parallel_size)), "name": f"mixgap_generate_{name}"}
    gpus = resources.get("gpus_per_node") or 0
    plan = checked_plan(cfg, task, planning=point.cfg.stage == "plan")
    report = plan_job(cfg, plan, Allocation(study.launcher, int(gpus)), store)
    study.refusals += [f"pool job {name}: {reason}" for reason in report["refusals"]]
    memory = report.get("generation_memory_gb_per_gpu")
    line = f"generation {memory:.1f} GB/GPU" if gpus and memory else "generation on the CPU" if not gpus else ""
    return DagJob("pool", name, 0, f"pools/{name}", [*task, f"hydra.sweep.subdir=pools/{name}"], resources, plan=line)


def resources_text(params: Mapping[str, Any]) -> str:
    """``4 GPUs, 16 CPUs, 240 GB, 1440 min`` (``the CPU``, ``all the node's memory`` where they apply)."""
    gpus = params.get("gpus_per_node")
    mem = params.get("mem_gb")
    memory = "all the node's memory" if mem == 0 else f"{mem} GB" if mem else "the cluster's default memory"
    return (f"{gpus} GPU(s)" if gpus else "the CPU") + f", {params.get('cpus_per_task') or 1} CPU(s), {memory}, " \
        f"{params.get('timeout_min')} min"


def study_lines(study: Study, points: Sequence[Point]) -> list[str]:
    """The study as it will be submitted: one line per pool job, per grid array and grid job (its swept values),
    and for the report job, each with its allocation and what it waits for; then what is not submitted."""
    varying = {o for p in points for o in p.overrides if not all(o in q.overrides for q in points)}
    by_num = {p.num: p for p in points}
    arrays = sorted({job.array for job in study.of("grid")})
    lines = [f"the study on hydra/launcher={study.launcher} ({study.sweep}): {len(study.of('pool'))} pool job(s), "
             f"{len(study.of('grid'))} grid job(s) in {len(arrays)} array(s), {len(study.of('report'))} report job(s)"]
    for job in study.of("pool"):
        lines.append(f"  pool {job.name}: {resources_text({**study.params, **job.resources})}; "
                     f"stage={POOL_STAGE} -> {job.folder}" + (f"; {job.plan}" if job.plan else ""))
    for array in arrays:
        members = [job for job in study.of("grid") if job.array == array]
        after = ", ".join(a.replace(":", " ") for a in members[0].after)
        lines.append(f"  array {array} ({len(members)} grid job(s)): {resources_text(study.params)}; "
                     + (f"after ok: {after}" if after else "no dependency"))
        for job in members:
            swept = " ".join(o for o in by_num[job.num].overrides if o in varying)
            lines.append(f"    grid {job.name} ({swept or 'the one point'}) -> {job.folder}")
    for job in study.of("report"):
        after = ", ".join(a.replace(":", " ") for a in job.after)
        lines.append(f"  report: {resources_text({**study.params, **job.resources})}; stage=report -> "
                     f"{job.folder}; " + (f"after any: {after}" if after else "no dependency"))
    return lines + [f"  not submitted: {line}" for line in study.kept]
