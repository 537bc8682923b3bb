"""Does the mobile VAE need more than SD's 4 latent channels? Measured, not assumed.

Trains the mobile VAE twice with the same recipe, steps and seed, once with 4 and once with
16 latent channels, and reports each one's reconstruction PSNR-Y on the held-out images: the
ceiling on the SR network's fidelity through that latent. Bicubic 4x PSNR-Y of the same crops is
printed alongside, since the SR model has to beat it.

    python benchmarks/latent_channels.py --steps 600
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace

from results import write_result

from f2i_mobile.core.quiet import quiet_libraries
from f2i_mobile.evaluate import eval_images, evaluate, reconstruction_psnr
from f2i_mobile.models import from_pretrained, preset
from f2i_mobile.train.config import default_train_config
from f2i_mobile.train.run import run_stage


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    quiet_libraries()
    base = preset("mobile")
    held_out = eval_images(None)
    cfg = default_train_config("vae").replace(max_steps=args.steps, crop=args.crop,
                                              batch=args.batch, learning_rate=3e-4,
                                              checkpoint_every=args.steps)
    rows = []
    for channels in (4, 16):
        config = replace(base, vae=replace(base.vae, latent_channels=channels))
        with tempfile.TemporaryDirectory() as tmp:
            config_file = f"{tmp}/config.json"
            with open(config_file, "w") as f:
                json.dump(config.to_dict(), f)
            out = run_stage(cfg, f"{tmp}/run", config_file=config_file)
            model = from_pretrained(out)
            rows.append({"latent_channels": channels, "steps": args.steps,
                         "recon_psnr_y": reconstruction_psnr(model, held_out)})
    bicubic = sum(s.bicubic.psnr for s in evaluate(model, held_out)) / len(held_out)
    for r in rows:
        print(f"{r['latent_channels']:>2} latent channels: VAE reconstruction PSNR-Y "
              f"{r['recon_psnr_y']:.2f} dB after {r['steps']} steps "
              f"(bicubic 4x on the same crops: {bicubic:.2f} dB)")
    print(f"16 vs 4 channels: {rows[1]['recon_psnr_y'] - rows[0]['recon_psnr_y']:+.2f} dB")
    write_result("latent_channels", {"rows": rows, "bicubic_psnr_y": bicubic}, args.json)


if __name__ == "__main__":
    main()
