"""Packaging glue for what pyproject.toml cannot say: the ontology ships inside the wheel.

Everything else about the package is in pyproject.toml. The Turtle sources stay at the top
of the checkout, in ontology/; the wheel carries them as the data package `kb._ontology`
(mapped onto that directory, so there is one copy of each file), which `kb.config` falls
back to when the package runs from an installed wheel instead of a checkout. Package
discovery lives here, not under [tool.setuptools] in pyproject.toml, because a `find`
there cannot be combined with this one extra, mapped package.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["kb*", "reference_impl*"]), "kb._ontology"],
    package_dir={"kb._ontology": "ontology"},
    package_data={"kb._ontology": ["*.ttl"]},
)
