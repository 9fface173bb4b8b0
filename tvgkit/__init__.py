"""tvgkit: see, with real code and real numbers, how transformers are trained, normalised, fine-tuned and
regularised, up to a working temporal video grounding system.

Layers, each importing only those before it: the shared base here (``runtime``, ``config``, ``metrics``,
``errors``, ``viz``, ``notebooks``, ``experiments``, ``budgets``, ``colab``) <- :mod:`tvgkit.data` (files to
records and clip features) <- :mod:`tvgkit.lessons` (one module per technique notebook) <- :mod:`tvgkit.grounding`
(the grounding system: model, trainer, evaluation). ``cli`` is the ``tvgkit`` command (it imports the grounding
handlers lazily); ``peft`` keeps the public ``tvgkit.peft.apply`` / ``count_parameters`` / ``expected_trainable``.

The package import stays light on purpose (no transformers or peft here): notebooks and the CLI import the
submodules they need.
"""

__version__ = "0.1.0"
