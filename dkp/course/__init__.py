"""The course layer, for teaching only: what the notebooks share (`notebook`: folders, verdicts shown
as the report prints them, short demo trainings), the co-matrix adaptation explorers' logic
(`diagnostics`), series read from results for plots (`series`), figures and widgets. It reads the
study's records and verdicts (`dkp.study`) and the benchmark records (`dkp.bench`); nothing below
imports it."""
