"""Figures, one module per concept: `curves` (training and method comparisons), `kronecker`,
`cma` (co-matrix adaptation and dropout), `speed`; `axes` holds what they share."""
