"""HTTP plumbing shared by the routers: dependencies, cookies, CSRF and signing, templates and
URLs, middleware, the page cache and the error handlers."""
