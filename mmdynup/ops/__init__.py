"""Stateless primitives shared by the upsamplers, each with a plain-PyTorch reference."""
