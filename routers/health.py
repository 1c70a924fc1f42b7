"""Probes for a load balancer or supervisor: is the process alive, and can it serve?"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from database import SessionDep
from services.health import readiness_problem

router = APIRouter(include_in_schema=False)

# A probe's answer is about this moment and this host: never stored by anyone.
NO_STORE = {"Cache-Control": "no-store"}
# Seconds a balancer should wait before asking a host that is not ready again.
READY_RETRY_AFTER_S = 5


@router.get("/healthz")
def healthz() -> JSONResponse:
    """The process is up and answering requests."""
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


@router.get("/readyz")
def readyz(db: SessionDep) -> JSONResponse:
    """The database is reachable and its schema is the one this code expects."""
    problem = readiness_problem(db)
    if problem:
        headers = NO_STORE | {"Retry-After": str(READY_RETRY_AFTER_S)}
        return JSONResponse({"status": "unavailable", "detail": problem}, 503, headers=headers)
    return JSONResponse({"status": "ok"}, headers=NO_STORE)
