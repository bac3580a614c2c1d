"""A culture of small GPTs: Fleuret's grid quizzes, the culture loop, hooked models, SAEs and universality.

A sibling chapter of the book, after F. Fleuret's *culture* experiments and T. Pollak's "Interpreting
Culture", sized for a CPU (culture spec §4). Modules:

- ``world``: grids, colours, label tokens, the four-part quiz, structures, prompt noise, task generators;
- ``gpt``: the MyGPT-style model with TransformerLens-style hook points, and autoregressive generation;
- ``training``: the group of GPTs, their training and their accuracy (greedy and sampled);
- ``loop``: one round of the culture loop (generation, trivial and agreement filters, fine-tuning);
- ``hooks``: named activations, attention patterns, ablations;
- ``sae``: sparse autoencoders with SAELens's metric definitions, spliced back into the model;
- ``universality``: neuron- and SAE-feature-level maximum activation correlation across models;
- ``plots``: figures (quiz pictures, curves); they compute nothing a page reports.
"""
