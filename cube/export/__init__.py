"""Take Cube tasks to a real orchestrator: Kubernetes manifests or a Nomad job.

A Cube task already says what Kubernetes and Nomad need to know: an image, ports, CPU,
memory and disk, a health check, how it should be restarted. :func:`export` writes that
down in their terms; what does not carry over (a process-runtime image, a fixed host
port, Cube's own restart schedule...) comes back as :class:`Caveat` records, never
silently dropped::

    from cube.export import export

    out = export([task], "kubernetes")     # or "nomad"
    print(out.text)                        # YAML (Kubernetes) or JSON (Nomad)
    for caveat in out.caveats:
        print("warning:", caveat)

The mapping, field by field, is in the docstrings of :mod:`cube.export.kubernetes` and
:mod:`cube.export.nomad`. From a shell: ``cube export --to kubernetes TASK_ID``,
``--all`` for every task of a running cluster, or ``-f task.json`` for a task file.
"""

from cube.export.common import Caveat, Exported, Options, export

__all__ = ["Caveat", "Exported", "Options", "export"]
