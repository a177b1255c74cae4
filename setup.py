"""Packaging beside pyproject.toml for the one thing it cannot say: the default factory bundle
(``factories/default`` in the repository) is installed as the data package ``nnfc_factories``,
so ``pip install`` of this repository ships a factory that ``nnfc compile`` finds."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["nnfc", "nnfc.*"]), "nnfc_factories",
              "nnfc_factories.default"],
    package_dir={"nnfc_factories": "factories"},
)
