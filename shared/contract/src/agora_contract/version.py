"""The version of the published contract (the package version, the AsyncAPI info version)."""

from typing import Final

CONTRACT_VERSION: Final = "1.0.0"
