"""HealthSim: synthetic healthcare data tools. This distribution provides ``healthsim.state``."""

__version__ = "0.1.0"
