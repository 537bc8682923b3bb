"""The training core: the VAE, the foundation model (FM) and the one-step SR stage; and
distillation of a trained model into a smaller one.

    data.py      HR images (a folder, or the bundled scikit-image set) -> random HR crops
    degrade.py   Real-ESRGAN's second-order degradation: HR -> LR, seedable
    config.py    TrainConfig, the typed recipe of a run
    stages.py    the loss of each stage and which parameters it trains
    loop.py      the accelerate loop: progress, EMA, atomic checkpoints, exact resume
    distill.py   PocketSR distillation of a teacher into a student, on that loop
"""
