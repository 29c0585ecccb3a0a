"""``hrstream serve --mqtt`` against a real Mosquitto broker started by the tests (Debian's ``mosquitto`` on
127.0.0.1, a free port, a config of its own), over two real RTSP cameras.

The service starts while the broker is down (its frames must flow all the same), the broker comes up, then
people messages at the set rate, appeared and left events (a source removed, a camera stopped), a broker restarted
while the service runs (frames flow, the buffer that overflowed counts its drops, messages resume), and last the
service killed with SIGKILL: the broker publishes its last will, ``offline``. The tests run in file order.
"""

from __future__ import annotations

import re
import time

import pytest
from support.rtsp import RtspServer, free_port, needs_rtsp
from support.serving import (
    LIVE_RECIPE,
    Mosquitto,
    ServeProcess,
    Subscriber,
    needs_mosquitto,
    serve_clip,
    wait_for,
)
from support.tiny_models import tiny_pose_model

pytestmark = [needs_rtsp, needs_mosquitto, pytest.mark.slow]

PREFIX = "site"
PEOPLE_EVERY = 0.5
LEFT_AFTER = 1.5
BUFFER = 20


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_mqtt")
    tiny = tiny_pose_model(root / "tiny")
    clip = serve_clip(tmp_path_factory.getbasetemp())
    cams = {name: RtspServer(clip=clip).start() for name in ("door", "hall")}
    sources = root / "site.txt"
    sources.write_text("".join(f"{name} {cam.url}\n" for name, cam in cams.items()))
    recipe = root / "live.yaml"
    recipe.write_text(LIVE_RECIPE)
    broker = Mosquitto(root / "broker", port=free_port())  # not started: the service starts without it
    svc = ServeProcess(
        sources,
        root / "out",
        tiny.args(),
        recipe=recipe,
        log=root / "serve.log",
        extra=[
            "--mqtt",
            f"{broker.url}/{PREFIX}",
            "--people-every",
            str(PEOPLE_EVERY),
            "--left-after",
            str(LEFT_AFTER),
            "--mqtt-buffer",
            str(BUFFER),
        ],
    )
    svc.cams, svc.broker = cams, broker  # type: ignore[attr-defined]
    subs: list[Subscriber] = []
    svc.subscribe = lambda: subs.append(Subscriber(broker.port, f"{PREFIX}/#")) or subs[-1]  # type: ignore[attr-defined]
    try:
        svc.start()
        yield svc
    finally:
        svc.close()
        for sub in subs:
            sub.close()
        broker.stop()
        for cam in cams.values():
            cam.kill()


def mqtt_metric(svc: ServeProcess, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", svc.api("GET", "/metrics").text, re.M)
    assert m is not None, name
    return float(m.group(1))


def test_a_broker_down_at_the_start_does_not_stall_the_pipeline(site):
    site.wait_frames("door", 15)
    site.wait_frames("hall", 15)
    assert site.status()["mqtt"]["connected"] is False
    # people messages pile up for the broker; the buffer overflows and says how much it dropped
    wait_for(lambda: mqtt_metric(site, "hrstream_mqtt_dropped_total") > 0, 60, "MQTT drops counted")
    assert site.state("door") == "live" and site.state("hall") == "live"

    site.broker.start()
    sub = site.subscribe()
    wait_for(lambda: site.status()["mqtt"]["connected"], 60, "the service connected to the broker")
    wait_for(lambda: b"online" in [p for _, p, _ in sub.on(f"{PREFIX}/availability")], 30, "online")
    wait_for(lambda: len(sub.json(f"{PREFIX}/door/people")) >= 3, 30, "door's people messages")
    # every state goes out again on each connection (the ones of the start were in the overflowed buffer)
    wait_for(lambda: sub.json(f"{PREFIX}/door/state"), 30, "door's state")
    assert {s["state"] for s in sub.json(f"{PREFIX}/door/state")} == {"live"}


def test_people_messages_come_at_the_set_rate(site):
    sub = site.subscribe()
    t0 = time.time()
    wait_for(
        lambda: len([m for m in sub.json(f"{PREFIX}/hall/people") if m["time"] > t0]) >= 8, 30, "8 messages"
    )
    people = [m for m in sub.json(f"{PREFIX}/hall/people") if m["time"] > t0]
    for m in people:
        assert m["type"] == "people" and m["source"] == "hall"
        assert m["count"] == len(m["people"]) >= 1  # the full-frame detector: one person, the frame
        for p in m["people"]:
            assert set(p) == {"track_id", "box", "score"} and len(p["box"]) == 4
    gaps = [b["time"] - a["time"] for a, b in zip(people, people[1:], strict=False)]
    assert min(gaps) >= PEOPLE_EVERY - 1e-6  # never faster than set
    assert sorted(gaps)[len(gaps) // 2] <= PEOPLE_EVERY + 0.5  # and at that rate (5 fps cameras: +0.2 s)


def test_appeared_and_left_events(site):
    sub = site.subscribe()
    events = f"{PREFIX}/hall/events"
    t0 = time.time()
    r = site.api("DELETE", "/api/sources/hall")
    assert r.status_code == 204
    left = wait_for(lambda: [e for e in sub.json(events) if e["type"] == "left"], 30, "hall's track left")
    for e in left:
        assert e["source"] == "hall" and e["first"] <= e["last"] and len(e["box"]) == 4
    wait_for(
        lambda: any(m.get("state") == "removed" for m in sub.json(f"{PREFIX}/hall/state")), 30, "removed"
    )
    wait_for(lambda: sub.on(f"{PREFIX}/hall/state")[-1][1] == b"", 30, "hall's retained state cleared")
    later = site.subscribe()  # comes later: no retained state of a source that is gone
    time.sleep(1.5)
    assert later.on(f"{PREFIX}/hall/state") == [] and later.on(f"{PREFIX}/availability")

    r = site.api("POST", "/api/sources", json={"name": "hall", "url": site.cams["hall"].url})
    assert r.status_code == 201
    appeared = wait_for(
        lambda: [e for e in sub.json(events) if e["type"] == "appeared" and e["time"] > t0],
        60,
        "hall's track back",
    )
    assert appeared[0]["source"] == "hall" and len(appeared[0]["box"]) == 4

    # a camera that stops: whoever was in its view leaves once it has been silent for --left-after
    door = site.cams["door"]
    door.kill()
    t_stop = time.time()
    left = wait_for(
        lambda: [e for e in sub.json(f"{PREFIX}/door/events") if e["type"] == "left"], 30, "door's track left"
    )
    assert left[0]["last"] <= t_stop + 1.0
    wait_for(
        lambda: any(m["state"] == "reconnecting" for m in sub.json(f"{PREFIX}/door/state")),
        30,
        "reconnecting",
    )
    site.cams["door"] = RtspServer(port=door.port, clip=door.clip).start()
    wait_for(
        lambda: [e for e in sub.json(f"{PREFIX}/door/events") if e["type"] == "appeared"],
        60,
        "door's track back",
    )
    wait_for(lambda: sub.json(f"{PREFIX}/door/state")[-1]["state"] == "live", 60, "door live again")


def test_a_broker_restarted_while_the_service_runs_never_stalls_it(site):
    dropped = mqtt_metric(site, "hrstream_mqtt_dropped_total")
    site.broker.stop()
    wait_for(lambda: not site.status()["mqtt"]["connected"], 30, "the service saw the broker go")
    t_down = time.time()
    for name in ("door", "hall"):
        site.wait_frames(name, 15)  # frames flow while the broker is away
    wait_for(
        lambda: mqtt_metric(site, "hrstream_mqtt_dropped_total") > dropped, 60, "the buffer's drops counted"
    )
    assert site.state("door") == "live" and site.state("hall") == "live"

    site.broker.start()
    sub = site.subscribe()
    wait_for(lambda: site.status()["mqtt"]["connected"], 60, "the service back on the broker")
    wait_for(
        lambda: [m for m in sub.json(f"{PREFIX}/door/people") if m["time"] > t_down + 1.0],
        30,
        "messages resumed",
    )
    assert b"online" in [p for _, p, _ in sub.on(f"{PREFIX}/availability")]


def test_the_last_will_says_offline_when_the_service_dies(site):
    sub = site.subscribe()
    wait_for(lambda: sub.on(f"{PREFIX}/availability"), 30, "the retained availability")
    assert sub.on(f"{PREFIX}/availability")[-1][1] == b"online"
    site.kill()  # SIGKILL: no goodbye, the broker speaks for it
    wait_for(lambda: sub.on(f"{PREFIX}/availability")[-1][1] == b"offline", 60, "the last will")
