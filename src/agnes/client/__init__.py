"""The analyst side of the `agnes` command: login, catalog, pull, query.

It talks to a server over HTTP only (never imports services), so it works
against any Agnes instance the analyst can reach.
"""
