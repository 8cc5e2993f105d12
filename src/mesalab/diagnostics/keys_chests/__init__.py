"""Diagnostics of the keys-chests task over its enlarged state space: the evaluator and its event rates
(:mod:`.evaluation`), the verdict (:mod:`.verdict`), planted agents (:mod:`.planted`), and exact soft value
iteration, MCE-IRL and optimization power over (taken keys, opened chests, cell) (:mod:`.behavioral`, :mod:`.bits`).
The generic entry points (``evaluate``, ``objective_profile``, ``alignment_verdict``) dispatch here."""
