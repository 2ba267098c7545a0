"""Who may do what: separate credentials for managers and for clients.

One token guarding everything means every user who may read a worker's tasks may also
order it to start and stop them. Here, as Nomad's ACLs separate agents from operators,
a server can take three bearer tokens, each optional:

- the **admin** token (``--token``, ``CUBE_TOKEN``): everything, as before roles;
- the **manager** token (``CUBE_MANAGER_TOKEN``): what a manager sends its workers; a
  worker takes orders (``POST /tasks``, ``DELETE /tasks/{id}``, ``PUT /leader``: any
  method but a read) only with it (or admin);
- the **client** token (``CUBE_CLIENT_TOKEN``): what a person or a program sends; a
  manager takes submissions, stops and reads with it, a worker only reads.

A server with none of them set asks for none (a laptop, a notebook, Binder). A request
without a token, or with one the server does not know, is 401; a known token that may
not do what it asks is 403 saying which credential would; neither changes anything. A
request that may not give orders is also not *trusted* (:func:`cube.http.trusted`): a
read carrying a leader's epoch or an acknowledgement from a client is served, and what
it says is ignored.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bottle

ADMIN, MANAGER, CLIENT = "admin", "manager", "client"
MANAGER_ENV, CLIENT_ENV = "CUBE_MANAGER_TOKEN", "CUBE_CLIENT_TOKEN"
READS = frozenset({"GET", "HEAD", "OPTIONS"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cube"'}
CREDENTIAL = {
    ADMIN: "the admin token (CUBE_TOKEN)",
    MANAGER: f"the manager token ({MANAGER_ENV})",
    CLIENT: f"the client token ({CLIENT_ENV})",
}


@dataclass(frozen=True)
class Access:
    """The tokens one server knows, and which roles may give orders and which may read.
    Build it with :meth:`worker` or :meth:`manager`."""

    tokens: tuple[tuple[str, str], ...]  # (role, token), only those set
    orders: frozenset[str]
    reads: frozenset[str]

    @classmethod
    def worker(
        cls, admin: str | None = None, manager: str | None = None, client: str | None = None
    ) -> Access:
        """A worker: orders from the manager token, reads from any."""
        tokens = _set((ADMIN, admin), (MANAGER, manager), (CLIENT, client))
        return cls(tokens, frozenset({ADMIN, MANAGER}), frozenset({ADMIN, MANAGER, CLIENT}))

    @classmethod
    def manager(cls, admin: str | None = None, client: str | None = None) -> Access:
        """A manager: submissions, stops and reads from the client token."""
        tokens = _set((ADMIN, admin), (CLIENT, client))
        return cls(tokens, frozenset({ADMIN, CLIENT}), frozenset({ADMIN, CLIENT}))

    def __bool__(self) -> bool:
        """Whether any token is required."""
        return bool(self.tokens)

    def role(self, header: str) -> str | None:
        """The role whose token ``header`` (``Bearer T``) carries, or None. Every known
        token is compared, each in constant time, so timing tells nothing of which."""
        given = header.encode()
        found = None
        for role, token in self.tokens:
            if hmac.compare_digest(given, f"Bearer {token}".encode()):
                found = found or role
        return found

    def needed(self, method: str) -> frozenset[str]:
        return self.reads if method in READS else self.orders

    def plugin(self, is_open: Callable[[], bool], trusted_key: str) -> Callable[..., Any]:
        """The Bottle plugin that admits a request by its role; an open route
        (``/health``: ``is_open()`` says) is served to anyone, and told whether the caller
        may give orders."""

        def plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                request = bottle.request
                role = self.role(request.get_header("Authorization", ""))
                request.environ[trusted_key] = role in self.orders
                if not is_open():
                    self.admit(role, request.method, request.path)
                return callback(*args, **kwargs)

            return wrapper

        return plugin

    def admit(self, role: str | None, method: str, path: str) -> None:
        """Raise 401 for no token or an unknown one, 403 for one that may not."""
        needed = self.needed(method)
        if role in needed:
            return
        which = " or ".join(CREDENTIAL[r] for r in sorted(needed))
        if role is None:
            message = f"missing or wrong token: {method} {path} needs {which}"
            message += " in 'Authorization: Bearer <token>'"
            raise bottle.HTTPError(401, message, headers=CHALLENGE)
        raise bottle.HTTPError(
            403, f"{CREDENTIAL[role]} may not {method} {path} here: it needs {which}"
        )


def _set(*pairs: tuple[str, str | None]) -> tuple[tuple[str, str], ...]:
    return tuple((role, token) for role, token in pairs if token)


def worker_access(admin: str | None) -> Access:
    """A ``cube worker``'s access: ``--token`` and the role tokens in the environment."""
    env = os.environ
    return Access.worker(admin, env.get(MANAGER_ENV), env.get(CLIENT_ENV))


def manager_access(admin: str | None) -> Access:
    """A ``cube manager``'s access: ``--token`` and the client token in the environment
    (its manager token is what it sends to workers, not what it takes)."""
    return Access.manager(admin, os.environ.get(CLIENT_ENV))
