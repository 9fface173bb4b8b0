"""tvgkit: see, with real code and real numbers, how transformers are trained, normalised, fine-tuned and
regularised, up to a working temporal video grounding system.

The package import stays light on purpose (no transformers or peft here): notebooks and the CLI import the
submodules they need.
"""

__version__ = "0.1.0"
