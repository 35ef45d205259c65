"""The individual contract checks, one module per part of the extract."""
