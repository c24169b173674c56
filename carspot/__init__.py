"""CarSpot: which car brands appear in the images people post on social media, live."""

__version__ = "0.1.0"
