//! Request and token quotas per deployment.
