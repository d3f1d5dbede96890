"""Package discovery for the folder -> import-root mapping declared in pyproject.toml.

setuptools cannot discover subpackages of remapped folders from pyproject.toml alone, so this
computes them; everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = {
    "finserve": "finserve",
    "finserve.contracts": "contracts",
    "finserve.serving": "serving",
    "finserve.operator": "operator",
    "finserve.training": "training_jobs",
}

packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages)
