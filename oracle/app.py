"""The FastAPI application of one oracle node."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from oracle import __version__
from oracle.api import (
    errors,
    fleets,
    health,
    metrics,
    observations,
    reports,
    telemetry,
    transactions,
)
from oracle.limits import BodySizeLimit
from oracle.metrics import Metrics
from oracle.services import Services
from oracle.settings import Settings

log = logging.getLogger("oracle")


class MetricsMiddleware:
    """Counts requests and their latency by route template (pure ASGI, cheap)."""

    def __init__(self, app, registry_of) -> None:
        self.app = app
        self.registry_of = registry_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            registry: Metrics | None = self.registry_of()
            if registry is not None:
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                registry.http_requests.inc(1, scope["method"], path, str(status[0]))
                registry.http_seconds.observe(time.perf_counter() - started, scope["method"], path)


def create_app(settings: Settings, run_worker: bool = True) -> FastAPI:
    """An app for ``settings``; the node's worker thread runs while the app is up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = Services.build(settings, run_worker=run_worker)
        app.state.services = services
        if services.node is not None:
            services.node.start()
        log.info(
            "oracle node %s (%s) serving %s",
            settings.node_name,
            services.account.address,
            settings.oracle_address,
        )
        try:
            yield
        finally:
            if services.node is not None:
                services.node.stop()
            services.ingestor.close()
            services.store.dispose()

    app = FastAPI(
        title="gpucredit oracle node",
        version=__version__,
        summary="Signed GPU telemetry in, signed period reports on-chain out.",
        lifespan=lifespan,
    )
    app.state.services = None
    errors.install(app)
    # Every operation may answer these, in the one error shape (the schema says so,
    # instead of FastAPI's default 422 body, which this service never sends); 404
    # also covers a path segment that matches no route (an empty fleet id ...).
    common = errors.error_responses(400, 404, 413, 422, 500)
    for module in (telemetry, fleets, observations, reports, transactions, health, metrics):
        app.include_router(module.router, responses=common)

    def registry() -> Metrics | None:
        services = app.state.services
        return services.metrics if services is not None else None

    # Outermost last: CORS (only when origins are configured) -> metrics -> body limit.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, registry_of=registry)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type"],
            allow_credentials=False,
            max_age=600,
        )
    return app
