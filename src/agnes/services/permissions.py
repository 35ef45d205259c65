"""The ONE read rule (design.md "Names, time, visibility"), used by catalog, query, manifest and download.

Who may read table T (`<source>.<table>`):
- admins: everything;
- a user with a grant on T or on T's source (`<source>.*`);
- everyone when T's visibility is `all`, or when it is `inherit` (the default)
  and its source is visible to all; `restricted` means grants only.
- A served table the registry does not know (unregistered by an admin, or new
  in a sync after discovery) counts as `restricted`: fail closed, so deleting a
  restricted table's registration can never make it readable by everyone.
"""

from __future__ import annotations

from dataclasses import dataclass

from agnes.control.access import ReadFacts, read_facts
from agnes.models import User
from agnes.services.instance import Instance


@dataclass(frozen=True)
class Access:
    """What one user may read, loaded once per request; `can_read` is cheap and thread-safe."""

    user: User
    facts: ReadFacts | None  # None for admins: nothing to look up

    @property
    def is_admin(self) -> bool:
        return self.facts is None

    def can_read(self, table_id: str) -> bool:
        facts = self.facts
        if facts is None:
            return True
        source, dot, _ = table_id.partition(".")
        if not dot:
            return False
        if table_id in facts.grants or f"{source}.*" in facts.grants:
            return True
        visibility = facts.visibility.get(table_id, "restricted")  # absent: unregistered (see read_facts)
        return visibility == "all" or (visibility == "inherit" and source in facts.visible_sources)


async def access_for(instance: Instance, user: User) -> Access:
    if user.role == "admin":
        return Access(user, None)
    async with instance.control.read() as conn:
        return Access(user, await read_facts(conn, user.id))


async def can_read(instance: Instance, user: User, table_id: str) -> bool:
    return (await access_for(instance, user)).can_read(table_id)


async def readable_table_ids(instance: Instance, user: User) -> set[str]:
    """Ids of the served tables `user` may read (a table must be served to be readable)."""
    if instance.serving is None:
        return set()
    access = await access_for(instance, user)
    return {t.id for t in instance.serving.catalog.tables() if access.can_read(t.id)}
