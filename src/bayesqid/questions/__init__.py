"""Questions: predictions on grids, token budgets and training level, answered on posterior
draws. Imports every wing below (never checks, report, lab or the CLI)."""
