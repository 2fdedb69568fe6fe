//! realnet-synth
