"""Model language: laws, priors, specs, effects and the likelihood. Pure: no sampling, no files
but the shipped specs. Imports only the floor (constants, errors)."""
