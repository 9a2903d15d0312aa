"""The SLURM launcher's request and its preflight check, without a cluster: scontrol's text is
recorded here (tests/test_slurm.py runs the same against a real one-node SLURM)."""

from __future__ import annotations

import logging

import pytest
from omegaconf import OmegaConf

from trainlab import slurm_check
from trainlab.hydra_callbacks import SlurmPreflight
from trainlab.resolvers import slurm_gpus_per_node
from trainlab.slurm_check import Cluster, Request, gres_gpus, minutes, problems

# `scontrol show node/partition --oneliner` of the one-node SLURM scripts/slurm_local.sh starts
# on a 2-CPU, 23.5 GB machine (Debian 12, slurm-wlm 22.05.8)
LOCAL_NODES = (
    "NodeName=vm Arch=x86_64 CoresPerSocket=2  CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=1.79 "
    "AvailableFeatures=(null) ActiveFeatures=(null) Gres=(null) NodeAddr=127.0.0.1 NodeHostName=vm "
    "Version=22.05.8 OS=Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=24105 "
    "AllocMem=0 FreeMem=18857 Sockets=1 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 "
    "Owner=N/A MCS_label=N/A Partitions=debug  BootTime=2026-12-01T09:54:22 "
    "CfgTRES=cpu=2,mem=24105M,billing=2 AllocTRES= CapWatts=n/a\n")
LOCAL_PARTITIONS = (
    "PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES "
    "QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO "
    "MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm "
    "State=UP TotalCPUs=2 TotalNodes=1 DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED "
    "TRES=cpu=2,mem=24105M,node=1,billing=2\n")
# a site with a CPU partition and a GPU partition of two node shapes
SITE_NODES = "".join(
    f"NodeName={name} CPUTot={cpus} CPUEfctv={cpus} Gres={gres} RealMemory={mem} "
    f"MemSpecLimit=1024 State=IDLE Partitions={parts}\n"
    for name, cpus, gres, mem, parts in (
        ("c1", 64, "(null)", 257024, "cpu"), ("c2", 64, "(null)", 257024, "cpu"),
        ("g1", 128, "gpu:a100:8(S:0-1)", 515072, "gpu"),
        ("g2", 32, "gpu:v100:2(S:0),gpu:v100:2(S:1),shard:8", 1031168, "gpu,long")))
SITE_PARTITIONS = (
    "PartitionName=cpu Default=YES MaxNodes=UNLIMITED MaxTime=1-00:00:00 MaxCPUsPerNode=UNLIMITED "
    "Nodes=c[1-2] MaxMemPerNode=UNLIMITED\n"
    "PartitionName=gpu Default=NO MaxNodes=2 MaxTime=2-00:00:00 MaxCPUsPerNode=96 Nodes=g[1-2] "
    "MaxMemPerNode=UNLIMITED\n"
    "PartitionName=long Default=NO MaxNodes=1 MaxTime=UNLIMITED Nodes=g2 MaxMemPerNode=131072\n")


def cluster(nodes: str, partitions: str) -> Cluster:
    return Cluster(tuple(slurm_check.parse_partitions(partitions)),
                   tuple(slurm_check.parse_nodes(nodes)))


LOCAL = cluster(LOCAL_NODES, LOCAL_PARTITIONS)
SITE = cluster(SITE_NODES, SITE_PARTITIONS)


def test_scontrol_records_are_parsed_into_node_and_partition_sizes():
    [node] = LOCAL.nodes
    assert node == slurm_check.Node("vm", cpus=2, mem_mb=24105, gpus=0, partitions=("debug",))
    assert slurm_check.records(LOCAL_NODES)[0]["OS"] == "Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0"
    [part] = LOCAL.partitions
    assert part == slurm_check.Partition("debug", default=True)  # every limit unlimited
    g1, g2 = SITE.nodes[2:]
    assert (g1.cpus, g1.gpus, g1.mem_mb) == (128, 8, 515072 - 1024)  # minus MemSpecLimit
    assert (g2.gpus, g2.partitions) == (4, ("gpu", "long"))
    gpu = SITE.partition("gpu")
    assert (gpu.max_time_min, gpu.max_nodes, gpu.max_cpus_per_node) == (2 * 24 * 60, 2, 96)
    assert SITE.partition(None).name == "cpu"  # the default partition


@pytest.mark.parametrize(("gres", "gpus"), [
    ("(null)", 0), ("", 0), ("gpu:4", 4), ("gpu", 1), ("gpu:a100:4(S:0-1)", 4),
    ("gpu:v100:2(S:0),gpu:v100:2(S:1),shard:8", 4), ("shard:8,gpu:a100:1(S:0,1)", 1),
])
def test_gpus_in_a_gres_field(gres, gpus):
    assert gres_gpus(gres) == gpus


@pytest.mark.parametrize(("text", "mins"), [
    ("UNLIMITED", None), ("INFINITE", None), ("1-00:00:00", 1440), ("02:00:00", 120),
    ("30:00", 30), ("00:30:01", 31), ("45", 45), ("2-12:00:00", 3600),
])
def test_slurm_durations_in_minutes(text, mins):
    assert minutes(text) == mins


def test_what_fits_the_local_node_passes():
    assert problems(Request(partition=None, cpus_per_task=2, timeout_min=240), LOCAL) == []
    assert problems(Request(partition="debug", tasks_per_node=2, cpus_per_task=1, gpus_per_node=0,
                            mem_gb=23), LOCAL) == []


def test_the_three_requests_the_issue_saw_fail_name_their_key_and_the_limit():
    """cpus_per_task=8 (SLURM pends it forever), mem_gb=32 and a GPU (sbatch refuses them)."""
    [cpus] = problems(Request(partition=None, cpus_per_task=8), LOCAL)
    assert cpus == ("hydra.launcher.cpus_per_task=8 x tasks_per_node=1 (one task per "
                    "trainer.devices) asks 8 CPUs per node; no node has more than 2: set "
                    "hydra.launcher.cpus_per_task=2 or less")
    [mem] = problems(Request(partition=None, mem_gb=32), LOCAL)
    assert mem.startswith("hydra.launcher.mem_gb=32 asks 32768 MB per node; no node offers more "
                          "than 24105 MB: set hydra.launcher.mem_gb=23 or less")
    [gpu] = problems(Request(partition=None, gpus_per_node=1), LOCAL)
    assert gpu.startswith("hydra.launcher.gpus_per_node=1") and "the nodes have no GPU" in gpu
    message = slurm_check.check_launcher(
        {"partition": None, "tasks_per_node": 2, "cpus_per_task": 2, "gpus_per_node": 0}, LOCAL)
    assert message.startswith("SLURM could never start this job (partition 'debug': 1 node (vm): "
                              "2 CPUs, 23.5 GB, 0 GPUs):\n  hydra.launcher.cpus_per_task=2 x "
                              "tasks_per_node=2")
    assert "set hydra.launcher.cpus_per_task=1 or less" in message


def test_site_limits_partitions_nodes_and_time():
    [nodes] = problems(Request(partition="gpu", nodes=2, gpus_per_node=8, tasks_per_node=8,
                               cpus_per_task=8), SITE)
    assert nodes.startswith("hydra.launcher.nodes=2 (trainer.num_nodes) but only 1 node(s)")
    [mixed] = problems(Request(partition="gpu", gpus_per_node=8, mem_gb=800), SITE)
    assert "each fits some node, but no node has all of them at once" in mixed  # g1: GPUs, g2: memory
    [max_nodes] = problems(Request(partition="long", nodes=2), SITE)
    assert max_nodes == "hydra.launcher.nodes=2 (trainer.num_nodes) is above the partition's MaxNodes=1"
    [capped] = problems(Request(partition="gpu", cpus_per_task=100), SITE)  # MaxCPUsPerNode=96
    assert "no node has more than 96" in capped
    [time_limit] = problems(Request(partition=None, timeout_min=2000), SITE)
    assert time_limit == ("hydra.launcher.timeout_min=2000 is above the partition's MaxTime of "
                          "1440 min: set hydra.launcher.timeout_min=1440 or less")
    [mem] = problems(Request(partition="long", mem_gb=200), SITE)  # MaxMemPerNode=131072
    assert "no node offers more than 131072 MB" in mem
    [name] = problems(Request(partition="a100"), SITE)
    assert name == "hydra.launcher.partition=a100: no such partition; the cluster has cpu, gpu, long"
    assert problems(Request(partition="gpu", nodes=2, gpus_per_node=2, tasks_per_node=2,
                            cpus_per_task=8, timeout_min=240), SITE) == []


def test_default_cpus_per_task_fits_the_partitions_largest_node(monkeypatch):
    assert slurm_check.cpus_per_task(8, None, 1, LOCAL) == 2
    assert slurm_check.cpus_per_task(8, None, 2, LOCAL) == 1
    assert slurm_check.cpus_per_task(8, None, 4, LOCAL) == 1  # at least one; the check says the rest
    assert slurm_check.cpus_per_task(8, "gpu", 8, SITE) == 8  # g1: 96 of 128 CPUs usable
    assert slurm_check.cpus_per_task(8, "gpu", 16, SITE) == 6
    monkeypatch.setattr(slurm_check, "query_cluster", lambda: None)
    assert slurm_check.cpus_per_task(8, None, 1) == 8  # no cluster reachable: the cap
    assert slurm_check.check_launcher({"cpus_per_task": 64}) is None  # and no check


@pytest.mark.parametrize(("accelerator", "devices", "gpus"), [
    ("auto", 1, 0), ("cpu", 2, 0), ("gpu", 4, 4), ("cuda", [0, 1], 2), ("mps", 1, 0),
])
def test_slurm_asks_for_gpus_only_when_the_trainer_names_them(accelerator, devices, gpus):
    assert slurm_gpus_per_node(accelerator, devices) == gpus


def test_auto_accelerator_note_on_a_gpu_partition():
    note = slurm_check.auto_accelerator_note("auto", "gpu", SITE)
    assert note.startswith("trainer.accelerator=auto asks SLURM for no GPU")
    assert slurm_check.auto_accelerator_note("auto", None, SITE) is None  # the CPU partition
    assert slurm_check.auto_accelerator_note("gpu", "gpu", SITE) is None


@pytest.fixture
def local_cluster(monkeypatch):
    monkeypatch.setattr(slurm_check, "query_cluster", lambda: LOCAL)


def test_the_launcher_default_fits_a_cpu_node(compose_hydra, local_cluster):
    launcher = compose_hydra("hydra/launcher=slurm").hydra.launcher  # trainer: accelerator auto
    node = OmegaConf.to_container(launcher, resolve=True)
    assert (node["gpus_per_node"], node["cpus_per_task"], node["mem_gb"]) == (0, 2, None)
    ddp = compose_hydra("hydra/launcher=slurm", "trainer=ddp_cpu").hydra.launcher
    assert (ddp.tasks_per_node, ddp.cpus_per_task, ddp.gpus_per_node) == (2, 1, 0)


def test_preflight_stops_a_sweep_that_could_never_start(compose_hydra, local_cluster):
    cfg = compose_hydra("hydra/launcher=slurm", "hydra.launcher.cpus_per_task=8")
    with pytest.raises(SystemExit, match=r"error: SLURM could never start this job .*\n  "
                                         r"hydra.launcher.cpus_per_task=8 x tasks_per_node=1"):
        SlurmPreflight().on_multirun_start(config=cfg)
    SlurmPreflight().on_multirun_start(config=compose_hydra("hydra/launcher=slurm"))  # fits


def test_preflight_leaves_other_launchers_alone(compose_hydra, monkeypatch):
    def unreachable():
        raise AssertionError("scontrol asked for a local launcher")

    monkeypatch.setattr(slurm_check, "query_cluster", unreachable)
    SlurmPreflight().on_multirun_start(config=compose_hydra("hydra/launcher=joblib"))
    SlurmPreflight().on_multirun_start(config=compose_hydra())


def test_submitits_sacct_warning_is_shown_once():
    logger = logging.getLogger("test_slurm_check.submitit")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    slurm_check.quiet_sacct_warnings(logger)
    slurm_check.quiet_sacct_warnings(logger)  # idempotent
    for call in (1, 2, 3):
        logger.warning(f"Call #{call} - Bypassing sacct error Command '['sacct']' returned "
                       "non-zero exit status 1., status may be inaccurate.")
    logger.warning("Job 12 failed")
    assert len(logger.filters) == 1
    messages = [r.getMessage() for r in records]
    assert len(messages) == 2 and messages[1] == "Job 12 failed"
    assert "shown once" in messages[0] and "Call #1 - Bypassing sacct error" in messages[0]
