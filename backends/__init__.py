"""mlcls's built-in device backends. Each module is a plugin registered through the
``mlcls.backends`` entry-point group in pyproject.toml, exactly as a vendor plugin is."""
