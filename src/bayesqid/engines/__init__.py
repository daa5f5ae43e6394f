"""Engines: how a spec's posterior is sampled (direct, whitened, collapsed), their fused Ops,
the linear system the whitened and collapsed engines share, sampler settings and the engine
registry. Imports the floor, the model language and data."""
