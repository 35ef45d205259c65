"""The one read rule, case by case (design.md "Names, time, visibility")."""

from __future__ import annotations

import pytest

from agnes.control.access import ReadFacts
from agnes.models import User
from agnes.services.permissions import Access

USER = User(id=2, email="u@example.com", role="viewer", active=True, created_at="", updated_at="")
ADMIN = User(id=1, email="a@example.com", role="admin", active=True, created_at="", updated_at="")


def access(grants=(), visibility=None, visible=()):
    return Access(USER, ReadFacts(frozenset(grants), dict(visibility or {}), frozenset(visible)))


@pytest.mark.parametrize(("facts", "table", "expected"), [
    ({}, "crm.orders", False),  # new sources are not visible to all
    ({"visible": ["crm"], "visibility": {"crm.orders": "inherit"}}, "crm.orders", True),  # inherit + visible source
    ({"visible": ["crm"]}, "crm.orders", False),  # served but not registered: grants only (fail closed)
    ({"visible": ["crm"], "grants": ["crm.*"]}, "crm.orders", True),  # ... which a source grant covers
    ({"visible": ["crm"], "visibility": {"crm.orders": "restricted"}}, "crm.orders", False),
    ({"visibility": {"crm.orders": "all"}}, "crm.orders", True),
    ({"visibility": {"crm.orders": "all"}}, "crm.customers", False),
    ({"grants": ["crm.orders"]}, "crm.orders", True),
    ({"grants": ["crm.orders"], "visibility": {"crm.orders": "restricted"}}, "crm.orders", True),
    ({"grants": ["crm.orders"]}, "crm.customers", False),
    ({"grants": ["crm.*"]}, "crm.customers", True),
    ({"grants": ["crm.*"], "visibility": {"crm.customers": "restricted"}}, "crm.customers", True),
    ({"grants": ["crm.*"]}, "crm2.orders", False),
    ({"grants": ["crm.*"]}, "crm", False),  # not a table id
    ({"visible": ["crm"], "visibility": {"crmx.orders": "inherit"}}, "crmx.orders", False),
])
def test_read_rule(facts, table, expected):
    assert access(**facts).can_read(table) is expected


def test_admins_read_everything():
    admin = Access(ADMIN, None)
    assert admin.is_admin and admin.can_read("anything.at_all")
