//! Frozen ImageNet backbones with PyTorch key names (owned by the backbone work).
