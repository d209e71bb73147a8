"""Run a peer grader's regression tables through our grader: Math-Verify's ``tests/*.py`` vs ``grade``.

Run from the repo root with ``PYTHONPATH=$PWD`` (the Math-Verify repository is a git directory or a
checkout; nothing is downloaded here)::

    python benchmarks/bench_peer_suite.py PATH/TO/Math-Verify [--rev HEAD] [--all]

The test files are read as text (``git show REV:tests/x.py`` for a git directory, else the files of
the checkout) and their ``@pytest.mark.parametrize`` lists are read with :mod:`ast` and
:func:`ast.literal_eval` only: nothing of the peer repository is imported or executed. A case whose
values are not literals (an f-string) is counted and skipped.

Every ``(gold, pred, expected)`` case (plus the option columns some tables carry: ``precision``,
``strict``, ``allow_set_relation_comp``) is graded with :func:`mixgap.grading.grade` on the ``math``
benchmark: the prediction is boxed (``\\boxed{pred}``) when it holds no ``\\boxed``/``\\fbox``; the
gold is the content of its last box when it has one, else the gold string itself (our normaliser
removes ``$`` delimiters). The script prints agreement with the expected values overall and with
extraction set aside (cases where our extraction found no answer in the boxed prediction: an
unclosed box), then every disagreement with its decision from ``DECISIONS`` below (``our bug`` --
must stay empty, ``policy`` -- our written grading policy decides otherwise, ``doubtful`` -- the
peer's expected value is doubtful, or depends on a peer option we do not have). A disagreement
without a decision prints as ``UNDECIDED``. ``--all`` prints every case.

Decisions are keyed by a content hash of ``(gold, pred, expected)``, so they survive a reordering
of the peer's tables. ``benchmarks/grading_disagreements.md`` carries the same decisions with reasons.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import mixgap.grading as grading
from mixgap.grading.extract import last_boxed
from mixgap.grading.worker import shutdown_workers, start_workers

TIMEOUT_S = 5.0
OPTION_COLUMNS = ("precision", "strict", "allow_set_relation_comp")


@dataclass(frozen=True)
class Case:
    """One row of a peer parametrize table."""

    where: str  # "tests/test_all.py::test_relations_math#3"
    gold: str
    pred: str
    expected: bool
    options: dict

    @property
    def key(self) -> str:
        """Stable id: the first 10 hex digits of sha1 over gold, pred and expected."""
        raw = "\x00".join((self.gold, self.pred, str(int(self.expected))))
        return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:10]


def _git_files(repo: Path, rev: str) -> dict[str, str] | None:
    """``{path: text}`` of ``tests/*.py`` at ``rev`` if ``repo`` is a git directory, else ``None``."""
    try:
        names = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", rev, "tests/"],
                               capture_output=True, text=True, check=True).stdout.split()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return {name: subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{name}"], capture_output=True,
                                 text=True, check=True).stdout
            for name in sorted(names) if name.endswith(".py")}


def read_test_files(repo: Path, rev: str) -> tuple[dict[str, str], str]:
    """The peer's ``tests/*.py`` as text, and a label of where they came from (commit or folder).

    Raises:
        SystemExit: ``repo`` is neither a git directory nor a folder with ``tests/*.py``.
    """
    files = _git_files(repo, rev)
    if files:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", rev], capture_output=True, text=True,
                                check=True).stdout.strip()
        return files, f"git {commit}"
    tests = repo / "tests"
    files = {f"tests/{p.name}": p.read_text(encoding="utf-8") for p in sorted(tests.glob("*.py"))}
    if not files:
        raise SystemExit(f"repo: {repo} is neither a git directory nor a checkout with tests/*.py")
    return files, f"folder {tests}"


def _argnames(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [name.strip() for name in node.value.split(",")]
    if isinstance(node, (ast.List, ast.Tuple)) and all(isinstance(e, ast.Constant) for e in node.elts):
        return [str(e.value).strip() for e in node.elts]
    return None


def parse_cases(files: dict[str, str]) -> tuple[list[Case], list[str]]:
    """Every literal ``(gold, pred, expected[, options])`` row of every parametrize table.

    Returns:
        ``(cases, skipped)``: ``skipped`` names rows that are not literals or tables without a gold.
    """
    cases, skipped = [], []
    for path, text in files.items():
        for func in ast.walk(ast.parse(text, filename=path)):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for dec in func.decorator_list:
                if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"
                        and len(dec.args) >= 2 and isinstance(dec.args[1], (ast.List, ast.Tuple))):
                    continue
                names = _argnames(dec.args[0])
                result = next((n for n in ("expected", "result") if names and n in names), None)
                if names is None or "gold" not in names or "pred" not in names or result is None:
                    skipped.append(f"{path}::{func.name} (table without gold/pred/expected: "
                                   f"{len(dec.args[1].elts)} rows)")
                    continue
                for index, row in enumerate(dec.args[1].elts):
                    where = f"{path}::{func.name}#{index}"
                    try:
                        values = dict(zip(names, ast.literal_eval(row), strict=True))
                    except (ValueError, TypeError, SyntaxError):
                        skipped.append(f"{where} (not a literal)")
                        continue
                    options = {k: values[k] for k in OPTION_COLUMNS if k in values}
                    cases.append(Case(where, values["gold"], values["pred"], bool(values[result]), options))
    return cases, skipped


def boxed_prediction(pred: str) -> str:
    """The prediction as a completion: boxed unless it already holds a box."""
    return pred if ("\\boxed" in pred or "\\fbox" in pred) else "\\boxed{" + pred + "}"


def gold_answer(gold: str) -> str:
    """The gold answer: its last box's content when it has one, else the gold string."""
    boxed = last_boxed(gold)
    return boxed if boxed is not None else gold


# key -> (decision, why). "our bug" is a defect of ours (goal: none left); "policy" = our written grading
# policy (mixgap/grading/__init__.py) decides otherwise; "doubtful" = the peer's expected value is doubtful
# or rests on a peer option (precision, strict=False) our grader does not have.
DECISIONS: dict[str, tuple[str, str]] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="the Math-Verify repository (git directory or checkout)")
    parser.add_argument("--rev", default="HEAD", help="git revision to read (git directories only)")
    parser.add_argument("--all", action="store_true", help="print every case, not only disagreements")
    args = parser.parse_args()
    files, source = read_test_files(args.repo, args.rev)
    cases, skipped = parse_cases(files)

    start_workers(2, wait_s=30.0)  # boot time is not a verdict
    rows = []
    start = time.perf_counter()
    for case in cases:
        t0 = time.perf_counter()
        verdict = grading.grade(boxed_prediction(case.pred), gold_answer(case.gold), "math", timeout_s=TIMEOUT_S)
        rows.append((case, verdict, time.perf_counter() - t0))
    wall = time.perf_counter() - start
    shutdown_workers()

    n = len(rows)
    agree = sum(v.correct == c.expected for c, v, _ in rows)
    graded = [(c, v) for c, v, _ in rows if v.reason != "no_answer"]
    agree_graded = sum(v.correct == c.expected for c, v in graded)
    slowest = max(rows, key=lambda r: r[2])
    print(f"peer suite: Math-Verify tests/*.py ({source}); {len(files)} files, {n} cases, "
          f"{len(skipped)} skipped")
    for why in skipped:
        print(f"  skipped: {why}")
    print(f"agreement with the expected values: {agree}/{n}")
    print(f"agreement with extraction set aside (our extraction found an answer): {agree_graded}/{len(graded)}")
    print(f"time: {wall:.1f} s for {n} verdicts; slowest {slowest[2] * 1000:.0f} ms ({slowest[0].where}); "
          f"timeouts {sum(v.reason == 'timeout' for _, v, _ in rows)}")
    tally: dict[str, int] = {}
    lines = []
    for case, verdict, secs in rows:
        ok = verdict.correct == case.expected
        if ok and not args.all:
            continue
        decision, why = ("agree", "") if ok else DECISIONS.get(case.key, ("UNDECIDED", ""))
        if not ok:
            tally[decision] = tally.get(decision, 0) + 1
        opts = f" {case.options}" if case.options else ""
        lines.append(f"- {case.key} {case.where}{opts} | gold {_short(gold_answer(case.gold))} | pred "
                     f"{_short(verdict.extracted)} | expected {int(case.expected)} | ours {int(verdict.correct)} "
                     f"({verdict.reason}, {secs * 1000:.0f} ms) | {decision}: {why}")
    print(f"disagreements by decision: {dict(sorted(tally.items()))}")
    print("\n".join(lines))


def _short(text: str | None, limit: int = 60) -> str:
    text = "" if text is None else " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


if __name__ == "__main__":
    main()
