"""`docformer export`: a trained model folder -> a compact checkpoint fit to ship in git.

    docformer export --model runs/receipts-tiny --out docformer/checkpoints/receipts-tiny

The weights are stored as float16, which halves the file (the tiny preset: 48 MB -> 24 MB,
under the 30 MB a checkpoint in git may weigh), while config.json keeps `dtype: float32`, so
`from_pretrained` casts them back and CPU inference runs in float32 as it was trained. The
rounding moves logits by about 1e-3; the exported folder is evaluated, not the original, so the
metrics it ships with are its own. Everything else in the folder (tokenizer, processor, the
fine-tuning metrics.json and training records) is copied as is; resumable training state is not.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from docformer.checkpoints import check_model_dir

WEIGHTS_FILE = "model.safetensors"
# Files the checkpoint carries besides its weights; training state (optimizer, RNG) stays behind.
CARRIED_FILES = (
    "config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "metrics.json",
    "training.json",
)


def export_checkpoint(model_dir: str | Path, out_dir: str | Path, *, half: bool = True) -> Path:
    """Copy a `save_pretrained` folder to `out_dir`, its floating-point weights as float16 when
    `half`. Returns the written weights file. `out_dir` is replaced as a whole."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source = check_model_dir(model_dir)
    out_dir = Path(out_dir)
    if out_dir.resolve() == source:
        raise ValueError("export into the folder it reads from would destroy it")
    staging = out_dir.with_name(out_dir.name + ".exporting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in CARRIED_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, staging / name)

    config = json.loads((source / "config.json").read_text())
    # Loading follows config.json's dtype: keep it float32 whatever the stored weights are.
    config["dtype"] = "float32"
    (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    with safe_open(str(source / WEIGHTS_FILE), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(source / WEIGHTS_FILE))
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, str(staging / WEIGHTS_FILE), metadata=metadata)

    # Swap in the finished folder last, so a failed export never leaves half a checkpoint.
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir / WEIGHTS_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docformer export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="trained model folder (save_pretrained)")
    parser.add_argument("--out", required=True, help="folder to write the checkpoint to")
    parser.add_argument(
        "--float32", action="store_true", help="keep float32 weights (twice the size)"
    )
    args = parser.parse_args(argv)
    weights = export_checkpoint(args.model, args.out, half=not args.float32)
    print(f"wrote {weights.parent} ({weights.stat().st_size / 2**20:.1f} MiB of weights)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
