"""What every store must do alike, as operations to run on two stores and compare.

A store on a new backend (etcd) must answer every sequence of operations as
:class:`~cube.store.DiskStore` does: same values, same key order, same errors. The
tests generate sequences (hypothesis), run each on a fresh store of both kinds, and
compare what they observed, operation by operation.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from cube.store import Store

KEYS = st.text(alphabet="ab-/.0Zé", min_size=1, max_size=4)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)

OPERATIONS = st.one_of(
    st.tuples(st.just("put"), KEYS, VALUES),
    st.tuples(st.just("get"), KEYS),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("contains"), KEYS),
    st.tuples(st.just("keys")),
    st.tuples(st.just("items")),
    st.tuples(st.just("count")),
    st.tuples(st.just("first_keys"), st.integers(0, 4), st.booleans()),
)


def apply(store: Store[Any], operation: tuple[Any, ...]) -> Any:
    """Run one operation; what it returned or which error it raised."""
    name, *args = operation
    try:
        if name == "put":
            store.put(args[0], args[1])
            return None
        if name == "get":
            return store.get(args[0])
        if name == "delete":
            store.delete(args[0])
            return None
        if name == "contains":
            return args[0] in store
        if name == "keys":
            return list(store.keys())
        if name == "items":
            return store.items()
        if name == "count":
            return (store.count(), len(store))
        if name == "first_keys":
            return store.first_keys(args[0], newest=args[1])
    except KeyError:
        return "KeyError"
    raise AssertionError(f"unknown operation {name}")


def observe(store: Store[Any], operations: list[tuple[Any, ...]]) -> list[Any]:
    """Every operation's outcome, then the final contents: what is compared."""
    return [apply(store, op) for op in operations] + [store.items(), store.unreadable()]
