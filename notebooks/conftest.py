"""nbval settings for the notebooks (see [tool.pytest.ini_options] in pyproject.toml)."""
from pathlib import Path

SANITIZE = Path(__file__).with_name("sanitize.cfg")


def pytest_configure(config):
    # The sanitize file, found beside this conftest rather than relative to the working directory;
    # an explicit --nbval-sanitize-with on the command line wins.
    if getattr(config.option, "nbval_sanitize_with", None) is None:
        config.option.nbval_sanitize_with = str(SANITIZE)
