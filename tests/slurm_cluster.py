"""A throwaway single-node SLURM cluster for tests: munged, slurmctld and slurmd, no systemd.

Everything lives in one private folder: its own munge key and socket, a ``slurm.conf`` on free
ports, state, spool, pid and log files. Clients find it through ``SLURM_CONF`` (see
:attr:`SlurmCluster.env`), so the machine's ``/etc/slurm`` and ``/run/munge`` are never touched
and two clusters can run side by side. Needs root and Debian's ``slurmctld slurmd slurm-client
munge`` packages (see :func:`missing_requirements`).

Try the examples by hand on it::

    python tests/slurm_cluster.py      # starts, prints the SLURM_CONF to export, stops on Enter
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "squeue", "scancel")
FINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)


def which(program: str) -> str | None:
    """The program's path, looking in the sbin folders too (the daemons live there)."""
    return shutil.which(program, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def missing_requirements() -> str | None:
    """Why a cluster cannot start here (not root, programs missing), or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (the SLURM and munge daemons run as root here)"
    missing = [p for p in PROGRAMS if which(p) is None]
    if missing:
        return (
            f"SLURM programs not installed ({', '.join(missing)}); as root: apt-get install -y "
            f"--no-install-recommends {' '.join(PACKAGES)} (.ci/run does this)"
        )
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SlurmCluster:
    """Start with :meth:`start`, always :meth:`stop` (it is safe to call more than once).

    Parameters
    ----------
    root
        An empty or absent folder for the cluster's files. Keep its path short: munge's socket
        lives there and Unix socket paths are limited to about 100 characters.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.conf = self.root / "slurm.conf"
        self.socket = self.root / "munge" / "munge.socket"
        self.node = socket.gethostname().split(".")[0]
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM clients (sbatch, scontrol ...) to talk to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Write the configuration, start the three daemons and wait until the node is idle.

        Raises
        ------
        RuntimeError
            When a daemon exits or the node is not idle within ``timeout`` seconds (the message
            ends with the daemons' last log lines).
        """
        for sub in ("munge", "state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "munge").chmod(0o755)  # munged wants its socket folder world-searchable
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(self._config(), encoding="utf-8")
        munge = self.root / "munge"
        self._spawn(
            "munged",
            [
                which("munged") or "munged", "--foreground", "--force", f"--socket={self.socket}", f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )
        self._wait(lambda: self.socket.exists(), 10, "munged did not create its socket")
        self._spawn("slurmctld", [which("slurmctld") or "slurmctld", "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [which("slurmd") or "slurmd", "-D", "-f", str(self.conf)])
        self._wait(lambda: self.node_state() == "idle", timeout, f"node {self.node} is not idle")

    def stop(self) -> None:
        """Cancel every job, wait for them to end, then stop the daemons (pid by pid)."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            self._client(["scancel", "--full", "--user", "root"])
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self._client(["squeue", "-h", "-o", "%i"]).strip():
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- queries ----------------------------------------------------------------------------------
    def node_state(self) -> str:
        return self._client(["sinfo", "-h", "-n", self.node, "-o", "%T"]).strip()

    def job_states(self, job_id: str) -> dict[str, dict[str, str]]:
        """``scontrol show job -o`` of a job (one entry per array task), keyed by JobId."""
        out = self._client(["scontrol", "show", "job", "-o", job_id])
        jobs = {}
        for line in out.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" in fields:
                jobs[fields["JobId"]] = fields
        return jobs

    def wait_jobs(self, job_ids: Iterable[str], timeout: float) -> dict[str, dict[str, str]]:
        """Poll until every task of every job is in a final state; return their fields.

        Raises
        ------
        TimeoutError
            With the states seen last.
        """
        ids = list(job_ids)
        deadline = time.monotonic() + timeout
        while True:
            jobs: dict[str, dict[str, str]] = {}
            for job_id in ids:
                jobs.update(self.job_states(job_id))
            states = {k: v.get("JobState", "?") for k, v in jobs.items()}
            # a pending array is one record until its tasks start; wait for real tasks
            pending_array = any(not v.get("ArrayTaskId", "0").isdigit() for v in jobs.values())
            if jobs and not pending_array and all(s in FINAL_STATES for s in states.values()):
                return jobs
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs {ids} not finished after {timeout:.0f} s: {states}\n{self.logs()}")
            time.sleep(0.5)

    def logs(self, lines: int = 15) -> str:
        """The last lines of each daemon's log, for failure messages."""
        parts = []
        for name in ("slurmctld", "slurmd", "munged"):
            path = self.root / f"{name}.out"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    # --- internals --------------------------------------------------------------------------------
    def _config(self) -> str:
        node_line = subprocess.run(
            [which("slurmd") or "slurmd", "-C"], check=True, capture_output=True, text=True, env=self._clean_env()
        ).stdout.splitlines()[0]
        node_line = re.sub(
            r"RealMemory=(\d+)", lambda m: f"RealMemory={int(int(m.group(1)) * 0.9)}", node_line
        )
        r = self.root
        settings: Mapping[str, object] = {
            "ClusterName": "orbitct-test",
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.socket}",
            "MpiDefault": "none",
            "MailProg": "/bin/true",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "ReturnToService": 2,
            "SchedulerType": "sched/builtin",
            "MinJobAge": 600,  # finished jobs stay visible to scontrol while a test polls
            "StateSaveLocation": r / "state",
            "SlurmdSpoolDir": r / "spool",
            "SlurmctldPidFile": r / "slurmctld.pid",
            "SlurmdPidFile": r / "slurmd.pid",
            "SlurmctldLogFile": r / "slurmctld.log",
            "SlurmdLogFile": r / "slurmd.log",
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "JobCompType": "jobcomp/none",
        }
        lines = [f"{k}={v}" for k, v in settings.items()]
        lines.append(f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN")
        lines.append("PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        return "\n".join(lines) + "\n"

    def _clean_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("SLURM_", "SBATCH_", "SQUEUE_", "SINFO_")):
                del env[key]
        return env

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.root / f"{name}.out", "ab") as out:
            self._procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self._clean_env(), "SLURM_CONF": str(self.conf)},
                start_new_session=True,  # a Ctrl-C in the test run reaches us, not the daemons
            )

    def _client(self, argv: list[str]) -> str:
        result = subprocess.run(
            argv, capture_output=True, text=True, env={**self._clean_env(), "SLURM_CONF": str(self.conf)}
        )
        return result.stdout

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} after {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.3)


def main() -> int:
    """Start a cluster in a temporary folder, print how to use it, stop it on Enter or Ctrl-C."""
    reason = missing_requirements()
    if reason:
        print(f"cannot start a SLURM cluster: {reason}", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="orbitct-slurm-"))
    try:
        with SlurmCluster(root) as cluster:
            print(f"SLURM cluster up (node {cluster.node}); in another shell:\n\n"
                  f"    export SLURM_CONF={cluster.conf}\n\nPress Enter to stop it.")
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                input()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
