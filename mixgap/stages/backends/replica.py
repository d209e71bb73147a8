"""One engine replica of a data-parallel run (:class:`mixgap.stages.backends.parallel.ReplicaPool`): the
program ``python -m mixgap.stages.backends.replica <request.json>`` loads the backend on the GPUs its
``CUDA_VISIBLE_DEVICES`` names, generates its shard and writes it atomically to the request's ``output``.

The request (JSON): ``kind``, ``model``, ``load`` (:func:`mixgap.stages.backends.registry.load_backend` arguments),
``generate`` (``max_new_tokens``, ``temperature``, ``top_p``, ``n``, ``seed``), the shard's ``prompts``,
``seeds`` and ``stops`` (or null), its prompt ``indices`` in the whole request, ``output`` and ``desc``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mixgap.core.files import write_jsonl_atomic
from mixgap.stages.backends.parallel import shard_rows
from mixgap.stages.backends.registry import load_backend


def run_request(path: Path) -> int:
    """Generate the shard of the request at ``path`` into its ``output``; returns the prompts done."""
    request = json.loads(Path(path).read_text(encoding="utf-8"))
    engine = load_backend(request["kind"], request["model"], **request["load"])
    try:
        out = engine.generate(request["prompts"], **request["generate"], seeds=request["seeds"],
                              stops=request["stops"], desc=request["desc"])
    finally:
        engine.close()
    write_jsonl_atomic(Path(request["output"]), shard_rows(request["indices"], out))
    return len(out)


def main(argv: Sequence[str]) -> int:
    """Entry point: ``argv = [request.json]``; exit status 0 once the shard is written, 2 on bad usage."""
    if len(argv) != 1:
        print("usage: python -m mixgap.stages.backends.replica <request.json>", file=sys.stderr)
        return 2
    run_request(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
