//! The networks: frozen ImageNet backbones, AFS, reconstruction UNets, RRS and the discriminator.
pub mod afs;
pub mod attention;
pub mod backbone;
pub mod layers;
pub mod memory;
pub mod realnet;
pub mod recon;
pub mod rrs;
pub mod winograd;
