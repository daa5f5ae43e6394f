"""Sampling: ``fit``, refits, the convergence gate, posterior draws on rows and the saved
``Run``. Imports the floor, the model language, data and engines."""
