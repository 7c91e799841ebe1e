"""Finite-width training: the O(1/n) prediction of what gradient descent does to the outputs.

:mod:`~ntkdiagrams.training.tensors` (the output layer's statistics over (neuron, input) pairs),
:mod:`~ntkdiagrams.training.dynamics` (the update equations expanded to O(1/n) and solved step
by step), :mod:`~ntkdiagrams.training.prediction` (``train_prediction``: evaluate, solve, package).
"""
