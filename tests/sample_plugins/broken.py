"""A plugin whose import fails, as a vendor plugin with a missing SDK might."""

raise ImportError("vendor SDK libfoo.so not found")
