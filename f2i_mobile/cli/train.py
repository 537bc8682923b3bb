"""`f2i-mobile train {vae,fm,sr}`: one stage of the training core (`sr --method osediff|faithdiff`)."""

from __future__ import annotations

# The training loop's options, shared with `distill`: flag -> TrainConfig field.
LOOP_FIELDS = {"batch": "batch", "crop": "crop", "lr": "learning_rate", "seed": "seed",
               "checkpoint_every": "checkpoint_every", "workers": "num_workers",
               "mixed_precision": "mixed_precision", "compile": "compile"}


def add_loop_options(p) -> None:
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--crop", type=int, default=None, help="HR crop edge in pixels")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="data loader processes")
    p.add_argument("--mixed-precision", choices=("auto", "no", "fp16", "bf16"), default=None,
                   help="autocast precision (default: auto, bf16 on a CUDA GPU, none on a CPU)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the U-Net on a CUDA GPU (a minute or two at the start)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")


def loop_fields(args) -> dict:
    """The TrainConfig fields `add_loop_options` set (None: the stage's default)."""
    return {field: getattr(args, flag) for flag, field in LOOP_FIELDS.items()}


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
                   help="model to start from: the previous stage's OUT/model, or a bundled "
                        "name (fm takes its VAE)")
    p.add_argument("--data", default=None,
                   help="folder of HR images (recursive PNG/JPEG/TIFF; default: the bundled "
                        "scikit-image set)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/ and model/")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--p-bicubic", type=float, default=None,
                   help="share of clean bicubic LR among Real-ESRGAN-degraded LR (sr stage)")
    p.add_argument("--method", choices=("osediff", "faithdiff"), default=None,
                   help="how the sr stage trains: osediff (default; LoRA on the VAE encoder and "
                        "U-Net) or faithdiff (alignment module, then joint fine-tuning)")
    p.add_argument("--align-steps", type=int, default=None,
                   help="faithdiff: steps that train the alignment module alone, first")
    p.add_argument("--lora-rank", type=int, default=None,
                   help="faithdiff: fine-tune U-Net and LQ encoder through adapters of this rank "
                        "on every layer (default: whole)")
    p.add_argument("--align-width", type=int, default=None,
                   help="faithdiff: alignment module channels (default: the U-Net's first)")
    p.add_argument("--align-convs", type=int, default=None,
                   help="faithdiff: alignment module ResNet blocks (default 2)")
    p.add_argument("--align-blocks", type=int, default=None,
                   help="faithdiff: alignment module transformer layers (default 1)")
    p.add_argument("--align-features", choices=("penultimate", "last"), default=None,
                   help="faithdiff: the LQ encoder's features (default penultimate)")
    p.add_argument("--latent-weight", type=float, default=None,
                   help="sr: weight of the MSE between the one-step latent and the frozen VAE "
                        "encoder's latent of the HR crop (default 0; holds a fine-tuned U-Net "
                        "to the latents the decoder knows)")
    add_loop_options(p)
    p.add_argument("--dinov2", default=None, help="local HF folder with real DINOv2 weights")
    p.add_argument("--vae", default=None, help="local HF folder with real VAE weights")
    p.set_defaults(run=run)


def run(args) -> int:
    from dataclasses import replace

    from f2i_mobile.core.errors import F2IError
    from f2i_mobile.train.inputs import check_inputs

    check_inputs(args.stage, args.init, args.vae, args.data)  # before the imports below (seconds)
    from f2i_mobile.train.config import default_train_config
    from f2i_mobile.train.run import run_stage

    cfg = default_train_config(args.stage).replace(
        max_steps=args.max_steps, **loop_fields(args), method=args.method,
        align_steps=args.align_steps, lora_rank=args.lora_rank, latent_weight=args.latent_weight)
    align = {k: v for k, v in (("width", args.align_width), ("convs", args.align_convs),
                               ("blocks", args.align_blocks), ("features", args.align_features))
             if v is not None}
    if align:
        if cfg.method != "faithdiff":
            raise F2IError("--align-* options belong to --method faithdiff")
        cfg = cfg.replace(align=replace(cfg.align, **align))
    if args.p_bicubic is not None:
        cfg = cfg.replace(degradation=replace(cfg.degradation, p_bicubic=args.p_bicubic))
    final = run_stage(cfg, args.out, data=args.data, preset_name=args.preset,
                      config_file=args.config, init=args.init, resume=args.resume,
                      dinov2=args.dinov2, vae=args.vae)
    print(f"{args.stage} stage done: {final}")
    return 0
