"""Ports for the processes Cube starts are picked where no outgoing connection can take
them before the process listens: below the kernel's range for those."""

from __future__ import annotations

import socket

from cube.ports import _ephemeral_low, free, free_ports


def test_free_ports_are_below_the_range_outgoing_connections_take_theirs_from():
    ceiling = _ephemeral_low()
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(port < ceiling and free(port) for port in ports)


def test_consecutive_ports_are_one_run_of_free_ones():
    first, *rest = free_ports(4, consecutive=True)
    assert rest == [first + 1, first + 2, first + 3]


def test_a_port_someone_listens_on_is_not_free():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_ports(1)[0]))
        taken.listen()
        assert not free(taken.getsockname()[1])
