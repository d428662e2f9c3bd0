"""Array kernels: downsampling (`downsampling.py`)."""
