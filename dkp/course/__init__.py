"""The course layer: the named experiments and their runner, reports and verdicts, the co-matrix
adaptation diagnostics and search, series read from results, figures, widgets, and the inference
benchmark's setup. Builds on every layer below; nothing below imports it."""
