"""`f2i-mobile distill`: PocketSR distillation of a teacher model into a phone-sized student."""

from __future__ import annotations

from f2i_mobile.cli.train import add_loop_options, loop_fields


def add_parser(sub) -> None:
    p = sub.add_parser(
        "distill", help="distil a teacher model into a smaller student (LiteED, pruned U-Net)",
        description="PocketSR distillation on the training core: LiteED learns the teacher "
                    "VAE's latent space, then the whole student learns from the teacher's "
                    "output, latents and features while its U-Net's heavy blocks anneal into "
                    "light ones. The result is RUN/model/, a checkpoint like any other; see "
                    "docs/distill.md. Multi-GPU: `accelerate launch -m f2i_mobile.cli distill "
                    "...`.")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint folder or bundled name (default: mobile)")
    p.add_argument("--student", default="pocket",
                   help="student config: `pocket` (the PocketSR recipe applied to the teacher; "
                        "default), a preset name, or a config JSON (an f2i_config.json)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/ and model/")
    p.add_argument("--data", default=None,
                   help="folder of HR images (default: the bundled scikit-image set)")
    p.add_argument("--max-steps", type=int, default=None, help="steps in all (both phases)")
    p.add_argument("--lite-steps", type=int, default=None,
                   help="steps of the first phase, LiteED alone (default 1000)")
    p.add_argument("--anneal-steps", type=int, default=None,
                   help="steps over which the heavy U-Net blocks fade out (default 2000)")
    p.add_argument("--anneal-start", type=int, default=None,
                   help="steps into the second phase before annealing starts (default 0)")
    p.add_argument("--no-anneal", action="store_true",
                   help="train the light blocks directly, without their heavy counterparts "
                        "(the ablation)")
    p.add_argument("--feature-weight", type=float, default=None,
                   help="weight of the multi-layer feature distillation (default 0.1; 0 is "
                        "the ablation)")
    add_loop_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from dataclasses import replace

    from f2i_mobile.train.config import default_train_config
    from f2i_mobile.train.distill import run_distill

    cfg = default_train_config("distill").replace(max_steps=args.max_steps, **loop_fields(args))
    changes = {"lite_steps": args.lite_steps, "anneal_steps": args.anneal_steps,
               "anneal_start": args.anneal_start, "feature_weight": args.feature_weight}
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.no_anneal:
        changes["anneal"] = False
    cfg = cfg.replace(distill=replace(cfg.distill, **changes))
    final = run_distill(cfg, args.out, teacher=args.teacher, student=args.student,
                        data=args.data, resume=args.resume, progress=not args.quiet)
    print(f"distilled: {final}")
    return 0
