"""Checks: law-form comparison and its scores, simulation-based calibration, prior
sensitivity, and the Dask fan-out they share. Imports every wing below."""
