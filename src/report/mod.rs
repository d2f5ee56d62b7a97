//! Reports: one exporter per format.
