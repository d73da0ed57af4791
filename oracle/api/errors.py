"""Error responses: every OracleError and every schema error share one shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from oracle.errors import OracleError, RateLimited
from oracle.models import ErrorResponse
from oracle.redact import redact, redact_data

log = logging.getLogger("oracle.api")


def error_responses(*codes: int) -> dict[int | str, dict]:
    """OpenAPI ``responses=`` entries for the given status codes."""
    return {code: {"model": ErrorResponse} for code in codes}


def _body(code: str, message: str, detail=None) -> dict:
    """The error shape; secrets (an RPC URL quoted by an exception ...) are masked."""
    return {"error": {"code": code, "message": redact(message), "detail": redact_data(detail)}}


INTERNAL_ERROR_MESSAGE = "the node failed to handle the request; its log has the cause"


def install(app: FastAPI) -> None:
    @app.exception_handler(Exception)
    async def unhandled(_request: Request, exc: Exception) -> JSONResponse:
        # A bug, not a client error: the documented shape, no exception text
        # (it may quote a URL or a value); the traceback goes to the (redacted) log.
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return JSONResponse(_body("internal_error", INTERNAL_ERROR_MESSAGE), 500)

    @app.exception_handler(OracleError)
    async def oracle_error(_request: Request, exc: OracleError) -> JSONResponse:
        if exc.status_code >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.detail["retry_after_seconds"])}
        return JSONResponse(_body(exc.code, exc.message, exc.detail), exc.status_code, headers)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body that is not even JSON (e.g. not UTF-8)
            return JSONResponse(_body("schema_invalid", "the body is not valid JSON"), 422)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            _body(code, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def schema_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only location, message and type: the offending input may not be JSON-safe.
        problems = [
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        return JSONResponse(
            _body("schema_invalid", "the request does not match the schema", problems), 422
        )
