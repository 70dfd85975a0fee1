"""`docformer synth`: write a synthetic labelled corpus.

docformer synth --kind receipt --n 1000 --seed 0 --out data/synth
docformer synth --kind mixed --n 50000 --seed 1 --out data/pretrain --workers 8
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

from docformer.synth.generator import KINDS, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docformer synth", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="mixed", choices=[*KINDS, "mixed"])
    parser.add_argument("--n", type=int, required=True, help="number of documents")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output folder (labelled-folder format)")
    parser.add_argument(
        "--start", type=int, default=0, help="index of the first document (to extend a run)"
    )
    parser.add_argument("--clean", action="store_true", help="no scan degradation")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes; output is the same for any number"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.workers <= 1:
        generate(args.kind, args.n, args.seed, args.out, not args.clean, args.start)
    else:
        # Document i depends only on (kind, seed, i): split the index range into chunks.
        chunk = max(1, args.n // (args.workers * 4))
        starts = range(args.start, args.start + args.n, chunk)
        with ProcessPoolExecutor(args.workers) as pool:
            jobs = [
                pool.submit(
                    generate,
                    args.kind,
                    min(chunk, args.start + args.n - s),
                    args.seed,
                    args.out,
                    not args.clean,
                    s,
                )
                for s in starts
            ]
            for job in jobs:
                job.result()
    elapsed = time.perf_counter() - started
    print(f"wrote {args.n} {args.kind} documents to {args.out} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
