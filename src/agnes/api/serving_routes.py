"""The routes that serve data (issue 4): grants, catalog, query, downloads -- registered as one list."""

from __future__ import annotations

from agnes.api.catalog import CatalogController
from agnes.api.data import DataController
from agnes.api.grants import GrantsController
from agnes.api.query import run_query

SERVING_HANDLERS = [GrantsController, CatalogController, run_query, DataController]
