"""Badly behaved plugins for mlcls's regression tests (each module is one plugin)."""
