"""The frozen Agnes extract contract and a standalone validator for it.

Runs with only duckdb and pyarrow installed (it never imports agnes), so a
connector author can check an extract on their own machine:
`python -m contract_tests PATH`.
"""

from .cli import main
from .report import Report, TableInfo, Violation
from .validator import validate_extract

__all__ = ["Report", "TableInfo", "Violation", "main", "validate_extract"]
