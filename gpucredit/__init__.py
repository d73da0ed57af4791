"""gpucredit: Python tooling for the gpucredit GPU-backed note protocol."""
