"""Pictures of models: image grids and GIFs (`grid`), and the per-family figures
(`attention`, `glimpses`, `alignment`, `captions`), all written on the host from NumPy."""

from vislang_jax.viz.grid import image_grid, save_gif, save_image_grid

__all__ = ["image_grid", "save_gif", "save_image_grid"]
