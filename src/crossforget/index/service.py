"""The HTTP API over a live index (FastAPI): search, forget as a background job, audit, health.

Searches are answered from the version in memory while a forget job runs; the job commits a new
version and the next search moves to it (``Searcher.current``), so each answer comes wholly from
one version. One job at a time: a second request, or one while another process holds the index's
lock, is refused with 409. With a token, mutating endpoints need ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import hmac
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from crossforget.core.errors import CrossforgetError
from crossforget.index.audit import utc_now
from crossforget.index.forget import IndexForgetRequest, check_request, forget
from crossforget.index.search import MAX_K, Searcher
from crossforget.index.store import IndexBusy, WriterLock, acquire_lock, audit_log

MAX_IMAGE_BYTES = 20 << 20


class ForgetBody(BaseModel):
    """POST /forget: the same fields as ``crossforget forget``."""

    classes: list[str] = Field(default_factory=list)
    items: list[str] = Field(default_factory=list)
    delete_class_items: bool = False
    method: str = "ppp"
    options: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0


@dataclass
class Job:
    id: str
    request: dict
    status: str = "running"
    started: str = field(default_factory=utc_now)
    finished: str | None = None
    error: str | None = None
    record: dict | None = None

    def to_dict(self) -> dict:
        return dict(vars(self))


class _Jobs:
    """The jobs of this server; at most one running."""

    def __init__(self, index_dir: Path, searcher: Searcher, device: object) -> None:
        self.index_dir, self.searcher, self.device = index_dir, searcher, device
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.running: Job | None = None

    def start(self, body: ForgetBody) -> Job:
        """Check the request and take the index's lock (400 / 409 before any work), then run it in a
        background thread."""
        request = IndexForgetRequest(
            classes=body.classes,
            items=body.items,
            delete_class_items=body.delete_class_items,
            method=body.method,
            options=body.options,
            seed=body.seed,
        )
        with self.lock:
            if self.running is not None:
                busy = f"job {self.running.id} is still running; retry when it is done"
                raise HTTPException(status_code=409, detail=busy)
            check_request(self.searcher.current(), request, self.index_dir)  # 400 on bad input
            held = acquire_lock(self.index_dir, "a forget job of `crossforget serve`")  # 409 when busy
            job = Job(uuid.uuid4().hex, body.model_dump())
            self.jobs[job.id] = job
            self.running = job
        worker = threading.Thread(
            target=self._work, args=(job, request, held), name=f"forget-{job.id[:8]}", daemon=True
        )
        worker.start()
        return job

    def health(self) -> dict:
        """GET /health: the serving version and the running job, if any."""
        version = self.searcher.current()
        running = self.running
        return {
            "status": "ok",
            "version": version.name,
            "seq": version.seq,
            "items": int(version.ids.size),
            "forgotten_classes": version.meta.get("forgotten_classes", []),
            "job": running.to_dict() if running is not None else None,
        }

    def _work(self, job: Job, request: IndexForgetRequest, held: WriterLock) -> None:
        try:
            job.record = forget(self.index_dir, request, lock=held, device=self.device, log=lambda text: None)
            job.status = "done"
            self.searcher.current()  # load the committed version now rather than on the next search
        except CrossforgetError as exc:
            job.status, job.error = "failed", " ".join(str(exc).splitlines())
        except Exception as exc:  # a job must never die silently
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            held.release()
            job.finished = utc_now()
            with self.lock:
                self.running = None


def _authorise(token: str | None, authorization: str | None) -> None:
    """401 unless ``authorization`` carries ``token`` as a bearer token (no token: no check)."""
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong bearer token (send Authorization: Bearer TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def create_app(index_dir: str | Path, token: str | None = None, device: object = None) -> FastAPI:
    """The app for one index folder (opened and verified now: a damaged index fails at start)."""
    index_dir = Path(index_dir)
    searcher = Searcher(index_dir)
    jobs = _Jobs(index_dir, searcher, device)
    app = FastAPI(title="crossforget live index", version="1")

    @app.exception_handler(CrossforgetError)
    async def _bad_input(request: Request, exc: CrossforgetError) -> JSONResponse:
        status = 409 if isinstance(exc, IndexBusy) else 400
        return JSONResponse(status_code=status, content={"error": " ".join(str(exc).splitlines())})

    @app.get("/health")
    def health() -> dict:
        return jobs.health()

    @app.get("/search")
    def search_text(
        text: str = Query(..., min_length=1, description="the sentence to search images for (T2I)"),
        k: int = Query(10, ge=1, le=MAX_K),
        exact: bool = False,
    ) -> dict:
        return searcher.search_text(text, k, exact).to_dict()

    @app.post("/search/image")
    def search_image(
        image: bytes = Body(..., media_type="application/octet-stream", description="PNG/JPEG file bytes"),
        k: int = Query(10, ge=1, le=MAX_K),
        exact: bool = False,
    ) -> dict:
        if len(image) > MAX_IMAGE_BYTES:
            raise HTTPException(status_code=413, detail=f"images are limited to {MAX_IMAGE_BYTES >> 20} MiB")
        return searcher.search_image(image, k, exact).to_dict()

    @app.post("/forget", status_code=202)
    def post_forget(body: ForgetBody, authorization: str | None = Header(default=None)) -> dict:
        _authorise(token, authorization)
        job = jobs.start(body)
        return {"job": job.id, "status": job.status, "url": f"/jobs/{job.id}"}

    @app.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict:
        job = jobs.jobs.get(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job {job_id}")
        return job.to_dict()

    @app.get("/audit")
    def get_audit(since: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=10_000)) -> dict:
        log = audit_log(index_dir)
        problems = log.verify()
        return {
            "verified": not problems,
            "problems": problems,
            "records": [r.to_dict() for r in log.records(since, limit)],
        }

    return app
