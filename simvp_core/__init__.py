"""simvp_core: the SimVP model family, Moving MNIST data, losses, metrics and trainer (plain PyTorch)."""
