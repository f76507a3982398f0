"""Small models, data and state snapshots that several test files share, one module per
family of tests (named after the file they were first written in):

- ``hostile``: a small classifier, trained or not, and everything a refused call must
  leave as it was (``_state``, ``_assert_same``);
- ``errors``: the rows of the refused-input table and its trained model;
- ``training``: a 40-row binary problem with validation rows, its model, weight
  snapshots and a callback that records every hook;
- ``zoo``: a model of every layer type;
- ``checkpoints``: a trained model to save, move or reload;
- ``transfers``: the array every transfer test moves, and skip marks for missing
  libraries;
- ``model``: a three-layer network.

A test file imports the names it uses; where two families define the same name (``X``,
``_model``), it imports the module instead and writes ``hostile.X``.
"""
