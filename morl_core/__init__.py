"""MORL Studio core library: multi-objective RL for language models.

Importing this package is cheap: torch and transformers load only when a policy is used.
"""

__version__ = "0.1.0"
