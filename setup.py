"""Only what pyproject.toml cannot say: conf/ (top level, the single source of the Hydra configs)
is installed as the package `ptpeft_cli.conf`, so a wheel or `pip install .` carries its configs."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["ptpeft_cli", "ptpeft_cli.*"]), "ptpeft_cli.conf"],
    package_dir={"ptpeft_cli.conf": "conf"},
    package_data={
        "ptpeft_cli": ["models/checkpoints/**/*", "models/real_configs/**/*", "evaluation/metrics/**/*.py",
                       "planning/*.json"],
        "ptpeft_cli.conf": ["*.yaml", "**/*.yaml"],
    },
)
