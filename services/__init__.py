"""The domain: accounts, posts, Markdown, search, media and maintenance.

Nothing here knows about HTTP: no module imports FastAPI or Starlette (a test checks). Callers
get values back, or domain errors from `services.errors` that the web layer maps to statuses.
"""
