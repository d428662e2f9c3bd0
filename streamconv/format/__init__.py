"""The precomputed format as checked values, no I/O: the `info` (`info.py`), scales and boxes
(`geometry.py`), the scale plan (`pyramid.py`), the stored data type (`dtypes.py`), the sharding
spec and its hashing (`sharding.py`, `murmur.py`) and the choice of its parameters
(`sharding_choice.py`)."""
