"""Make a shippable checkpoint from an SR run: LoRA merged into the base weights (peft's merge),
weights stored as fp16 safetensors. This is how `f2i_mobile/weights/mobile` was made:

    python -m f2i_mobile.train.bundle SR_RUN/model f2i_mobile/weights/mobile
"""

from __future__ import annotations

import argparse
import sys

import torch

from f2i_mobile.models import from_pretrained, save_pretrained
from f2i_mobile.models.lora import merge_lora


def bundle(src: str, dst: str, note: str | None = None) -> None:
    model = from_pretrained(src)
    merge_lora(model.unet)
    merge_lora(model.vae)
    if note:
        model.metadata["recipe"] = note
    save_pretrained(model, dst, dtype=torch.float16)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m f2i_mobile.train.bundle", description=__doc__)
    p.add_argument("src", help="an SR run's model folder")
    p.add_argument("dst", help="where to write the bundled checkpoint")
    p.add_argument("--note", default=None, help="recipe text stored in the metadata")
    args = p.parse_args(argv)
    from f2i_mobile.core.errors import F2IError
    from f2i_mobile.core.quiet import quiet_libraries

    quiet_libraries()
    try:
        bundle(args.src, args.dst, args.note)
    except F2IError as exc:
        print(f"bundle: error: {exc}", file=sys.stderr)
        return 1
    print(f"bundled {args.src} -> {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
