"""Reference implementations of knowledge-distillation techniques.

One small, readable torch module per technique, each linked from its concept in the
ontology (`kdo:implementedBy`), plus the shared harness (data, models, training loop,
evaluation, benchmark runner). The knowledge-base server never imports this package.
"""
