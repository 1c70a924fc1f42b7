"""SQL statements per request, counted in-process.

    DATABASE_URL=sqlite:///... python -m bench.sqlcount '[{"label": "/", "path": "/"}, ...]'

Builds the app on the dataset, makes one warm-up request per route and then one counted
request, with a `before_cursor_execute` listener on the app's engine (and an observer of the
reads that run past its events, database.OneRowRead); a route that reads as a
logged-in user or with a token sends the cookie or token of a user made for it. Prints one line:
`SQLCOUNT {"<label>": {"queries": n, "transactions": m}, ...}`, where transactions are the
BEGIN/COMMIT/ROLLBACK statements and queries everything else.
"""

import json
import sys
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from bench.routes import WRITE_BODY, Credentials, Route, sign_in
from main import create_app

MARKER = "SQLCOUNT "
TRANSACTION_WORDS = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"})


class Counter:
    def __init__(self) -> None:
        self.queries = 0
        self.transactions = 0

    def __call__(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        self.saw(statement)

    def saw(self, statement: str) -> None:
        if statement.split(None, 1)[0].upper() in TRANSACTION_WORDS:
            self.transactions += 1
        else:
            self.queries += 1


def _request(client: TestClient, route: Route, credentials: Credentials, attempt: int) -> None:
    headers = credentials.headers(route.auth)
    if route.write:
        response = client.post(route.path, json=WRITE_BODY, headers=headers)
    else:
        response = client.get(route.request_path(attempt), headers=headers)
    if not response.is_success:
        raise RuntimeError(f"{route.label}: {response.status_code} {response.text[:200]}")


def count(routes: list[Route]) -> dict[str, dict[str, int]]:
    app = create_app()
    engine = app.state.database.engine
    observers = app.state.database.statement_observers
    counts: dict[str, dict[str, int]] = {}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        credentials = sign_in(client)
        for route in routes:
            _request(client, route, credentials, attempt=1)
            counter = Counter()
            # The engine's events, and the reads run past them (database.OneRowRead).
            event.listen(engine, "before_cursor_execute", counter)
            observers.append(counter.saw)
            try:
                _request(client, route, credentials, attempt=2)
            finally:
                event.remove(engine, "before_cursor_execute", counter)
                observers.remove(counter.saw)
            counts[route.label] = {
                "queries": counter.queries,
                "transactions": counter.transactions,
            }
    return counts


def main(argv: list[str]) -> None:
    specs: list[dict[str, Any]] = json.loads(argv[0])
    routes = [Route(**spec) for spec in specs]
    print(MARKER + json.dumps(count(routes)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
