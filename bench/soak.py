"""Soak: digitize 500+ documents and bad inputs, a second run, a worker killed mid-run.

`digitize` over 500+ documents mixed with bad ones, a second run on the same prefix and a worker
killed mid-run; then, from PostgreSQL, what became of every object.

    python -m bench.soak [--documents 500] [--bad-fraction 0.06] [--seed 7] [--keep] \
        [--chunk-size 8] [--claim-ttl 30] [--max-rounds 8] [--timeout 3600] [--out FILE]

Services (bench/soak_services.py): PostgreSQL 15, SeaweedFS and a real `prefect server` on
PostgreSQL, started by deploy/local's scripts under a temporary folder on free loopback ports,
and Prefect process workers on the `docflow-cpu` pool, one flow run at a time each. Runs go
through a deployment of the `digitize` flow (`digitize/soak`: prefect.yaml's entrypoint and
pull step, without the nightly schedule), as `docflow run` sends them to a server. Everything
is stopped and removed at the end, unless `--keep`.

Documents (bench/soak_inputs.py): `--documents` good synthetic scans, their OCR already in the
OCR cache, so no page is OCR'd (checked: the cache holds as many entries after as before) and
the soak measures orchestration and storage under faults, not PaddleOCR; plus bad inputs of
eight kinds, `--bad-fraction` of the whole mix, all under `soak/`. The model is the active one
(the shipped checkpoint `docformer/checkpoints/receipts-tiny`, registered by the first run),
with torch on one thread per flow-run process (`--torch-threads`).

The scenario:
1. two workers; 70 % of the objects uploaded; run A created;
2. once A has stored `--chunk-size` documents or a tenth of its share, whichever is more, the
   other 30 % are uploaded (uploads go on during a nightly run) and run B is created on the
   same prefix: it goes to the other worker, passes over what A holds and claims the rest;
3. once B holds or has stored documents, the worker running A and A's flow-run process are
   killed with SIGKILL (a machine lost); a replacement worker is started;
4. when B has ended, follow-up runs ("C1", "C2", ...; a nightly run each) are created one
   after another, each once no claim is live, until every object has a document in a final
   state (`--max-rounds` at most): the first finds A's claims run out (the claim TTL is
   `--claim-ttl` seconds instead of an hour, so this takes seconds) and marks its job
   crashed; the documents A had started are worked on alone; a document whose reading raises
   an unexpected error goes back to the queue each time until its attempts are used up.

The report: documents extracted; failed, by reason class, and each bad kind against the class
it must end with; duplicated (more than one extraction per document and model version, field
per extraction and name or page per document and index, field rows differing from their
extraction's count, and documents stored by more than one run: the jobs' extracted counters
against the documents extracted) — must be 0; lost (objects under the prefix with no document
in a final state, extracted documents without their extraction) — must be 0; jobs by status;
every run; wall time; and how long after the kill the extraction limit's one slot was free
(`SlotWatch`). Exit status 1 when anything is duplicated or lost, 2 when the scenario could not
be played (no run was mid-run to kill, a timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.report import describe_machine
from bench.soak_inputs import PREFIX, Item, bad_count, cached_pages, make_inputs, upload
from bench.soak_services import DEPLOYMENT, Services, Workers, deploy, new_services


class ScenarioError(RuntimeError):
    """The scenario could not be played as described (exit status 2)."""


def echo(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(what: str, condition: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ScenarioError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --- runs and the database --------------------------------------------------------------------


@dataclass
class Run:
    label: str
    flow_run_id: Any
    created: float
    ended: float | None = None
    worker: str = ""
    state: str = ""
    killed: bool = False


@dataclass
class Soak:
    """The scenario's state: the database, the runs made, the workers."""

    database_url: str
    workers: Workers
    chunk_size: int
    runs: list[Run] = field(default_factory=list)
    kill: dict[str, Any] = field(default_factory=dict)
    slots: SlotWatch | None = None
    engine: Any = None

    def __post_init__(self) -> None:
        import sqlalchemy as sa

        self.engine = sa.create_engine(self.database_url, pool_pre_ping=True)

    def query(self, sql: str, **params: Any) -> list[Any]:
        import sqlalchemy as sa

        with self.engine.connect() as connection:
            return list(connection.execute(sa.text(sql), params))

    def scalar(self, sql: str, **params: Any) -> int:
        return int(self.query(sql, **params)[0][0] or 0)

    def start_run(self, label: str) -> Run:
        from prefect.deployments import run_deployment

        parameters = {"prefix": PREFIX, "chunk_size": self.chunk_size}
        flow_run = run_deployment(DEPLOYMENT, parameters=parameters, timeout=0)
        run = Run(label, flow_run.id, time.monotonic())
        self.runs.append(run)
        echo(f"run {label} created (flow run {flow_run.name})")
        return run

    def flow_run(self, run: Run) -> Any:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return client.read_flow_run(run.flow_run_id)

    def is_final(self, run: Run) -> bool:
        state = self.flow_run(run).state
        run.state = state.name if state else ""
        if state is not None and state.is_final() and run.ended is None:
            run.ended = time.monotonic()
        return run.ended is not None

    def job(self, run: Run) -> Any:
        sql = "SELECT * FROM jobs WHERE flow_run_id = CAST(:id AS uuid)"
        rows = self.query(sql, id=str(run.flow_run_id))
        return rows[0] if rows else None

    def stored_by(self, job_id: int) -> int:
        return self.scalar("SELECT count(*) FROM extractions WHERE job_id = :j", j=job_id)

    def in_hand(self, job_id: int) -> int:
        sql = (
            "SELECT count(*) FROM documents WHERE claimed_by_job_id = :j AND status = 'processing'"
        )
        return self.scalar(sql, j=job_id)

    def live_claims(self) -> int:
        return self.scalar(
            "SELECT count(*) FROM documents WHERE status = 'processing' "
            "AND claim_expires_at > now()"
        )

    def pending(self, keys: list[str]) -> int:
        """Objects under the prefix without a document in a final state."""
        rows = self.query(
            "SELECT s.key FROM document_sources s JOIN documents d ON d.id = s.document_id "
            "WHERE s.key LIKE :pattern AND d.status IN ('extracted', 'failed')",
            pattern=PREFIX + "%",
        )
        return len(set(keys) - {row.key for row in rows})


# --- the scenario -----------------------------------------------------------------------------


class SlotWatch:
    """After the kill: seconds until the global limit `docflow-extract` (one slot) is seen with
    no slot taken, sampled every half second in a thread. A process killed while extracting
    never releases its slot; Prefect frees it when its lease runs out (300 s by default), and
    until then no run extracts anything."""

    def __init__(self, limit_seconds: float = 420):
        self.seconds: float | None = None
        self.taken_at_kill: int | None = None
        self._limit = limit_seconds
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        from prefect.client.orchestration import get_client

        from flows.tasks import EXTRACT_LIMIT

        with get_client(sync_client=True) as client:
            while time.monotonic() - self._started < self._limit:
                taken = client.read_global_concurrency_limit_by_name(EXTRACT_LIMIT).active_slots
                if self.taken_at_kill is None:
                    self.taken_at_kill = taken
                if taken == 0:
                    self.seconds = time.monotonic() - self._started
                    return
                time.sleep(0.5)

    def result(self) -> dict[str, Any]:
        self._thread.join(timeout=1)
        return {
            "extract_slots_taken_at_kill": self.taken_at_kill,
            "extract_slot_free_after_s": None if self.seconds is None else round(self.seconds, 1),
        }


def kill_mid_run(soak: Soak, run: Run, job_id: int) -> None:
    """SIGKILL to the flow-run process of `run` (and anything it started) and to the worker
    that started it."""
    import psutil

    infrastructure = wait_for(
        f"run {run.label}'s process id", lambda: soak.flow_run(run).infrastructure_pid, 60
    )
    pid = int(str(infrastructure).rsplit(":", 1)[-1])
    worker = soak.workers.owner_of(pid)
    if worker is None:  # never a process this benchmark did not start
        raise ScenarioError(f"run {run.label}'s process {pid} is not one of our workers'")
    held, stored = soak.in_hand(job_id), soak.stored_by(job_id)
    process = psutil.Process(pid)
    for doomed in [process, *process.children(recursive=True)]:
        doomed.kill()
    worker.process.kill()
    soak.slots = SlotWatch()
    worker.process.wait()
    run.killed, run.worker = True, worker.name
    soak.kill = {
        "run": run.label,
        "worker": worker.name,
        "flow_run_pid": pid,
        "worker_pid": worker.pid,
        "seconds_after_start": round(time.monotonic() - run.created, 1),
        "documents_in_hand": held,
        "documents_stored_before": stored,
    }
    echo(
        f"killed worker {worker.name} (pid {worker.pid}) and run {run.label}'s process "
        f"(pid {pid}): it held {held} documents and had stored {stored}"
    )


def play(soak: Soak, batches: tuple[list[Item], list[Item]], settings: Any, args: Any) -> None:
    first, second = batches
    keys = [item.key for item in first + second]
    soak.workers.start("w1")
    soak.workers.start("w2")
    upload(first, settings)
    echo(f"{len(first)} objects uploaded; starting run A")
    a = soak.start_run("A")
    job_a = wait_for("run A's job", lambda: soak.job(a), args.timeout).id
    threshold = max(args.chunk_size, len(first) // 10)
    wait_for(
        f"run A to store {threshold} documents",
        lambda: soak.stored_by(job_a) >= threshold or soak.is_final(a),
        args.timeout,
    )
    upload(second, settings)
    echo(f"run A stored {soak.stored_by(job_a)}; {len(second)} more objects; starting run B")
    b = soak.start_run("B")
    job_b = wait_for("run B's job", lambda: soak.job(b), args.timeout).id
    wait_for(
        "run B to hold or store documents",
        lambda: soak.in_hand(job_b) or soak.stored_by(job_b) or soak.is_final(b),
        args.timeout,
        every=0.2,
    )
    if soak.in_hand(job_a) and not soak.is_final(a):
        kill_mid_run(soak, a, job_a)
    elif soak.in_hand(job_b) and not soak.is_final(b):
        echo("run A had finished before run B started work: killing run B's worker instead")
        kill_mid_run(soak, b, job_b)
    else:
        raise ScenarioError("no run was mid-run when the kill was due; try more --documents")
    soak.workers.start("w3")
    echo("replacement worker w3 started")

    for run in soak.runs:
        if not run.killed:
            wait_for(f"run {run.label} to end", lambda run=run: soak.is_final(run), args.timeout)
    rounds = 0
    while soak.pending(keys) and rounds < args.max_rounds:
        wait_for("claims to run out", lambda: soak.live_claims() == 0, args.claim_ttl * 2 + 120)
        rounds += 1
        run = soak.start_run(f"C{rounds}")
        wait_for(f"run {run.label} to end", lambda run=run: soak.is_final(run), args.timeout)
        echo(f"run {run.label}: {run.state}; {soak.pending(keys)} objects not final yet")
    if soak.slots is not None:
        soak.kill.update(soak.slots.result())
    for run in soak.runs:
        if run.killed:
            soak.is_final(run)  # what Prefect says of it now (nobody told it)
        elif not run.worker:
            run.worker = worker_of(soak, run)


def worker_of(soak: Soak, run: Run) -> str:
    """Which of our workers ran `run`, from its log (the worker logs the flow run's id)."""
    for worker in soak.workers.all:
        if str(run.flow_run_id) in worker.log.read_text(errors="replace"):
            return worker.name
    return "?"


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=500, help="good documents")
    parser.add_argument(
        "--bad-fraction", type=float, default=0.06, help="bad documents' share of the mix"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="leave the services and folder")
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--claim-ttl", type=int, default=30, help="DOCFLOW_CLAIM_TTL_SECONDS")
    parser.add_argument("--torch-threads", type=int, default=1, help="per flow-run process")
    parser.add_argument("--max-rounds", type=int, default=8, help="follow-up runs at most")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per wait")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if not 0 < args.bad_fraction < 1:
        parser.error("--bad-fraction must be between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    # Processor, memory and the load before anything starts; torch's threads are those of each
    # flow-run process, not of this one (which runs no model).
    machine = {**describe_machine(), "torch": version("torch"), "torch_threads": args.torch_threads}
    folder = Path(tempfile.mkdtemp(prefix="docflow-soak-"))
    services: Services = new_services(folder)
    workers: Workers | None = None
    try:
        services.start(echo)
        # Read once by prefect and flows on import: set before either is imported.
        os.environ.update(services.environment())
        os.environ["DOCFLOW_CLAIM_TTL_SECONDS"] = str(args.claim_ttl)
        from bench.soak_report import report
        from flows import provision
        from flows.settings import get_settings

        get_settings.cache_clear()
        settings = get_settings()
        wait_for("S3 to answer", lambda: _answers(settings), 60, every=0.5)
        provision.prepare(settings, echo=lambda *_: None)
        deploy(folder)
        echo("deployment digitize/soak on pool docflow-cpu")

        bad = bad_count(args.documents, args.bad_fraction)
        items = make_inputs(args.documents, bad, args.seed)
        cut = len(items) * 7 // 10
        echo(f"{args.documents} good and {bad} bad documents made ({bad / len(items):.1%} bad)")
        worker_env = {
            **os.environ,
            "OMP_NUM_THREADS": str(args.torch_threads),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
        }
        workers = Workers(folder, worker_env)
        soak = Soak(services.database_url, workers, args.chunk_size)
        outcome = 0
        try:
            play(soak, (items[:cut], items[cut:]), settings, args)
        except ScenarioError as error:
            echo(f"scenario not completed: {error}")
            outcome = 2
        ended = [run.ended for run in soak.runs if run.ended is not None]
        wall = max(ended) - soak.runs[0].created if ended else 0.0
        cache = (sum(len(item.ocr) for item in items), cached_pages(settings))
        figures = report(soak, items, machine, wall_seconds=wall, ocr_cache=cache, args=args)
        figures["total_seconds"] = round(time.monotonic() - began, 1)
        if args.out:
            args.out.write_text(json.dumps(figures, indent=2, default=str))
        if figures["duplicated"] or figures["lost"]:
            outcome = 1
        return outcome
    finally:
        if workers is not None:
            workers.stop_all()
        if args.keep:
            print(f"kept: {folder}; stop the services with:")
            for line in services.stop_commands():
                print(f"  {line}")
        else:
            services.stop()
            shutil.rmtree(folder, ignore_errors=True)


def _answers(settings: Any) -> bool:
    from flows.clients import object_store
    from flows.storage import StorageError

    try:
        object_store(settings).list_buckets()
    except StorageError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
