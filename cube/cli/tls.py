"""``cube tls``: make a local CA and certificates for TLS between Cube's components.

As ``nomad tls ca create`` and ``nomad tls cert create``::

    cube tls ca create --dir tls
    cube tls cert create --ca tls --name worker-1 --hosts 127.0.0.1,localhost

Each command says where it wrote its files and how to use them.
"""

from __future__ import annotations

from pathlib import Path

import click

from cube.tls import CA_ENV, CERT_ENV, KEY_ENV, ServerTLS


@click.group()
def tls() -> None:
    """Make a local CA and certificates, to turn on TLS between components."""


@tls.group()
def ca() -> None:
    """The certificate authority that signs every component's certificate."""


@tls.group()
def cert() -> None:
    """Certificates for managers and workers (and clients)."""


@ca.command("create")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="Where to write cube-ca.pem and cube-ca-key.pem.",
)
@click.option("--days", type=click.IntRange(1, 20 * 365), default=5 * 365, help="Valid for.")
def ca_create(directory: Path, days: int) -> None:
    """Create a new CA (refuses to replace one)."""
    from cube.certs import create_ca

    try:
        issued = create_ca(directory, days=days)
    except (FileExistsError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"==> CA certificate saved to: {issued.cert}")
    click.echo(f"==> CA key saved to: {issued.key} (keep it private)")
    click.echo(f"Clients trust it with: export {CA_ENV}={issued.cert}")


@cert.command("create")
@click.option(
    "--ca",
    "ca_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The directory of the CA (from `cube tls ca create`).",
)
@click.option("--name", required=True, help="Whose certificate: NAME.pem and NAME-key.pem.")
@click.option(
    "--hosts",
    default="127.0.0.1,localhost",
    help="Host names and IP addresses it answers on, comma-separated.",
)
@click.option(
    "--dir",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write it. [default: the CA's directory]",
)
@click.option("--days", type=click.IntRange(1, 5 * 365), default=365, help="Valid for.")
def cert_create(ca_dir: Path, name: str, hosts: str, out_dir: Path | None, days: int) -> None:
    """Create a certificate signed by the CA, to serve and to be a client."""
    from cube.certs import create_cert

    names = [h.strip() for h in hosts.split(",") if h.strip()]
    try:
        issued = create_cert(ca_dir, name, names, out_dir, days=days)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    except (FileExistsError, FileNotFoundError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"==> Certificate saved to: {issued.cert}")
    click.echo(f"==> Key saved to: {issued.key} (keep it private)")
    click.echo(f"Serve with it: export {CERT_ENV}={issued.cert} {KEY_ENV}={issued.key}")


def server_tls() -> ServerTLS | None:
    """The TLS a ``cube worker`` or ``cube manager`` serves with (from the environment),
    checked before anything starts: a missing file is said at once, by name."""
    try:
        found = ServerTLS.from_env()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if found is not None:
        for env, path in ((CERT_ENV, found.cert), (KEY_ENV, found.key)):
            if not path.is_file():
                raise click.ClickException(f"{env}: no file {path}")
    return found
