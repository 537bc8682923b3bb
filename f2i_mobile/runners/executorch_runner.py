"""The ExecuTorch runtime's Python bindings (the same runtime as executor_runner on a phone).
Its `Method.execute` takes and gives torch tensors, so this runner needs torch."""

from __future__ import annotations

from f2i_mobile.runners.artifact_runner import ArtifactRunner


class ExecuTorchRunner(ArtifactRunner):
    def load(self, path):
        from executorch.runtime import Runtime

        return Runtime.get().load_program(str(path)).load_method("forward")

    def execute(self, method, args):
        import torch

        return [o.numpy() for o in method.execute([torch.from_numpy(a) for a in args])]


RUNNER = ExecuTorchRunner
