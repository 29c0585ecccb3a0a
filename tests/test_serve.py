"""``hrstream serve`` through its HTTP API, as a child process over real RTSP cameras (GStreamer on 127.0.0.1).

One service for the module (the tiny pose model, ``--detector full-frame``, ``--no-video``, a token in
``HRSTREAM_TOKEN``), two cameras in its sources file (one URL with credentials) and a third camera added, restarted
and removed through the API; the tests run in file order and each leaves the service as the next expects. The
last test stops it with SIGTERM and starts it again on the same sources file.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import get_args

import httpx
import pytest
from support.cli_checks import invoke
from support.rtsp import RtspServer, needs_rtsp
from support.serving import LIVE_RECIPE, ServeProcess, serve_clip, wait_for
from support.tiny_models import tiny_pose_model

from hrstream.runtime.counters import SourceState
from hrstream.serve.registry import public_state

pytestmark = [needs_rtsp, pytest.mark.slow]

SECRET = "s3cret-pass"
TOKEN = "tok-" + secrets.token_hex(12)
HEAD = "# the site's cameras\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The RTSP servers, the sources file and the running service."""
    root = tmp_path_factory.mktemp("serve")
    tiny = tiny_pose_model(root / "tiny")
    clip = serve_clip(tmp_path_factory.getbasetemp())
    cams = {name: RtspServer(clip=clip).start() for name in ("door", "hall", "yard")}
    door_url = cams["door"].url.replace("rtsp://", f"rtsp://viewer:{SECRET}@")
    sources = root / "site.txt"
    sources.write_text(
        f"{HEAD}door {door_url}\n\n# the hall: every other frame detected\nhall {cams['hall'].url} detect_every=2\n"
    )
    sources.chmod(0o600)
    recipe = root / "live.yaml"
    recipe.write_text(LIVE_RECIPE)
    svc = ServeProcess(sources, root / "out", tiny.args(), recipe=recipe, log=root / "serve.log", token=TOKEN)
    svc.cams = cams  # type: ignore[attr-defined]
    svc.door_url = door_url  # type: ignore[attr-defined]
    svc.restart_args = (sources, root / "out", tiny.args(), recipe)  # type: ignore[attr-defined]
    try:
        svc.start()
        wait_for(lambda: svc.frames("door") > 10 and svc.frames("hall") > 10, 120, "both cameras' frames")
        yield svc
    finally:
        svc.close()
        for cam in cams.values():
            cam.kill()


def _counts(svc: ServeProcess, names: list[str]) -> dict[str, tuple[int, int]]:
    listed = svc.sources()
    return {n: (listed[n]["frames_out"], listed[n]["drops"]) for n in names if n in listed}


def undisturbed(svc: ServeProcess, others: list[str], change, window: float = 4.0):
    """Run ``change()`` between two equal windows and check that the ``others`` cameras went on as before it:
    frames written at about the same rate, no more frames dropped than in the window before (one or two of
    tolerance for a loaded machine). Returns what ``change`` returned."""
    a = _counts(svc, others)
    time.sleep(window)
    b = _counts(svc, others)
    t0 = time.monotonic()
    got = change()
    time.sleep(max(0.0, window - (time.monotonic() - t0)))
    c = _counts(svc, others)
    for name in others:
        before_frames, before_drops = b[name][0] - a[name][0], b[name][1] - a[name][1]
        during_frames, during_drops = c[name][0] - b[name][0], c[name][1] - b[name][1]
        assert before_frames > 0, f"{name} wrote no frame before the change"
        assert during_frames >= 0.6 * before_frames, (name, before_frames, during_frames)
        assert during_drops <= before_drops + 2, (name, before_drops, during_drops)
    return got


def segments(svc: ServeProcess, name: str) -> list[Path]:
    return sorted(svc.out.glob(f"{name}_*Z.jsonl"))


def test_lists_the_cameras_with_their_states_and_redacted_urls(site):
    listed = site.sources()
    assert list(listed) == ["door", "hall"]
    door, hall = listed["door"], listed["hall"]
    assert door["url"] == site.cams["door"].url.replace("rtsp://", "rtsp://***@")
    assert hall["url"] == site.cams["hall"].url and hall["options"] == {"detect_every": 2}
    wait_for(lambda: site.state("door") == site.state("hall") == "live", 30, "both live")
    for s in site.sources().values():
        assert s["frames_in"] > 0 and s["frames_out"] > 0 and s["segments"] == 1
        assert s["latency_s"]["p95"] > 0
    n = site.frames("door")
    site.wait_frames("door", 10)
    assert site.frames("door") > n
    assert site.api("GET", "/api/sources/hall").json()["name"] == "hall"


def test_a_token_is_required_everywhere(site):
    paths = [
        "/api/sources",
        "/api/sources/door",
        "/api/status",
        "/",
        "/sources/door",
        "/metrics",
        "/openapi.json",
    ]
    bare = httpx.Client(base_url=site.base, timeout=10)
    try:
        for path in [*paths, "/stream/door.mjpg", "/events"]:
            assert bare.get(path).status_code == 401, path
            assert bare.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401, path
            assert bare.get(path, params={"token": TOKEN[:-1]}).status_code == 401, path
        r = bare.post("/api/sources", json={"name": "x", "url": "rtsp://127.0.0.1/x"})
        assert r.status_code == 401 and "x" not in site.sources()
        for path in paths:
            assert bare.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
            assert bare.get(path, params={"token": TOKEN}).status_code == 200, path
        with bare.stream("GET", "/stream/door.mjpg", params={"token": TOKEN, "width": 160}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
            first = next(r.iter_bytes())
            assert first.startswith(b"--hrstreamframe")
        # a page opened with ?token= leaves a cookie its own requests carry
        page = bare.get("/", params={"token": TOKEN})
        assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
        assert httpx.get(f"{site.base}/api/sources", cookies={"hrstream_token": TOKEN}).status_code == 200
    finally:
        bare.close()
    assert TOKEN not in site.log_text()


def test_many_and_stalled_viewers_leave_the_api_the_pipeline_and_other_viewers_alone(site):
    """Fifty viewers that ask for a stream and never read a byte:
    the API answers, the camera's frames flow at their rate, a viewer that reads gets every new frame, and when
    they leave nothing of them is kept."""
    import socket

    request = f"GET /stream/door.mjpg?width=320&token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    stalled = []
    try:
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", site.port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(request)
            stalled.append(s)
        wait_for(lambda: site.status()["view"]["viewers"] >= 50, 30, "fifty viewers")
        t0 = time.monotonic()
        assert site.api("GET", "/api/sources").status_code == 200
        assert time.monotonic() - t0 < 5.0
        n = site.frames("door")
        encodes = site.status()["view"]["encodes"]
        indexes = []
        with site.client.stream("GET", "/stream/door.mjpg", params={"width": 320}) as r:
            buf = b""
            for chunk in r.iter_bytes():
                buf += chunk
                while b"X-Frame-Index: " in buf:
                    head, _, buf = buf.partition(b"X-Frame-Index: ")
                    line, _, buf = buf.partition(b"\r\n")
                    indexes.append(int(line))
                if len(indexes) >= 15:
                    break
        assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)  # newer each time
        written = site.frames("door") - n
        assert written >= 10
        # one encoding per frame and width, however many viewers asked for it
        assert site.status()["view"]["encodes"] - encodes <= written + 2
    finally:
        for s in stalled:
            s.close()
    wait_for(lambda: site.status()["view"]["viewers"] == 0, 30, "the viewers gone")


def test_the_openapi_schema_is_served(site):
    schema = site.api("GET", "/openapi.json").json()
    assert schema["info"]["title"] == "hrstream serve"
    for path in (
        "/api/sources",
        "/api/sources/{name}",
        "/api/sources/{name}/restart",
        "/api/sources/{name}/tracks",
    ):
        assert path in schema["paths"], path
    new = schema["components"]["schemas"]["NewSource"]
    assert set(new["properties"]) == {"name", "url", "detect_every"}
    assert new.get("additionalProperties") is False


def test_bad_requests_get_422_with_the_field_and_disturb_nothing(site):
    file_before = site.sources_file.read_bytes()
    names_before = list(site.sources())
    long_url = f"rtsp://viewer:{SECRET}@127.0.0.1/" + "a" * 3000
    cases = [
        ({"name": "bad name", "url": "rtsp://127.0.0.1/x"}, "name"),
        ({"name": "../etc", "url": "rtsp://127.0.0.1/x"}, "name"),
        ({"name": "x" * 65, "url": "rtsp://127.0.0.1/x"}, "name"),
        ({"name": "door", "url": "rtsp://127.0.0.1/x"}, "name"),  # taken
        ({"name": "ok", "url": "file:///etc/passwd"}, "url"),
        ({"name": "ok", "url": f"ftp://viewer:{SECRET}@127.0.0.1/x"}, "url"),
        ({"name": "ok", "url": "/etc/passwd"}, "url"),
        ({"name": "ok", "url": "rtsp://"}, "url"),
        ({"name": "ok", "url": long_url}, "url"),
        ({"name": "ok", "url": "rtsp://127.0.0.1/x", "detect_every": 0}, "detect_every"),
        ({"name": "ok", "url": "rtsp://127.0.0.1/x", "detect_every": "often"}, "detect_every"),
        ({"name": "ok", "url": "rtsp://127.0.0.1/x", "colour": "red"}, "colour"),
        ({"url": "rtsp://127.0.0.1/x"}, "name"),
    ]

    def bad_requests() -> None:
        for body, field in cases:
            r = site.api("POST", "/api/sources", json=body)
            assert r.status_code == 422, (body, r.text)
            assert [e["loc"][-1] for e in r.json()["detail"]] == [field], (body, r.text)
            assert SECRET not in r.text and "Traceback" not in r.text
        r = site.api(
            "POST", "/api/sources", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and "Traceback" not in r.text

    undisturbed(site, ["door", "hall"], bad_requests)
    assert list(site.sources()) == names_before
    assert site.sources_file.read_bytes() == file_before
    for method, path in [
        ("GET", "/api/sources/nope"),
        ("DELETE", "/api/sources/nope"),
        ("POST", "/api/sources/nope/restart"),
        ("GET", "/api/sources/nope/tracks"),
        ("GET", "/stream/nope.mjpg"),
        ("GET", "/sources/nope"),
    ]:
        r = site.api(method, path)
        assert r.status_code == 404, (method, path)
        assert r.json() == {"detail": "no source named 'nope'"}
    assert "Traceback" not in site.log_text()


def test_a_camera_added_through_the_api_runs_with_its_own_segments(site):
    url = site.cams["yard"].url

    def add():
        r = site.api("POST", "/api/sources", json={"name": "yard", "url": url, "detect_every": 3})
        assert r.status_code == 201, r.text
        return r.json()

    added = undisturbed(site, ["door", "hall"], add)
    assert added["name"] == "yard" and added["url"] == url and added["options"] == {"detect_every": 3}
    assert added["state"] in ("connecting", "live")
    wait_for(lambda: site.state("yard") == "live", 60, "yard live")
    site.wait_frames("yard", 20)
    assert segments(site, "yard"), "no segment of yard"
    text = site.sources_file.read_text()
    assert text.startswith(HEAD) and "# the hall: every other frame detected\n" in text
    assert text.splitlines()[-1] == f"yard {url} detect_every=3"
    assert (site.sources_file.stat().st_mode & 0o777) == 0o600  # it holds credentials: its mode is kept


def test_a_restarted_camera_starts_a_new_segment_and_comes_back_live(site):
    before = segments(site, "yard")
    r = site.api("POST", "/api/sources/yard/restart")
    assert r.status_code == 200 and r.json()["name"] == "yard"
    wait_for(lambda: len(segments(site, "yard")) > len(before), 60, "a new segment of yard")
    site.wait_frames("yard", 20)
    time.sleep(1.0)
    assert site.state("yard") == "live"
    assert site.sources_file.read_text().splitlines()[-1].startswith("yard ")


def test_a_removed_camera_has_its_outputs_closed_at_once(site):
    def remove():
        t0 = time.monotonic()
        r = site.api("DELETE", "/api/sources/yard")
        assert r.status_code == 204, r.text
        return time.monotonic() - t0

    took = undisturbed(site, ["door", "hall"], remove)
    assert took < site.grace
    # answered once closed: every segment has its tracks document, the JSONL ends with a whole record
    segs = segments(site, "yard")
    assert len(segs) >= 2
    for seg in segs:
        assert seg.with_name(seg.name.replace(".jsonl", ".tracks.json")).is_file(), seg
        assert seg.read_bytes().endswith(b"\n")
        json.loads(seg.read_text().splitlines()[-1])
    sizes = [s.stat().st_size for s in segs]
    time.sleep(2.0)
    assert [s.stat().st_size for s in segs] == sizes, "yard's files still grow"
    job = json.loads((site.out / "manifest.json").read_text())
    (yard,) = [j for j in job["jobs"] if j["name"] == "yard"]
    assert yard["status"] == "interrupted"
    assert site.api("GET", "/api/sources/yard").status_code == 404
    assert "yard" not in site.api("GET", "/metrics").text
    text = site.sources_file.read_text()
    assert "yard" not in text and text.startswith(HEAD) and "# the hall" in text
    assert list(site.sources()) == ["door", "hall"]


def test_sighup_applies_a_hand_edit_of_the_sources_file(site):
    url = site.cams["yard"].url
    text = site.sources_file.read_text().replace("detect_every=2", "detect_every=4")
    site.sources_file.write_text(text + f"# back by hand\nyard {url}\n")
    site.signal(signal.SIGHUP)
    wait_for(lambda: "yard" in site.sources(), 30, "yard added by SIGHUP")
    wait_for(lambda: site.state("yard") == "live", 60, "yard live")
    assert site.sources()["hall"]["options"] == {"detect_every": 4}
    wait_for(lambda: site.state("hall") == "live", 60, "hall live again")
    assert "# back by hand" in site.sources_file.read_text()
    # a file that cannot be read changes nothing, and says why
    good = site.sources_file.read_text()
    site.sources_file.write_text(good + "broken rtsp://127.0.0.1/x detect_every=zero\n")
    site.signal(signal.SIGHUP)
    wait_for(lambda: "not applied" in site.log_text(), 30, "the refusal in the log")
    assert list(site.sources()) == ["door", "hall", "yard"]
    site.sources_file.write_text(good)


def test_a_stopped_camera_shows_reconnecting_then_live(site):
    hall = site.cams["hall"]
    hall.kill()
    wait_for(lambda: site.state("hall") == "reconnecting", 30, "hall reconnecting")
    n = site.frames("door")
    site.wait_frames("door", 10)  # the others go on
    assert site.frames("door") > n
    site.cams["hall"] = RtspServer(port=hall.port, clip=hall.clip).start()
    wait_for(lambda: site.state("hall") == "live", 60, "hall live again")
    wait_for(lambda: site.source("hall")["reconnects"] >= 1, 30, "hall's reconnect counted")


def test_credentials_and_the_token_never_leave_the_process(site):
    seen = []
    with site.client.stream("GET", "/events") as r:
        end = time.monotonic() + 4
        for chunk in r.iter_bytes():
            seen.append(chunk)
            if time.monotonic() > end:
                break
    events = b"".join(seen).decode()
    assert "event: people" in events and "event: source" in events
    answers = [
        events,
        site.api("GET", "/api/sources").text,
        site.api("GET", "/api/sources/door").text,
        site.api("GET", "/api/status").text,
        site.api("GET", "/metrics").text,
        site.api("GET", "/").text,
        site.api("GET", "/sources/door").text,
        site.api("GET", "/openapi.json").text,
        site.log_text(),
        (site.out / "manifest.json").read_text(),
    ]
    for text in answers:
        assert SECRET not in text and "viewer:" not in text
        assert TOKEN not in text
    assert f"viewer:{SECRET}@" in site.sources_file.read_text()  # where it belongs


def test_metrics_are_valid_prometheus_text(site):
    text = site.api("GET", "/metrics").text
    assert 'hrstream_source_frames_out_total{source="door"}' in text
    assert "hrstream_view_encodes_total" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus) missing")
    out = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_sigterm_drains_and_a_restart_resumes_the_same_set(site):
    t0 = time.monotonic()
    rc = site.stop()
    assert rc == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < site.grace + 15
    log = site.log_text()
    assert "stopping: intake stops" in log and "Traceback" not in log
    for seg in site.out.glob("*_*Z.jsonl"):  # every output closed
        assert seg.with_name(seg.name.replace(".jsonl", ".tracks.json")).is_file(), seg
    manifest = json.loads((site.out / "manifest.json").read_text())
    assert manifest["state"] == "interrupted"
    assert not [j for j in manifest["jobs"] if j["status"] == "running"]

    sources, out, model_args, recipe = site.restart_args
    again = ServeProcess(sources, out, model_args, recipe=recipe, log=site.log, token=TOKEN)
    try:
        again.start()
        assert list(again.sources()) == ["door", "hall", "yard"]
        assert again.sources()["hall"]["options"] == {"detect_every": 4}
        wait_for(lambda: all(s["state"] == "live" for s in again.sources().values()), 120, "all live again")
    finally:
        assert again.stop() == 128 + signal.SIGTERM
        again.client.close()


def test_every_state_of_a_source_is_one_of_the_api_words() -> None:
    """The API says live, connecting, reconnecting, gave_up or stopped, whatever the source (a file being read
    is live), and each of them is reachable."""
    assert {public_state(s) for s in get_args(SourceState)} == {
        "live",
        "connecting",
        "reconnecting",
        "gave_up",
        "stopped",
    }


def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path):
    sources = tmp_path / "site.txt"
    sources.write_text("")
    result = invoke(["serve", "--sources", str(sources), "--host", "0.0.0.0"], env={"HRSTREAM_TOKEN": None})
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hrstream: error: --host 0.0.0.0:"), result.stderr
    assert "needs a token" in lines[0]


def test_the_sources_file_keeps_comments_its_mode_and_an_edit_not_yet_applied(tmp_path):
    from hrstream.serve.sources_file import SourcesFile, SourceSpec

    path = tmp_path / "site.txt"
    path.write_text("# cameras\ndoor rtsp://u:p@127.0.0.1/a  # the door\n\n# hall\nhall rtsp://127.0.0.1/b\n")
    path.chmod(0o600)
    sources = SourcesFile(path)
    assert [s.name for s in sources.read()] == ["door", "hall"]
    with path.open("a") as f:  # an edit by hand, not yet applied (no SIGHUP)
        f.write("yard rtsp://127.0.0.1/c\n")
    sources.add(SourceSpec("gate", "rtsp://127.0.0.1/d", {"detect_every": 2}))
    sources.remove("hall")
    assert path.read_text() == (
        "# cameras\ndoor rtsp://u:p@127.0.0.1/a  # the door\n\n# hall\nyard rtsp://127.0.0.1/c\n"
        "gate rtsp://127.0.0.1/d detect_every=2\n"
    )
    assert (path.stat().st_mode & 0o777) == 0o600
    assert [s.name for s in sources.read()] == ["door", "yard", "gate"]
    assert not list(tmp_path.glob(".site.txt.*"))  # no temporary file left
