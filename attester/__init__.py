"""The attester role: deterministic inference, environment capture, signed Evidence.

Importing this package does not import torch; the engine module does.
"""
