"""Causal variables: distributed alignment search (DAS) and model alignment search (MAS).

The chapter's stages, one module each:

  tasks            numeric-equivalence tasks (MultiObject, SingleObject, SameObject): token sequences
  causal_models    the symbolic programs that solve them (Up-Down, Up-Up, Up-Incr)
  counterfactuals  interchange pairs built from a causal model
  models           GRU, LSTM and transformer with named hooks and a patch point
  training         next-token training of those models (records under runs/chapter-das/)
  alignment        invertible alignment functions (orthogonal rotation and alternatives)
  interventions    the declared intervention (hook, time, variables, subspace, alignment) and the swap
  das              DAS / MAS fitting, IIA, the linear-probe baseline
  causal_mips      the same causal test on networks and programs from the MIPS pipeline

Explained in notebooks/das_counting.ipynb and notebooks/das_mips.ipynb; book/chapters/das.md.
"""
