"""Inkwell with one extra route, `/__ceiling`, for the benchmark only.

The ceiling is an `async def` route returning a short constant: everything Inkwell does for
any request (middleware, routing, FastAPI's request handling) and nothing else. The other
routes are Inkwell's own, untouched, so every Inkwell route is measured in this same app.

    uvicorn bench.ceiling_app:app --workers 2
"""

from fastapi.responses import PlainTextResponse

from bench.routes import CEILING_PATH
from main import create_app

app = create_app()


@app.get(CEILING_PATH, include_in_schema=False, response_class=PlainTextResponse)
async def ceiling() -> str:
    return "ok"
