"""JAX/Flax backend: Flax models matching torchvision (models.py), weight conversion, parity."""
