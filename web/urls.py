"""The one URL builder: templates, feeds and redirects all make their links here."""

import re
from collections.abc import Iterable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.datastructures import URL, URLPath
from starlette.requests import Request
from starlette.routing import BaseRoute, NoMatchFound

from services.mail import Site
from services.posts import RESERVED_SLUGS


class PostSlugConvertor(StringConvertor):
    """A post's slug in its address (`{slug:post_slug}`): any path segment but the names of
    a post's own pages (/posts/{id}/edit …), which no slug may take. The post page's route
    can then be tried before those pages' routes, and be found sooner."""

    regex = rf"(?!(?:{'|'.join(map(re.escape, sorted(RESERVED_SLUGS)))})$)[^/]+"


register_url_convertor("post_slug", PostSlugConvertor())


def _leaf_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route that builds its own URLs, with FastAPI's included routers opened up."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is None:
            yield route
        else:
            yield from contexts()


def url_path(app: Starlette, name: str, params: dict[str, Any]) -> URLPath:
    """What `app.url_path_for(name, **params)` returns, without searching every time.

    The router tries each route in turn and each refusal raises an exception; a page with
    ten posts asks for some forty URLs, and that search was a third of its rendering time.
    The route that answers a name (for a given set of parameter names) never changes, so
    it is found once per app and asked directly afterwards.
    """
    found: dict[tuple[str, frozenset[str]], BaseRoute] | None = getattr(
        app.state, "url_routes", None
    )
    if found is None:
        found = app.state.url_routes = {}
    key = (name, frozenset(params))
    route = found.get(key)
    if route is not None:
        return route.url_path_for(name, **params)
    for route in _leaf_routes(app.router.routes):
        try:
            path = route.url_path_for(name, **params)
        except NoMatchFound:
            continue
        found[key] = route
        return path
    raise NoMatchFound(name, params)


def url_for(request: Request, name: str, /, **params: Any) -> URL:
    """The absolute URL of route `name`: what `request.url_for` gives, through the cached
    route lookup (and joined as text: a URL made from a string is only parsed if a part of
    it is asked for). Templates, feeds and redirects all build their links here."""
    base = str(request.base_url).rstrip("/")
    return URL(base + url_path(request.app, name, params))


def post_url(request: Request, post: Any) -> str:
    """A post's canonical address: `/posts/{id}/{slug}`. The id keeps it unique and
    permanent; the slug says what it is (an old slug redirects to the current one)."""
    return str(url_for(request, "post_detail", post_id=post.id, slug=post.slug))


def public_url_for(request: Request, name: str, /, **params: Any) -> str:
    """The absolute URL of route `name` for a message that leaves the site (mail): on the
    configured PUBLIC_URL, so that no Host header a client sends can put its own site into
    a password reset link; on the request's own address where none is configured."""
    base = request.app.state.settings.public_url or str(request.base_url).rstrip("/")
    return base + str(url_path(request.app, name, params))


def mail_site(request: Request) -> Site:
    """The site as its mail describes it: name and absolute links."""
    return Site(
        name=request.app.state.settings.site_name,
        home=public_url_for(request, "home"),
        account=public_url_for(request, "account"),
        password_reset=lambda token: public_url_for(request, "password_reset_form", token=token),
        verify_email=lambda token: public_url_for(request, "verify_email", token=token),
        invitation=lambda token: str(
            URL(public_url_for(request, "register")).include_query_params(invitation=token)
        ),
    )
