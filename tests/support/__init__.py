"""Helpers for the test suite: accounts and forms, images, servers, load and XSS tools.

Test modules and conftest.py import from here; nothing here imports a test module."""
