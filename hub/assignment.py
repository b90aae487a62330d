"""Which hub should hold each lease: a pure function of the store's view of leases and members (hub/leases.py
acts on it at every tick)."""

from __future__ import annotations

from collections.abc import Sequence

from hub.store import LeaseRow, MemberRow


def assign(leases: Sequence[LeaseRow], members: Sequence[MemberRow]) -> dict[str, str]:
    """Which member should hold each lease: {lease name: member id}. A pure function of the view.

    Leases are spread over the members that serve their group, so that each member of a set of members gets
    as many as the others, give or take one. A lease stays with its live owner while the owner is under its
    quota (members that hold more get the larger quotas first), so that a member joining or leaving moves only
    the leases it must. Leases of a group that no live member serves are left out.
    """
    groups: dict[str, list[str]] = {}
    for member in members:
        for group in member.groups:
            groups.setdefault(group, []).append(member.member)
    by_members: dict[tuple[str, ...], list[LeaseRow]] = {}
    for row in leases:
        eligible = tuple(sorted(groups.get(row.group, ())))
        if eligible:
            by_members.setdefault(eligible, []).append(row)
    out: dict[str, str] = {}
    for eligible, rows in by_members.items():
        rows.sort(key=lambda r: r.name)
        base, extra = divmod(len(rows), len(eligible))
        kept: dict[str, list[str]] = {m: [] for m in eligible}
        for row in rows:
            if row.held and row.owner is not None and row.owner in kept:
                kept[row.owner].append(row.name)
        order = sorted(eligible, key=lambda m: (-len(kept[m]), m))
        quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(order)}
        count = dict.fromkeys(eligible, 0)
        for owner in eligible:
            for name in kept[owner][: quota[owner]]:
                out[name] = owner
                count[owner] += 1
        for row in rows:
            if row.name in out:
                continue
            taker = min((m for m in eligible if count[m] < quota[m]), key=lambda m: (count[m], m))
            out[row.name] = taker
            count[taker] += 1
    return out
