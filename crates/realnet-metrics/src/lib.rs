//! realnet-metrics
