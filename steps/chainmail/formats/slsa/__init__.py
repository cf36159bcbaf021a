"""The SLSA provenance formats: ``slsa/v1`` (also ``in-toto``), ``slsa/v2alpha3``, ``slsa/v2alpha4``."""

from chainmail.formats.slsa.v1 import InTotoIte6
from chainmail.formats.slsa.v2alpha3 import SlsaV2Alpha3
from chainmail.formats.slsa.v2alpha4 import SlsaV2Alpha4

__all__ = ["InTotoIte6", "SlsaV2Alpha3", "SlsaV2Alpha4"]
