"""Scaling: wall time and peak memory of `digitize` at 10, 100 and 1,000 documents, OCR cached.

    python -m bench.scaling [--runs 3] [--documents 10 100 1000] [--model DIR] \
        [--torch-threads N] [--quick] [--out bench-results/scaling.json]

What is left when OCR is taken out is our own overhead: discovery, Prefect's tasks, reading and
rendering each document again for the model, extraction, storing, the job summary. The OCR
cache in the artifact bucket is seeded with each synthetic document's exact ground-truth OCR,
under the key the flow looks up (`flows.ocr_cache.ocr_cache_key` with the current engine id), so
the flow finds every page cached and never runs PaddleOCR (the result checks `pages_ocred`).

The embedded default runs for the benchmark alone (temporary `DOCFLOW_HOME`, free ports; see
`bench.end_to_end`). The documents are one-page synthetic receipts and invoices rendered
without scan noise (quicker to make; OCR is skipped anyway), uploaded once per size under their
own prefix. Each (size, run) gets a fresh database, so every document is new to it, and runs
`digitize` in a child process of its own: `python -m bench.scaling --child`, which starts the
ephemeral Prefect API with an empty warm-up call, then times `digitize(prefix=...)`.

Memory, two figures per run: the child's peak resident set (VmHWM from /proc, over its whole
life: imports, model, the run; `resource.getrusage`'s ru_maxrss would also count the parent's
memory at the fork), and the peak of the sum of resident sets of the child and its descendants
(the ephemeral Prefect server, a uvicorn process, is one), sampled every 0.2 s with psutil, so
a spike shorter than that can be missed. Flat memory means neither grows with the number of
documents.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.report import ROOT, BenchResult, add_common_arguments
from flows.demo import demo_documents, upload_documents

MIB = 2**20


# --- the child: one digitize run ---------------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's peak resident set: VmHWM, which starts afresh at exec. (ru_maxrss would
    also count the parent's memory at the fork that started this process.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child(args) -> int:
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    from flows.deployments import ensure_concurrency_limits
    from flows.digitize import digitize

    ensure_concurrency_limits()
    # Starts the ephemeral API and registers the model; finds no documents.
    digitize(prefix="nothing-here/", model_version=args.model)
    start = time.perf_counter()
    summary = digitize(prefix=args.prefix, model_version=args.model)
    seconds = time.perf_counter() - start
    report = {"seconds": seconds, "max_rss_bytes": peak_rss_bytes(), "summary": summary}
    print("RESULT " + json.dumps(report, default=str), flush=True)
    return 0


# --- the parent ---------------------------------------------------------------------------------


class TreeMemory:
    """Peak of the summed resident sets of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                for proc in [self.process, *self.process.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # a process that just ended
                        total += proc.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_child(prefix: str, model_version: str | None, torch_threads: int | None) -> dict:
    command = [sys.executable, "-m", "bench.scaling", "--child", "--prefix", prefix]
    if model_version:
        command += ["--model", model_version]
    if torch_threads:
        command += ["--torch-threads", str(torch_threads)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    with TreeMemory(process.pid) as memory:
        output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the digitize child failed ({process.returncode}):\n{output[-3000:]}")
    line = next(x for x in reversed(output.splitlines()) if x.startswith("RESULT "))
    report = json.loads(line[len("RESULT ") :])
    report["tree_peak_bytes"] = memory.peak
    return report


def seed_ocr_cache(settings, documents) -> None:
    """Each document's exact OCR in the cache, as if an earlier run had OCR'd it."""
    import hashlib

    from docformer.ocr.engine import engine_id as ocr_engine_id
    from flows.clients import object_store
    from flows.ocr_cache import ocr_cache_key

    store, engine_id = object_store(settings), ocr_engine_id()
    for document in documents:
        key = ocr_cache_key(engine_id, hashlib.sha256(document.encode()).hexdigest(), 0)
        store.put_json(settings.artifact_bucket, key, document.ocr.to_dict())


def measure(result: BenchResult, args, base_settings, model_version) -> None:
    from bench.end_to_end import fresh_state

    largest = max(args.documents)
    start = time.perf_counter()
    documents = demo_documents(largest, seed=77, degrade=False)
    settings = fresh_state(base_settings, f"scaling-{uuid.uuid4().hex[:6]}")
    for size in args.documents:
        upload_documents(settings, documents[:size], f"scale-{size}/")
    seed_ocr_cache(settings, documents)
    print(
        f"{largest} documents made, uploaded and OCR-cached in {time.perf_counter() - start:.0f} s"
    )

    walls, process_peaks, tree_peaks = {}, {}, {}
    for size in args.documents:
        walls[size], process_peaks[size], tree_peaks[size] = [], [], []
        for run_index in range(args.runs):
            fresh_state(base_settings, f"scale-{size}-{run_index}-{uuid.uuid4().hex[:6]}", False)
            report = run_child(f"scale-{size}/", model_version, args.torch_threads)
            summary = report["summary"]
            if summary["extracted"] != size or summary["pages_ocred"]:
                print(
                    f"warning: {summary['extracted']} of {size} extracted, "
                    f"{summary['pages_ocred']} pages OCR'd: {summary['failures'][:3]}"
                )
            walls[size].append(report["seconds"])
            process_peaks[size].append(report["max_rss_bytes"] / MIB)
            tree_peaks[size].append(report["tree_peak_bytes"] / MIB)
            print(
                f"{size} documents, run {run_index + 1}: {report['seconds']:.1f} s, "
                f"peak RSS {process_peaks[size][-1]:.0f} MiB (tree {tree_peaks[size][-1]:.0f} MiB)",
                flush=True,
            )
    smallest = min(args.documents)
    for size in args.documents:
        result.add("wall time", f"{size} documents", "s", walls[size])
        result.add(
            "time per document",
            f"{size} documents",
            "s/document",
            [s / size for s in walls[size]],
            baseline=f"{largest} documents" if size != largest else None,
        )
        result.add(
            "peak memory",
            f"{size} documents, digitize process",
            "MiB",
            process_peaks[size],
            baseline=f"{smallest} documents, digitize process" if size != smallest else None,
        )
        result.add(
            "peak memory",
            f"{size} documents, with its child processes",
            "MiB",
            tree_peaks[size],
            detail="the ephemeral Prefect server included",
        )


def notes(result: BenchResult, sizes: list[int]) -> str:
    walls = {n: result.find("wall time", f"{n} documents").median for n in sizes}
    parts = []
    if len(sizes) >= 2:
        slope, intercept = statistics.linear_regression(sizes, [walls[n] for n in sizes])
        parts.append(
            f"Wall time against documents fits {intercept:.1f} s + {slope:.3f} s per document "
            f"(least squares over the medians): a fixed start (the flow run, loading the "
            f"model) and a constant cost per document."
        )
        big, small = max(sizes), sorted(sizes)[-2]
        parts.append(
            f"{big} documents took {walls[big] / walls[small]:.1f}× the time of {small} "
            f"({big / small:.0f}× the documents)."
        )
        from flows.digitize import TASK_THREADS
        from flows.settings import Settings

        chunk = Settings().chunk_size
        peaks = {
            n: result.find("peak memory", f"{n} documents, digitize process").median for n in sizes
        }
        # Work in flight is bounded (TASK_THREADS chunks of chunk_size documents), so memory
        # may rise until a run fills that window; "flat" is judged between the two largest runs.
        verdict = (
            "flat once the run is larger than the work in flight"
            if peaks[big] / peaks[small] < 1.2
            else "still growing between the two largest runs"
        )
        listed = ", ".join(f"{peaks[n]:.0f} MiB at {n}" for n in sizes)
        parts.append(
            f"Peak memory of the digitize process: {listed} documents; {big} against {small}: "
            f"{peaks[big] / peaks[small]:.2f}×, {verdict} ({TASK_THREADS} task threads, "
            f"chunks of {chunk} documents)."
        )
    else:
        n = sizes[0]
        parts.append(f"{n} documents took {walls[n]:.1f} s ({walls[n] / n:.2f} s per document).")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--documents", nargs="+", type=int, default=[10, 100, 1000])
    parser.add_argument("--model", help="model folder (default: the shipped checkpoint)")
    parser.add_argument("--torch-threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if args.child:
        return child(args)
    if args.quick:
        args.documents = [10]

    from bench.end_to_end import benchmark_model, temporary_services

    result = BenchResult.start("scaling", "Scaling", args.runs, args.quick)
    with temporary_services() as base_settings, tempfile.TemporaryDirectory() as scratch:
        model_version, model_text = benchmark_model(
            args.model, demo_documents(16, seed=3), Path(scratch) / "model"
        )
        result.figures["model"] = model_text
        result.figures["documents"] = (
            "one-page synthetic receipts and invoices, no scan noise, OCR cached (none OCR'd)"
        )
        result.figures["torch threads"] = args.torch_threads or "torch's default"
        measure(result, args, base_settings, model_version)

    result.notes = notes(result, sorted(args.documents))
    result.publish(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
