"""Checkpoint converters: one small pure function per checkpoint source."""
from .official import (OfficialConversion, build_from_official, convert_official,
                       official_sources, register_official)

__all__ = ['OfficialConversion', 'build_from_official', 'convert_official', 'official_sources',
           'register_official']
