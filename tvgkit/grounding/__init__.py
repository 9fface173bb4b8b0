"""The temporal video grounding system: from a run's config to a trained, evaluated, resumable model.

The trainer reads top to bottom through these modules: ``presets`` (the run's config and named presets) ->
``splits`` (records and features, checked) -> ``build`` (model, loaders, optimiser, run folder) -> ``train`` (the
loop) with ``objective`` (the loss), ``runlog`` (log.jsonl, TensorBoard), ``resume`` (last.pt) -> ``evaluate``
(spans and metrics; a finished run's folder). Around them: ``model`` (the prompt-based grounding model),
``text`` (tokenizer and text encoder), ``dataset`` (records + features -> the model's batches), ``vocabulary``,
``baselines`` (video- and query-blind bars), ``checkpoint`` (atomic files, random states, Ctrl-C),
``distributed`` (torchrun helpers), ``inference`` (one query, one video), ``commands`` (the CLI's handlers) and
``viz`` (notebook 05's figures).

May import: the shared base at the top of the package, :mod:`tvgkit.data` and :mod:`tvgkit.lessons`; nothing imports
this package except ``tvgkit.cli`` (lazily), the notebooks, tests and benchmarks.
"""
