"""The torch-free core: the deployment contract, the manifest, the tile planner, image I/O,
fidelity metrics, atomic writes and errors. A phone-lab machine imports it with numpy alone."""
