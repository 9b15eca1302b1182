"""The runtime: programs compiled from ModelSpecs, run by the C core."""
