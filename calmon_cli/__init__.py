"""The `calmon` command line: commands, terminal output, and the thread scheduler that runs a
cycle's checks in one process. It calls the code location (calmon_assets), never the other way round."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("calmon")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
