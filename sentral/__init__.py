"""Sentral: a SIP softswitch for clinics."""

__version__ = "0.1.0"
