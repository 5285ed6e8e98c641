"""Server-side evaluation: metrics computed by the service on external test sets.

``metrics`` scores a loaded model (scikit-learn), ``sandbox`` runs that in a child
process with limits, ``worker`` claims jobs and stores their results. Only
``sandbox``'s child and the in-process executor of the benchmark ever load a model.
"""
