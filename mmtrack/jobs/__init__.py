"""The jobs that produce MLflow runs, one module each: training a configuration (`train_run`), evaluating a
logged model again (`evaluate_run`), an ensemble of logged models (`ensemble_run`), and the local spool of trained
weights a training run could not log yet (`spool`). What they all record, and how, is `record`.

A new kind of run (say, importing models trained elsewhere) is a new module here that records through `record`.
"""
