"""Backbones: the deeper plain ViTs of MIRL."""
