"""Whether SLURM can ever run the job ``hydra/launcher=slurm`` asks for, checked before submission.

SLURM accepts a request no node of the partition can hold and leaves it pending forever
(reason ``PartitionConfig``, e.g. ``cpus_per_task=8`` on 2-CPU nodes), while the launcher waits
in silence; other requests (``--mem`` above the nodes, a GPU on a CPU-only partition) are refused
with a message that names no trainlab key. :func:`check_launcher` compares the launcher's
request with the partition's nodes as ``scontrol show partition/node`` describes them and stops
the sweep with one message naming each ``hydra.launcher.*`` key that cannot fit and the nodes'
limits. The partition's nodes also size the default ``cpus_per_task`` (:func:`cpus_per_task`).

Called by the ``trainlab.hydra_callbacks.SlurmPreflight`` Hydra callback on the submitting
machine; the parsing and the decision are pure functions of ``scontrol``'s text. Nothing here
imports torch.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from typing_extensions import override

log = logging.getLogger(__name__)

SCONTROL_TIMEOUT_S = 30
UNLIMITED = ("UNLIMITED", "INFINITE", "NONE", "")
# ``KEY=value`` starts a field of scontrol's --oneliner output; words after a value without ``=``
# belong to it (``OS=Linux 6.1.0 #1 SMP``)
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class Node:
    """One node as the scheduler sees it (sizes a job may ask for, after the site's reserves)."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int
    partitions: tuple[str, ...]


@dataclass(frozen=True)
class Partition:
    """A partition's limits; None where unlimited."""

    name: str
    default: bool
    max_time_min: int | None = None
    max_nodes: int | None = None
    max_cpus_per_node: int | None = None
    max_mem_per_node_mb: int | None = None


@dataclass(frozen=True)
class Request:
    """What the launcher asks SLURM for, per the submitit plugin's keys (``hydra.launcher.*``)."""

    partition: str | None
    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int | None = None   # None: SLURM's default, one CPU per task
    gpus_per_node: int | None = None
    mem_gb: float | None = None        # None: the partition's default memory
    timeout_min: int | None = None

    @classmethod
    def from_launcher(cls, launcher: Mapping) -> Request:
        """The request in a resolved ``hydra.launcher`` node (a dict or DictConfig)."""
        return cls(partition=launcher.get("partition"), nodes=int(launcher.get("nodes") or 1),
                   tasks_per_node=int(launcher.get("tasks_per_node") or 1),
                   cpus_per_task=launcher.get("cpus_per_task"),
                   gpus_per_node=launcher.get("gpus_per_node"), mem_gb=launcher.get("mem_gb"),
                   timeout_min=launcher.get("timeout_min"))

    @property
    def cpus_per_node(self) -> int:
        return self.tasks_per_node * (self.cpus_per_task or 1)


def records(text: str) -> list[dict[str, str]]:
    """The records of ``scontrol show <entity> --oneliner``: one dict of fields per line."""
    found = []
    for line in text.splitlines():
        fields: dict[str, str] = {}
        key = None
        for word in line.split():
            match = _FIELD.match(word)
            if match:
                key, value = match.groups()
                fields[key] = value
            elif key is not None:
                fields[key] += " " + word
        if fields:
            found.append(fields)
    return found


def _number(value: str | None) -> int | None:
    """An integer field, None for ``UNLIMITED``, missing or ``N/A``."""
    if value is None or value.upper() in UNLIMITED or not value.isdigit():
        return None
    return int(value)


def gres_gpus(gres: str) -> int:
    """GPUs in a node's ``Gres`` field: ``gpu:4``, ``gpu:a100:4(S:0-1),shard:8`` -> 4, ``(null)`` -> 0."""
    total = 0
    for entry in re.sub(r"\([^)]*\)", "", gres).split(","):
        name, *rest = entry.strip().split(":")
        if name == "gpu":
            count = rest[-1] if rest else "1"
            total += int(count) if count.isdigit() else 1
    return total


def minutes(value: str | None) -> int | None:
    """A SLURM duration (``UNLIMITED``, ``[D-]HH:MM:SS``, ``MM:SS``, ``MM``) in whole minutes."""
    if value is None or value.upper() in UNLIMITED:
        return None
    days, _, clock = value.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    hours, mins, secs = ([0, 0] + parts)[-3:] if len(parts) > 1 else (0, parts[0], 0)
    return int(days or 0) * 24 * 60 + hours * 60 + mins + (secs > 0)


def parse_nodes(text: str) -> list[Node]:
    """Nodes from ``scontrol show node --oneliner``."""
    nodes = []
    for rec in records(text):
        cpus = _number(rec.get("CPUEfctv")) or _number(rec.get("CPUTot")) or 0
        mem = (_number(rec.get("RealMemory")) or 0) - (_number(rec.get("MemSpecLimit")) or 0)
        parts = tuple(p for p in rec.get("Partitions", "").split(",") if p)
        nodes.append(Node(rec.get("NodeName", "?"), cpus, mem, gres_gpus(rec.get("Gres", "")), parts))
    return nodes


def parse_partitions(text: str) -> list[Partition]:
    """Partitions from ``scontrol show partition --oneliner``."""
    return [Partition(rec.get("PartitionName", "?"), rec.get("Default") == "YES",
                      minutes(rec.get("MaxTime")), _number(rec.get("MaxNodes")),
                      _number(rec.get("MaxCPUsPerNode")), _number(rec.get("MaxMemPerNode")))
            for rec in records(text)]


@dataclass(frozen=True)
class Cluster:
    """What ``scontrol`` says about a cluster: its partitions and nodes."""

    partitions: tuple[Partition, ...]
    nodes: tuple[Node, ...]

    def partition(self, name: str | None) -> Partition | None:
        """The partition ``name``, or the default one for None."""
        for part in self.partitions:
            if part.name == name or (name is None and part.default):
                return part
        return None

    def nodes_of(self, part: Partition) -> list[Node]:
        return [n for n in self.nodes if part.name in n.partitions]


def _scontrol(*args: str) -> str | None:
    try:
        done = subprocess.run(["scontrol", *args, "--oneliner"], capture_output=True, text=True,
                              timeout=SCONTROL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.debug("scontrol %s: %s", " ".join(args), err)
        return None
    if done.returncode != 0:
        log.debug("scontrol %s: %s", " ".join(args), done.stderr.strip())
        return None
    return done.stdout


@functools.lru_cache(maxsize=1)
def query_cluster() -> Cluster | None:
    """The partitions and nodes of the cluster ``scontrol`` reaches; None when it reaches none."""
    if shutil.which("scontrol") is None:
        return None
    parts, nodes = _scontrol("show", "partition"), _scontrol("show", "node")
    if parts is None or nodes is None:
        return None
    return Cluster(tuple(parse_partitions(parts)), tuple(parse_nodes(nodes)))


def node_limits(part: Partition, nodes: list[Node]) -> str:
    """The partition's node shapes in words: ``1 node (vm): 2 CPUs, 23.5 GB, 0 GPUs``."""
    shapes = Counter((n.cpus, n.mem_mb, n.gpus) for n in nodes)
    words = [f"{count} x ({cpus} CPUs, {mem / 1024:.1f} GB, {gpus} GPUs)"
             for (cpus, mem, gpus), count in sorted(shapes.items(), reverse=True)[:4]]
    if len(nodes) == 1:
        words = [f"1 node ({nodes[0].name}): " + words[0].partition("(")[2].rstrip(")")]
    limits = [f"MaxTime={part.max_time_min} min"] if part.max_time_min is not None else []
    limits += [f"MaxCPUsPerNode={part.max_cpus_per_node}"] if part.max_cpus_per_node else []
    limits += [f"MaxMemPerNode={part.max_mem_per_node_mb} MB"] if part.max_mem_per_node_mb else []
    return f"partition '{part.name}': " + "; ".join(words + limits)


def _fits(req: Request, part: Partition, node: Node) -> bool:
    cpus = min(node.cpus, part.max_cpus_per_node or node.cpus)
    mem = min(node.mem_mb, part.max_mem_per_node_mb or node.mem_mb)
    return (req.cpus_per_node <= cpus and (req.gpus_per_node or 0) <= node.gpus
            and (req.mem_gb is None or req.mem_gb * 1024 <= mem))


def problems(req: Request, cluster: Cluster) -> list[str]:
    """Why SLURM could never start ``req`` on ``cluster``, one line per launcher key; [] if it could.

    Only what no waiting can change is reported (node sizes, partition limits), never the
    current load or node states.
    """
    part = cluster.partition(req.partition)
    if part is None:
        names = ", ".join(p.name for p in cluster.partitions) or "none"
        if req.partition is None:
            return [f"hydra.launcher.partition=null and the cluster has no default partition: "
                    f"name one of {names} (hydra.launcher.partition=NAME)"]
        return [f"hydra.launcher.partition={req.partition}: no such partition; the cluster has {names}"]
    nodes = cluster.nodes_of(part)
    if not nodes:
        return [f"hydra.launcher.partition={part.name}: the partition has no nodes"]
    found = []
    cpus = max(min(n.cpus, part.max_cpus_per_node or n.cpus) for n in nodes)
    if req.cpus_per_node > cpus:
        fix = (f"set hydra.launcher.cpus_per_task={cpus // req.tasks_per_node} or less"
               if cpus >= req.tasks_per_node else "use fewer tasks (trainer.devices) or another partition")
        found.append(f"hydra.launcher.cpus_per_task={req.cpus_per_task} x tasks_per_node="
                     f"{req.tasks_per_node} (one task per trainer.devices) asks {req.cpus_per_node} "
                     f"CPUs per node; no node has more than {cpus}: {fix}")
    gpus = max(n.gpus for n in nodes)
    if (req.gpus_per_node or 0) > gpus:
        found.append(f"hydra.launcher.gpus_per_node={req.gpus_per_node} (from trainer.accelerator "
                     "and trainer.devices): "
                     + (f"no node has more than {gpus} GPUs" if gpus else "the nodes have no GPU")
                     + ": use trainer=cpu, fewer trainer.devices, or a GPU partition "
                     "(hydra.launcher.partition=NAME)")
    mem = max(min(n.mem_mb, part.max_mem_per_node_mb or n.mem_mb) for n in nodes)
    if req.mem_gb is not None and req.mem_gb * 1024 > mem:
        found.append(f"hydra.launcher.mem_gb={req.mem_gb} asks {req.mem_gb * 1024:.0f} MB per node; "
                     f"no node offers more than {mem} MB: set hydra.launcher.mem_gb={mem // 1024} "
                     "or less, or null for the partition's default")
    if not found and not any(_fits(req, part, n) for n in nodes):
        found.append(f"hydra.launcher.cpus_per_task={req.cpus_per_task}, gpus_per_node="
                     f"{req.gpus_per_node}, mem_gb={req.mem_gb}: each fits some node, but no node "
                     "has all of them at once")
    fitting = sum(_fits(req, part, n) for n in nodes)
    if part.max_nodes is not None and req.nodes > part.max_nodes:
        found.append(f"hydra.launcher.nodes={req.nodes} (trainer.num_nodes) is above the "
                     f"partition's MaxNodes={part.max_nodes}")
    elif not found and req.nodes > fitting:
        found.append(f"hydra.launcher.nodes={req.nodes} (trainer.num_nodes) but only {fitting} "
                     f"node(s) of the partition can hold one node's share of the job")
    if req.timeout_min is not None and part.max_time_min is not None \
            and req.timeout_min > part.max_time_min:
        found.append(f"hydra.launcher.timeout_min={req.timeout_min} is above the partition's "
                     f"MaxTime of {part.max_time_min} min: set hydra.launcher.timeout_min="
                     f"{part.max_time_min} or less")
    return found


def check_launcher(launcher: Mapping, cluster: Cluster | None = None) -> str | None:
    """The message that stops a sweep whose SLURM request can never run, or None if it can.

    Args:
        launcher: the resolved ``hydra.launcher`` node of the SLURM launcher.
        cluster: what to check against; default: :func:`query_cluster`. With no cluster
            reachable the check is skipped (None): sbatch itself then reports what is wrong.
    """
    cluster = cluster if cluster is not None else query_cluster()
    if cluster is None:
        log.warning("scontrol reaches no SLURM cluster from here: the job size is not checked "
                    "before submission")
        return None
    req = Request.from_launcher(launcher)
    found = problems(req, cluster)
    if not found:
        return None
    part = cluster.partition(req.partition)
    where = node_limits(part, cluster.nodes_of(part)) if part is not None else "the cluster"
    return ("SLURM could never start this job (" + where + "):\n  " + "\n  ".join(found))


def cpus_per_task(at_most: int, partition: str | None, tasks_per_node: int,
                  cluster: Cluster | None = None) -> int:
    """Default ``hydra.launcher.cpus_per_task``: ``at_most``, or fewer when the partition's
    largest node cannot give that many to each of ``tasks_per_node`` tasks (at least 1).

    Without a reachable cluster (composing on a laptop, unit tests): ``at_most``.
    """
    cluster = cluster if cluster is not None else query_cluster()
    part = cluster.partition(partition) if cluster is not None else None
    nodes = cluster.nodes_of(part) if part is not None else []
    if not nodes:
        return at_most
    largest = max(min(n.cpus, part.max_cpus_per_node or n.cpus) for n in nodes)
    return max(1, min(at_most, largest // max(1, tasks_per_node)))


def auto_accelerator_note(accelerator: str, partition: str | None,
                          cluster: Cluster | None = None) -> str | None:
    """A note for ``trainer.accelerator=auto`` on a partition with GPUs: the job asks for none
    (:func:`trainlab.resolvers.slurm_gpus_per_node`), so it trains on the CPU."""
    if str(accelerator) != "auto":
        return None
    cluster = cluster if cluster is not None else query_cluster()
    part = cluster.partition(partition) if cluster is not None else None
    if part is None or not any(n.gpus for n in cluster.nodes_of(part)):
        return None
    return (f"trainer.accelerator=auto asks SLURM for no GPU, so the jobs train on the CPU "
            f"although partition '{part.name}' has GPUs: use trainer=gpu (or trainer=ddp "
            "trainer.devices=N) to get them")


SACCT_WARNING = "Bypassing sacct error"


class SacctWarningOnce(logging.Filter):
    """Pass submitit's "Bypassing sacct error" warning once, then drop it.

    Without SLURM accounting ``sacct`` fails, and submitit warns on every poll of a job's state
    while it waits; it then learns that a job ended from the job's result file, so nothing is
    lost but the noise.
    """

    def __init__(self) -> None:
        super().__init__()
        self.shown = False

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        said = record.getMessage()
        if SACCT_WARNING not in said:
            return True
        if self.shown:
            return False
        self.shown = True
        record.msg = ("sacct gives no job states here (no SLURM accounting?): submitit sees a job "
                      "end by its result file; this warning is shown once, not on every poll. "
                      "submitit said: %s")
        record.args = (said,)
        return True


def quiet_sacct_warnings(logger: logging.Logger | None = None) -> None:
    """Install :class:`SacctWarningOnce` on submitit's logger (idempotent)."""
    logger = logger or logging.getLogger("submitit")
    if not any(isinstance(f, SacctWarningOnce) for f in logger.filters):
        logger.addFilter(SacctWarningOnce())
