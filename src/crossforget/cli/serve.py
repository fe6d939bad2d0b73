"""``crossforget serve``: the HTTP API of a live index (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

from crossforget.core.errors import CrossforgetError

TOKEN_ENV = "CROSSFORGET_TOKEN"


DESCRIPTION = (
    "GET /search, POST /search/image, POST /forget (background job), GET /jobs/ID, GET /audit, GET /health."
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", type=Path, help="the index folder")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--token",
        default=None,
        help=f"bearer token required by POST /forget (default: ${TOKEN_ENV}; none: no check)",
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from crossforget.index.service import create_app

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not _loopback(args.host) and token is None:
        raise CrossforgetError(
            f"--host {args.host} lets other machines call POST /forget; give --token (or ${TOKEN_ENV}), "
            "or keep the default --host 127.0.0.1"
        )
    if not 0 <= args.port <= 65535:
        raise CrossforgetError(f"--port {args.port} is not a port (0-65535)")
    app = create_app(args.index, token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
