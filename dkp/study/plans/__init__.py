"""The studies, declared: each module holds one plan's hypotheses and tables as data for the one
engine (`dkp.study.engine`) and printer (`dkp.study.report`).

    course       the course's five effects, the Kronecker split question, the recipe table
    cma_search   the co-matrix adaptation search (data/results/cma-search/PLAN.md), H1-H6, and
                 its replication (the plan's addendum), R1a-R6d
    whole_model  the whole model (data/results/whole-model/PLAN.md): G1-G3, W1-W3, Q1
    transformer  Kronecker transformers and converged teachers (data/results/transformer/PLAN.md):
                 T1-T9, L1-L2
"""
from dkp.study.plans import cma_search, course, transformer, whole_model

STUDIES = (course.STUDY, whole_model.STUDY, cma_search.STUDY, transformer.STUDY)   # the order `report` tries a folder in
