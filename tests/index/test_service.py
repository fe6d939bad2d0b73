"""The HTTP API through a real client against a uvicorn server on localhost, stopped at the end."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crossforget.index.search import Searcher
from crossforget.index.store import acquire_lock

TOKEN = "s3cret"
QUERIES = ("a dog on a beach", "a cat on a couch", "a red car in the street")
FORGET = {"classes": ["dog"], "delete_class_items": True, "options": {"neighbour_samples": 50}}


@pytest.fixture
def server(index_copy: Path) -> Iterator[tuple[str, Path]]:
    import uvicorn

    from crossforget.index.service import create_app

    config = uvicorn.Config(create_app(index_copy, TOKEN), host="127.0.0.1", port=0, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", index_copy
    finally:
        srv.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "the server did not stop"


def _hits(answer: dict) -> list[tuple[str, int]]:
    return [(h["item"], h["distance"]) for h in answer["hits"]]


def _expected(index: Path) -> dict[str, list]:
    searcher = Searcher(index)
    return [[(h.item, h.distance) for h in searcher.search_text(q, k=10).hits] for q in QUERIES]


def test_search_health_and_auth(server: tuple[str, Path]) -> None:
    from PIL import Image

    url, index = server
    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["version"] == "v000000" and health["job"] is None
        answer = client.get("/search", params={"text": QUERIES[0], "k": 10}).json()
        assert answer["version"] == "v000000" and _hits(answer) == _expected(index)[0]
        assert client.get("/search", params={"text": "x", "k": 0}).status_code == 422
        png = io.BytesIO()
        Image.new("RGB", (40, 40), (200, 30, 30)).save(png, format="PNG")
        image = client.post("/search/image", params={"k": 3}, content=png.getvalue())
        assert (
            image.status_code == 200 and image.json()["direction"] == "I2T" and len(image.json()["hits"]) == 3
        )
        bad = client.post("/search/image", content=b"not an image")
        assert bad.status_code == 400 and "not an image" in bad.json()["error"]
        assert client.post("/forget", json=FORGET).status_code == 401
        wrong = client.post("/forget", json=FORGET, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        unknown = client.post("/forget", json={"classes": ["doggo"]}, headers=auth)
        assert unknown.status_code == 400 and "valid classes: person" in unknown.json()["error"]
        held = acquire_lock(index, "a forget request of another process")
        try:
            busy = client.post("/forget", json=FORGET, headers=auth)
        finally:
            held.release()
        assert busy.status_code == 409 and "is busy" in busy.json()["error"]
        audit = client.get("/audit").json()
        assert audit["verified"] and [r["seq"] for r in audit["records"]] == [0]


def test_searches_during_a_forget_job_come_wholly_from_one_version(server: tuple[str, Path]) -> None:
    url, index = server
    old = _expected(index)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers: list[tuple[int, dict]] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        job = client.post("/forget", json=FORGET, headers=auth)
        assert job.status_code == 202
        job_id = job.json()["job"]
        second = client.post("/forget", json=FORGET, headers=auth)
        assert second.status_code == 409  # one job at a time
        deadline = time.monotonic() + 60
        status = "running"
        while status == "running":
            assert time.monotonic() < deadline
            for q in range(len(QUERIES)):
                answers.append((q, client.get("/search", params={"text": QUERIES[q], "k": 10}).json()))
            status = client.get(f"/jobs/{job_id}").json()["status"]
        assert status == "done", client.get(f"/jobs/{job_id}").json()["error"]
        for q in range(len(QUERIES)):
            answers.append((q, client.get("/search", params={"text": QUERIES[q], "k": 10}).json()))
        new = _expected(index)
        assert new != old
        versions = {a["version"] for _, a in answers}
        assert versions == {"v000000", "v000001"}  # answers were given while the job ran, and after
        for q, answer in answers:
            expected = old if answer["version"] == "v000000" else new
            assert _hits(answer) == expected[q]
        assert client.get("/health").json()["version"] == "v000001"
        audit = client.get("/audit").json()
        assert audit["verified"] and audit["records"][-1]["request"]["classes"] == ["dog"]


def test_the_serve_command_wiring(tiny_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``crossforget serve`` hands uvicorn the app on 127.0.0.1 with the token from the environment."""
    import uvicorn
    from fastapi.testclient import TestClient

    from crossforget.cli import main

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(app=app, **kwargs))
    monkeypatch.setenv("CROSSFORGET_TOKEN", TOKEN)
    assert main(["serve", str(tiny_index), "--port", "8123"]) == 0
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8123)
    with TestClient(seen["app"]) as client:
        assert client.get("/health").json()["version"] == "v000000"
        assert client.post("/forget", json={"classes": ["dog"]}).status_code == 401
        bad = client.post(
            "/forget", json={"classes": ["doggo"]}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert bad.status_code == 400
