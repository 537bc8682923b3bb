"""`f2i-mobile train {vae,fm,sr}`: one stage of the training core."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train the VAE, the foundation model (fm) or the one-step SR stage",
        description="Train one stage. The bundled default is made by running vae, then fm "
                    "(--init VAE_OUT/model), then sr (--init FM_OUT/model); see docs/models.md. "
                    "Multi-GPU: `accelerate launch -m f2i_mobile.cli train ...`.")
    p.add_argument("stage", choices=("vae", "fm", "sr"))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default=None, help="model config by name (default: mobile)")
    src.add_argument("--config", default=None, help="model config JSON (an f2i_config.json)")
    p.add_argument("--init", default=None,
                   help="model to start from: the previous stage's OUT/model")
    p.add_argument("--data", default=None,
                   help="folder of HR images (recursive PNG/JPEG/TIFF; default: the bundled "
                        "scikit-image set)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/ and model/")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--crop", type=int, default=None, help="HR crop edge in pixels")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="data loader processes")
    p.add_argument("--p-bicubic", type=float, default=None,
                   help="share of clean bicubic LR among Real-ESRGAN-degraded LR (sr stage)")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=None)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--dinov2", default=None, help="local HF folder with real DINOv2 weights")
    p.add_argument("--vae", default=None, help="local HF folder with real VAE weights")
    p.set_defaults(run=run)


def run(args) -> int:
    from dataclasses import replace

    from f2i_mobile.train.config import default_train_config
    from f2i_mobile.train.run import run_stage

    cfg = default_train_config(args.stage).replace(
        max_steps=args.max_steps, batch=args.batch, crop=args.crop, learning_rate=args.lr,
        seed=args.seed, checkpoint_every=args.checkpoint_every, num_workers=args.workers,
        mixed_precision=args.mixed_precision)
    if args.p_bicubic is not None:
        cfg = cfg.replace(degradation=replace(cfg.degradation, p_bicubic=args.p_bicubic))
    final = run_stage(cfg, args.out, data=args.data, preset_name=args.preset,
                      config_file=args.config, init=args.init, resume=args.resume,
                      dinov2=args.dinov2, vae=args.vae)
    print(f"{args.stage} stage done: {final}")
    return 0
