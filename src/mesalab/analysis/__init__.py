"""Analysis: read a results folder back into one analysed object per study kind. The HTML report and the
terminal summary of that kind are both rendered from it (:mod:`mesalab.report`), so they cannot disagree.

Floors: results < analysis < report < studies (orchestration); nothing here imports orchestration.
"""
