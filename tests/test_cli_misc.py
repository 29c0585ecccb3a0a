"""``hrstream`` usage and configuration errors (exit 2, one line), the weights commands, and rerun skipping.

Runs in this process with click's runner; the network pieces are real: a refused port on 127.0.0.1 for
"weights unavailable", a proxy on a refused port for torchvision downloads, and a real HTTP server on
127.0.0.1 as a weights mirror.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from support.cli_checks import VIDEOS, invoke, manifest_jobs, read_jsonl, run_cli
from support.servers import refused_port
from support.tiny_models import TinyModel, tiny_pose_model

CLIP = VIDEOS / "street_960x540_5fps.mp4"
# a registered checkpoint whose publisher gives no hash, so any file is accepted for it (with a warning)
UNHASHED = "seg_hrnet_w48_cityscapes.official"
HASHED = "pose_hrnet_w32_256x192.mmpose"


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


def _one_error_line(stderr: str) -> str:
    """The single ``hrstream: error:`` line of a failed run; nothing looks like a traceback."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("hrstream: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def _run(args: list[str], out: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = invoke(["run", str(CLIP), "--out", str(out), "-q", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


# ---------------------------------------------------------------------------------------------------------
# Exit code 2: the run cannot start.


@pytest.mark.parametrize(("flag", "value"), [("--read-timeout", "nan"), ("--open-timeout", "-1")])
def test_a_bad_number_is_one_line_naming_its_flag(
    tiny_pose: TinyModel, tmp_path: Path, flag: str, value: str
) -> None:
    """The real command (a child process): NaN, an infinity or a negative number where none makes sense is
    refused before anything runs, in one line naming the flag (not the built-in recipe it would override)."""
    out = tmp_path / "out"
    res = run_cli(
        ["run", str(CLIP), *tiny_pose.args(), "--detector", "full-frame", "--out", str(out), flag, value]
    )
    assert res.returncode == 2, res.stderr[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"hrstream: error: {flag} "), res.stderr[-3000:]
    assert "pose.yaml" not in lines[0] and not out.exists()


def test_every_numeric_flag_refuses_nan_infinities_and_negatives(
    tiny_pose: TinyModel, tmp_path: Path
) -> None:
    """Every number-taking flag of ``hrstream run`` (found from the command itself, so a new one is covered;
    ``--grace -5`` and ``--det-thr inf`` among them): NaN, +-inf and -5 are refused with exit 2 and one line
    naming the flag. In this process, as the two cases above in a child process."""
    import click

    from hrstream.cli.run import run as run_command

    numeric = {"--workers"} | {  # --workers takes N or auto
        p.opts[0]
        for p in run_command.params
        if isinstance(p, click.Option)
        and not p.count  # -v
        and isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType))
    }
    assert {"--grace", "--read-timeout", "--batch-size", "--det-thr", "--input-timeout"} <= numeric
    needs_workers = {"--input-timeout", "--cpus-per-worker"}
    for flag in sorted(numeric):
        for value in ("nan", "inf", "-inf", "-5"):
            extra = ["--workers", "1"] if flag in needs_workers else []
            code, err = _run(
                [*tiny_pose.args(), "--detector", "full-frame", flag, value, *extra], tmp_path / "o"
            )
            assert code == 2, (flag, value, err)
            line = _one_error_line(err)
            assert flag in line and "pose.yaml" not in line, (flag, value, line)
            assert len([x for x in err.splitlines() if x.strip()]) == 1, (flag, value, err)


def test_unknown_model_lists_close_names(tmp_path: Path) -> None:
    code, err = _run(["--model", "pose_hrnet_w32_256x19", "--detector", "full-frame"], tmp_path / "out")
    assert code == 2
    line = _one_error_line(err)
    assert "pose_hrnet_w32_256x19" in line
    assert "pose_hrnet_w32_256x192" in line.split("did you mean", 1)[1]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("MODEL", "NUM_JOINTS"), "MODEL.NUM_JOINTS"),
        (("MODEL", "EXTRA", "STAGE3", "NUM_CHANNELS"), "MODEL.EXTRA.STAGE3.NUM_CHANNELS"),
    ],
)
def test_config_missing_field_is_named(tiny_pose: TinyModel, tmp_path: Path, path: tuple, field: str) -> None:
    config = yaml.safe_load(tiny_pose.config.read_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    code, err = _run(
        ["--model", str(bad), "--weights", str(tiny_pose.weights), "--detector", "full-frame"],
        tmp_path / "out",
    )
    assert code == 2
    line = _one_error_line(err)
    assert field in line and str(bad) in line


def test_cuda_requested_without_a_gpu(tiny_pose: TinyModel, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, err = _run([*tiny_pose.args(), "--device", "cuda", "--detector", "full-frame"], tmp_path / "out")
    assert code == 2
    line = _one_error_line(err)
    assert "cuda" in line.lower() and "--device cpu" in line


def test_default_weights_unavailable(tmp_path: Path) -> None:
    port = refused_port()
    home = tmp_path / "home"
    env = {"HRSTREAM_HOME": str(home), "HRSTREAM_WEIGHTS_MIRROR": f"http://127.0.0.1:{port}"}
    code, err = _run(["--model", "pose_hrnet_w32_256x192", "--detector", "full-frame"], tmp_path / "out", env)
    assert code == 2
    line = _one_error_line(err)
    assert HASHED in line  # the weights the model uses by default
    assert f"http://127.0.0.1:{port}/" in line  # the URL tried
    assert str(home / "weights") in line  # where to put the file
    assert "--weights PATH" in line
    assert not any(p.is_file() for p in home.rglob("*"))  # nothing half-downloaded is left behind


def test_torchvision_detector_offline(
    tiny_pose: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = f"http://127.0.0.1:{refused_port()}"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(
            var, proxy
        )  # every download goes to a refused port, even on a machine with network
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # so urlopen reads the proxy variables again
    torch_home = tmp_path / "torch_home"
    code, err = _run(
        [*tiny_pose.args(), "--detector", "fast"], tmp_path / "out", {"TORCH_HOME": str(torch_home)}
    )
    assert code == 2
    line = _one_error_line(err)
    assert "detector 'fast'" in line
    assert str(torch_home) in line  # where to put the file
    assert "--detector full-frame" in line


def test_unreadable_detections_file_is_a_usage_error(tiny_pose: TinyModel, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dets.json"
    code, err = _run([*tiny_pose.args(), "--detector", f"file:{missing}"], tmp_path / "out")
    assert code == 2
    assert str(missing) in _one_error_line(err)


def test_unknown_detector(tiny_pose: TinyModel, tmp_path: Path) -> None:
    code, err = _run([*tiny_pose.args(), "--detector", "fastest"], tmp_path / "out")
    assert code == 2
    line = _one_error_line(err)
    assert "fastest" in line and "full-frame" in line


# ---------------------------------------------------------------------------------------------------------
# hrstream models / weights


def _models_rows(env: dict[str, str]) -> list[dict[str, str]]:
    """``hrstream models`` as rows of ``{"name", "cached"}`` (the first and the last column)."""
    result = invoke(["models"], env=env)
    assert result.exit_code == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    cols = header.split()
    assert cols[0] == "NAME" and cols[-1] == "CACHED"
    rows = [{"name": line.split()[0], "cached": line.split()[-1]} for line in lines if line.strip()]
    assert all(r["cached"] in ("True", "False") for r in rows)
    return rows


def _cached(rows: list[dict[str, str]]) -> set[str]:
    return {r["name"] for r in rows if r["cached"] == "True"}


def _shipped() -> set[str]:
    """The weights that ship inside the package: always available, whatever the cache holds."""
    from hrstream.models.hub import is_shipped
    from hrstream.models.registry import list_weights

    return {e.name for e in list_weights() if is_shipped(e)}


def test_models_lists_registry_with_cached_column(tmp_path: Path) -> None:
    env = {"HRSTREAM_HOME": str(tmp_path / "home")}
    rows = _models_rows(env)
    names = {r["name"] for r in rows}
    assert {HASHED, UNHASHED} <= names
    assert len(names) == len(rows) >= 10
    assert _cached(rows) == _shipped()
    # the shipped entries are exactly the checkpoint files inside the package
    from hrstream.models.hub import shipped_weights_dir
    from hrstream.models.registry import get_weights

    files = {p.name for p in shipped_weights_dir().glob("*.safetensors")}
    assert {get_weights(name).filename for name in _shipped()} == files and len(files) >= 3


def test_weights_add_rejects_a_mismatching_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fake = tmp_path / "hrnet_w32_coco_256x192-c78dce93_20200708.pth"
    fake.write_bytes(os.urandom(4096))
    result = invoke(["weights", "add", str(fake), "--name", HASHED], env={"HRSTREAM_HOME": str(home)})
    assert result.exit_code == 2
    line = _one_error_line(result.stderr)
    assert hashlib.sha256(fake.read_bytes()).hexdigest() in line and HASHED in line
    assert not any(p.is_file() for p in home.rglob("*"))  # nothing stored, no temporary file left
    missing = invoke(
        ["weights", "add", str(tmp_path / "nope.pth"), "--name", HASHED], env={"HRSTREAM_HOME": str(home)}
    )
    assert missing.exit_code == 2 and "nope.pth" in _one_error_line(missing.stderr)
    unknown = invoke(
        ["weights", "add", str(fake), "--name", "pose_hrnet_w32_256x192.mmpos"],
        env={"HRSTREAM_HOME": str(home)},
    )
    assert unknown.exit_code == 2 and HASHED in _one_error_line(unknown.stderr)


def test_weights_add_places_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HRSTREAM_HOME": str(home)}
    payload = os.urandom(10_000)
    src = tmp_path / "downloaded.pth"
    src.write_bytes(payload)
    result = invoke(["weights", "add", str(src), "--name", UNHASHED], env=env)
    assert result.exit_code == 0, result.stderr
    dest = Path(result.stdout.strip().splitlines()[-1])
    assert dest.parent == home / "weights" and dest.read_bytes() == payload
    assert _cached(_models_rows(env)) == {UNHASHED} | _shipped()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/mirror``; yields (base URL, folder)."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_weights_fetch_from_a_mirror(tmp_path: Path, mirror: tuple[str, Path]) -> None:
    from hrstream.models.registry import get_weights

    base, root = mirror
    path = urlsplit(get_weights(UNHASHED).url).path  # the mirror keeps the URL's path
    payload = os.urandom(50_000)
    (root / path.lstrip("/")).parent.mkdir(parents=True)
    (root / path.lstrip("/")).write_bytes(payload)
    env = {"HRSTREAM_HOME": str(tmp_path / "home"), "HRSTREAM_WEIGHTS_MIRROR": base}
    result = invoke(["weights", "fetch", UNHASHED], env=env)
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip().splitlines()[-1]).read_bytes() == payload
    assert _cached(_models_rows(env)) == {UNHASHED} | _shipped()


# ---------------------------------------------------------------------------------------------------------
# Rerun: the manifest skips what is done and retries what is not.


def test_rerun_skips_done_inputs_and_retries_failed_ones(tiny_pose: TinyModel, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(CLIP, media / "a.mp4")
    late = media / "b.mp4"  # missing at first: fails, then appears
    out = tmp_path / "out"
    args = [str(media / "a.mp4"), str(late), *tiny_pose.args(), "--detector", "full-frame"]

    code, err = _run(args, out)
    assert code == 1
    _, jobs = manifest_jobs(out)
    assert jobs[str(media / "a.mp4")]["status"] == "ok" and jobs[str(late)]["status"] == "failed"
    a_outputs = {k: Path(v) for k, v in jobs[str(media / "a.mp4")]["outputs"].items()}
    stamps = {k: p.stat().st_mtime_ns for k, p in a_outputs.items()}

    shutil.copy(CLIP, late)
    code, err = _run(args, out)
    assert code == 0, err
    state, jobs = manifest_jobs(out)
    assert state == "done"
    assert jobs[str(media / "a.mp4")]["status"] == "ok"  # skipped: entry and outputs left as they were
    assert jobs[str(late)]["status"] == "ok"
    assert {k: p.stat().st_mtime_ns for k, p in a_outputs.items()} == stamps  # not rewritten
    assert len(read_jsonl(jobs[str(late)]["outputs"]["jsonl"])) == 5

    # a run that failed or was interrupted midway is processed again from the start, records not doubled
    data = json.loads((out / "manifest.json").read_text())
    for job in data["jobs"]:
        job["status"] = "failed"
    (out / "manifest.json").write_text(json.dumps(data))
    code, err = _run(args, out)
    assert code == 0, err
    _, jobs = manifest_jobs(out)
    assert {j["status"] for j in jobs.values()} == {"ok"}
    assert {k: p.stat().st_mtime_ns for k, p in a_outputs.items()} != stamps
    assert [r["frame"] for r in read_jsonl(a_outputs["jsonl"])] == [0, 1, 2, 3, 4]

    # a changed recipe reprocesses too
    code, err = _run([*args, "--detect-every", "2"], out)
    assert code == 0, err
    assert {j["status"] for j in manifest_jobs(out)[1].values()} == {"ok"}
