"""The course layer, for teaching only: what the notebooks share (`notebook`: folders, verdicts shown
as the report prints them, short demo trainings), the co-matrix adaptation explorers' logic
(`diagnostics`), series read from results for plots (`series`), figures (drawn diagrams among them)
and widgets, the exercises with their one checker (`exercises`) and what the check cells compute
before they assert (`checks`). It reads the study's records and verdicts (`dkp.study`) and the
benchmark records (`dkp.bench`); nothing below imports it."""
