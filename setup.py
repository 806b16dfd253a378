"""Package discovery for the two source folders that become ``mlcls`` and ``mlcls.backends``.

pyproject.toml holds everything else. Listing packages by hand once shipped a wheel without
``mlcls.serving``; here every folder with an ``__init__.py`` under core/ and backends/ is a
package, so a new subpackage cannot be left out (tests/test_packaging.py installs the wheel).
"""

from setuptools import find_packages, setup

ROOTS = {"mlcls": "core", "mlcls.backends": "backends"}

packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS)
