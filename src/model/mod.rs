//! The networks: frozen ImageNet backbones, AFS, reconstruction UNets, RRS and the discriminator.
pub mod backbone;
