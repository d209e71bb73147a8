"""What the preflight prints: one line per job (:func:`describe`), its refusals and its plan on the cluster launcher
(:func:`report_lines`), and the sweep's summary lines with its total GPU-hours and its wall time on one node
(:func:`summary_lines`). Reads the reports :func:`mixgap.plan.preflight.preflight` returns; computes nothing new."""

from __future__ import annotations

import logging
from typing import Any

from mixgap.plan.engines import engine_line
from mixgap.plan.estimates import one_node_hours

log = logging.getLogger("mixgap.plan.preflight")
NODE_GPUS = 8  # the one-node schedule of summary_lines: one node of 8 GPUs (hydra/launcher=slurm's allocation)


def log_preflight(report: dict[str, Any]) -> None:
    """Log one line of the plan (layout, memory per GPU, hours), one per evaluated arm (what serves it, at which
    context: :func:`mixgap.plan.engines.engine_line`), one per refusal, then its plan elsewhere (and the arms it
    serves otherwise there: vLLM on the cluster's GPUs where this CPU runs hf)."""
    log.info("preflight: %s", describe(report))
    here = report.get("evaluation") or {}
    for arm, engine in here.items():
        log.info("preflight evaluation %s", engine_line(arm, engine))
    for reason in report["refusals"]:
        log.error("preflight refused: %s", reason)
    for line in report_lines(report)[len(report["refusals"]):]:
        log.info("preflight %s", line)
    there = report.get("elsewhere") or {}
    for arm, engine in (there.get("evaluation") or {}).items():
        if engine != here.get(arm):
            log.info("preflight on hydra/launcher=%s: evaluation %s", there["launcher"], engine_line(arm, engine))


def duration(hours: float) -> str:
    """Hours for a plan line: two significant figures (``0.75 h``, ``12 h``), minutes below 0.1 h (``3 min``), so a
    small job never reads ``0.00 h``."""
    if hours <= 0:
        return "0 h"
    if hours < 0.1:
        return f"{max(1, round(hours * 60))} min"
    return f"{hours:.2g} h" if hours < 100 else f"{hours:.0f} h"


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} GB"


def _replicas(report: dict[str, Any]) -> str:
    dp, bound = (report.get("data_parallel_size") or {}).get("evaluation"), report.get("eval_rate_bound")
    return (f" x data_parallel_size {dp}" if dp else "") + (f", {bound}-bound" if bound else "")


def describe(report: dict[str, Any]) -> str:
    """One line: where (GPUs and their memory, or the CPU), batch layout (and why its per-device batch is not the
    configured one, when it is not), train/generation memory per GPU, the evaluation's TP x replicas and its decode
    bound, hours and GPU-hours, which throughput figures a ``cluster.calibration`` file gave and where a model's shape
    came from when not its YAML (on the CPU: the layout only, the GPU figures belong to the cluster plan)."""
    why = f" ({report['layout_reason']})" if report.get("layout_reason") else ""
    layout = (f"world {report['world_size']} x per-device {report['per_device_batch_size']} x accumulation "
              f"{report['gradient_accumulation_steps']} = global {report['global_batch_size']}{why}"
              if report["world_size"] else "no batch layout (refused)" if report.get("trains") else "no training")
    if report.get("cpu"):
        return f"runs on the CPU here (no CUDA device: GPU memory and tensor parallelism do not apply); {layout}"
    traces, score = report.get("score_traces"), report.get("score_hours_estimate") or 0.0
    scoring = (f", scoring {traces:,} traces {_gb(report['score_memory_gb_per_gpu'])} on 1 GPU" if traces else "")
    return (f"{report['gpus']} GPU(s) of {report['gpu_memory_gb']:g} GB; {layout}; train {_gb(report['train_memory_gb_per_gpu'])}"
            f"/GPU, generation {_gb(report['generation_memory_gb_per_gpu'])}/GPU (eval TP "
            f"{report['eval_tensor_parallel_size'] or '-'}{_replicas(report)}){scoring}; "
            + (f"scoring {duration(score)} + " if traces else "") + f"train {duration(report['train_hours_estimate'])} + "
            f"eval <= {duration(report['eval_hours_estimate'])} = {report['gpu_hours_estimate']:.2g} GPU-h"
            + (f"; {report['calibration']}" if report.get("calibration") else "")
            + "".join(f"; {note}" for note in report.get("shapes") or ()))


def report_lines(report: dict[str, Any]) -> list[str]:
    """The lines after a job's :func:`describe`: its refusals (``REFUSED: ...``), then, when it has one, its plan on
    ``hydra/launcher=slurm`` and what that launcher would refuse (not this job's refusals)."""
    lines = [f"REFUSED: {reason}" for reason in report["refusals"]]
    there = report.get("elsewhere")
    if there:
        lines.append(f"on hydra/launcher={there['launcher']}: {describe(there)}")
        lines += [f"on hydra/launcher={there['launcher']} it would be refused: {reason}" for reason in there["refusals"]]
    return lines


def summary_lines(results: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """Lines for the sweep summary: one per job with a preflight (memory per GPU, hours), its refusals and its
    plan on ``hydra/launcher=slurm`` when it has one (:func:`report_lines`), the sweep's total GPU-hours (a CPU
    job counted at its slurm plan) and its wall time on one 8-GPU node (:func:`mixgap.plan.estimates.one_node_hours`);
    and whether any job was refused."""
    planned = [r for r in results if r.get("preflight")]
    if not planned:
        return [], False
    lines = ["preflight per job (memory per GPU; hours on the job's allocation):"]
    total, refused, on_cpu, node = 0.0, False, 0, []
    seen_untuned: set[tuple] = set()
    for result in planned:
        pf, job = result["preflight"], result.get("job", {})
        strategy = job.get("strategy")  # a student-aware mixture (mix.strategy): rsr selects by no weight
        arm = (f"mix.strategy={strategy}" + ("" if strategy == "rsr" else f" w={job.get('weight')}") if strategy
               else f"w={job.get('weight')}")
        name = f"{job.get('student')} {job.get('strong')}/{job.get('weak')} {arm} {job.get('finetune_mode')}"
        lines.append(f"  {name:<28} {describe(pf)}")
        lines += [f"    {line}" for line in report_lines(pf)]
        refused = refused or bool(pf["refusals"])
        costed = pf.get("elsewhere") or pf if pf.get("cpu") else pf
        on_cpu += bool(pf.get("cpu"))
        total += costed["gpu_hours_estimate"]
        hours = costed["train_hours_estimate"] + costed["eval_hours_estimate"] + costed.get("score_hours_estimate", 0.0)
        untuned = job.get("student"), tuple(job.get("benchmarks") or ())
        if untuned in seen_untuned:  # the untuned evaluation is one shared artifact per student: count it once
            total -= costed["gpus"] * costed.get("eval_untuned_hours_estimate", 0.0)
            hours -= costed.get("eval_untuned_hours_estimate", 0.0)
        seen_untuned.add(untuned)
        node.append((hours, costed["gpus"]))
    bad = sum(bool(r["preflight"]["refusals"]) for r in planned)
    there = sum(bool((r["preflight"].get("elsewhere") or {}).get("refusals")) for r in planned)
    cpu_note = f"; {on_cpu} CPU job(s) counted at their hydra/launcher=slurm plan" if on_cpu else ""
    if there:  # the cluster plans of jobs that run here: their refusals are not this machine's
        cpu_note += f", {there} of which it would refuse"
    lines.append(f"sweep total: {total:.1f} GPU-hours (train at cluster.mfu, evaluation on every replica at the "
                 f"smaller of cluster.decode_mfu and cluster.gpu_memory_bandwidth_gbs with every completion at "
                 f"eval.max_new_tokens: an upper bound; each untuned evaluation counted once; teacher generation "
                 f"and the LLM judge not included{cpu_note}); {bad} of {len(planned)} jobs refused"
                 + (" here" if on_cpu else ""))
    wall = one_node_hours(node, NODE_GPUS)
    lines.append(f"one {NODE_GPUS}-GPU node: the sweep takes {wall:.1f} h ({wall / 24:.1f} days) with its jobs in "
                 f"sequence, each with its GPUs busy (a job of fewer GPUs shares the node with others)")
    return lines, refused
