"""Training, export, evaluation and benchmarks of the SpillWatch CNN (needs the ``train`` extra).

Modules: ``datasets`` (manifests, masks, synthetic mix), ``augment`` (seeded image+mask augmentation),
``net`` (backbone + frame head + spill-map head), ``train``, ``calibration`` (temperature, threshold),
``export`` (ONNX fp32/int8 + parity), ``metrics`` (pure), ``evaluate`` (+ report), ``bench``,
``card`` (model card), ``commands`` (CLI). ``synth`` is the synthetic staged-spill generator.
"""
