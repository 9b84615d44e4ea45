"""Numerical checks of the LAD theory (Lemma 3.1, Lemma 3.2, the gradient, Theorem B.1); see docs/theory.md."""
