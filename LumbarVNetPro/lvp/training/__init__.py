"""Training of the LVP network: config, cached data, MONAI transforms, loop with checkpoints and DDP.

Nothing here imports SimpleITK at module level, so training runs on machines that have only
torch, numpy and MONAI (the cache is built where the images can be read).
"""
