"""DuckDB engine: atomic publishing of extract runs (`publish`, no DuckDB needed) and the
serving catalog (`catalog.ServingCatalog`). Import the submodules directly, so a worker
that only publishes never loads DuckDB."""
