"""HTTP routers, one per audience: the JSON API, public pages and account forms."""
