"""Weights download against a real HTTP server on 127.0.0.1: good file, bad hash, cut connection, 404,
refused port, stall/timeout, Ctrl-C; nothing unverified ever appears in the cache."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from hrstream.errors import ConfigError, WeightsError, WeightsUnavailableError
from hrstream.models import hub
from hrstream.models.registry import WeightsEntry, get_weights


def _checkpoint_bytes() -> bytes:
    torch.manual_seed(0)
    state = {"final_layer.weight": torch.randn(17, 32, 1, 1), "final_layer.bias": torch.randn(17)}
    buf = io.BytesIO()
    torch.save({"state_dict": state}, buf)
    return buf.getvalue()


BLOB = _checkpoint_bytes()
SHA = hashlib.sha256(BLOB).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[str, bytes]] = {}
    hits: list[str] = []
    release = threading.Event()  # ends every stall (set when the server stops)
    stalls_ended = 0

    def do_GET(self) -> None:
        self.hits.append(self.path)
        mode, body = self.routes.get(self.path, ("404", b""))
        if mode == "404":
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "ok":
            self.wfile.write(body)
        elif mode == "cut":  # promise the whole file, send a third, hang up
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
        elif mode == "stall":  # send a little, then nothing until the server stops (or 60 s)
            self.wfile.write(body[:100])
            self.wfile.flush()
            _Handler.release.wait(60)
            _Handler.stalls_ended += 1

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.routes = {
        "/ckpt/tiny.pth": ("ok", BLOB),
        "/ckpt/cut.pth": ("cut", BLOB),
        "/ckpt/stall.pth": ("stall", BLOB),
    }
    _Handler.hits = []
    _Handler.release = threading.Event()
    _Handler.stalls_ended = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        _Handler.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HRSTREAM_HOME", os.fspath(tmp_path / "home"))
    monkeypatch.delenv("HRSTREAM_WEIGHTS_MIRROR", raising=False)
    monkeypatch.delenv("HRSTREAM_OFFLINE", raising=False)
    return tmp_path / "home"


def _entry(url: str, sha256: str = SHA, hash_kind: str = "sha256") -> WeightsEntry:
    return WeightsEntry(
        name="tiny.test",
        url=url,
        sha256=sha256,
        hash_kind=hash_kind,  # type: ignore[arg-type]
        layout="official",
        config="pose_hrnet_w32_256x192",
        task="pose",
    )


def _cache_files(home: Path) -> list[str]:
    folder = home / "weights"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert hub.cache_dir() == tmp_path / "home"
    monkeypatch.delenv("HRSTREAM_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", os.fspath(tmp_path / "xdg"))
    assert hub.weights_dir() == tmp_path / "xdg" / "hrstream" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert hub.cache_dir() == Path.home() / ".cache" / "hrstream"


def test_good_download(server: str, home: Path) -> None:
    entry = _entry(f"{server}/ckpt/tiny.pth")
    assert not hub.is_cached(entry)
    path = hub.fetch(entry, progress=False, timeout_s=5)
    assert path == home / "weights" / "tiny.pth" == hub.cached_path(entry)
    assert path.read_bytes() == BLOB and hub.sha256_file(path) == SHA
    assert _cache_files(home) == ["tiny.pth"]
    loaded = torch.load(path, weights_only=True)
    assert loaded["state_dict"]["final_layer.weight"].shape == (17, 32, 1, 1)
    assert hub.is_cached(entry) and hub.verify_cached(entry)
    # a second call uses the cache: no new request
    assert hub.fetch(entry, progress=False) == path
    assert _Handler.hits == ["/ckpt/tiny.pth"]


def test_mirror_replaces_scheme_and_host(server: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _entry("https://weights.example.invalid/ckpt/tiny.pth", sha256=SHA[:8], hash_kind="sha256_prefix")
    monkeypatch.setenv("HRSTREAM_WEIGHTS_MIRROR", server + "/")
    assert hub.download_url(entry) == f"{server}/ckpt/tiny.pth"
    path = hub.fetch(entry, progress=True, timeout_s=5)
    assert path.read_bytes() == BLOB


def test_hash_mismatch_is_rejected(server: str, home: Path) -> None:
    wrong = ("0" if SHA[0] != "0" else "1") + SHA[1:]
    entry = _entry(f"{server}/ckpt/tiny.pth", sha256=wrong)
    with pytest.raises(WeightsError, match="sha256") as err:
        hub.fetch(entry, progress=False, timeout_s=5)
    assert not isinstance(err.value, WeightsUnavailableError)
    assert SHA in str(err.value) and wrong in str(err.value)
    assert _cache_files(home) == [] and not hub.is_cached(entry)


def test_connection_cut_mid_file_leaves_nothing(server: str, home: Path) -> None:
    entry = _entry(f"{server}/ckpt/cut.pth")
    with pytest.raises(WeightsUnavailableError, match="closed early") as err:
        hub.fetch(entry, progress=False, timeout_s=5)
    assert "/ckpt/cut.pth" in str(err.value)
    assert _cache_files(home) == []


def test_404_names_url_and_cache_path(server: str, home: Path) -> None:
    entry = _entry(f"{server}/ckpt/missing-1234abcd.pth", sha256="1234abcd", hash_kind="sha256_prefix")
    with pytest.raises(WeightsUnavailableError) as err:
        hub.fetch(entry, progress=False, timeout_s=5)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"{server}/ckpt/missing-1234abcd.pth" in msg and "HTTP 404" in msg
    assert str(home / "weights" / "missing-1234abcd.pth") in msg
    assert "--weights PATH" in msg and "hrstream weights add PATH --name tiny.test" in msg
    assert _cache_files(home) == []


def test_refused_port_is_offline(home: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    entry = _entry(f"http://127.0.0.1:{port}/ckpt/tiny.pth")
    with pytest.raises(WeightsUnavailableError, match="(?i)refused") as err:
        hub.fetch(entry, progress=False, timeout_s=5)
    assert f"127.0.0.1:{port}/ckpt/tiny.pth" in str(err.value)
    assert _cache_files(home) == []


def test_stalled_server_times_out(server: str, home: Path) -> None:
    entry = _entry(f"{server}/ckpt/stall.pth")
    with pytest.raises(WeightsUnavailableError, match="(?i)timed out|timeout"):
        hub.fetch(entry, progress=False, timeout_s=0.5)
    assert _Handler.stalls_ended == 0  # the client gave up by itself while the server still stalled
    assert _cache_files(home) == []


_FETCH_IN_A_CHILD = """
import sys
from hrstream.models import hub
from hrstream.models.registry import WeightsEntry

entry = WeightsEntry(name="tiny.test", url=sys.argv[1], sha256=sys.argv[2], hash_kind="sha256",
                     layout="official", config="pose_hrnet_w32_256x192", task="pose")
hub.fetch(entry, progress=False, timeout_s=30)
"""


def test_ctrl_c_mid_download_cleans_up(server: str, home: Path) -> None:
    # Ctrl-C goes to a process of its own: a signal sent to the test process itself would interrupt whatever
    # native library code happens to run in it.
    child = subprocess.Popen(
        [sys.executable, "-c", _FETCH_IN_A_CHILD, f"{server}/ckpt/stall.pth", SHA],
        env={**os.environ, "HRSTREAM_HOME": os.fspath(home)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list((home / "weights").glob("*.part")):  # the download has begun
            assert child.poll() is None and time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr
    assert (home / "weights").is_dir()  # the temporary file was there and is gone
    assert _cache_files(home) == []


def test_offline_env_never_connects(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HRSTREAM_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="HRSTREAM_OFFLINE"):
        hub.fetch(_entry(f"{server}/ckpt/tiny.pth"), progress=False)
    assert _Handler.hits == []


def test_add_local(tmp_path: Path, home: Path) -> None:
    src = tmp_path / "downloaded.pth"
    src.write_bytes(BLOB)
    entry = _entry("https://weights.example.invalid/ckpt/tiny.pth")
    dest = hub.add_local(src, entry)
    assert dest == hub.cached_path(entry) and dest.read_bytes() == BLOB and src.exists()
    # a file that is not the registered checkpoint is refused and nothing is stored
    real = get_weights("pose_hrnet_w32_256x192.mmpose")
    with pytest.raises(WeightsError, match="c78dce93"):
        hub.add_local(src, "pose_hrnet_w32_256x192.mmpose")
    assert not hub.is_cached(real)
    assert _cache_files(home) == ["tiny.pth"]
    with pytest.raises(WeightsError, match="not a file"):
        hub.add_local(tmp_path / "nope.pth", entry)


def test_verify_cached_detects_corruption(server: str) -> None:
    entry = _entry(f"{server}/ckpt/tiny.pth")
    path = hub.fetch(entry, progress=False, timeout_s=5)
    assert hub.verify_cached(entry)
    path.write_bytes(BLOB[:-1] + bytes([BLOB[-1] ^ 1]))
    assert not hub.verify_cached(entry)


def test_resolve_weights(server: str, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "mine.pth"
    local.write_bytes(BLOB)
    assert hub.resolve_weights(local) == (local, None)
    real = get_weights("pose_hrnet_w32_256x192.mmpose")
    named = tmp_path / real.filename
    named.write_bytes(BLOB)
    assert hub.resolve_weights(os.fspath(named)) == (named, real)
    with pytest.raises(WeightsError, match="does not exist"):
        hub.resolve_weights(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="unknown weights"):
        hub.resolve_weights("no_such_model")
    # a registry name (here a config name: its default weights) goes to the network: our server has no such file
    monkeypatch.setenv("HRSTREAM_WEIGHTS_MIRROR", server)
    with pytest.raises(WeightsUnavailableError, match="pose_hrnet_w32_256x192.mmpose") as err:
        hub.resolve_weights("pose_hrnet_w32_256x192", progress=False, timeout_s=5)
    assert f"{server}/mmpose/top_down/hrnet/{real.filename}" in str(err.value)
    assert _Handler.hits == [f"/mmpose/top_down/hrnet/{real.filename}"]
    # a cached file that does not match its hash is reported, not used
    hub.cached_path(real).parent.mkdir(parents=True, exist_ok=True)
    hub.cached_path(real).write_bytes(BLOB)
    with pytest.raises(WeightsError, match="delete the file"):
        hub.resolve_weights("pose_hrnet_w32_256x192.mmpose")


def test_models_table(home: Path) -> None:
    rows = hub.models_table()
    by_name = {r["name"]: r for r in rows}
    row = by_name["pose_hrnet_w32_256x192_dark.mmpose"]
    assert row["task"] == "pose" and row["config"] == "pose_hrnet_w32_256x192_dark" and row["default"]
    assert row["metric"] == "AP 0.757" and row["cached"] is False
    assert by_name["seg_hrnet_w48_cityscapes.mmseg_160k"]["metric"] == "mIoU 80.7%"
    assert not by_name["seg_hrnet_w48_cityscapes.official"]["default"]
    entry = get_weights("seg_hrnet_w18_cityscapes.mmseg_80k")
    hub.cached_path(entry).parent.mkdir(parents=True, exist_ok=True)
    hub.cached_path(entry).write_bytes(b"x")
    assert {r["name"]: r for r in hub.models_table()}["seg_hrnet_w18_cityscapes.mmseg_80k"]["cached"] is True
