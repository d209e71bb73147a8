"""A full disk, a read-only file system or a folder not ours, met anywhere in the store or the job folder, is one line
naming the path and what to do (exit 2 through launch.py's one error type), and leaves nothing that reads as finished;
any other OSError stays a traceback."""

from __future__ import annotations

import errno
import json
import os
import tempfile

import pytest

from conftest import write_study
from mixgap import pipeline
from mixgap.core import conftree
from mixgap.core.errors import FileSystemError, error_lines, filesystem_error
from mixgap.core.files import write_text_atomic

STORE, JOB = "/data/cache", "/home/me/outputs/1"
PLACES = {"paths.cache": STORE, "hydra.run.dir": JOB}


@pytest.mark.parametrize(("err", "line"), [
    (OSError(errno.ENOSPC, "No space left on device", f"{STORE}/pool/pool-1/pool.jsonl"),
     f"{STORE}/pool/pool-1/pool.jsonl: no space left on device (ENOSPC); free space there, or set paths.cache to a "
     "folder you can write on a disk with space"),
    (OSError(errno.EROFS, "Read-only file system", f"{STORE}/.locks"),
     f"{STORE}/.locks: read-only file system (EROFS); remount it writable, or set paths.cache to a folder you can "
     "write on a disk with space"),
    (PermissionError(errno.EACCES, "Permission denied", f"{JOB}/result.json"),
     f"{JOB}/result.json: permission denied (EACCES); fix its permissions, or set hydra.run.dir to a folder you can "
     "write on a disk with space"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"),
     f"{STORE} (paths.cache) or {JOB} (hydra.run.dir): disk quota exceeded (EDQUOT); free space within your quota, "
     "or set paths.cache or hydra.run.dir to a folder you can write on a disk with space"),
])
def test_a_refusing_file_system_is_one_line_naming_the_path_and_the_setting_that_moves_it(err, line):
    mapped = filesystem_error(err, PLACES)
    assert isinstance(mapped, FileSystemError) and error_lines(mapped) == [f"mixgap: error: {line}"]


def test_any_other_os_error_is_not_mapped():
    assert filesystem_error(FileNotFoundError(errno.ENOENT, "No such file", "/x"), PLACES) is None


def test_a_write_on_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")  # what a write(2) on a full disk raises: no file name

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as err:
        write_text_atomic(tmp_path / "result.json", "{}")
    assert (err.value.errno, err.value.filename) == (errno.ENOSPC, str(tmp_path / "result.json"))
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_in_the_store_is_one_line_and_leaves_no_finished_pool(tmp_path, kit, monkeypatch):
    """stage=mix on the tiny study: the disk fills while the strong pool's file is renamed into its folder. The job
    ends in one line naming that file; the generation before it is finished, the pool is not, no temporary folder is
    left, and result.json says failed."""
    overrides = [*write_study(tmp_path / "study"), "stage=mix", f"paths.cache={tmp_path / 'cache'}",
                 f"paths.data={kit}"]
    tree = conftree.from_command_line(overrides)
    pipeline.check_command_line(overrides, tree)  # launch.py's check before Hydra: the job reuses its plan
    task = [o for o in overrides if not o.startswith("hydra.")]
    cfg = conftree.compose(task, tree)
    replace = os.replace

    def full(src, dst, *args, **kwargs):
        if os.path.basename(dst) == "pool.jsonl":
            raise OSError(errno.ENOSPC, "No space left on device")
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    job = tmp_path / "job"
    with pytest.raises(FileSystemError) as err:
        pipeline.launch_job(cfg, job, group=str(job), overrides=task, launcher=None, launcher_cfg=None, multirun=False)
    tmp_root = (tmp_path / "cache" / ".tmp").resolve()
    lines = error_lines(err.value)
    assert len(lines) == 1 and lines[0].startswith(f"mixgap: error: {tmp_root}/pool-")
    assert lines[0].endswith("/pool.jsonl: no space left on device (ENOSPC); free space there, or set paths.cache to a "
                             "folder you can write on a disk with space")
    assert len(list((tmp_path / "cache" / "generation").glob("*/manifest.json"))) == 1  # finished before the disk filled
    assert not (tmp_path / "cache" / "pool").exists() and list(tmp_root.iterdir()) == []
    record = json.loads((job / "result.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("OSError: [Errno 28] No space left on device")


@pytest.mark.parametrize(("multirun", "setting", "extra"), [(False, "hydra.run.dir", []),
                                                          (True, "hydra.sweep.dir", ["mix.weight=0,0.2,1"])])
def test_a_read_only_job_folder_is_refused_before_hydra_writes_there(tmp_path, monkeypatch, multirun, setting, extra):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(FileSystemError) as err:
        pipeline.check_output_folder([f"{setting}={tmp_path}/out/1", *extra], conftree.checkout(), multirun=multirun)
    assert str(err.value) == (f"{tmp_path}: read-only file system (EROFS); remount it writable, or set {setting} "
                              "to a folder you can write on a disk with space")
