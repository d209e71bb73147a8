"""Benchmark the grader on the data kit's real traces: speed, and agreement with two other graders.

Run from the repo root::

    python benchmarks/bench_grading.py [--markdown benchmarks/grading_disagreements.md]

The kit is read through ``MIXGAP_DATA`` (default ``../shared/data`` relative to the repo root) and is
never copied. For the 1,000 MATH500 completions in ``traces/*.jsonl`` it prints

* verdicts/s and the slowest verdict of :func:`mixgap.grading.grade` (symbolic worker booted first,
  verdict cache cleared, so every symbolic check is computed; then a second, cached pass),
* agreement with plain math-verify (``verify(parse("$" + gold + "$"), parse(completion))``) and with
  the traces' ``correct`` label (the Qwen2.5-Math evaluation harness used by SkyThought),
* every disagreement with the decision taken (``DECISIONS`` below, or the no-box rule).

* the same for ``extract="boxed"`` (the paper's extraction: only the last ``\\boxed{}``), accuracy and
  agreement with the harness label,
* the paper's rule (``extract="boxed", rule="paper"``: their ``is_equiv``): accuracy, the answers each rule sends
  to the LLM judge (a miss with an extracted answer) and the verdicts the two rules differ on.

``--pathological`` only times the predictions that would run to the 5 s timeout in the worker (power
towers, a huge factorial, thousands of unbalanced brackets); the target is under 100 ms a verdict.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mixgap.grading as grading
from mixgap.grading.equivalence import clear_cache
from mixgap.grading.worker import shutdown_workers, start_workers

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 5.0

# (trace, id) -> (who is right: "ours" | "other", why). "other" = a grader error we fixed (now a test).
# Disagreements whose only cause is "no \boxed / Final Answer in the completion" are decided by RULE_NO_BOX.
_PM = "the gold 3 \\pm 2\\sqrt{2} is the set {3+2\\sqrt2, 3-2\\sqrt2}; the harness does not expand \\pm"
_THOU = "the gold writes thousands separators as ',\\!'; the harness compares strings"
DECISIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("long", "test/precalculus/768.json"): ("ours", _PM),
    ("short", "test/precalculus/768.json"): ("ours", _PM),
    ("short", "test/counting_and_probability/508.json"): ("ours", _THOU),
    ("short", "test/number_theory/417.json"): ("ours", _THOU),
    ("short", "test/intermediate_algebra/183.json"): (
        "ours", "[2, \\infty) contains 2, the gold (2, \\infty) does not (2 is an infimum, not attained)"),
    ("long", "test/prealgebra/1423.json"): (
        "ours", "'final answer: 12\u03c0 inches per second' is the gold 12\\pi with units; the others read '12'"),
    ("long", "test/prealgebra/105.json"): (
        "ours", "'So, the final answer is east.' is the gold \\text{east}; math-verify read a '90' from the prose"),
    ("long", "test/counting_and_probability/389.json"): (
        "ours", "'the final answer is 28 different pizzas.' is 28; the harness read 'indeed28Idon...'"),
}
# Disagreements our first cut got wrong; fixed in the grader and now rows of tests/unit/test_grading.py.
FIXED = [
    ("long+short", "test/precalculus/1300.json", "pmatrix gold '-1/3 \\\\ 2/3 ...': '\\\\ ' (row break + space) "
     "was read as a spacing command, merging the rows; now row breaks are kept"),
    ("long+short", "test/precalculus/625.json", "same row-break bug ('16/49 \\\\ 48/49 ...')"),
    ("long", "test/algebra/722.json (+8 more)", "'So, the final answer is 9901.' (no colon) was not read as the "
     "Final Answer marker; now 'final answer is' counts, its math span or sentence is the answer"),
    ("long", "test/counting_and_probability/389.json", "'28 different pizzas' kept its words; words after a "
     "bare number are now dropped"),
]
PEER_SECTION = "## Peer suite: Math-Verify's regression tables"
RULE_NO_BOX = ("policy", "no box and no final-answer marker: no answer (grading policy rule 1); "
                         "the other grader read the prose")


def load_traces(data_dir: Path) -> list[dict]:
    records = []
    for path in sorted((data_dir / "traces").glob("*.jsonl")):
        trace = "long" if path.name.startswith("long") else "short"
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                rec["trace"] = trace
                records.append(rec)
    return records


def time_ours(records: list[dict]) -> tuple[list[grading.Verdict], list[float], float]:
    verdicts, times = [], []
    start = time.perf_counter()
    for rec in records:
        t0 = time.perf_counter()
        verdicts.append(grading.grade(rec["response"], rec["answer"], "math500", timeout_s=TIMEOUT_S))
        times.append(time.perf_counter() - t0)
    return verdicts, times, time.perf_counter() - start


def run_math_verify(records: list[dict]) -> tuple[list[bool], list[str], float]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    results, extracted = [], []
    start = time.perf_counter()
    for rec in records:
        pred = parse(rec["response"])
        results.append(bool(verify(parse("$" + rec["answer"] + "$"), pred)))
        extracted.append(str(pred[-1]) if pred else "")
    return results, extracted, time.perf_counter() - start


def decide(rec: dict, verdict: grading.Verdict) -> tuple[str, str]:
    key = (rec["trace"], rec["id"])
    if key in DECISIONS:
        return DECISIONS[key]
    if verdict.reason == "no_answer":
        return RULE_NO_BOX
    return ("UNDECIDED", "")


# predictions that would run to the 5 s timeout in the worker; each verdict must come in under PATHOLOGICAL_TARGET_S
PATHOLOGICAL = {
    "factorial (10^100)!": "\\boxed{(10^{100})!}",
    "tower 9^9^9^9^9": "\\boxed{9^{9^{9^{9^{9}}}}}",
    "tower 9^9^9^9": "\\boxed{9^{9^{9^{9}}}}",
    "3000 x '('": "\\boxed{" + "(" * 3000 + "1}",
    "3000 x '['": "\\boxed{" + "[" * 3000 + "1}",
    "500 x '\\left('": "\\boxed{" + "\\left(" * 500 + "1}",
    "1500 x '\\{'": "\\boxed{" + "\\{" * 1500 + "1}",
    "200 x '('": "\\boxed{" + "(" * 200 + "1}",
}
PATHOLOGICAL_TARGET_S = 0.1


def time_pathological() -> list[str]:
    """Verdict time of each :data:`PATHOLOGICAL` prediction against gold ``3`` (worker booted first)."""
    start_workers(1, wait_s=30.0)
    lines = []
    for name, completion in PATHOLOGICAL.items():
        t0 = time.perf_counter()
        verdict = grading.grade(completion, "3", "math", timeout_s=TIMEOUT_S)
        secs = time.perf_counter() - t0
        status = "ok" if secs < PATHOLOGICAL_TARGET_S else "OVER TARGET"
        lines.append(f"pathological {name}: {secs * 1000:.1f} ms ({verdict.reason}; target "
                     f"{PATHOLOGICAL_TARGET_S * 1000:.0f} ms: {status})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="also write the disagreement list to this file")
    parser.add_argument("--pathological", action="store_true",
                        help="only time the pathological predictions (target: under 100 ms each)")
    args = parser.parse_args()
    if args.pathological:
        print("\n".join(time_pathological()))
        return
    data_dir = Path(os.environ.get("MIXGAP_DATA", REPO.parent / "shared" / "data"))
    records = load_traces(data_dir)
    n = len(records)

    start_workers(min(4, os.cpu_count() or 1), wait_s=30.0)  # boot time is not a verdict
    clear_cache()
    ours, times, wall = time_ours(records)
    _, times_cached, wall_cached = time_ours(records)
    clear_cache()
    shutdown_workers()  # fresh workers: no parse cache left from the passes above
    threads = min(4, os.cpu_count() or 1)
    start_workers(threads, wait_s=30.0)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        threaded = list(pool.map(lambda r: grading.grade(r["response"], r["answer"], "math500"), records))
    wall_threads = time.perf_counter() - start
    assert threaded == ours, "verdicts must not depend on threading"
    slowest = max(range(n), key=times.__getitem__)
    reasons = Counter(v.reason for v in ours)
    mv, mv_extracted, mv_wall = run_math_verify(records)
    paper = [grading.grade(r["response"], r["answer"], "math500", extract="boxed", timeout_s=TIMEOUT_S)
             for r in records]

    lines = [f"records: {n} ({data_dir / 'traces'})",
             f"ours, cold cache: {n / wall:.0f} verdicts/s ({wall:.2f} s); slowest {times[slowest] * 1000:.1f} ms "
             f"({records[slowest]['trace']} {records[slowest]['id']}); over {TIMEOUT_S:.0f} s timeout: "
             f"{sum(t > TIMEOUT_S for t in times)}",
             f"ours, cached: {n / wall_cached:.0f} verdicts/s; slowest {max(times_cached) * 1000:.1f} ms",
             f"ours, cold cache, {threads} threads: {n / wall_threads:.0f} verdicts/s",
             f"plain math-verify: {n / mv_wall:.0f} verdicts/s ({mv_wall:.2f} s)",
             f"reasons: {dict(reasons.most_common())}",
             f"accuracy (pass@1): ours {sum(v.correct for v in ours) / n:.3f}, math-verify {sum(mv) / n:.3f}, "
             f"harness label {sum(r['correct'] for r in records) / n:.3f}"]
    for trace in ("short", "long"):
        idx = [i for i, r in enumerate(records) if r["trace"] == trace]
        lines.append(f"  {trace} CoT pass@1: ours {sum(ours[i].correct for i in idx) / len(idx):.3f}, math-verify "
                     f"{sum(mv[i] for i in idx) / len(idx):.3f}, harness label "
                     f"{sum(records[i]['correct'] for i in idx) / len(idx):.3f}; ours no_answer "
                     f"{sum(ours[i].reason == 'no_answer' for i in idx)}")
    labels = [r["correct"] for r in records]
    lines.append(f"extract='boxed' (the paper's extraction): pass@1 {sum(v.correct for v in paper) / n:.3f}, "
                 f"no_answer {sum(v.reason == 'no_answer' for v in paper)}, agreement with harness label "
                 f"{sum(v.correct == o for v, o in zip(paper, labels, strict=True))}/{n}, with ours "
                 f"{sum(v.correct == o.correct for v, o in zip(paper, ours, strict=True))}/{n}")
    rule = [grading.grade(r["response"], r["answer"], "math500", extract="boxed", rule="paper") for r in records]
    sent = [sum(not v.correct and v.extracted is not None for v in vs) for vs in (rule, paper)]
    lines.append(f"rule='paper' (the paper's extraction and is_equiv): pass@1 {sum(v.correct for v in rule) / n:.3f}, "
                 f"sent to the judge {sent[0]} (extract='boxed' under our rule: {sent[1]}), verdicts differing "
                 f"{sum(v.correct != o.correct for v, o in zip(rule, paper, strict=True))} (ours correct "
                 f"{sum(o.correct and not v.correct for v, o in zip(rule, paper, strict=True))})")
    tallies: Counter = Counter()
    rows = []
    for other, values in (("math-verify", mv), ("harness label", [r["correct"] for r in records])):
        agree = sum(v.correct == o for v, o in zip(ours, values, strict=True))
        lines.append(f"agreement with {other}: {agree}/{n}")
        for i, (rec, verdict, value) in enumerate(zip(records, ours, values, strict=True)):
            if verdict.correct == value:
                continue
            who, why = decide(rec, verdict)
            tallies[(other, who)] += 1
            rows.append((other, rec, verdict, value, mv_extracted[i], who, why))
    for (other, who), count in sorted(tallies.items()):
        by_trace = Counter(r[1]["trace"] for r in rows if r[0] == other and r[5] == who)
        lines.append(f"disagreements with {other} decided {who}: {count} ({dict(sorted(by_trace.items()))})")
    lines.append(f"disagreements fixed in the grader during development: {len(FIXED)} (see FIXED)")
    print("\n".join(lines))
    print("\nDisagreements (other grader | trace id | gold | ours: extracted -> verdict | other | decision):")
    for other, rec, verdict, value, mv_ext, who, why in rows:
        theirs = rec["pred"] if other == "harness label" else mv_ext
        print(f"- {other} | {rec['trace']} {rec['id']} | gold {rec['answer']!r} | ours {verdict.extracted!r} -> "
              f"{verdict.correct} ({verdict.reason}) | other {theirs[:60]!r} -> {value} | {who}: {why}")
    if args.markdown:
        write_markdown(args.markdown, lines, rows)


def _cell(text: object, limit: int = 70) -> str:
    text = "" if text is None else str(text)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else ""


def write_markdown(path: Path, lines: list[str], rows: list) -> None:
    out = ["# Grader disagreements on the data kit's traces (measured)", "",
           "Generated by `python benchmarks/bench_grading.py --markdown benchmarks/grading_disagreements.md`.",
           "Decision: `ours` = our verdict is right; `other` = the other grader was right and the case is",
           "now a test; `policy` = decided by rule 1 of the grading policy (no box, no answer).",
           "Every `policy` row is a completion with no `\\boxed{}` and no final-answer marker whose answer",
           "the other grader read from the prose (the harness falls back to the last number).",
           "Timings: single thread, symbolic workers booted before timing, verdict cache cleared;",
           "the machine is a shared 2-CPU container, so figures vary by about 2x with its load.", "",
           "```", *lines, "```", ""]
    out += ["## Fixed in the grader (now tests)", "", "| trace | id | what was wrong |", "|---|---|---|"]
    out += [f"| {trace} | {rid} | {_cell(why, 300)} |" for trace, rid, why in FIXED] + [""]
    for other in ("math-verify", "harness label"):
        sub = [r for r in rows if r[0] == other]
        out += [f"## vs {other} ({len(sub)})", "",
                "| trace | id | gold | ours: extracted | ours | theirs: extracted | theirs | decision | why |",
                "|---|---|---|---|---|---|---|---|---|"]
        for _, rec, verdict, value, mv_ext, who, why in sub:
            theirs = rec["pred"] if other == "harness label" else mv_ext
            out.append(f"| {rec['trace']} | {rec['id']} | {_cell(rec['answer'])} | {_cell(verdict.extracted)} | "
                       f"{verdict.correct} ({verdict.reason}) | {_cell(theirs)} | {value} | {who} | {why} |")
        out.append("")
    # the peer-suite section (benchmarks/bench_peer_suite.py, written by hand from its output) is kept
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    kept = old[old.index(PEER_SECTION):] if PEER_SECTION in old else ""
    path.write_text("\n".join(out) + ("\n" + kept if kept else ""), encoding="utf-8")


if __name__ == "__main__":
    main()
