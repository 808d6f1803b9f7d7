"""pgkb's foundation, shared by every stage: its version, settings (pgkb.settings) and
errors (pgkb.errors). It imports no other pgkb package."""

__version__ = "0.1.0"
