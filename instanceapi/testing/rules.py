"""Keystone role implication and application-credential access rules."""

from __future__ import annotations

import re

# Implied roles after `keystone-manage bootstrap`.
IMPLIES: dict[str, tuple[str, ...]] = {
    "admin": ("manager", "member", "reader"),
    "manager": ("member", "reader"),
    "member": ("reader",),
}


def expand_roles(roles: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Add implied roles, keeping a stable order."""
    out: list[str] = []
    for role in roles:
        for name in (role, *IMPLIES.get(role, ())):
            if name not in out:
                out.append(name)
    return tuple(out)


def _glob_to_regex(path: str) -> re.Pattern[str]:
    """Keystone access-rule glob: ``*`` is one path segment, ``**`` any number."""
    parts = [p for p in path.strip("/").split("/") if p]
    regex = ""
    for part in parts:
        if part == "**":
            regex += "(?:/[^/]+)*"
        else:
            regex += "/" + "[^/]*".join(re.escape(s) for s in part.split("*"))
    return re.compile(f"^{regex}/?$")


def rule_allows(rules: list[dict[str, str]], service: str, method: str, path: str) -> bool:
    """True when one access rule matches the request."""
    for rule in rules:
        if rule.get("service") != service or rule.get("method", "").upper() != method.upper():
            continue
        if _glob_to_regex(rule.get("path", "")).match(path):
            return True
    return False
