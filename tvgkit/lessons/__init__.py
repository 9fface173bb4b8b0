"""The technique lessons: one module per technique a notebook teaches, each usable on any torch model.

``blocks`` (Pre-/Post-LN and DeepNorm encoder blocks) and ``depth`` (depth probes, the norm-position experiment) for
notebook 01; ``vit`` (a ViT whose norm is a parameter, BatchNorm folding) and ``activations`` (hooks, channel
statistics) for 02; ``peft`` (every PEFT method, counted exactly) for 03; ``rdrop`` and ``sentiment_task`` for 04;
``diagnostics`` (non-finite guard, gradient flow, optimiser and loader audits) and ``pathologies`` for 07; ``tasks``
(small algorithmic tasks) for 01.

May import: the shared base at the top of the package (``tvgkit.runtime``, ``config``, ``metrics``, ``errors``,
``viz``), ``tvgkit.data`` and each other; never :mod:`tvgkit.grounding`, which builds on these lessons
(``peft``, ``rdrop`` and ``diagnostics`` run inside its trainer).
"""
