"""Runs killed, interrupted, starved of disk or permissions, or raced by a second writer: nothing
committed is lost, and the resumed store is byte-identical to an uninterrupted run."""

from __future__ import annotations

import contextlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from faultkit import MARKERS, N_SHARDS, OPTIONS, TEXTS, committed, fork, npy_digests, temp_files

import workbench
from workbench.activations.store import StoreWriter
from workbench.errors import StoreLockedError

KILLS = 12  # seeded random moments per run of the suite


def _extract(model, out, **extra):
    return lambda: workbench.extract(model, TEXTS, out=out, **{**OPTIONS, **extra})


def _resume_and_check(model, out: Path, reference) -> None:
    """Resume ``out``; every shard committed before must be kept untouched and the result must
    equal the reference byte for byte."""
    before = committed(out) if (out / "shards").is_dir() else {}
    store = workbench.extract(model, TEXTS, out=out, **OPTIONS)
    after = committed(out)
    assert {k: after[k] for k in before} == before  # kept, not recomputed or changed
    assert npy_digests(out) == npy_digests(reference.path)
    assert store.complete and not temp_files(out)
    store.verify()


def test_kill_9_at_seeded_random_moments(fault_model, reference, tmp_path):
    t0 = time.perf_counter()
    fork(_extract(fault_model, tmp_path / "timing")).wait()
    duration = time.perf_counter() - t0
    rng = random.Random(16)
    outcomes = []
    for k in range(KILLS):
        out = tmp_path / f"run{k}"
        child = fork(_extract(fault_model, out))
        time.sleep(rng.uniform(0.0, duration))
        child.kill(signal.SIGKILL)
        shards = len(list((out / "shards").glob(MARKERS))) if out.exists() else 0
        outcomes.append((shards, len(temp_files(out)) if out.exists() else 0, child.killed))
        # what was committed before the kill is exactly the reference's
        ref = committed(reference.path)
        assert all(ref[name][0] == digest for name, (digest, _) in committed(out).items())
        _resume_and_check(fault_model, out, reference)
    print(
        f"\nkill -9 within {duration:.2f} s: (committed shards, temp files left, killed) = "
        f"{outcomes}"
    )
    assert any(0 < shards < N_SHARDS for shards, _, _ in outcomes), outcomes


def test_a_killed_writers_lock_and_temp_files_are_taken_over(fault_model, reference, tmp_path):
    out = tmp_path / "run"

    def hold() -> None:  # open the run, write a temp file like a writer mid-shard, then hang
        w = StoreWriter(out, {"identity": {"x": 1}})
        (w.shard_dir / ".00000.mean.npy.abc.tmp").write_bytes(b"partial")
        time.sleep(60)

    child = fork(hold)
    deadline = time.monotonic() + 20
    while not list((out / "shards").glob(".*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(StoreLockedError, match=rf"pid {child.pid}\b.*kill {child.pid}"):
        workbench.extract(fault_model, TEXTS, out=out, **OPTIONS)
    assert temp_files(out) == [".00000.mean.npy.abc.tmp"]  # not removed by a refused writer
    child.kill(signal.SIGKILL)
    # the dead writer committed nothing of another run: its folder is taken over
    _resume_and_check(fault_model, out, reference)


def test_two_concurrent_writers(fault_model, reference, tmp_path):
    out = tmp_path / "run"

    def slow() -> None:  # a writer that takes a while per shard (real shards, real writes)
        original = StoreWriter.write_shard

        def write_shard(self, *args, **kwargs):
            time.sleep(0.05)
            return original(self, *args, **kwargs)

        StoreWriter.write_shard = write_shard  # type: ignore[method-assign]

    child = fork(_extract(fault_model, out), before=slow)
    deadline = time.monotonic() + 20
    while not (out / "manifest.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(StoreLockedError) as info:
        workbench.extract(fault_model, TEXTS, out=out, **OPTIONS)
    assert f"pid {child.pid}" in str(info.value) and "\n" not in str(info.value)
    child.wait()
    assert child.exit_code == 0, child.message  # the first writer was not disturbed
    assert npy_digests(out) == npy_digests(reference.path) and not temp_files(out)


def _file_size_limit(limit: int):
    def before() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return before


def test_file_size_limit(fault_model, reference, tmp_path):
    out = tmp_path / "run"
    child = fork(_extract(fault_model, out), before=_file_size_limit(6000)).wait()
    assert child.exit_code == 1
    assert child.message.startswith("OutputPathError: ") and "\n" not in child.message
    assert "file-size limit" in child.message and "run the same command again" in child.message
    assert not temp_files(out)
    _resume_and_check(fault_model, out, reference)


@contextlib.contextmanager
def _tmpfs(folder: Path, size: int):
    folder.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("a full disk needs a tmpfs mount (root); RLIMIT_FSIZE is tested instead")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk(fault_model, reference, tmp_path):
    total = sum(f.stat().st_size for f in (reference.path).rglob("*") if f.is_file())
    with _tmpfs(tmp_path / "disk", (total // 2) // 4096 * 4096) as disk:
        out = disk / "run"
        child = fork(_extract(fault_model, out)).wait()
        assert child.exit_code == 1
        assert child.message.startswith("OutputPathError: no space left on the device")
        assert "\n" not in child.message
        shards = len(list((out / "shards").glob(MARKERS)))
        assert 0 < shards < N_SHARDS
        assert not temp_files(out)
        ref = committed(reference.path)
        assert all(ref[n][0] == d for n, (d, _) in committed(out).items())
        subprocess.run(["mount", "-o", f"remount,size={4 * total}", str(disk)], check=True)
        _resume_and_check(fault_model, out, reference)  # once space is freed


def _as_reader_only(folder: Path):
    def before() -> None:
        if os.geteuid() == 0:  # root writes anywhere: drop to nobody, for whom it is read-only
            os.setgid(65534)
            os.setuid(65534)

    if os.geteuid() != 0:
        folder.chmod(0o555)
    return before


def test_read_only_folder(fault_model, reference, tmp_path):
    # (under a folder that another user can traverse: pytest's own tmp root is 0700)
    tmp_path = Path(tempfile.mkdtemp(prefix="faults-ro-"))
    tmp_path.chmod(0o755)
    parent = tmp_path / "ro"
    parent.mkdir()
    before = _as_reader_only(parent)
    child = fork(_extract(fault_model, parent / "run"), before=before).wait()
    assert child.exit_code == 1 and child.message.startswith("OutputPathError: cannot write")
    assert "read-only" in child.message and "\n" not in child.message
    assert list(parent.iterdir()) == []
    # a complete run in a read-only folder is still served (verified, not locked)
    done = tmp_path / "done"
    done.mkdir()
    workbench.extract(fault_model, TEXTS, out=done / "run", **OPTIONS)
    (done / "run" / ".lock").unlink()
    before = _as_reader_only(done / "run")
    child = fork(_extract(fault_model, done / "run"), before=before).wait()
    assert child.exit_code == 0, child.message
    if os.geteuid() != 0:
        (done / "run").chmod(0o755)
        parent.chmod(0o755)
    shutil.rmtree(tmp_path)


def _cli(out: Path, data: Path, model: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "workbench",
        "extract",
        "--model",
        str(model),
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--pooling",
        "mean,last,tokens",
        "--shard-size",
        "2",
        "--no-progress",
        "--threads",
        "1",
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(workbench.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    return subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True
    )


def _after_first_shards(out: Path, child) -> None:
    deadline = time.monotonic() + 30
    while not (out / "shards" / "00001.json").is_file():
        assert time.monotonic() < deadline and child.status is None
        time.sleep(0.001)


def test_sigint_keeps_what_was_committed_and_says_so(fault_model, reference, tmp_path):
    out = tmp_path / "run"
    child = fork(_extract(fault_model, out))
    _after_first_shards(out, child)
    child.kill(signal.SIGINT)
    kept = len(list((out / "shards").glob(MARKERS)))
    assert child.message == (
        f"RunInterrupted: interrupted: {kept} of {N_SHARDS} shards are "
        f"complete and kept in {out}; run the same extract(...) again to "
        "resume from there"
    )
    assert 0 < kept < N_SHARDS and not temp_files(out)
    _resume_and_check(fault_model, out, reference)


def test_sigterm_without_a_handler(fault_model, reference, tmp_path):
    out = tmp_path / "run"
    child = fork(_extract(fault_model, out))
    _after_first_shards(out, child)
    child.kill(signal.SIGTERM)
    assert child.killed
    _resume_and_check(fault_model, out, reference)


@pytest.mark.slow  # two CLI processes: torch's import dominates
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_under_the_cli(fault_model, tmp_path, sig, code):
    texts = [f"{t} and {u}" for t in TEXTS for u in WORDS_FOR_CLI]  # 240 rows: 120 shards
    data = tmp_path / "texts.csv"
    data.write_text("text\n" + "\n".join(texts) + "\n")
    out = tmp_path / "run"
    proc = _cli(out, data, Path(fault_model.name))
    deadline = time.monotonic() + 120
    while not (out / "shards" / "00001.json").is_file():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    kept = len(list((out / "shards").glob(MARKERS)))
    assert proc.returncode == code, stderr
    last = stderr.strip().splitlines()[-1]
    assert last == (
        f"interrupted: {kept} of 120 shards are complete and kept in {out}; run the "
        "same command again to resume from there"
    ), stderr
    assert 0 < kept < 120 and not temp_files(out)
    before = committed(out)
    data_set = workbench.load_dataset(str(data))
    resumed = workbench.extract(
        fault_model, data_set, out=out, pooling="mean,last,tokens", shard_size=2, progress=False
    )
    after = committed(out)
    assert {k: after[k] for k in before} == before
    full = workbench.extract(
        fault_model,
        data_set,
        out=tmp_path / "full",
        pooling="mean,last,tokens",
        shard_size=2,
        progress=False,
    )
    assert npy_digests(resumed.path) == npy_digests(full.path)


WORDS_FOR_CLI = ("one", "two", "three", "four", "five")
