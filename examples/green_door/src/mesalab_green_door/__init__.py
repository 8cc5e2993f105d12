"""An example mesalab plugin: the green-door task (``tasks``), a NumPy tabular Q-learning agent trained through
mesalab's Gymnasium adapter (``train_q``) and that agent as a ``probs(obs)`` callable for
``mesalab diagnose --policy`` (``agent``)."""
