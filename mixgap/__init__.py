"""mixgap: Mix Distillation and the Small Model Learnability Gap (Li et al., 2025, arXiv 2502.12143)."""

__version__ = "0.1.0"
