"""Data: the canonical schema and its validation, loaders, the bundled reference data and the
design (covariates and group codes). Imports the floor and the model language."""
