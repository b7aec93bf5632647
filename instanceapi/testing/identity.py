"""Keystone's data: domain, projects, users, roles, application credentials and tokens.

Not thread-safe by itself: callers hold the cloud's lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import secrets
import uuid
from collections import OrderedDict
from typing import Any

from instanceapi.testing.rules import expand_roles

DOMAIN_ID = "default"
DOMAIN_NAME = "Default"
MAX_TOKENS = 200_000


class AuthError(Exception):
    """Authentication failed: Keystone answers 401."""


class BadAuthRequest(Exception):
    """The auth request body is malformed: Keystone answers 400."""


@dataclasses.dataclass(slots=True)
class User:
    """A user with roles on exactly one project (its default project)."""

    id: str
    name: str
    password: str = dataclasses.field(repr=False)
    project_id: str
    roles: tuple[str, ...]
    list_all_projects: bool = False


@dataclasses.dataclass(slots=True)
class AppCredential:
    """An application credential of one user."""

    id: str
    name: str
    user_id: str
    secret: str = dataclasses.field(repr=False)
    roles: tuple[str, ...]
    access_rules: list[dict[str, str]] | None


@dataclasses.dataclass(slots=True)
class Token:
    """An issued token."""

    id: str = dataclasses.field(repr=False)
    user_id: str
    project_id: str
    roles: tuple[str, ...]
    methods: tuple[str, ...]
    issued_at: dt.datetime
    expires_at: dt.datetime
    app_cred_id: str | None = None
    revoked: bool = False


class Identity:
    """All identity state."""

    def __init__(self) -> None:
        self.projects: dict[str, str] = {}  # name -> id
        self.users: dict[str, User] = {}  # name -> user
        self.role_ids: dict[str, str] = {}
        self.app_creds: dict[str, AppCredential] = {}
        self.tokens: OrderedDict[str, Token] = OrderedDict()

    def add_project(self, name: str) -> str:
        """Create the project if needed; return its id."""
        if name not in self.projects:
            self.projects[name] = uuid.uuid4().hex
        return self.projects[name]

    def project_name(self, project_id: str) -> str:
        """Name of a project id."""
        for name, pid in self.projects.items():
            if pid == project_id:
                return name
        raise KeyError(project_id)

    def role_id(self, role: str) -> str:
        """Stable id of a role name."""
        return self.role_ids.setdefault(role, uuid.uuid4().hex)

    def add_user(
        self,
        name: str,
        password: str,
        project: str,
        roles: tuple[str, ...] | list[str],
        list_all_projects: bool = False,
    ) -> User:
        """Create (or replace) a user with roles on ``project``."""
        old = self.users.get(name)
        user = User(
            id=old.id if old else uuid.uuid4().hex,
            name=name,
            password=password,
            project_id=self.add_project(project),
            roles=expand_roles(tuple(roles)),
            list_all_projects=list_all_projects,
        )
        self.users[name] = user
        return user

    def user_by_id(self, user_id: str) -> User:
        """Look a user up by id."""
        for user in self.users.values():
            if user.id == user_id:
                return user
        raise KeyError(user_id)

    def add_app_credential(
        self,
        user: str,
        secret: str,
        name: str | None,
        roles: list[str] | None,
        access_rules: list[dict[str, str]] | None,
    ) -> AppCredential:
        """Create an application credential for ``user``."""
        owner = self.users[user]
        if roles is not None and not set(roles) <= set(owner.roles):
            raise ValueError("an application credential cannot have roles its user lacks")
        cred = AppCredential(
            id=uuid.uuid4().hex,
            name=name or f"appcred-{len(self.app_creds) + 1}",
            user_id=owner.id,
            secret=secret,
            roles=expand_roles(tuple(roles)) if roles is not None else owner.roles,
            access_rules=[{"id": uuid.uuid4().hex, **r} for r in access_rules]
            if access_rules
            else None,
        )
        self.app_creds[cred.id] = cred
        return cred

    # -- authentication -------------------------------------------------

    def _find_user(self, spec: dict[str, Any]) -> User:
        """Resolve ``{"id": ..}`` or ``{"name": .., "domain": {..}}``."""
        if not isinstance(spec, dict):
            raise BadAuthRequest("user must be an object")
        if "id" in spec:
            try:
                return self.user_by_id(str(spec["id"]))
            except KeyError:
                raise AuthError from None
        domain = spec.get("domain")
        if not isinstance(domain, dict):
            raise BadAuthRequest("user domain is required when the user is given by name")
        self._check_domain(domain)
        user = self.users.get(str(spec.get("name")))
        if user is None:
            raise AuthError
        return user

    @staticmethod
    def _check_domain(domain: dict[str, Any]) -> None:
        if domain.get("id", DOMAIN_ID) != DOMAIN_ID or domain.get("name", DOMAIN_NAME) != (
            DOMAIN_NAME
        ):
            raise AuthError

    def _scope_project(self, user: User, scope: object) -> str:
        """Project id the token will be scoped to."""
        if not scope:
            return user.project_id
        if not isinstance(scope, dict) or not isinstance(scope.get("project"), dict):
            raise AuthError  # domain/system scope: this user has no role there
        project = scope["project"]
        if "id" in project:
            pid = str(project["id"])
        else:
            self._check_domain(project.get("domain") or {})
            pid = self.projects.get(str(project.get("name")), "")
        if pid != user.project_id:
            raise AuthError
        return pid

    def authenticate(self, body: object, now: dt.datetime, ttl: float) -> Token:
        """Validate a POST /v3/auth/tokens body and issue a token."""
        try:
            auth = body["auth"]  # type: ignore[index]
            identity = auth["identity"]
            methods = tuple(identity["methods"])
        except (KeyError, TypeError):
            raise BadAuthRequest("auth.identity.methods is required") from None
        if methods == ("password",):
            spec = identity.get("password", {}).get("user")
            user = self._find_user(spec)
            given = str(spec.get("password", ""))
            if not hmac.compare_digest(given.encode(), user.password.encode()):
                raise AuthError
            pid, roles, cred = self._scope_project(user, auth.get("scope")), user.roles, None
        elif methods == ("application_credential",):
            cred = self._find_app_cred(identity.get("application_credential"))
            user = self.user_by_id(cred.user_id)
            pid, roles = user.project_id, cred.roles
        elif methods == ("token",):
            old = self.valid_token(str(identity.get("token", {}).get("id", "")), now)
            if old is None or old.app_cred_id:
                raise AuthError
            user = self.user_by_id(old.user_id)
            pid, roles, cred = self._scope_project(user, auth.get("scope")), user.roles, None
        else:
            raise AuthError
        return self._issue(user, pid, roles, methods, cred, now, ttl)

    def _find_app_cred(self, spec: object) -> AppCredential:
        if not isinstance(spec, dict) or "secret" not in spec:
            raise BadAuthRequest("application_credential needs a secret")
        if "id" in spec:
            cred = self.app_creds.get(str(spec["id"]))
        else:
            user = self._find_user(spec.get("user") or {})
            matches = [
                c
                for c in self.app_creds.values()
                if c.user_id == user.id and c.name == spec.get("name")
            ]
            cred = matches[0] if matches else None
        if cred is None or not hmac.compare_digest(
            str(spec["secret"]).encode(), cred.secret.encode()
        ):
            raise AuthError
        return cred

    def _issue(
        self,
        user: User,
        project_id: str,
        roles: tuple[str, ...],
        methods: tuple[str, ...],
        cred: AppCredential | None,
        now: dt.datetime,
        ttl: float,
    ) -> Token:
        token = Token(
            id="gAAAAA" + secrets.token_urlsafe(96),
            user_id=user.id,
            project_id=project_id,
            roles=roles,
            methods=methods,
            issued_at=now,
            expires_at=now + dt.timedelta(seconds=ttl),
            app_cred_id=cred.id if cred else None,
        )
        self.tokens[token.id] = token
        while len(self.tokens) > MAX_TOKENS:
            self.tokens.popitem(last=False)
        return token

    def lookup_token(self, token_id: str) -> Token | None:
        """The token record, valid or not."""
        return self.tokens.get(token_id)

    def valid_token(self, token_id: str, now: dt.datetime) -> Token | None:
        """The token if it is known, unexpired and unrevoked."""
        token = self.tokens.get(token_id)
        if token is None or token.revoked or token.expires_at <= now:
            return None
        return token

    def expire_all(self, now: dt.datetime) -> None:
        """Make every issued token expired."""
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, now - dt.timedelta(seconds=1))

    def revoke_all(self) -> None:
        """Revoke every issued token."""
        for token in self.tokens.values():
            token.revoked = True
