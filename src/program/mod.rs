//! Prompt programs: files, rendering, select/gen calls. No network.
