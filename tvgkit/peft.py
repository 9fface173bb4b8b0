"""The public PEFT entry points, ``tvgkit.peft.apply``, ``count_parameters`` and ``expected_trainable``.

They live in :mod:`tvgkit.lessons.peft` (notebook 03) with the rest of the lesson; this name stays for scripts
written against it.
"""

from tvgkit.lessons.peft import apply, count_parameters, expected_trainable

__all__ = ["apply", "count_parameters", "expected_trainable"]
